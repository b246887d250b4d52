"""The reel command line: the embedded stack (up, down, ps), submit, status, list."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from reel import ladder, tenancy, tokens
from reel import settings as settings_mod
from reel.download import GetError, Wanted, digest
from reel.download import get as download
from reel.remote import Tracker
from reel.storage import Storage
from reel.submit import SubmitError, parse_formats, submit
from reel.submit import wait as wait_for

# No locals in tracebacks: they would print the settings' credentials.
app = typer.Typer(
    help="reel: distributed video transcoding over Kafka.", no_args_is_help=True, pretty_exceptions_show_locals=False
)
err = Console(stderr=True)
out = Console()
_remote: dict[str, str] = {}  # --tracker / --token


@app.callback()
def main(
    tracker: str | None = typer.Option(
        None, "--tracker", help="The tracker's URL: submit through its front door (no Kafka or S3 credentials)."
    ),
    token: str | None = typer.Option(None, "--token", help="Your tenant's token (default: REEL_TRACKER_TOKEN)."),
) -> None:
    """reel: distributed video transcoding over Kafka."""
    if tracker:
        _remote["url"] = tracker
    if token:
        _remote["token"] = token


def _tracker_client() -> Tracker:
    s = settings_mod.load()
    return Tracker(_remote.get("url", s.tracker_url), _remote.get("token", s.tracker_token))


def _devstack() -> ModuleType:
    """The embedded stack: a development tool, installed with the `stack` extra."""
    try:
        import devstack
    except ImportError as exc:
        err.print(f"reel: the embedded stack is not installed ({exc}); run: pip install 'reel[stack]'")
        raise typer.Exit(1) from None
    return devstack


@app.command("up")
def up_cmd(
    services: bool = typer.Option(True, help="Also start the services under the supervisor."),
) -> None:
    """Start the embedded stack (Kafka, SeaweedFS, Postgres) and the services. Idempotent."""
    s = settings_mod.load()
    stack = _devstack()
    try:
        stack.up(s, with_services=services, say=lambda m: err.print(m, highlight=False))
    except stack.StackError as exc:
        err.print(f"reel up: {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    out.print(f"stack is up (state in {s.home})")
    if services:
        out.print(f"status page: http://127.0.0.1:{s.tracker_port}/ui", highlight=False)


@app.command("down")
def down_cmd() -> None:
    """Stop everything `reel up` started."""
    _devstack().down(settings_mod.load(), say=lambda m: err.print(m, highlight=False))


@app.command("ps")
def ps_cmd() -> None:
    """Show what runs where: pids, addresses, health."""
    table = Table("part", "pid", "address", "state", "log")
    for row in _devstack().status(settings_mod.load()):
        table.add_row(
            str(row["name"]),
            str(row["pid"] or "-"),
            str(row.get("address", "")),
            str(row["state"]),
            str(row.get("log", "")),
        )
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
    tenant: str = typer.Option(
        "default", help="Direct path only (no --tracker): the tenant to file it under, as a trusted producer."
    ),
) -> None:
    """Upload FILE (resumable), ask for it to be processed, print its video id. With
    --tracker, through the tracker's front door as the token's tenant; without, straight to
    S3 and Kafka with this machine's credentials (a trusted producer)."""
    s = settings_mod.load()
    storage = Storage.from_settings(s)
    try:
        formats = parse_formats(format)
        size = file.stat().st_size if file.is_file() else 0
        with Progress(*Progress.get_default_columns(), DownloadColumn(), console=err) as bar:
            job = bar.add_task(f"upload {file.name}", total=size)
            advance = lambda n: bar.advance(job, n)  # noqa: E731
            if "url" in _remote:
                sub = _tracker_client().submit(file, profile, formats, request_id, callback_url, advance)
            else:
                sub = submit(s, storage, file, profile, formats, request_id, callback_url, advance, tenant)
    except OSError as exc:
        err.print(f"reel submit: the tracker cannot be reached ({exc})", highlight=False)
        raise typer.Exit(1) from None
    except SubmitError as exc:
        err.print(f"reel submit: {exc}", highlight=False)
        raise typer.Exit(2) from None
    out.print(sub.video_id)
    if not sub.created:
        err.print("(already submitted: this is the existing video)")
    if wait:
        _follow(s, storage, sub.video_id, sub.submitted_ms, timeout)


