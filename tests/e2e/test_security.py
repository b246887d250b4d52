"""Who may do what, against the running tracker with real HTTP clients: tokens, tenants,
signed links, the front door (presigned, resumable uploads), keys that try to leave their
tenant's prefix, and the rate limit on failed attempts."""

from __future__ import annotations

import statistics
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from reel.contract import envelope
from reel.settings import Settings
from reel.storage import PART_SIZE, Storage, sha256_file
from reel.submit import produce, wait
from tests.e2e.client import API, call, cli
from tests.e2e.conftest import E2E_ENV, TOKENS
from tests.e2e.test_tracker import metrics
from tests.e2e.test_untidy_inputs import events_for

pytestmark = pytest.mark.usefixtures("fleet")
WINDOW_S = float(E2E_ENV["REEL_AUTH_WINDOW_S"])


def raw(path: str, headers: dict[str, str] | None = None, method: str = "GET") -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(API + path, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def settle_limit() -> None:
    """The tests share one client address: let its failures leave the window."""
    time.sleep(WINDOW_S + 0.5)


def upload(tenant: str, path: Path, request_id: str | None = None, send: int | None = None) -> dict[str, Any]:
    """POST /videos as the tenant, then PUT its parts (the first `send` of them, or all)."""
    code, created = call(
        "/videos",
        tenant,
        "POST",
        {
            "file_name": path.name,
            "size": path.stat().st_size,
            "sha256": sha256_file(path),
            "profile": "tiny",
            "formats": ["hls", "mp4"],
            "request_id": request_id,
        },
    )
    assert code in (200, 201), created
    if created["upload"]:
        size = created["upload"]["part_size"]
        for part in created["upload"]["parts"][:send]:
            with open(path, "rb") as f:
                f.seek((part["number"] - 1) * size)
                req = urllib.request.Request(part["url"], data=f.read(part["size"]), method="PUT")
            assert "Authorization" not in req.headers  # the store's signature is in the URL
            with urllib.request.urlopen(req, timeout=60) as resp:
                assert resp.status == 200
    return created


@pytest.fixture(scope="module")
def noise(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2 s clip of lossless noise: 2 parts of 8 MiB and more, so an upload can stop halfway."""
    out = tmp_path_factory.mktemp("security") / "noise clip (2).mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "nullsrc=s=640x360:r=25,geq=random(1)*255:128:128",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            "2",
            "-c:v",
            "libx264",
            "-qp",
            "0",
            "-pix_fmt",
            "yuv420p",
            "-g",
            "50",
            "-c:a",
            "aac",
            "-shortest",
            str(out),
        ],
        check=True,
    )
    assert out.stat().st_size > PART_SIZE
    return out


@pytest.fixture(scope="module")
def two_tenants(noise: Path) -> dict[str, str]:
    """The same file through the front door as acme and as beta (acme's upload cut after
    its first part, then resumed), each started and completed: tenant -> video id."""
    request_id = f"same-{uuid.uuid4()}"
    first = upload("acme", noise, request_id, send=1)
    vid = first["video_id"]
    code, body = call(f"/videos/{vid}/start", "acme", "POST")
    assert code == 409 and "parts 2" in body["error"], body  # not all there: nothing produced
    again = upload("acme", noise, request_id)  # resumes: only what is missing
    assert again["video_id"] == vid and again["created"] is False
    total = len(first["upload"]["parts"])
    assert again["upload"]["done"] == [1] and [p["number"] for p in again["upload"]["parts"]] == list(
        range(2, total + 1)
    )
    other = {"file_name": "x.mp4", "size": 99, "sha256": "cd" * 32, "profile": "tiny", "request_id": request_id}
    code, body = call("/videos", "acme", "POST", other)
    assert code == 409 and "another file" in body["error"], body  # a request id names one file
    beta = upload("beta", noise, request_id)["video_id"]
    assert beta != vid  # same file, same request id, another tenant: another video
    for tenant, v in (("acme", vid), ("beta", beta)):
        assert call(f"/videos/{v}/start", tenant, "POST")[0] == 202
        assert call(f"/videos/{v}/start", tenant, "POST")[0] == 202  # started twice: one request
    for tenant, v in (("acme", vid), ("beta", beta)):
        deadline = time.monotonic() + 300
        while (view := call(f"/videos/{v}", tenant)[1]).get("state") not in ("completed", "failed"):  # 404: not yet
            assert time.monotonic() < deadline
            time.sleep(1)
        assert view["state"] == "completed", view
    return {"acme": vid, "beta": beta}


def test_every_route_but_healthz_wants_a_token_and_a_wrong_one_is_refused() -> None:
    settle_limit()
    vid = str(uuid.uuid4())
    assert raw("/healthz")[0] == 200
    routes = [
        ("GET", "/videos"),
        ("POST", "/videos"),
        ("GET", f"/videos/{vid}"),
        ("GET", f"/videos/{vid}/events"),
        ("POST", f"/videos/{vid}/retry"),
        ("POST", f"/videos/{vid}/start"),
        ("GET", f"/videos/{vid}/play.m3u8"),
        ("GET", f"/videos/{vid}/watch"),
        ("GET", f"/videos/{vid}/hls/master.m3u8"),
    ]
    for method, path in routes[:4]:
        code, body, headers = raw(path, method=method)
        assert code == 401 and headers.get("www-authenticate") == "Bearer", (path, code, body)
    settle_limit()
    for method, path in routes[4:8]:
        code, body, _ = raw(path, {"Authorization": "Bearer not-a-token"}, method)
        assert code == 401 and b"not one of a tenant's" in body, (path, code, body)
    settle_limit()
    assert raw(routes[8][1])[0] == 401
    assert raw(routes[8][1], {"Authorization": "Basic dXNlcjpwYXNz"})[0] == 401
    for path in ("/readyz", "/metrics/", "/openapi.json"):  # open by configuration (REEL_TRACKER_OPEN)
        assert raw(path)[0] in (200, 503), path


def test_repeated_failures_are_limited_then_forgiven() -> None:
    settle_limit()
    before = metrics()
    for _ in range(int(E2E_ENV.get("REEL_AUTH_FAILURES", "10"))):
        assert raw("/videos", {"Authorization": "Bearer guess"})[0] == 401
    code, body, headers = raw("/videos", {"Authorization": f"Bearer {TOKENS['acme']}"})
    assert code == 429 and int(headers["retry-after"]) >= 1, body  # even the right token, for now
    after = metrics()
    assert (
        after['reel_tracker_auth_failures_total{reason="wrong"}']
        - before.get('reel_tracker_auth_failures_total{reason="wrong"}', 0)
        == 10
    )
    assert after['reel_tracker_auth_failures_total{reason="limited"}'] >= 1
    settle_limit()
    assert raw("/videos", {"Authorization": f"Bearer {TOKENS['acme']}"})[0] == 200


def test_a_tenant_sees_only_its_own_and_anothers_id_answers_like_an_unknown_one(two_tenants: dict[str, str]) -> None:
    settle_limit()
    acme, beta = two_tenants["acme"], two_tenants["beta"]
    unknown = str(uuid.uuid4())
    for tenant, own, other in (("acme", acme, beta), ("beta", beta, acme)):
        listed = {v["video_id"] for v in call("/videos?limit=200", tenant)[1]["videos"]}
        assert own in listed and other not in listed
        for method, path in (
            ("GET", "/videos/{}"),
            ("GET", "/videos/{}/events"),
            ("POST", "/videos/{}/retry"),
            ("POST", "/videos/{}/start"),
            ("GET", "/videos/{}/play.m3u8"),
            ("GET", "/videos/{}/watch"),
        ):
            theirs = call(path.format(other), tenant, method)
            nobody = call(path.format(unknown), tenant, method)
            assert theirs[0] == nobody[0] == 404, (path, theirs, nobody)
            assert theirs[1]["error"].replace(other, "ID") == nobody[1]["error"].replace(unknown, "ID"), path
    rotated = call("/videos?limit=200", "acme-next")[1]["videos"]  # acme's second token: same tenant
    assert acme in {v["video_id"] for v in rotated}
    # The default tenant (the CLI's, here) sees neither.
    assert not {acme, beta} & {v["video_id"] for v in call("/videos?limit=200")[1]["videos"]}


def test_anothers_id_takes_no_measurably_longer_than_an_unknown_one(two_tenants: dict[str, str]) -> None:
    """The same query answers both (the tenant is in its WHERE clause). Interleaved, so
    the machine's noise falls on both alike; the bound is loose on purpose."""
    settle_limit()
    other, unknown = two_tenants["beta"], str(uuid.uuid4())
    times: dict[str, list[float]] = {"other": [], "unknown": []}
    for _ in range(40):
        for name, vid in (("other", other), ("unknown", unknown)):
            t0 = time.perf_counter()
            assert call(f"/videos/{vid}", "acme")[0] == 404
            times[name].append(time.perf_counter() - t0)
    medians = {k: statistics.median(v) for k, v in times.items()}
    assert abs(medians["other"] - medians["unknown"]) < 0.025, medians


def test_each_tenants_objects_live_under_its_own_prefix(two_tenants: dict[str, str], e2e_settings: Settings) -> None:
    storage = Storage.from_settings(e2e_settings)
    for tenant, vid in two_tenants.items():
        view = call(f"/videos/{vid}", tenant)[1]
        assert view["source"]["key"].startswith(f"tenants/{tenant}/uploads/")
        assert view["source"]["key"].endswith("/noise_clip__2_.mp4")  # the name, made a safe key part
        keys = [o["object"]["key"] for o in view["outputs"]]
        assert keys and all(k.startswith(f"tenants/{tenant}/{vid}/") for k in keys)
        assert storage.list(e2e_settings.bucket_work, f"tenants/{tenant}/{vid}/")  # its work too
    assert not storage.list(e2e_settings.bucket_outputs, f"{two_tenants['acme']}/")  # nothing in the default's


def test_signed_links_stand_in_for_the_token_until_they_expire(two_tenants: dict[str, str]) -> None:
    settle_limit()
    vid = two_tenants["acme"]
    view = call(f"/videos/{vid}", "acme")[1]
    with urllib.request.urlopen(view["events"], timeout=30) as resp:  # no header: EventSource's way
        assert b"event: status" in resp.read()
    assert urllib.request.urlopen(view["playback"]["watch"], timeout=30).status == 200
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(view["events"]).query)
    generation, _expires, mac = query["token"][0].split(".")
    expired = f"{generation}.{int(time.time()) - 1}.{mac}"
    for path in (f"/videos/{vid}/events?token={expired}", f"/videos/{vid}/watch?token={expired}"):
        code, body, _ = raw(path)
        assert code == 403, (path, body)
    other = call(f"/videos/{two_tenants['beta']}", "beta")[1]["events"]
    theirs = urllib.parse.parse_qs(urllib.parse.urlsplit(other).query)["token"][0]
    assert raw(f"/videos/{vid}/events?token={theirs}")[0] == 403  # a link signs one video


def test_the_front_door_refuses_bad_requests_clearly(noise: Path) -> None:
    settle_limit()
    good = {"file_name": "a.mp4", "size": 10, "sha256": "ab" * 32, "profile": "tiny"}
    for change, says in (
        ({"request_id": "../../etc"}, "request_id"),
        ({"sha256": "XYZ"}, "sha256"),
        ({"size": 0}, "size"),
        ({"profile": "no-such-profile"}, "no-such-profile"),
        ({"formats": ["dash"]}, "formats"),
        ({"callback_url": "http://169.254.169.254/latest/meta-data"}, "link-local"),
        ({"callback_url": "http://10.1.2.3/hook"}, "private"),
    ):
        code, body = call("/videos", "acme", "POST", good | change)
        assert code == 422 and says in str(body), (change, body)
    code, created = call("/videos", "acme", "POST", good | {"file_name": "../../../etc/passwd\x00.mp4"})
    assert code == 201, created
    # The name stays inside the tenant's prefix, one key part.
    parts = call(f"/videos/{created['video_id']}/start", "acme", "POST")
    assert parts[0] == 409  # nothing uploaded
    url = created["upload"]["parts"][0]["url"]
    key = urllib.parse.unquote(urllib.parse.urlsplit(url).path).split("/", 2)[2]
    assert key == f"tenants/acme/uploads/{'ab' * 32}/passwd_.mp4"


@pytest.mark.parametrize(
    "key",
    [
        "tenants/acme/../beta/uploads/x.mp4",
        "tenants/beta/uploads/x.mp4",
        "tenants/acme/%2e%2e/beta/x.mp4",
        "/etc/passwd",
        "tenants/acme/uploads/\u2024\u2024/x.mp4",
        "tenants/acme/uploads/x\x00.mp4",
    ],
    ids=["dotdot", "other", "encoded", "absolute", "unicode", "nul"],
)
def test_an_event_whose_key_leaves_its_tenants_prefix_is_refused_before_any_read(
    e2e_settings: Settings, key: str
) -> None:
    vid = str(uuid.uuid4())
    record = {
        **envelope(video_id=vid, producer="test", tenant="acme"),
        "request_id": None,
        "callback_url": None,
        "formats": ["mp4"],
        "profile": "tiny",
        "source": {"bucket": e2e_settings.bucket_sources, "key": key, "etag": "x", "size": 1},
    }
    since = int(time.time() * 1000)
    produce(e2e_settings, "video.requested", vid, record)
    end = wait(e2e_settings, vid, since, timeout=120)
    assert end["topic"] == "video.failed" and end["kind"] == "bad_input" and end["tenant"] == "acme"
    (dead,) = events_for(e2e_settings, "video.requested.dlq", vid)
    assert dead["error_kind"] == "refused" and "key" in dead["reason"], dead
    deadline = time.monotonic() + 30
    while call(f"/videos/{vid}", "acme")[1].get("state") != "failed":  # acme's, failed, and no one else's
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert call(f"/videos/{vid}")[0] == 404


def test_the_cli_submits_through_the_front_door_with_only_a_token(e2e_settings: Settings, tmp_path: Path) -> None:
    from devstack.clips import synthetic

    settle_limit()
    clip = synthetic(tmp_path / "clip.mp4", seconds=2)
    no_creds = {"REEL_S3_ACCESS_KEY": "nobody", "REEL_S3_SECRET_KEY": "nothing", "REEL_KAFKA_PORT": "1"}
    args = ("--tracker", API, "--token", TOKENS["beta"])
    done = cli(e2e_settings, *args, "submit", str(clip), "--profile", "tiny", "--format", "mp4", "--wait", **no_creds)
    assert done.returncode == 0, done.stderr
    vid = done.stdout.split()[0]
    assert call(f"/videos/{vid}", "beta")[1]["state"] == "completed"
    assert call(f"/videos/{vid}", "acme")[0] == 404
    shown = cli(e2e_settings, *args, "status", vid, **no_creds)
    assert shown.returncode == 0 and "completed" in shown.stderr + shown.stdout
    refused = cli(e2e_settings, "--tracker", API, "--token", "wrong", "list", **no_creds)
    assert refused.returncode != 0 and "not one of a tenant's" in refused.stderr, refused.stderr


def wait_state(vid: str, tenant: str, states: tuple[str, ...], timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (view := call(f"/videos/{vid}", tenant)[1]).get("state") not in states:  # 404: not projected yet
        assert time.monotonic() < deadline, view
        time.sleep(0.3)
    return view


def test_delete_cancels_a_running_video_and_removes_its_work(e2e_settings: Settings, tmp_path: Path) -> None:
    from devstack.clips import synthetic

    settle_limit()
    storage = Storage.from_settings(e2e_settings)
    vid = upload("acme", synthetic(tmp_path / "long.mp4", seconds=30))["video_id"]
    assert call(f"/videos/{vid}/start", "acme", "POST")[0] == 202
    wait_state(vid, "acme", ("transcoding",))
    assert call(f"/videos/{vid}", "beta", "DELETE")[0] == 404  # not beta's to cancel
    code, body = call(f"/videos/{vid}", "acme", "DELETE")
    assert code == 202 and body["was"] == "transcoding", body
    view = wait_state(vid, "acme", ("failed", "completed"))
    assert view["state"] == "failed" and view["error"]["kind"] == "cancelled", view
    work = f"tenants/acme/{vid}/"
    deadline = time.monotonic() + 120  # tasks already running finish; every later one is dropped with its work
    while storage.list(e2e_settings.bucket_work, work) and time.monotonic() < deadline:
        time.sleep(1)
    assert not storage.list(e2e_settings.bucket_work, work)
    assert not events_for(e2e_settings, "video.completed", vid)
    assert not storage.list(e2e_settings.bucket_outputs, work)


def test_delete_of_a_finished_video_removes_its_outputs(e2e_settings: Settings, tmp_path: Path) -> None:
    from devstack.clips import synthetic

    settle_limit()
    vid = upload("beta", synthetic(tmp_path / "short.mp4", seconds=2))["video_id"]
    assert call(f"/videos/{vid}/start", "beta", "POST")[0] == 202
    done = wait_state(vid, "beta", ("completed",))
    mp4 = next(o["url"] for o in done["outputs"] if o["kind"] == "mp4")
    assert urllib.request.urlopen(mp4, timeout=30).status == 200
    code, body = call(f"/videos/{vid}", "beta", "DELETE")
    assert code == 202 and body["was"] == "completed" and body["outputs_removed"] > 0, body
    view = wait_state(vid, "beta", ("failed",))
    assert view["error"]["kind"] == "cancelled" and "outputs are removed" in view["error"]["reason"]
    storage = Storage.from_settings(e2e_settings)
    assert not storage.list(e2e_settings.bucket_outputs, f"tenants/beta/{vid}/")
    with pytest.raises(urllib.error.HTTPError) as gone:
        urllib.request.urlopen(mp4, timeout=30)  # the link handed out before plays nothing now
    assert gone.value.code == 404
    again = call(f"/videos/{vid}", "beta", "DELETE")
    assert again[0] == 202 and again[1]["outputs_removed"] == 0  # twice: nothing more to remove
