"""reel's image, built from the Containerfile (scripts/image.sh) and run for real: every
service from it, as its non-root user, on the host network against the embedded Kafka,
S3 and Postgres, one real clip end to end through the stitch gate; every probe the
manifests name answers. The tracker runs as a cluster runs it: migrate first (with
`buildah run`), then the projector and the API apart. The services run on the image's
root mounted read-only, with every capability dropped and no new privileges, as the pods'
securityContext has them (bubblewrap: `buildah run` cannot make the root read-only).

Marked `image`: `.ci/run` runs it in a step of its own (`make image-test`), as building
the image takes minutes. It records the image's size and each service's peak RSS (its
process and every ffmpeg it started, sampled) and scratch use in bench/results/image.json,
the figures k8s/ sizes its requests and limits from.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.clips import synthetic
from reel import PROJECT_ROOT
from reel.settings import Settings
from reel.storage import Storage
from reel.submit import submit, wait
from reel.tokens import DEV_TOKEN
from tests.e2e.media_checks import download, judge
from tests.k8s.render import OVERLAYS, build, workloads

pytestmark = pytest.mark.image

TAG = "localhost/reel:test"
IMAGE_UID = "10001"  # the Containerfile's USER
# Each run: its service and role, named as its workload is in k8s/ (reel-NAME).
RUNS = {
    "tracker-projector": ("tracker", {"REEL_TRACKER_ROLE": "projector"}),
    "tracker-api": ("tracker", {"REEL_TRACKER_ROLE": "api"}),
    "splitter": ("splitter", {}),
    "puller": ("puller", {}),
    "transcoder": ("transcoder", {}),
    "pusher": ("pusher", {}),
}
SERVICES = tuple(RUNS)
TRACKER_PORT = 28090
METRICS_PORT = {name: 29100 + i for i, name in enumerate(SERVICES)}
RESULTS = PROJECT_ROOT / "bench" / "results" / "image.json"


@pytest.fixture(scope="module")
def image() -> str:
    subprocess.run(["bash", str(PROJECT_ROOT / "scripts" / "image.sh"), TAG], check=True, timeout=3000)
    return TAG


def service_env(stack: Settings, name: str) -> dict[str, str]:
    """What a pod would get: addresses, credentials, its ports. Nothing of the host's."""
    return {
        **RUNS[name][1],
        "REEL_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "REEL_S3_ENDPOINT": stack.s3_endpoint,
        "REEL_S3_ACCESS_KEY": stack.s3_access_key,
        "REEL_S3_SECRET_KEY": stack.s3_secret_key,
        "DATABASE_URL": stack.postgres_url,
        "REEL_TRACKER_PORT": str(TRACKER_PORT),
        "REEL_METRICS_PORT": str(METRICS_PORT[name]),
        "REEL_MIN_SEGMENT_S": "6",
        "REEL_PLAN_WORKERS": "1",
        "REEL_SLOT": "0",
    }


class Sampler:
    """Of a process tree (the service and its ffmpeg children), sampled five times a second:
    peak RSS, peak bytes under its scratch folder, and every TCP connection it opened and
    port it listened on, as `ss` sees them (the NetworkPolicies are checked against these)."""

    def __init__(self, runner: subprocess.Popen[bytes], scratch: Path, log: Path) -> None:
        self.runner, self.root_pid, self.scratch, self.log = runner, runner.pid, scratch, log
        self.peak_rss = self.peak_scratch = 0
        self.cpu_s = 0.0  # CPU time of the service and the ffmpeg runs it waited for
        self.connected: set[int] = set()  # remote ports of connections it opened
        self.listened: set[int] = set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def main_pid(self) -> int:
        (pid,) = [p for p in tree(self.root_pid) if not is_buildah(p) and "services." in cmdline(p)]
        return pid

    def _run(self) -> None:
        while not self.stop.wait(0.2):
            pids = {p for p in tree(self.root_pid) if not is_buildah(p)}
            self.peak_rss = max(self.peak_rss, sum(rss(p) for p in pids))
            self.peak_scratch = max(self.peak_scratch, folder_bytes(self.scratch))
            self.cpu_s = max([self.cpu_s, *(cpu_seconds(p) for p in pids if "services." in cmdline(p))])
            listening = sockets("-tlnpH", pids)
            self.listened |= {local for local, _ in listening}
            for local, remote in sockets("-tnpH", pids, "state", "established"):
                if local not in self.listened:  # not a client's connection to one of ours
                    self.connected.add(remote)


