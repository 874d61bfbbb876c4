"""`kstream-lab users ...`: SCRAM users on the cluster, managed as its admin through the Admin API.

A password is read from an interactive prompt (asked twice), ``--password-file`` or ``--password-stdin``;
never from the command line, where it would land in the shell history and the process list.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from kstream_lab.cli.common import settings
from kstream_lab.errors import ConfigError
from kstream_lab.kafka.users import list_users, remove_user, set_password
from kstream_lab.settings import SCRAM_MECHANISM, read_secret_file

app = typer.Typer(no_args_is_help=True, help="SCRAM users (as the admin: KSTREAM_SASL_USERNAME or the local admin).")

PasswordFile = typer.Option(None, "--password-file", help="read the password from this file (one line)")
PasswordStdin = typer.Option(False, "--password-stdin", help="read the password from stdin (one line)")
Mechanism = typer.Option(SCRAM_MECHANISM, "--mechanism", help="SCRAM-SHA-512 or SCRAM-SHA-256")


def read_password(file: Path | None, stdin: bool, user: str) -> str:
    """The new password from exactly one source: a file, stdin, or a prompt (when interactive)."""
    if file is not None and stdin:
        raise ConfigError("give --password-file or --password-stdin, not both")
    if file is not None:
        password = read_secret_file(file, "--password-file")
    elif stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = typer.prompt(f"password for {user}", hide_input=True, confirmation_prompt=True)
    else:
        raise ConfigError("no password given", hint="use --password-file FILE or --password-stdin")
    if not password:
        raise ConfigError(f"empty password for {user}")
    return password


@app.command()
def add(
    name: str,
    password_file: Path | None = PasswordFile,
    password_stdin: bool = PasswordStdin,
    mechanism: str = Mechanism,
) -> None:
    """Create a SCRAM user."""
    _set_password(name, password_file, password_stdin, mechanism, exists=False)


@app.command()
def rotate(
    name: str,
    password_file: Path | None = PasswordFile,
    password_stdin: bool = PasswordStdin,
    mechanism: str = Mechanism,
) -> None:
    """Replace a user's password (the old one stops working; running clients keep their sessions)."""
    _set_password(name, password_file, password_stdin, mechanism, exists=True)


def _set_password(name: str, password_file: Path | None, password_stdin: bool, mechanism: str, *, exists: bool) -> None:
    """Add (``exists=False``) or rotate a user's password, after checking that it does (not) exist."""
    s = settings()
    if exists and name not in list_users(s):
        raise ConfigError(f"no user {name!r}", hint=f"create it with `kstream-lab users add {name}`")
    if not exists and name in list_users(s):
        raise ConfigError(f"user {name!r} exists", hint=f"change its password with `kstream-lab users rotate {name}`")
    set_password(s, name, read_password(password_file, password_stdin, name), mechanism=mechanism)
    typer.echo(f"user {name} {'rotated' if exists else 'added'} ({mechanism})")


@app.command()
def remove(name: str, mechanism: str = Mechanism) -> None:
    """Delete a user's SCRAM credential."""
    remove_user(settings(), name, mechanism=mechanism)
    typer.echo(f"user {name} removed ({mechanism})")


@app.command("list")
def list_cmd() -> None:
    """Users and their SCRAM mechanisms."""
    for user, mechanisms in list_users(settings()).items():
        typer.echo(f"{user}\t{','.join(mechanisms)}")
