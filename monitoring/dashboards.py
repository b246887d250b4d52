"""reel's four Grafana dashboards, typed with grafana-foundation-sdk: Pipeline, Stages,
Kafka and scaling (Prometheus) and Video (the tracker's Postgres). `python -m monitoring`
writes their JSON where k8s/components/observability provisions it from;
tests/e2e/test_observability.py runs every query they hold against a real Prometheus and
the tracker's database."""

from __future__ import annotations

from dataclasses import dataclass

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import heatmap, stat, table, timeseries
from grafana_foundation_sdk.builders.prometheus import Dataquery as PromQuery
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models.dashboard import DataSourceRef, GridPos, VariableOption, VariableRefresh
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

PROMETHEUS = DataSourceRef(type_val="prometheus", uid="${datasource}")
# Provisioned by k8s/components/observability (datasources.yaml) with this uid: a
# read-only role on the tracker's database.
POSTGRES = DataSourceRef(type_val="grafana-postgresql-datasource", uid="reel-postgres")
NS = 'namespace=~"$namespace"'  # every reel series; matches the embedded stack's, which have none


@dataclass
class SqlQuery(cogvariants.Dataquery):
    """A Postgres panel query (the SDK has no builder for Grafana's SQL datasources)."""

    ref_id: str
    raw_sql: str
    format: str

    def to_json(self) -> dict[str, object]:
        return {
            "refId": self.ref_id,
            "datasource": POSTGRES.to_json(),
            "rawQuery": True,
            "editorMode": "code",
            "rawSql": self.raw_sql,
            "format": self.format,
        }


class Sql(cogbuilder.Builder[cogvariants.Dataquery]):
    def __init__(self, raw_sql: str, ref_id: str = "A", fmt: str = "table") -> None:
        self.query = SqlQuery(ref_id, " ".join(raw_sql.split()), fmt)

    def build(self) -> cogvariants.Dataquery:
        return self.query


def prom(expr: str, legend: str, ref_id: str) -> PromQuery:
    return PromQuery().expr(" ".join(expr.split())).legend_format(legend).ref_id(ref_id).range()