def sockets(flags_: str, pids: set[int], *state: str) -> list[tuple[int, int]]:
    """(local port, remote port) of the TCP sockets of these processes."""
    out = subprocess.run(["ss", flags_, *state], capture_output=True, text=True).stdout
    found = []
    for line in out.splitlines():
        owners = {int(m) for m in re.findall(r"pid=(\d+)", line)}
        ends = [f for f in line.split() if ":" in f and not f.startswith("users:")]  # local, peer
        if owners & pids and len(ends) >= 2:
            local, remote = (f.rsplit(":", 1)[1] for f in ends[:2])
            found.append((int(local), int(remote) if remote.isdigit() else 0))
    return found


def tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in (task / "children").read_text().split()]
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and of its children it has waited for (/proc/PID/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def is_buildah(pid: int) -> bool:
    """The runtime around a service, as a container runtime is, not part of it: bubblewrap,
    or buildah and its chroot helpers (buildah-chroot-runtime, -exec)."""
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0]
    except OSError:
        return False
    name = Path(argv0.decode(errors="replace")).name
    return name.startswith("buildah") or name == "bwrap"


def folder_bytes(folder: Path) -> int:
    total = 0
    for p in folder.rglob("*"):
        with contextlib.suppress(OSError):
            total += p.stat().st_size if p.is_file() else 0
    return total


