"""`shelterwatch cloud user …`: bootstrap users and API tokens (there are no default accounts).

Passwords are read from a prompt (hidden, asked twice) or from `--password-stdin`, never from the
command line where `ps` and shell history would keep them.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from cloud.auth.service import AuthService

app = typer.Typer(help="Users of the web pages and API: add, list, set passwords, create API tokens.",
                  no_args_is_help=True)

DB_HELP = "state database URL (env SHELTERWATCH_DB)"


def _service(db: str) -> AuthService:
    from cloud.auth.models import make_engine, make_sessionmaker
    from cloud.auth.service import AuthService

    # The secret only signs cookies; user management does not need the real one.
    return AuthService(make_sessionmaker(make_engine(db)), secret=b"cli-does-not-sign-anything")


def _password(stdin: bool) -> str:
    if stdin:
        return sys.stdin.readline().rstrip("\n")
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


def _default_db() -> str:
    return os.environ.get("SHELTERWATCH_DB", "sqlite:///shelterwatch-state.db")


@app.command("add")
def add(
    username: str = typer.Argument(..., help="login name (lower case)"),
    role: str = typer.Option(..., "--role", "-r", help="manager | volunteer | installer | resident"),
    site: list[str] = typer.Option(..., "--site", "-s", help="site id this user belongs to (repeat; '*' = all)"),
    name: str = typer.Option("", "--name", help="display name"),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="read the password from stdin"),
    db: str = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Add a user. Example: shelterwatch cloud user add li.wei --role volunteer --site demo-estate"""
    from cloud.auth.service import AuthError

    pw = _password(password_stdin)
    try:
        p = _service(db or _default_db()).add_user(username, pw, role, site, display_name=name)
    except AuthError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"added {p.username} ({p.role.value}) for sites {', '.join(sorted(p.sites))}")


@app.command("list")
def list_users(db: str = typer.Option(None, "--db", help=DB_HELP)) -> None:
    """List users with their roles and sites."""
    for p in _service(db or _default_db()).list_users():
        typer.echo(f"{p.username}\t{p.role.value}\t{','.join(sorted(p.sites))}\t{p.display_name}")


@app.command("passwd")
def passwd(username: str, password_stdin: bool = typer.Option(False, "--password-stdin"),
           db: str = typer.Option(None, "--db", help=DB_HELP)) -> None:
    """Set a user's password (ends their open sessions)."""
    from cloud.auth.passwords import WeakPassword
    from cloud.auth.service import AuthError

    try:
        _service(db or _default_db()).set_password(username, _password(password_stdin))
    except (AuthError, WeakPassword) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"password of {username} changed")


@app.command("token")
def token(username: str, name: str = typer.Option("api", "--name", help="what the token is for"),
          db: str = typer.Option(None, "--db", help=DB_HELP)) -> None:
    """Create an API token (printed once; send it as `Authorization: Bearer <token>`)."""
    from cloud.auth.service import AuthError

    try:
        t = _service(db or _default_db()).create_token(username, name)
    except AuthError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(t)