def _follow(s: settings_mod.Settings, storage: Storage, video_id: str, since_ms: int, timeout: float) -> None:
    """Live progress from the tracker until the video ends; its events on Kafka when no
    tracker answers (e.g. a stack without one)."""
    try:
        view = _watch(video_id, timeout, missing_ok=True)
    except OSError:
        err.print(f"(no tracker at {_tracker_client().url}: following the video's events on Kafka)")
        with err.status(f"waiting for {video_id} ..."):
            event = wait_for(s, video_id, since_ms, timeout)
        if event["topic"] == "video.failed":
            err.print(f"failed in {event['stage']}: {event['reason']}", highlight=False)
            raise typer.Exit(1) from None
        # An HLS playlist plays only as the tracker serves it (its URIs signed): no URL here.
        outputs = [
            {
                **o,
                "url": None
                if o["kind"].startswith("hls")
                else storage.presign_get(o["object"]["bucket"], o["object"]["key"]),
            }
            for o in event["outputs"]
        ]
        _print_outputs(outputs)
        err.print("(HLS plays from the tracker's links: reel status ID, once it runs)")
    else:
        if view["state"] == "failed":
            raise typer.Exit(1)
        _print_outputs(view["outputs"], view.get("playback"))


def _print_outputs(outputs: list[dict], playback: dict | None = None) -> None:
    for o in outputs:
        out.print(f"{o['kind']:13} s3://{o['object']['bucket']}/{o['object']['key']}", soft_wrap=True)
        if o["kind"] in ("hls-master", "mp4") and o["url"]:  # playable as they are
            out.print(f"{'':13} {o['url']}", soft_wrap=True, highlight=False)
    if playback and playback.get("watch"):
        out.print(f"{'watch':13} {playback['watch']}", soft_wrap=True, highlight=False)
        out.print(f"{'':13} (links play until {playback['expires_at']})", soft_wrap=True, highlight=False)


def _get(path: str, method: str = "GET") -> tuple[int, dict]:
    """(HTTP status, JSON body) from the tracker; OSError when it cannot be reached."""
    return _tracker_client().call(method, path, timeout=20)


def _watch(video_id: str, timeout: float, missing_ok: bool = False) -> dict:
    """Redraw the video's progress until it completes or fails; returns the last view.
    missing_ok: a 404 means "not projected yet" (just submitted), so keep asking."""
    deadline = time.monotonic() + timeout
    with err.status(f"waiting for {video_id} ..."):
        while True:
            code, view = _get(f"/videos/{video_id}")
            if code == 200 or not (missing_ok and code == 404) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    if code != 200:
        err.print(f"reel: {view.get('error', code)}", highlight=False)
        raise typer.Exit(2 if code in (404, 422) else 1)
    with Live(_render(view), console=err, refresh_per_second=4) as live:
        while view["state"] not in ("completed", "failed"):
            if time.monotonic() > deadline:
                err.print(f"reel: {video_id} did not finish within {timeout:.0f}s")
                raise typer.Exit(1)
            time.sleep(0.5)
            code, view = _get(f"/videos/{video_id}")
            live.update(_render(view))
    if not err.is_terminal:  # Live leaves its last frame without a newline off a terminal
        err.line()
    return view


def _tracker(path: str, method: str = "GET") -> dict:
    try:
        code, body = _get(path, method)
    except OSError as exc:
        url = _tracker_client().url
        err.print(f"reel: the tracker at {url} cannot be reached ({exc}); is the stack up (reel ps)?")
        raise typer.Exit(1) from None
    if not 200 <= code < 300:
        detail = "; ".join(str(d.get("msg")) for d in body.get("detail", []) if isinstance(d, dict))
        message = f"reel: {body.get('error', code)}" + (f": {detail}" if detail else "")
        err.print(message, highlight=False, soft_wrap=True)
        raise typer.Exit(2 if code in (404, 409, 422) else 1)
    return body


def _render(view: dict) -> Group:
    head = f"{view['video_id']}  {view['state']}  {view['percent']:.0f}%"
    if view.get("error"):
        head += f"  [red]{view['error']['stage']}: {view['error']['reason']}[/red]"
    bars = Progress(
        TextColumn("{task.description:>14}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[state]}"),
    )
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
        try:
            view = _watch(video_id, timeout=float("inf"))
        except OSError as exc:
            err.print(f"reel: lost the tracker ({exc})")
            raise typer.Exit(1) from None
    else:
        out.print(_render(view))
    _print_outputs(view["outputs"], view.get("playback"))
    if view["state"] == "failed":
        raise typer.Exit(1)


