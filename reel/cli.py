"""The reel command line: `reel up | down | ps` for the embedded stack."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from reel import settings as settings_mod
from reel.stack import StackError, down, status, up

app = typer.Typer(help="reel: distributed video transcoding over Kafka.", no_args_is_help=True)
err = Console(stderr=True)
out = Console()


@app.command("up")
def up_cmd(
    services: bool = typer.Option(True, help="Also start the services under the supervisor."),
) -> None:
    """Start the embedded stack (Kafka, SeaweedFS, Postgres) and the services. Idempotent."""
    s = settings_mod.load()
    try:
        up(s, with_services=services, say=lambda m: err.print(m, highlight=False))
    except StackError as exc:
        err.print(f"reel up: {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    out.print(f"stack is up (state in {s.home})")


@app.command("down")
def down_cmd() -> None:
    """Stop everything `reel up` started."""
    down(settings_mod.load(), say=lambda m: err.print(m, highlight=False))


@app.command("ps")
def ps_cmd() -> None:
    """Show what runs where: pids, addresses, health."""
    table = Table("part", "pid", "address", "state", "log")
    for row in status(settings_mod.load()):
        table.add_row(
            str(row["name"]), str(row["pid"] or "-"), str(row.get("address", "")),
            str(row["state"]), str(row.get("log", "")),
        )  # fmt: skip
    out.print(table)


if __name__ == "__main__":
    app()
