"""The pipeline in one table: each worker stage, what it consumes and what it produces.

Everything that needs the topology reads it from here: the services' stages, the topics
the stack creates, the tracker's lag and durations, the supervisor's fleet and the
splitter's view of the transcoders.
"""

from __future__ import annotations

from dataclasses import dataclass

DLQ_SUFFIX = ".dlq"
# What a second of the audio task costs, as a share of a second of video, where the
# ladder's codec was not measured (else reel.ladder.audio_share); video.split carries the
# share used, and a split from before it reads as this. Measured on 0.2-core nodes with
# the tiny ladder: 180 s of audio in 12.5 s, an 8.2 s segment in 6.5 s (a ladder of more
# rungs makes the video dearer, and the audio's share smaller).
AUDIO_COST = 0.09


@dataclass(frozen=True)
class StageSpec:
    name: str  # the service, its consumer group (reel.<name>) and its transactional ids
    input: str  # the topic it consumes
    outputs: tuple[str, ...]  # the topics it produces, its main output first
    step: str  # what the tracker calls its work, timed from its input event to its main output
    # The part of a segment's cost this stage does (from, to): the percent counts it done
    # across this span while the stage works, the backlog weighs the stage's units by it.
    span: tuple[float, float] = (0.0, 0.0)

    @property
    def group(self) -> str:
        return f"reel.{self.name}"

    @property
    def dead_letters(self) -> str:
        return self.input + DLQ_SUFFIX


SPLITTER = StageSpec("splitter", "video.requested", ("video.split", "segment.requested", "video.failed"), "split")
PULLER = StageSpec("puller", "segment.requested", ("segment.pulled", "video.failed"), "pull", (0.0, 0.1))
TRANSCODER = StageSpec("transcoder", "segment.pulled", ("segment.transcoded", "video.failed"), "transcode", (0.1, 0.9))
PUSHER = StageSpec(
    "pusher", "segment.transcoded", ("segment.uploaded", "video.completed", "video.failed"), "push", (0.9, 1.0)
)
PIPELINE = (SPLITTER, PULLER, TRANSCODER, PUSHER)
WORKER_KINDS = tuple(s.name for s in PIPELINE)
TRACKER_GROUP = "reel.tracker"  # it reads every topic (reel.contract.TOPIC_SCHEMAS and the dead letters)

# The stitch is the pusher's second step: from the last segment.uploaded to video.completed.
STITCH = ("stitch", "segment.uploaded", "video.completed")


def by_name(name: str) -> StageSpec:
    return next(s for s in PIPELINE if s.name == name)


def dead_letter_topics() -> list[str]:
    return [s.dead_letters for s in PIPELINE]


def group_inputs() -> dict[str, str]:
    """Each worker group and its input topic (for lag)."""
    return {s.group: s.input for s in PIPELINE}


def step_of_event() -> dict[str, tuple[str, str]]:
    """For each event that ends a step: (the step, the event that started it)."""
    steps = {s.outputs[0]: (s.step, s.input) for s in PIPELINE}
    name, started_by, ended_by = STITCH
    return {**steps, ended_by: (name, started_by)}


def share(spec: StageSpec) -> float:
    """The part of a segment's cost a stage does."""
    return spec.span[1] - spec.span[0]