@app.command("retry")
def retry_cmd(
    video_id: str = typer.Argument(..., help="A failed video's id."),
    segment: int | None = typer.Option(
        None, "--segment", help="Redo only this video segment; reuse what the failed generation finished."
    ),
    wait: bool = typer.Option(False, "--wait", help="Follow the new generation until it completes or fails."),
    timeout: float = typer.Option(3600, help="Seconds to wait with --wait."),
) -> None:
    """Re-drive a failed video from its original request, as a new generation (once its
    cause is removed: the source uploaded again, a worker fixed, ...)."""
    query = "" if segment is None else f"?segment={segment}"
    started = _tracker(f"/videos/{video_id}/retry{query}", method="POST")
    out.print(f"{started['video_id']} generation {started['generation']}")
    if wait:
        s = settings_mod.load()
        _follow(s, Storage.from_settings(s), started["video_id"], int(time.time() * 1000) - 1000, timeout)


@app.command("get")
def get_cmd(
    video_id: str = typer.Argument(..., help="A completed video's id."),
    dest: Path | None = typer.Argument(None, help="Folder to download into (default: ./VIDEO_ID)."),
    rung: list[str] = typer.Option([], "--rung", help="Only this rung (repeat for more); HLS keeps its audio."),
    format: str | None = typer.Option(None, "--format", help="Only mp4 or only hls."),
) -> None:
    """Download a completed video's outputs, each checked against the manifest's sha256.
    Run it again after a cut: it resumes every file from the bytes it has."""
    view = _tracker(f"/videos/{video_id}")
    if view["state"] != "completed":
        why = f": {view['error']['reason']}" if view.get("error") else f" ({view['percent']:.0f}% done)"
        err.print(
            f"reel get: video {view['video_id']} is {view['state']}{why}; only a completed video can be downloaded",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(2)
    s = settings_mod.load()
    storage = Storage.from_settings(s)
    ref = next(o["object"] for o in view["outputs"] if o["kind"] == "manifest")
    target = dest or Path(view["video_id"])
    columns = (TextColumn("{task.description:>24}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    try:
        manifest = storage.get_bytes(ref["bucket"], ref["key"])
        if digest(manifest) != ref["sha256"]:
            raise GetError(f"{ref['key']} does not match its sha256")
        with Progress(*columns, console=err) as bars:

            def start(todo: list[Wanted], already: int) -> Callable[[Wanted], Callable[[int], None]]:
                total = bars.add_task(
                    f"{len(todo)} files" + (f" ({already} there)" if already else ""), total=sum(w.size for w in todo)
                )

                def track(w: Wanted) -> Callable[[int], None]:
                    one = bars.add_task(w.path[-24:], total=w.size, visible=w.size >= 1 << 20)

                    def advance(n: int) -> None:
                        bars.advance(total, n)
                        bars.advance(one, n)

                    return advance

                return track

            fetched, kept = download(storage, ref["bucket"], manifest, target, rung, format, start)
    except GetError as exc:
        err.print(f"reel get: {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except Exception as exc:  # noqa: BLE001 - storage or disk: say it, keep the parts for a resume
        err.print(f"reel get: {exc}; run it again to resume", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    out.print(
        f"{fetched + kept} files in {target} ({fetched} downloaded, {kept} already there), "
        "each matching the manifest's sha256",
        highlight=False,
    )


@app.command("list")
def list_cmd(
    state: str | None = typer.Option(None, help="Only videos in this state."),
    limit: int = typer.Option(20, help="How many, newest first."),
) -> None:
    """Recent videos, newest first."""
    query = f"/videos?limit={limit}" + (f"&state={state}" if state else "")
    table = Table("video", "state", "percent", "profile", "updated", "error")
    for v in _tracker(query)["videos"]:
        table.add_row(
            v["video_id"],
            v["state"],
            f"{v['percent']:.0f}%",
            v["profile"] or "",
            v["updated_at"][:19],
            v["error"] or "",
        )
    out.print(table)


token_app = typer.Typer(help="Tenants' bearer tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")


@token_app.command("new")
def token_new(tenant: str = typer.Argument(..., help="The tenant the token is for.")) -> None:
    """Make a token: give the token to the tenant, add the entry to the tracker's
    REEL_TENANT_TOKENS (only its digest; keep the old entry until clients have moved)."""
    try:
        tenancy.check_tenant(tenant)
    except tenancy.Refused as exc:
        err.print(f"reel token: {exc}", highlight=False)
        raise typer.Exit(2) from None
    token = tokens.new_token()
    out.print(f"token: {token}", highlight=False)
    out.print(f"entry: {tenant}:{tokens.digest(token)}", highlight=False)


if __name__ == "__main__":
    app()