class Grid:
    """Panels laid out left to right, `per_row` to a row."""

    def __init__(self, per_row: int = 2, height: int = 8) -> None:
        self.per_row, self.height, self.n = per_row, height, 0

    def next(self) -> GridPos:
        w = 24 // self.per_row
        pos = GridPos(h=self.height, w=w, x=(self.n % self.per_row) * w, y=(self.n // self.per_row) * self.height)
        self.n += 1
        return pos


def graph(grid: Grid, title: str, unit: str, description: str, *queries: tuple[str, str]) -> timeseries.Panel:
    panel = timeseries.Panel().title(title).description(description).unit(unit).datasource(PROMETHEUS)
    for i, (expr, legend) in enumerate(queries):
        panel = panel.with_target(prom(expr, legend, chr(ord("A") + i)))
    return panel.grid_pos(grid.next())


def variables(board: dash.Dashboard, *names: tuple[str, str]) -> dash.Dashboard:
    """The Prometheus datasource, then one query variable per (name, label_values query)."""
    board = board.with_variable(dash.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
    for name, query in names:
        board = board.with_variable(
            dash.QueryVariable(name)
            .label(name)
            .datasource(PROMETHEUS)
            .query({"query": query, "refId": f"{name}-values"})
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .include_all(True)
            .all_value(".*")
            .multi(True)
            .current(VariableOption(text="All", value="$__all", selected=True))
        )
    return board


def board(uid: str, title: str, description: str) -> dash.Dashboard:
    return (
        dash.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["reel"])
        .refresh("10s")
        .time("now-1h", "now")
        .timezone("browser")
    )


def pipeline() -> dash.Dashboard:
    g = Grid()
    b = variables(
        board("reel-pipeline", "reel / Pipeline", "Videos from request to outputs"),
        ("namespace", "label_values(reel_videos, namespace)"),
    )
    return (
        b.with_panel(
            graph(
                g,
                "Videos by state",
                "short",
                "Every video the tracker knows, by its state now",
                (f"sum by (state) (reel_videos{{{NS}}})", "{{state}}"),
            )
        )
        .with_panel(
            graph(
                g,
                "Throughput",
                "short",  # a ratio: media-seconds per second
                "Media-seconds of video completed per second of wall time",
                (f"sum(rate(reel_completed_media_seconds_total{{{NS}}}[$__rate_interval]))", "media-s / s"),
            )
        )
        .with_panel(
            graph(
                g,
                "End-to-end latency",
                "s",
                "From video.requested to video.completed, from the histogram",
                *[
                    (
                        f"histogram_quantile({q}, sum by (le) (rate(reel_video_seconds_bucket"
                        f'{{{NS}, outcome="completed"}}[$__rate_interval])))',
                        f"p{int(q * 100)}",
                    )
                    for q in (0.5, 0.95, 0.99)
                ],
            )
        )
        .with_panel(
            graph(
                g,
                "Failures by kind",
                "short",
                "Videos failed, by why (video.failed's kind) and the stage",
                (
                    f"sum by (kind, stage) (increase(reel_video_failures_total{{{NS}}}[$__rate_interval]))",
                    "{{kind}} ({{stage}})",
                ),
            )
        )
        .with_panel(
            stat.Panel()
            .title("Oldest unfinished video")
            .description("Age of the oldest unfinished video in each state")
            .unit("s")
            .datasource(PROMETHEUS)
            .with_target(prom(f"max by (state) (reel_oldest_video_age_seconds{{{NS}}})", "{{state}}", "A"))
            .grid_pos(g.next())
        )
        .with_panel(
            graph(
                g,
                "Lateness",
                "percentunit",
                "Largest age / budget of the unfinished videos per state; 1 is late",
                (f"max by (state) (reel_video_lateness_max{{{NS}}})", "{{state}}"),
            )
        )
    )


def stages() -> dash.Dashboard:
    g = Grid()
    sel = f'{NS}, stage=~"$stage"'
    b = variables(
        board("reel-stages", "reel / Stages", "Each worker stage: its units, their times and what went wrong"),
        ("namespace", "label_values(reel_tasks_total, namespace)"),
        ("stage", "label_values(reel_tasks_total, stage)"),
    )
    return (
        b.with_panel(
            graph(
                g,
                "In flight",
                "short",
                "Units a stage is working on now",
                (f"sum by (stage) (reel_tasks_in_flight{{{sel}}})", "{{stage}}"),
            )
        )
        .with_panel(
            graph(
                g,
                "Task duration",
                "s",
                "Wall time of one unit, p50 and p95, from the histogram",
                *[
                    (
                        f"histogram_quantile({q}, sum by (stage, le) (rate(reel_task_seconds_bucket"
                        f"{{{sel}}}[$__rate_interval])))",
                        f"{{{{stage}}}} p{int(q * 100)}",
                    )
                    for q in (0.5, 0.95)
                ],
            )
        )
        .with_panel(
            heatmap.Panel()
            .title("Task duration distribution")
            .description("How many units took how long, per interval: the task histogram's buckets")
            .unit("s")
            .datasource(PROMETHEUS)
            .with_target(
                prom(
                    f"sum by (le) (increase(reel_task_seconds_bucket{{{sel}}}[$__rate_interval]))", "{{le}}", "A"
                ).format(PromQueryFormat.HEATMAP)
            )
            .grid_pos(g.next())
        )
        .with_panel(
            graph(
                g,
                "Time per step, queueing included",
                "s",
                "From the event before a step to the step's own event (the tracker's histogram), p95",
                (
                    f"histogram_quantile(0.95, sum by (stage, le) (rate(reel_stage_seconds_bucket{{{NS}}}"
                    "[$__rate_interval])))",
                    "{{stage}}",
                ),
            )
        )
        .with_panel(
            graph(
                g,
                "Units by outcome",
                "short",
                "Attempts ending completed, failed (to retry), handed back, or reused from a finished attempt",
                (
                    f"sum by (stage, outcome) (increase(reel_tasks_total{{{sel}}}[$__rate_interval]))",
                    "{{stage}} {{outcome}}",
                ),
            )
        )
        .with_panel(
            graph(
                g,
                "Attempts per completed unit",
                "short",
                "1 when nothing is retried",
                (
                    f'sum by (stage) (increase(reel_tasks_total{{{sel}, outcome=~"completed|failed|handed_back"}}'
                    f'[$__range])) / sum by (stage) (increase(reel_tasks_total{{{sel}, outcome="completed"}}'
                    "[$__range]))",
                    "{{stage}}",
                ),
            )
        )
        .with_panel(
            graph(
                g,
                "Hand-backs by cause",
                "short",
                "Units given up mid-work for another attempt: rebalance, lost, sigterm, crash",
                (
                    f"sum by (stage, cause) (increase(reel_handbacks_total{{{sel}}}[$__rate_interval]))",
                    "{{stage}} {{cause}}",
                ),
            )
        )
        .with_panel(
            graph(
                g,
                "Dead letters",
                "short",
                "Records sent to a dead-letter topic, by topic and kind",
                (
                    f"sum by (topic, kind) (increase(reel_dead_letters_total{{{NS}}}[$__rate_interval]))",
                    "{{topic}} {{kind}}",
                ),
            )
        )
        .with_panel(
            graph(
                g,
                "Storage retries",
                "short",
                "Storage calls retried in place after a transient fault",
                (f"sum(increase(reel_storage_retries_total{{{NS}}}[$__rate_interval]))", "retries"),
            )
        )
        .with_panel(
            graph(
                g,
                "Upload parts",
                "short",
                "Multipart parts sent, and reused from a resumed upload",
                (f"sum by (outcome) (increase(reel_upload_parts_total{{{NS}}}[$__rate_interval]))", "{{outcome}}"),
            )
        )
        .with_panel(
            graph(
                g,
                "Stalled partitions",
                "short",
                "Partitions found idle with records waiting, and resumed",
                (f"sum by (stage) (increase(reel_stalled_partitions_total{{{sel}}}[$__rate_interval]))", "{{stage}}"),
            )
        )
    )


def kafka_and_scaling() -> dash.Dashboard:
    g = Grid()
    sel = f'{NS}, group=~"$group"'
    b = variables(
        board("reel-scaling", "reel / Kafka and scaling", "Lag, backlog, members and the autoscaler's decisions"),
        ("namespace", "label_values(reel_consumer_lag, namespace)"),
        ("group", "label_values(reel_consumer_lag, group)"),
    )
    return (
        b.with_panel(
            graph(
                g,
                "Lag",
                "short",
                "Records not yet committed by each consumer group",
                (f"max by (group) (reel_consumer_lag{{{sel}}})", "{{group}}"),
            )
        )
        .with_panel(
            graph(
                g,
                "Backlog",
                "s",
                "Media-seconds each worker group has still to do, weighted by stage cost",
                (f"max by (group) (reel_backlog_media_seconds{{{sel}}})", "{{group}}"),
            )
        )
        .with_panel(
            graph(
                g,
                "Group members",
                "short",
                "Consumers in each worker group",
                (f"max by (group) (reel_group_members{{{sel}}})", "{{group}}"),
            )
        )
        .with_panel(
            graph(
                g,
                "Backlog per member",
                "s",
                "What the HPAs scale on; the target is 60",
                (
                    f"max by (group) (reel_backlog_media_seconds{{{sel}}}) / "
                    f"clamp_min(max by (group) (reel_group_members{{{sel}}}), 1)",
                    "{{group}}",
                ),
            )
        )
        .with_panel(
            graph(
                g,
                "Replicas: desired and current",
                "short",
                "reel's local autoscaler, and in a cluster the HPAs (kube-state-metrics)",
                (f"max by (kind) (reel_autoscaler_desired_replicas{{{NS}}})", "{{kind}} desired"),
                (f"max by (kind) (reel_autoscaler_current_replicas{{{NS}}})", "{{kind}} current"),
                (f"max by (kind) (reel_autoscaler_max_replicas{{{NS}}})", "{{kind}} max"),
                (
                    "max by (horizontalpodautoscaler) (kube_horizontalpodautoscaler_status_desired_replicas"
                    f'{{{NS}, horizontalpodautoscaler=~"(keda-hpa-)?reel-.*"}})',
                    "{{horizontalpodautoscaler}} desired",
                ),
                (
                    "max by (horizontalpodautoscaler) (kube_horizontalpodautoscaler_status_current_replicas"
                    f'{{{NS}, horizontalpodautoscaler=~"(keda-hpa-)?reel-.*"}})',
                    "{{horizontalpodautoscaler}} current",
                ),
            )
        )
        .with_panel(
            graph(
                g,
                "Autoscaler decisions",
                "short",
                "Each decision by worker kind and reason: scaled, within tolerance, stabilised, capped, policy",
                (
                    f"sum by (kind, reason) (increase(reel_autoscaler_decisions_total{{{NS}}}[$__rate_interval]))",
                    "{{kind}} {{reason}}",
                ),
            )
        )
    )


# The Video dashboard: one video's rows in the tracker's database ($video is its id). A
# unit's hand-backs are its task.progress events in state handed_back; the audio task's
# segment_index is -1 in segments and null in events.
VIDEO_SQL = {
    "Video": """SELECT video_id, tenant, state, round(percent::numeric, 1) AS percent, profile, duration,
        segment_count, generation, error_stage, error, requested_at, completed_at, failed_at
        FROM videos WHERE video_id = '$video'""",
    "Segments": """SELECT s.track, s.segment_index, s.stage, s.attempt,
        (SELECT count(*) FROM events e WHERE e.video_id = s.video_id AND e.generation = s.generation
          AND e.topic = 'task.progress' AND e.track = s.track AND coalesce(e.segment_index, -1) = s.segment_index
          AND e.body->>'state' = 'handed_back') AS handbacks,
        s.worker, s.retrying, round(s.media_seconds::numeric, 2) AS media_seconds, s.error, s.updated_at
        FROM segments s JOIN videos v ON v.video_id = s.video_id AND v.generation = s.generation
        WHERE s.video_id = '$video' ORDER BY s.track, s.segment_index""",
    "Timings per segment": """SELECT track, coalesce(segment_index, -1) AS segment_index,
        max(attempt) AS attempts,
        extract(epoch FROM max(produced_at) - min(produced_at)) AS seconds,
        min(produced_at) AS first_event, max(produced_at) AS last_event
        FROM events WHERE video_id = '$video' AND (segment_index IS NOT NULL OR track = 'audio')
        AND generation = (SELECT generation FROM videos WHERE video_id = '$video')
        GROUP BY 1, 2 ORDER BY 1, 2""",
    "Events": """SELECT produced_at AS time, topic, track, segment_index, attempt, generation
        FROM events WHERE video_id = '$video' ORDER BY produced_at""",
}


def video() -> dash.Dashboard:
    g = Grid(per_row=1, height=9)
    b = (
        board("reel-video", "reel / Video", "One video's segments, attempts and timings, from the tracker's Postgres")
        .time("now-24h", "now")
        .with_variable(dash.TextBoxVariable("video").label("video id").description("The id `reel submit` printed"))
    )
    for title, sql in VIDEO_SQL.items():
        b = b.with_panel(table.Panel().title(title).datasource(POSTGRES).with_target(Sql(sql)).grid_pos(g.next()))
    return b


DASHBOARDS = {"pipeline": pipeline, "stages": stages, "kafka-and-scaling": kafka_and_scaling, "video": video}