@pytest.fixture(scope="module")
def services(image: str, stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Sampler]]:
    work = tmp_path_factory.mktemp("image-run")
    procs, samplers, containers = {}, {}, []
    try:
        migrate = start_container(image, containers)
        env = [
            f"--env={k}={v}" for k, v in {**service_env(stack, "tracker-api"), "REEL_TRACKER_ROLE": "migrate"}.items()
        ]
        done = subprocess.run(
            ["buildah", "run", "--isolation", "chroot", "--network", "host", *env, migrate, "--"]
            + ["python3", "-m", "services.tracker"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0 and "schema at" in done.stdout + done.stderr, done.stderr[-2000:]
        image_env = image_defaults(image)
        for name in SERVICES:
            root = subprocess.run(
                ["buildah", "mount", start_container(image, containers)], capture_output=True, text=True, check=True
            ).stdout.strip()
            scratch = work / name
            scratch.mkdir()
            os.chown(scratch, int(IMAGE_UID), int(IMAGE_UID))
            env = {**image_env, **service_env(stack, name)}
            cmd = as_the_pod_runs(root, scratch, env, ["python3", "-m", f"services.{RUNS[name][0]}"])
            log = (work / f"{name}.log").open("wb")
            procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
            samplers[name] = Sampler(procs[name], scratch, work / f"{name}.log")
        for name in SERVICES:
            ready(name, procs[name], work / f"{name}.log")
        yield samplers
    finally:
        for p in procs.values():  # what test_each_service_stops_on_sigterm left running
            if p.poll() is None:
                p.kill()
                p.wait()
        for s in samplers.values():
            s.stop.set()
        for ctr in containers:
            subprocess.run(["buildah", "rm", ctr], capture_output=True)
        for name in SERVICES:  # for the failure report
            shutil.copy(work / f"{name}.log", PROJECT_ROOT / ".reel-test" / f"image-{name}.log")


def as_the_pod_runs(root: str, scratch: Path, env: dict[str, str], argv: list[str]) -> list[str]:
    """The pods' securityContext, here: the image's root read-only with only /scratch
    writable, the image's user, every capability dropped (bounding set too), no new
    privileges; the host's network. bubblewrap makes the mounts, setpriv (util-linux, in
    the image) drops to the user; buildah run has no read-only root."""
    cmd = ["bwrap", "--ro-bind", root, "/", "--bind", str(scratch), "/scratch", "--proc", "/proc", "--dev", "/dev"]
    cmd += ["--tmpfs", "/run", "--unshare-pid", "--unshare-ipc", "--die-with-parent", "--clearenv"]
    for k, v in env.items():
        cmd += ["--setenv", k, v]
    cmd += ["--", "setpriv", f"--reuid={IMAGE_UID}", f"--regid={IMAGE_UID}", "--clear-groups"]
    return [*cmd, "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--", *argv]


def start_container(image: str, containers: list[str]) -> str:
    ctr = f"reel-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["buildah", "from", "--pull=never", "--name", ctr, image], check=True, capture_output=True)
    containers.append(ctr)
    return ctr


def ready(name: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{name} exited: {log.read_text()[-2000:]}"
        if f"{RUNS[name][0]}-0 ready" in log.read_text(errors="replace"):
            return
        time.sleep(0.5)
    raise AssertionError(f"{name} not ready: {log.read_text()[-2000:]}")


def image_bytes(tag: str) -> int:
    """The image's files, unpacked: du of a container's root, mounted."""
    ctr = subprocess.run(["buildah", "from", "--pull=never", tag], capture_output=True, text=True, check=True)
    name = ctr.stdout.strip()
    try:
        root = subprocess.run(["buildah", "mount", name], capture_output=True, text=True, check=True).stdout.strip()
        du = subprocess.run(["du", "-sb", root], capture_output=True, text=True, check=True).stdout
        return int(du.split()[0])
    finally:
        subprocess.run(["buildah", "rm", name], capture_output=True)


def peer(stack: Settings, port: int) -> str:
    names = {stack.kafka_port: "kafka", stack.s3_port: "s3", stack.pg_port: "postgres", TRACKER_PORT: "tracker"}
    return names.get(port, str(port))


def http(url: str) -> tuple[int, str]:
    """As the development tenant (the image's tracker keeps the default tokens)."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {DEV_TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return resp.status, resp.read().decode()


def test_every_service_runs_from_the_image_as_its_user(services: dict[str, Sampler]) -> None:
    """As its user, with no capability left to gain and no new privileges, on a read-only
    root (what the pods' securityContext asks)."""
    for name, sampler in services.items():
        seen = set()
        for pid in tree(sampler.root_pid):
            if is_buildah(pid):
                continue
            status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
            caps = {k: int(status[k], 16) for k in ("CapEff", "CapPrm", "CapBnd")}
            seen.add((status["Uid"].split()[0], tuple(caps.values()), status["NoNewPrivs"].strip()))
        assert seen == {(IMAGE_UID, (0, 0, 0), "1")}, f"{name} runs as {seen}"
        mounts = Path(f"/proc/{sampler.main_pid()}/mountinfo").read_text().splitlines()
        (root_mount,) = [m for m in mounts if m.split()[4] == "/"]
        assert "ro" in root_mount.split()[5].split(","), f"{name}: the root is writable: {root_mount}"


def test_probes_and_metrics_answer_on_their_fixed_ports(services: dict[str, Sampler]) -> None:
    for name in SERVICES:
        base = f"http://127.0.0.1:{METRICS_PORT[name]}"
        assert http(base + "/healthz") == (200, "ok\n"), name
        assert http(base + "/readyz") == (200, "ok\n"), name
        assert f'reel_service_up{{service="{RUNS[name][0]}",slot="0"}} 1.0' in http(base + "/metrics")[1]
    assert http(f"http://127.0.0.1:{TRACKER_PORT}/readyz")[0] == 200


def test_every_probe_the_manifests_name_answers(services: dict[str, Sampler]) -> None:
    """Each workload's probes, on the run of the same name: the manifests' port numbers
    are the image's own defaults (its ENV), which this run moved to free ports."""
    image_env = image_defaults(TAG)
    listens_on = {int(image_env["REEL_METRICS_PORT"]): "metrics", int(image_env["REEL_TRACKER_PORT"]): "tracker"}
    for overlay in OVERLAYS:
        for workload, w in workloads(build(overlay)).items():
            name = workload.removeprefix("reel-")
            c = w["spec"]["template"]["spec"]["containers"][0]
            ports = {p["name"]: p["containerPort"] for p in c["ports"]}
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                get = c[probe]["httpGet"]
                setting = listens_on[ports[get["port"]]]  # a port the image listens on by default
                port = METRICS_PORT[name] if setting == "metrics" else TRACKER_PORT
                assert http(f"http://127.0.0.1:{port}{get['path']}")[0] == 200, (overlay, workload, probe)


def image_defaults(tag: str) -> dict[str, str]:
    config = json.loads(subprocess.run(["buildah", "inspect", tag], capture_output=True, text=True, check=True).stdout)
    return dict(e.split("=", 1) for e in config["OCIv1"]["config"]["Env"])


def test_a_clip_goes_end_to_end_through_the_image(
    services: dict[str, Sampler], stack: Settings, storage: Storage, tmp_path: Path
) -> None:
    clip = synthetic(tmp_path / "clip.mp4", size="640x360", seconds=30)
    sub = submit(stack, storage, clip, "tiny", ["mp4", "hls"], request_id=f"image-{uuid.uuid4()}")
    end = wait(stack, sub.video_id, sub.submitted_ms, timeout=300)
    assert end["topic"] == "video.completed", end
    out = tmp_path / "out"
    download(stack, storage, sub.video_id, out)
    judge(clip, out)  # frames, CFR, sizes, audio start and length: what a viewer sees
    status = json.loads(http(f"http://127.0.0.1:{TRACKER_PORT}/videos/{sub.video_id}")[1])
    assert status["state"] == "completed" and status["percent"] == 100
    time.sleep(1)  # a last sample after the pusher's scratch was cleared
    size = image_bytes(TAG)
    record = {
        "date": time.strftime("%Y-%m-%d"),
        "image": TAG,
        "image_bytes": size,
        "clip": "30 s 640x360 25 fps with stereo AAC, profile tiny, mp4 + hls, 5 segments",
        "peak_rss_bytes": {n: s.peak_rss for n, s in services.items()},
        "peak_scratch_bytes": {n: s.peak_scratch for n, s in services.items()},
        "cpu_seconds": {n: round(s.cpu_s, 1) for n, s in services.items()},
        "connected_to": {n: sorted(peer(stack, port) for port in s.connected) for n, s in services.items()},
        "listened_on": {n: sorted(s.listened) for n, s in services.items()},
    }
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    assert all(record["peak_rss_bytes"].values()), record  # every service was sampled
    assert record["peak_scratch_bytes"]["pusher"] > 0 and record["peak_scratch_bytes"]["transcoder"] > 0


def test_each_service_stops_on_sigterm(services: dict[str, Sampler]) -> None:
    """Last: SIGTERM to each service's own process, as the kubelet sends it to a
    container's first process (buildah, asked to stop, would kill it instead)."""
    for name, sampler in services.items():
        (main,) = [p for p in tree(sampler.root_pid) if not is_buildah(p) and f"services.{RUNS[name][0]}" in cmdline(p)]
        os.kill(main, signal.SIGTERM)
    for name, sampler in services.items():
        runner = sampler.runner
        assert runner.wait(timeout=60) == 0, f"{name} exited with {runner.returncode}"
        last = [json.loads(line) for line in sampler.log.read_text().splitlines() if line.startswith("{")][-1]
        assert last["msg"].endswith("stopped"), (name, last)


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
