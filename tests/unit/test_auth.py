"""Auth pieces: roles policy, signing, login limiter (hypothesis), passwords, the DB-backed service."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.auth import passwords, signing
from cloud.auth.models import make_engine, make_sessionmaker
from cloud.auth.ratelimit import LoginLimiter
from cloud.auth.roles import POLICY, Perm, Principal, Role
from cloud.auth.service import AuthError, AuthService

SECRET = b"0123456789abcdef0123456789abcdef"


def test_policy_is_as_designed() -> None:
    assert POLICY[Role.MANAGER] == frozenset(Perm)
    assert POLICY[Role.RESIDENT] == {Perm.VIEW_PARKING}
    assert Perm.COMMAND not in POLICY[Role.VOLUNTEER] | POLICY[Role.INSTALLER]
    assert Perm.ENROL in POLICY[Role.INSTALLER] and Perm.ENROL not in POLICY[Role.VOLUNTEER]
    assert Perm.ACK_ALARMS in POLICY[Role.VOLUNTEER] and Perm.ACK_ALARMS not in POLICY[Role.INSTALLER]


def test_principal_site_scoping() -> None:
    p = Principal(1, "a", Role.VOLUNTEER, frozenset({"estate-a"}))
    assert p.sees("estate-a") and not p.sees("estate-b")
    assert p.visible(["estate-b", "estate-a"]) == ["estate-a"]
    assert Principal(2, "ops", Role.MANAGER, frozenset({"*"})).sees("anything")


@given(value=st.text(max_size=200), purpose=st.sampled_from(["session", "ack"]))
def test_sign_roundtrip(value: str, purpose: str) -> None:
    s = signing.sign(SECRET, purpose, value, now=1000)
    assert signing.unsign(SECRET, purpose, s, max_age_s=60, now=1010) == value


@given(value=st.text(min_size=1, max_size=50), pos=st.integers(min_value=0), ch=st.characters())
def test_tampering_is_refused(value: str, pos: int, ch: str) -> None:
    s = signing.sign(SECRET, "session", value, now=1000)
    i = pos % len(s)
    if s[i] == ch:
        return
    forged = s[:i] + ch + s[i + 1:]
    with pytest.raises(signing.BadSignature):
        signing.unsign(SECRET, "session", forged, max_age_s=60, now=1000)


def test_signature_purpose_and_expiry() -> None:
    s = signing.sign(SECRET, "session", "x", now=1000)
    with pytest.raises(signing.BadSignature):
        signing.unsign(SECRET, "ack", s, max_age_s=60, now=1000)
    with pytest.raises(signing.BadSignature, match="expired"):
        signing.unsign(SECRET, "session", s, max_age_s=60, now=1061)
    with pytest.raises(signing.BadSignature):
        signing.unsign(b"another-secret-of-32-bytes-long!", "session", s, max_age_s=60, now=1000)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@settings(max_examples=200)
@given(events=st.lists(st.tuples(st.sampled_from(["fail", "ok", "wait"]), st.floats(0, 400)), max_size=40))
def test_limiter_matches_a_simple_model(events: list[tuple[str, float]]) -> None:
    """The limiter allows a try iff fewer than 5 failures happened in the last 300 s since the last success."""
    clock = Clock()
    lim = LoginLimiter(5, 300, clock=clock)
    fails: list[float] = []
    for what, dt in events:
        if what == "wait":
            clock.t += dt
        elif what == "fail":
            lim.failed("u")
            fails.append(clock.t)
        else:
            lim.succeeded("u")
            fails.clear()
        recent = [f for f in fails if clock.t - f < 300]
        blocked = lim.retry_after("u") > 0
        assert blocked == (len(recent) >= 5)
        if blocked:
            assert lim.retry_after("u") == pytest.approx(recent[-5] + 300 - clock.t)


def test_limiter_keys_are_independent_and_memory_bounded() -> None:
    clock = Clock()
    lim = LoginLimiter(2, 10, clock=clock, max_keys=3)
    lim.failed("a")
    lim.failed("a")
    assert lim.retry_after("a") == 10 and lim.retry_after("b") == 0
    for k in "bcdef":
        clock.t += 1
        lim.failed(k)
    assert len(lim._fails) <= 3


def test_password_hash_and_policy() -> None:
    h = passwords.hash_password("correct horse battery")
    assert h.startswith("$argon2id$")
    assert passwords.verify_password(h, "correct horse battery")
    assert not passwords.verify_password(h, "wrong")
    assert not passwords.verify_password(None, "anything")
    assert not passwords.verify_password("garbage", "x")
    with pytest.raises(passwords.WeakPassword):
        passwords.check_policy("short")
    with pytest.raises(passwords.WeakPassword):
        passwords.check_policy("alice.wong1", "alice.wong1")


@pytest.fixture
def svc(tmp_path) -> AuthService:  # type: ignore[no-untyped-def]
    return AuthService(make_sessionmaker(make_engine(f"sqlite:///{tmp_path}/auth.db")), SECRET)


def test_users_sessions_tokens(svc: AuthService) -> None:
    p = svc.add_user("Li.Wei", "long-enough-pw", "volunteer", ["estate-a"])
    assert p.username == "li.wei" and p.role is Role.VOLUNTEER and p.sites == {"estate-a"}
    with pytest.raises(AuthError, match="already exists"):
        svc.add_user("li.wei", "long-enough-pw", "volunteer", ["estate-a"])
    with pytest.raises(AuthError, match="unknown role"):
        svc.add_user("bob", "long-enough-pw", "admin", ["estate-a"])
    with pytest.raises(AuthError, match="at least one site"):
        svc.add_user("bob", "long-enough-pw", "manager", [])
    with pytest.raises(AuthError, match="site id"):
        svc.add_user("bob", "long-enough-pw", "manager", ["Bad/Site"])
    with pytest.raises(AuthError, match="at least 10"):
        svc.add_user("bob", "short", "manager", ["a"])

    assert svc.authenticate("li.wei", "wrong-password") is None
    assert svc.authenticate("nobody", "long-enough-pw") is None
    who = svc.authenticate(" LI.WEI ", "long-enough-pw")
    assert who is not None and who.user_id == p.user_id

    cookie, csrf = svc.open_session(who)
    info = svc.session(cookie)
    assert info is not None and info.principal.username == "li.wei" and info.csrf == csrf
    assert svc.session(cookie + "x") is None
    assert svc.session("garbage") is None
    svc.close_session(cookie)
    assert svc.session(cookie) is None

    token = svc.create_token("li.wei", "phone")
    tp = svc.token_principal(token)
    assert tp is not None and tp.via_token and tp.username == "li.wei"
    assert svc.token_principal(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert svc.token_principal("Bearer nonsense") is None

    cookie2, _ = svc.open_session(who)
    svc.set_password("li.wei", "another-long-pw")
    assert svc.session(cookie2) is None, "changing a password ends open sessions"
    assert svc.authenticate("li.wei", "another-long-pw") is not None
