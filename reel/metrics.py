"""Prometheus metrics every service exposes on its own /metrics endpoint (reel/health.py serves it)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

TASKS = Counter("reel_tasks_total", "Tasks finished by a worker", ["stage", "outcome"])
TASK_SECONDS = Histogram(
    "reel_task_seconds",
    "Wall time of one task",
    ["stage"],
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
)
HANDBACKS = Counter(
    "reel_handbacks_total",
    "Tasks given up mid-work for another attempt, by cause: rebalance, lost, sigterm, aborted, crash (reel/retries.py)",
    ["stage", "cause"],
)
STALLED = Counter(
    "reel_stalled_partitions_total",
    "Partitions found idle with records waiting that the consumer did not deliver, and resumed",
    ["stage"],
)
IN_FLIGHT = Gauge("reel_tasks_in_flight", "Tasks being worked on", ["stage"])
DEAD_LETTERS = Counter("reel_dead_letters_total", "Records sent to a dead-letter topic", ["topic", "kind"])
UP = Gauge("reel_service_up", "1 while the service runs", ["service", "slot"])


VIDEOS = Gauge("reel_videos", "Videos by state", ["state"])
SEGMENTS = Gauge("reel_segments", "Segments of unfinished videos by stage", ["stage"])
BACKLOG = Gauge(
    "reel_backlog_media_seconds",
    "Media-seconds of work each worker group has still to do (upstream included), weighted by stage cost",
    ["group"],
)
VIDEO_FAILURES = Counter(
    "reel_video_failures_total",
    "Videos failed, by the stage that failed them and why (reel.task.Kind)",
    ["stage", "kind"],
)
VIDEOS_COMPLETED = Counter("reel_videos_completed_total", "Videos completed")
MEDIA_COMPLETED = Counter("reel_completed_media_seconds_total", "Length of the videos completed, in seconds")
CALLBACKS = Counter("reel_callbacks_total", "Callback POST attempts by outcome", ["outcome"])
VIDEO_SECONDS = Histogram(
    "reel_video_seconds",
    "From video.requested to video.completed or video.failed",
    ["outcome"],
    buckets=(5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200),
)
STAGE_SECONDS = Histogram(
    "reel_stage_seconds",
    "Per segment (or video, for split and stitch): time from the event before a "
    "stage to the stage's own event, queueing included",
    ["stage"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
)
OLDEST_VIDEO = Gauge(
    "reel_oldest_video_age_seconds",
    "Age of the oldest unfinished video in each state, from its generation's first event",
    ["state"],
)
VIDEO_LATENESS = Gauge(
    "reel_video_lateness_max",
    "Largest age / time budget of the unfinished videos in each state (budget: "
    "REEL_VIDEO_BUDGET_S + REEL_VIDEO_BUDGET_PER_MEDIA_S x its length); above 1 is late",
    ["state"],
)
GROUP_MEMBERS = Gauge("reel_group_members", "Members of each worker consumer group", ["group"])
LAG = Gauge("reel_consumer_lag", "Records not yet committed by a consumer group, all partitions", ["group"])
UPLOAD_PARTS = Counter(
    "reel_upload_parts_total", "Multipart upload parts: sent, or reused from a resumed upload", ["outcome"]
)
STORAGE_RETRIES = Counter("reel_storage_retries_total", "Storage calls retried in place after a transient fault")

# A labelled series appears at its first increment, and Prometheus's increase() cannot see
# that first step (there is no earlier sample at 0): a process's first dead letter or
# failed video would read as nothing on a dashboard or alert. Each process sets its own
# series to 0 at start.
TASK_OUTCOMES = ("completed", "failed", "reused", "handed_back")


def zero_worker(stage: str, topic: str, causes: list[str], error_kinds: tuple[str, ...]) -> None:
    for outcome in TASK_OUTCOMES:
        TASKS.labels(stage, outcome)
    for cause in causes:
        HANDBACKS.labels(stage, cause)
    for kind in error_kinds:
        DEAD_LETTERS.labels(topic, kind)
    STALLED.labels(stage)
    IN_FLIGHT.labels(stage)
    for outcome in ("sent", "reused"):
        UPLOAD_PARTS.labels(outcome)


def zero_tracker(stages: list[str], kinds: list[str]) -> None:
    for stage in stages:
        for kind in kinds:
            VIDEO_FAILURES.labels(stage, kind)
    for outcome in ("delivered", "retried", "abandoned"):
        CALLBACKS.labels(outcome)
    for outcome in ("completed", "failed"):
        VIDEO_SECONDS.labels(outcome)
