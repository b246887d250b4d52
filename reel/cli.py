"""The reel command line: the embedded stack (up, down, ps), submit, status, list."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn
from rich.table import Table

from reel import ladder
from reel import settings as settings_mod
from reel.stack import StackError, down, status, up
from reel.storage import Storage
from reel.submit import SubmitError, parse_formats, submit
from reel.submit import wait as wait_for

# No locals in tracebacks: they would print the settings' credentials.
app = typer.Typer(help="reel: distributed video transcoding over Kafka.", no_args_is_help=True,
                  pretty_exceptions_show_locals=False)  # fmt: skip
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


def _tracker(path: str) -> dict:
    s = settings_mod.load()
    url = f"http://127.0.0.1:{s.tracker_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return dict(json.loads(resp.read()))
    except urllib.error.HTTPError as exc:
        body = json.loads(exc.read() or b"{}")
        err.print(f"reel: {body.get('error', exc.reason)}", highlight=False)
        raise typer.Exit(2 if exc.code in (404, 422) else 1) from None
    except OSError as exc:
        err.print(f"reel: the tracker at {url} cannot be reached ({exc}); is the stack up (reel ps)?")
        raise typer.Exit(1) from None


def _render(view: dict) -> Group:
    head = f"{view['video_id']}  {view['state']}  {view['percent']:.0f}%"
    if view.get("error"):
        head += f"  [red]{view['error']['stage']}: {view['error']['reason']}[/red]"
    bars = Progress(TextColumn("{task.description:>14}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                    TextColumn("{task.fields[state]}"))  # fmt: skip
    bars.add_task("total", total=100, completed=view["percent"], state=view["state"])
    done = {"planned": 0, "requested": 0, "pulled": 10, "transcoded": 90, "uploaded": 100}
    for seg in view["segments"]:
        name = "audio" if seg["track"] == "audio" else f"segment {seg['index']}"
        pct = max(done.get(seg["stage"], 0), seg["percent"] if seg["working"] else 0)
        bars.add_task(name, total=100, completed=pct, state=seg["state"])
    return Group(head, bars)


@app.command("status")
def status_cmd(
    video_id: str = typer.Argument(..., help="The id `reel submit` printed."),
    watch: bool = typer.Option(False, "--watch", help="Redraw until the video completes or fails."),
) -> None:
    """Show a video's state, per-segment progress and outputs (from the tracker)."""
    view = _tracker(f"/videos/{video_id}")
    if watch:
        with Live(_render(view), console=out, refresh_per_second=4) as live:
            while view["state"] not in ("completed", "failed"):
                time.sleep(0.5)
                view = _tracker(f"/videos/{video_id}")
                live.update(_render(view))
    else:
        out.print(_render(view))
    for o in view["outputs"]:
        out.print(f"{o['kind']:13} s3://{o['object']['bucket']}/{o['object']['key']}", soft_wrap=True)
    if view["state"] == "failed":
        raise typer.Exit(1)


@app.command("list")
def list_cmd(
    state: str | None = typer.Option(None, help="Only videos in this state."),
    limit: int = typer.Option(20, help="How many, newest first."),
) -> None:
    """Recent videos, newest first."""
    query = f"/videos?limit={limit}" + (f"&state={state}" if state else "")
    table = Table("video", "state", "percent", "profile", "updated", "error")
    for v in _tracker(query)["videos"]:
        table.add_row(v["video_id"], v["state"], f"{v['percent']:.0f}%", v["profile"] or "",
                      v["updated_at"][:19], v["error"] or "")  # fmt: skip
    out.print(table)


if __name__ == "__main__":
    app()
