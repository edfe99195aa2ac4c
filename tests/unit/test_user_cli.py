"""`shelterwatch cloud user …` on a real SQLite file (the bootstrap path: no default accounts)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from shelterwatch.cli import app


def test_user_cli(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/state.db"
    run = CliRunner().invoke
    r = run(app, ["cloud", "user", "add", "li.wei", "--role", "volunteer", "--site", "estate-a", "--site", "estate-b",
                  "--password-stdin", "--db", db], input="a-long-password\n")
    assert r.exit_code == 0, r.output
    assert "added li.wei (volunteer) for sites estate-a, estate-b" in r.output
    r = run(app, ["cloud", "user", "add", "bad", "--role", "volunteer", "--site", "a", "--password-stdin", "--db", db],
            input="short\n")
    assert r.exit_code == 2 and "at least 10" in r.output
    r = run(app, ["cloud", "user", "add", "x1", "--role", "boss", "--site", "a", "--password-stdin", "--db", db],
            input="a-long-password\n")
    assert r.exit_code == 2 and "unknown role" in r.output
    r = run(app, ["cloud", "user", "list", "--db", db])
    assert r.output.split("\n")[0].split("\t")[:3] == ["li.wei", "volunteer", "estate-a,estate-b"]
    r = run(app, ["cloud", "user", "token", "li.wei", "--db", db])
    assert r.exit_code == 0 and r.output.strip().startswith("swt_")
    token = r.output.strip()
    r = run(app, ["cloud", "user", "passwd", "li.wei", "--password-stdin", "--db", db], input="another-long-one\n")
    assert r.exit_code == 0
    from cloud.auth.models import make_engine, make_sessionmaker
    from cloud.auth.service import AuthService

    svc = AuthService(make_sessionmaker(make_engine(db)), b"x" * 32)
    assert svc.authenticate("li.wei", "another-long-one") is not None
    who = svc.token_principal(token)
    assert who is not None and who.username == "li.wei" and who.sites == {"estate-a", "estate-b"}
