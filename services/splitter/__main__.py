"""Run the splitter: python -m services.splitter"""

import logging
from collections.abc import Callable

from confluent_kafka import KafkaException

from reel import replicas
from reel.kafka import admin_client, member_partitions, read_to_end
from reel.pipeline import PULLER, SPLITTER, TRANSCODER
from reel.service import run_stage
from reel.settings import Settings
from reel.storage import Storage
from services.splitter.handler import Deps, handle

log = logging.getLogger(__name__)


def heading_for(settings: Settings) -> Callable[[], int]:
    """The transcoders the autoscaler wants: in Kubernetes the StatefulSet's replicas (its
    HPA sets them), else what the local autoscaler of `reel up` wrote."""
    if settings.kubernetes_namespace:
        from reel.k8s_replicas import StatefulSets  # only where it runs in a cluster

        sets = StatefulSets(settings.kubernetes_namespace)
        return lambda: sets.replicas(settings.transcoder_statefulset).desired
    return lambda: replicas.read(settings.home).get(TRANSCODER.name, 0)


def requested_since(settings: Settings, topic: str = SPLITTER.input) -> Callable[[int], set[str]]:
    """Ids of the videos requested from a time on (the records' keys, video ids by the
    contract; a record without one counts for none); a read that fails finds none, so the
    video is split as if it came alone."""

    def ids(since_ms: int) -> set[str]:
        try:
            records = read_to_end(settings, [topic], since_ms, timeout=10)
            return {m.key().decode(errors="replace") for m in records if m.key()}
        except (KafkaException, TimeoutError) as exc:
            log.warning("the videos requested since %d could not be read (%s): split as if alone", since_ms, exc)
            return set()

    return ids


def deps(settings: Settings, storage: Storage) -> Deps:
    """Its plan follows the live transcoders (their consumer group, asked of the broker)
    and, autoscaled, the fleet they are heading for (larger for a video in a burst); its
    pull requests go to the live pullers in turn."""
    admin = admin_client(settings)

    def partitions() -> int:
        meta = admin.list_topics(TRANSCODER.input, timeout=10).topics.get(TRANSCODER.input)
        return len(meta.partitions) if meta is not None and meta.partitions else settings.kafka_partitions

    return Deps(
        settings,
        storage,
        lambda: member_partitions(admin, TRANSCODER.group, TRANSCODER.input),
        heading_for=heading_for(settings),
        requested_since=requested_since(settings),
        partitions=partitions,
        pullers=lambda: member_partitions(admin, PULLER.group, PULLER.input),
    )


if __name__ == "__main__":
    run_stage(SPLITTER, handle, deps)
