"""The reel command line: `reel up | down | ps` for the embedded stack."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import DownloadColumn, Progress
from rich.table import Table

from reel import ladder
from reel import settings as settings_mod
from reel.stack import StackError, down, status, up
from reel.storage import Storage
from reel.submit import SubmitError, parse_formats, submit
from reel.submit import wait as wait_for

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


@app.command("submit")
def submit_cmd(
    file: Path = typer.Argument(..., help="The video to process."),
    profile: str = typer.Option("default", help=f"Encoding profile: {', '.join(ladder.available())}."),
    format: str = typer.Option("hls,mp4", "--format", help="Outputs: hls, mp4 or hls,mp4."),
    request_id: str | None = typer.Option(None, help="Your id for the request (makes resubmits idempotent)."),
    callback_url: str | None = typer.Option(None, help="POSTed when the video completes or fails."),
    wait: bool = typer.Option(False, "--wait", help="Follow the video until it completes or fails."),
    timeout: float = typer.Option(3600, help="Seconds to wait with --wait."),
) -> None:
    """Upload FILE (resumable), ask for it to be processed, print its video id."""
    s = settings_mod.load()
    storage = Storage.from_settings(s)
    try:
        formats = parse_formats(format)
        size = file.stat().st_size if file.is_file() else 0
        with Progress(*Progress.get_default_columns(), DownloadColumn(), console=err) as bar:
            job = bar.add_task(f"upload {file.name}", total=size)
            sub = submit(s, storage, file, profile, formats, request_id, callback_url,
                         progress=lambda n: bar.advance(job, n))  # fmt: skip
    except SubmitError as exc:
        err.print(f"reel submit: {exc}", highlight=False)
        raise typer.Exit(2) from None
    out.print(sub.video_id)
    if not sub.created:
        err.print("(already submitted: this is the existing video)")
    if wait:
        with err.status(f"waiting for {sub.video_id} ..."):
            event = wait_for(s, sub.video_id, sub.submitted_ms, timeout)
        if event["topic"] == "video.failed":
            err.print(f"failed in {event['stage']}: {event['reason']}", highlight=False)
            raise typer.Exit(1)
        for o in event["outputs"]:
            bucket, key = o["object"]["bucket"], o["object"]["key"]
            out.print(f"{o['kind']:13} s3://{bucket}/{key}", soft_wrap=True)
            if o["kind"] in ("hls-master", "mp4"):  # playable as is, for an hour
                out.print(f"{'':13} {storage.presign_get(bucket, key)}", soft_wrap=True, highlight=False)


if __name__ == "__main__":
    app()
