"""`kstream-lab`: a thin typer front end. It parses, calls the package and prints.

User errors (KStreamLabError, a bad KSTREAM_* setting) become one line on stderr and exit code 2; bugs
keep their traceback.
"""

from __future__ import annotations

import sys

import typer
from pydantic import ValidationError

from kstream_lab.cli import acls, broker, cache, local_registry, notebooks, schemas, topics, users
from kstream_lab.cli import connect as connect_cli
from kstream_lab.cli import pipeline as pipeline_cli
from kstream_lab.cli.backtest import backtest_cmd
from kstream_lab.cli.dashboard import dashboard_cmd
from kstream_lab.cli.demo import demo_cmd
from kstream_lab.cli.orders import produce_orders_cmd
from kstream_lab.cli.replay import replay_cmd
from kstream_lab.cli.worker import worker_cmd
from kstream_lab.errors import KStreamLabError
from kstream_lab.settings import is_secret_setting

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="kstream_lab: live Kafka pipelines, exact replay and back-tests.",
)
app.add_typer(broker.app, name="broker")
app.add_typer(topics.app, name="topics")
app.add_typer(acls.app, name="acls")
app.add_typer(local_registry.app, name="registry")
app.add_typer(schemas.app, name="schemas")
app.add_typer(users.app, name="users")
app.add_typer(cache.app, name="cache")
app.add_typer(connect_cli.app, name="connect")
app.command("produce-orders")(produce_orders_cmd)
app.command("demo")(demo_cmd)
app.command("worker")(worker_cmd)
app.add_typer(pipeline_cli.app, name="pipeline")
app.add_typer(notebooks.app, name="notebooks")
app.add_typer(notebooks.schedule_app, name="schedule")
app.command("lab")(notebooks.lab_cmd)
app.command("dashboard")(dashboard_cmd)
app.command("replay")(replay_cmd)
app.command("backtest")(backtest_cmd)


def main() -> None:
    try:
        app()
    except KStreamLabError as exc:
        typer.secho(f"error: {exc}", err=True, fg="red")
        sys.exit(2)
    except ValidationError as exc:
        if exc.title != "Settings":
            raise
        for err in exc.errors():  # a bad KSTREAM_* variable: name it, say what it accepts (never a secret)
            if not err["loc"]:  # a check across settings (e.g. X and X_FILE both set): its message says all
                typer.secho(f"error: settings: {err['msg'].removeprefix('Value error, ')}", err=True, fg="red")
                continue
            field = str(err["loc"][0])
            shown = "<hidden>" if is_secret_setting(field) else repr(err.get("input"))
            typer.secho(f"error: KSTREAM_{field.upper()}={shown}: {err['msg']}", err=True, fg="red")
        sys.exit(2)
