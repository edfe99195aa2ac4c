"""Pure alarm logic: rules, ack links, escalation arithmetic, rate gates, config errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.alarms import rules as R
from cloud.alarms.config import load_site_alarms
from cloud.notify.config import EscalationPolicy
from cloud.notify.dispatch import RateGate, redact
from cloud.notify.escalation import plan
from cloud.notify.links import AckSigner, LinkError
from device_profiles import limits as L
from device_profiles.located_yaml import ConfigError
from device_profiles.model import AlarmRule


def rule(**kw: object) -> AlarmRule:
    return AlarmRule.model_validate({"key": "r", "severity": "critical", **kw})


HOT = rule(kind="threshold", point="t", **{"raise": 65, "clear": 55, "for": 5})
FLOW = rule(kind="state", point="waterflow", value=True, **{"for": 20})


def run(r: AlarmRule, seq: list[tuple[float, object]]) -> list[tuple[float, R.Action]]:
    tr, out = R.Track(), []
    for t, v in seq:
        a = R.step(r, tr, v, t)  # type: ignore[arg-type]
        if a is R.Action.NONE:
            a = R.due(r, tr, t)
        if a is not R.Action.NONE:
            out.append((t, a))
    return out


def test_threshold_needs_duration_and_clears_only_below_clear_level() -> None:
    assert run(HOT, [(0, 66), (4, 66)]) == []
    assert run(HOT, [(0, 66), (5, 66)]) == [(5, R.Action.RAISE)]
    # active: 60 is between clear and raise → still active; 55 clears
    assert run(HOT, [(0, 66), (5, 66), (6, 60), (7, 55)]) == [(5, R.Action.RAISE), (7, R.Action.CLEAR)]
    # dip below raise restarts the duration
    assert run(HOT, [(0, 66), (3, 64), (4, 66), (8, 66), (9, 66)]) == [(9, R.Action.RAISE)]


def test_below_direction() -> None:
    low = rule(kind="threshold", point="p", direction="below", **{"raise": 1.5, "clear": 2.0})
    assert run(low, [(0, 1.6), (1, 1.4), (2, 1.8), (3, 2.1)]) == [(1, R.Action.RAISE), (3, R.Action.CLEAR)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(min_value=60, max_value=70), min_size=1, max_size=300))
def test_oscillation_around_threshold_gives_at_most_one_alarm(values: list[float]) -> None:
    """Temperature wobbling around the raise level never goes below clear: at most one raise, no clear."""
    acts = run(HOT, [(i * 1.0, v) for i, v in enumerate(values)])
    assert [a for _, a in acts].count(R.Action.RAISE) <= 1
    assert R.Action.CLEAR not in [a for _, a in acts]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(min_value=0, max_value=5), st.floats(min_value=0, max_value=100)), max_size=200
    )
)
def test_raises_and_clears_alternate(steps: list[tuple[float, float]]) -> None:
    t, seq = 0.0, []
    for dt, v in steps:
        t += dt
        seq.append((t, v))
    acts = [a for _, a in run(HOT, seq)]
    assert all(acts[i] is (R.Action.RAISE if i % 2 == 0 else R.Action.CLEAR) for i in range(len(acts)))


def test_state_retard_and_restored_pending_since() -> None:
    assert run(FLOW, [(0, True), (19.9, True)]) == []
    assert run(FLOW, [(0, True), (10, False), (15, True), (34, True), (35, True)]) == [(35, R.Action.RAISE)]
    # a restart restores pending_since: the retard continues rather than restarting
    tr = R.Track(pending_since=100.0)
    assert R.due(FLOW, tr, 119.0) is R.Action.NONE
    assert R.due(FLOW, tr, 120.0) is R.Action.RAISE


def test_matches_across_types() -> None:
    assert L.matches(True, True) and L.matches(True, 1) and L.matches(True, "true") and not L.matches(True, 0)
    assert L.matches("fault", "fault") and not L.matches("fault", "idle")
    assert L.matches(3, 3.0) and not L.matches(3, "x")


def test_rate_of_rise() -> None:
    ror = rule(kind="rate_of_rise", point="t", rate=8)
    slow = [(float(t), 30 + t * 0.05) for t in range(0, 60, 2)]  # 3 °C/min
    assert run(ror, slow) == []
    fast = [(float(t), 30 + t * 0.5) for t in range(0, 20, 2)]  # 30 °C/min
    acts = run(ror, fast)
    assert acts and acts[0][1] is R.Action.RAISE and acts[0][0] >= R.RATE_MIN_SPAN_S
    flat = fast + [(float(t), 39.0) for t in range(20, 120, 5)]
    assert [a for _, a in run(ror, flat)] == [R.Action.RAISE, R.Action.CLEAR]


def test_override_keeps_validation() -> None:
    assert R.apply_overrides(HOT, {"for_s": 1}).for_s == 1
    with pytest.raises(ValueError):
        R.apply_overrides(HOT, {"clear_at": 80})  # clear above raise: no hysteresis


def test_ack_links() -> None:
    s = AckSigner("x" * 32)
    tok = s.sign(42, "li_wei", 1000.0)
    c = s.verify(tok, 999.0)
    assert (c.alarm_id, c.person) == (42, "li_wei")
    with pytest.raises(LinkError) as e:
        s.verify(tok, 1001.0)
    assert e.value.reason == "expired"
    body, mac = tok.split(".")
    forged = AckSigner("y" * 32).sign(43, "li_wei", 10**10)
    for bad in (
        body + "." + mac[:-2] + ("AA" if mac[-2:] != "AA" else "BB"),
        forged.split(".")[0] + "." + mac,
        forged,
        "nodot",
        "",
        "a.b",
        body + ".é" + mac,  # non-ASCII (compare_digest would raise TypeError)
        "é." + mac,
    ):
        with pytest.raises(LinkError):
            s.verify(bad, 0)
    with pytest.raises(ValueError):
        AckSigner("short")


def test_escalation_plan() -> None:
    pol = EscalationPolicy.model_validate(
        {"tiers": [{"tier": 1, "after": 0}, {"tier": 2, "after": 120}], "repeat": 300}
    )
    assert plan(pol, 0, 0, 0) == ([1], 1, 120)
    assert plan(pol, 0, 1, 120) == ([2], 2, 420)
    assert plan(pol, 0, 2, 420) == ([1, 2], 2, 720)
    assert plan(pol, 0, 0, 500) == ([1, 2], 2, 800)  # late start (restart): both tiers at once


def test_rate_gate_groups_bursts_and_respects_limit() -> None:
    g = RateGate(20, group_s=1.0)
    assert g.offer(0.0) is None
    assert g.offer(0.1) == pytest.approx(1.0)
    t = 1.0
    for _ in range(19):
        assert g.offer(t) is None
        t += 1.0
    assert g.offer(t) == pytest.approx(60.0)  # 20 in the last minute: wait for the oldest to age out
    sent: list[float] = []
    now = 0.0
    g2 = RateGate(20, group_s=0.0)
    while now < 300:
        if g2.offer(now) is None:
            sent.append(now)
        now += 0.25
    assert all(sum(1 for x in sent if a <= x < a + 60) <= 20 for a in sent)


def test_redact_hides_secrets() -> None:
    assert redact("mailto://user:secret@smtp.x.com?to=a@b") == "mailto://smtp.x.com/…"
    assert "tok" not in redact("wecombot://tokentokentoken/")


def test_site_config_errors_are_located(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(
        "site: a\npeople:\n  - id: v1\n    name: V\n    channels:\n      - {url: nope}\n"
        "escalation:\n  tiers: [{tier: 1, after: 0}]\n  repet: 5\n"
    )
    with pytest.raises(ConfigError) as e:
        load_site_alarms(f)
    text = str(e.value)
    assert "s.yaml:6" in text and "apprise URL" in text
    assert "s.yaml:9 escalation.repet: unknown key" in text


def test_demo_site_file_loads() -> None:
    cfg = load_site_alarms(Path(__file__).parents[2] / "cloud/sites/demo-alarms.yaml")
    assert {p.tier for p in cfg.people} == {1, 2} and cfg.inspection_windows


def test_overrides_checked_against_catalog_with_lines(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(
        "site: a\nalarm_overrides:\n  - {rule: waterflo, for: 3}\n"
        "  - {rule: connector_overtemp, profile: voltpile-cp10, clear: 90}\n"
        "devices:\n  - {id: d, profile: nope, gateway: g}\n"
    )
    with pytest.raises(ConfigError) as e:
        load_site_alarms(f)
    assert [str(i) for i in e.value.issues] == [
        f"{f}:6 devices[0].profile: unknown profile 'nope'",
        f"{f}:3 alarm_overrides[0].rule: no profile has an alarm rule 'waterflo'",
        f"{f}:4 alarm_overrides[1]: on voltpile-cp10: "
        "`clear:` must be on the safe side of `raise:` (hysteresis)",
    ]


def test_cli_check(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from shelterwatch.cli import app

    demo = Path(__file__).parents[2] / "cloud/sites/demo-alarms.yaml"
    r = CliRunner().invoke(app, ["cloud", "alarms", "check", str(demo)])
    assert r.exit_code == 0 and "3 people" in r.output
    bad = tmp_path / "b.yaml"
    bad.write_text("site: a\nescalation: {tiers: [{tier: 2, after: 60}, {tier: 1, after: 0}]}\n")
    r = CliRunner().invoke(app, ["cloud", "alarms", "check", str(bad)])
    assert r.exit_code == 1 and "b.yaml:2 escalation" in r.output and "in order" in r.output


def test_comm_step_ratio_window_and_restart() -> None:
    w, a, r = R.comm_step(None, 100, 0, False, 0.2, 0.05, 20)
    assert a is R.Action.NONE and r is None
    w, a, r = R.comm_step(w, 110, 5, False, 0.2, 0.05, 20)  # only 10 polls: keep the window open
    assert a is R.Action.NONE and w is not None and w.polls == 100
    w, a, r = R.comm_step(w, 130, 8, False, 0.2, 0.05, 20)
    assert a is R.Action.RAISE and r == pytest.approx(8 / 30)
    w, a, r = R.comm_step(w, 160, 10, True, 0.2, 0.05, 20)  # 2/30 = 6.7 %: between clear and raise
    assert a is R.Action.NONE
    w, a, r = R.comm_step(w, 200, 11, True, 0.2, 0.05, 20)
    assert a is R.Action.CLEAR
    w, a, r = R.comm_step(w, 5, 5, False, 0.2, 0.05, 20)  # agent restarted: counters went back
    assert a is R.Action.NONE and w is not None and w.polls == 5


def test_rate_of_rise_after_a_quiet_minute_judges_from_the_held_value() -> None:
    """Report by exception: a port quiet for minutes (its last sample 3 min old) that starts
    running away at 4 °C/s raises within 3 s of the rise, not after 5 s of it; the held value
    understates, so a slow rise after a quiet spell still raises nothing."""
    ror = rule(kind="rate_of_rise", point="t", rate=8)
    runaway = [(0.0, 30.0)] + [(180.0 + t, 30.0 + 4 * t) for t in range(1, 8)]
    acts = run(ror, runaway)
    assert acts and acts[0][1] is R.Action.RAISE and acts[0][0] <= 183.0, acts
    slow = [(0.0, 30.0)] + [(180.0 + 30 * t, 30.0 + 0.5 * t) for t in range(1, 10)]  # deadband 0.5 every 30 s
    assert run(ror, slow) == []
    spike_free = [(0.0, 30.0), (180.0, 30.5)]  # one deadband step after a quiet spell: 0.5 °C/min
    assert run(ror, spike_free) == []


def test_rate_of_rise_after_a_cool_down_judges_from_the_low() -> None:
    """A port that ran hot, cooled (cut off, switched back on) and runs away again 50 s later rises
    from where it cooled to: raised once the rise passes `rate` over the window, not after it has
    climbed back past the window's oldest, still-hot sample (issue 11: 5-13 s late). A small wobble
    at the bottom of a cooling curve still raises nothing."""
    ror = rule(kind="rate_of_rise", point="t", rate=8)
    first = [(0.0, 25.0)] + [(100.0 + t, 25.0 + 4 * t) for t in range(1, 14)]  # to 77 °C
    acts = run(ror, [*first, (114.0, 25.0)])
    assert [a for _, a in acts] == [R.Action.RAISE, R.Action.CLEAR]
    again = [*first, (114.0, 25.0), *[(164.0 + t, 25.0 + 4 * t) for t in range(1, 8)]]
    acts = run(ror, again)
    assert [a for _, a in acts] == [R.Action.RAISE, R.Action.CLEAR, R.Action.RAISE], acts
    assert acts[2][0] <= 167.0, acts  # +12 °C within the window's minute: 3 s into the rise
    cooling = [(float(t), 60.0 - 0.5 * t) for t in range(0, 60, 5)]  # -6 °C/min, deadband steps
    wobble = [*cooling, (60.0, 31.0), (65.0, 31.5), (70.0, 32.0)]  # +1.5 °C off the bottom
    assert run(ror, wobble) == []


def test_rate_of_rise_takes_readings_another_lane_overtook() -> None:
    """Urgent telemetry (docs/wire.md) overtakes the rise's routine readings: the port's first
    reading the engine sees is the 70 °C one; the readings of the rise come after it, older by seq.
    They still show how fast it rose (docs/alarms.md: the newest above the window's lowest)."""
    ror = rule(kind="rate_of_rise", point="t", rate=8)
    tr = R.Track()
    assert R.step(ror, tr, 70.0, 110.0) is R.Action.NONE  # alone in the window: no rate yet
    assert R.backfill(ror, tr, 66.0, 109.0) is R.Action.NONE  # 4 °C over 1 s: span under 5 s
    assert R.backfill(ror, tr, 30.0, 100.0) is R.Action.RAISE  # 40 °C over 10 s = 240 °C/min
    assert [t for t, _ in tr.samples] == [100.0, 109.0, 110.0] and tr.active
    # active: more of the rise changes nothing, and an old low reading never clears it
    assert R.backfill(ror, tr, 20.0, 105.0) is R.Action.NONE and tr.active


@pytest.mark.parametrize(("t", "why"), [(111.0, "newer than the newest: not backfill"),
                                         (49.0, "older than the window")])
def test_rate_backfill_outside_the_window_changes_nothing(t: float, why: str) -> None:
    ror = rule(kind="rate_of_rise", point="t", rate=8)
    tr = R.Track()
    R.step(ror, tr, 70.0, 110.0)
    assert R.backfill(ror, tr, 20.0, t) is R.Action.NONE, why
    assert list(tr.samples) == [(110.0, 70.0)]
    thr = rule(kind="threshold", point="t", **{"raise": 70, "clear": 60})
    assert R.backfill(thr, R.Track(), 90.0, 100.0) is R.Action.NONE  # other kinds: history is history
