"""`reel retry --segment N`: a new generation that reuses what a failed one finished.

The failed generation's plan (the splitter's checkpoint) is replayed as this generation's,
so the segments line up. A task whose transcode finished there (the transcoder's
checkpoint, every object it points at still stored) goes straight to the pusher as this
generation's segment.transcoded; the segments named to redo, and any that had not
finished, are requested again and flow through every stage (also a segment that generation
had itself reused: its request is rebuilt from the transcoded event, which carries it).
"""

from __future__ import annotations

import logging

from reel.checkpoints import Checkpoints
from reel.contract import Registry, task_fields, task_key
from reel.pipeline import SPLITTER, TRANSCODER
from reel.task import Deps, Output, Task

log = logging.getLogger(__name__)


def reuse_generation(task: Task, deps: Deps, registry: Registry) -> list[Output] | None:
    """This generation's outputs built from the failed one's, or None if it left no plan."""
    ev = task.event
    failed = {**ev, "generation": ev["reuse_generation"]}
    storage, bucket = deps.storage, deps.settings.bucket_work
    plan = Checkpoints(storage, bucket, registry, SPLITTER.name).load(failed)
    if plan is None:
        log.warning("generation %d left no plan to reuse: splitting anew", failed["generation"])
        return None
    transcoded = Checkpoints(storage, bucket, registry, TRANSCODER.name)
    redo = set(ev["redo_segments"])
    outputs: list[Output] = []
    reused = 0
    for n, out in enumerate(plan):
        rec = out.record
        is_redone = rec["track"] == "video" and rec["segment_index"] in redo
        if out.topic == "segment.transcoded" and is_redone:  # reused by that generation too: ask again
            request = {**rec, **task_fields(rec), "lane": -1}  # no lane: keys decide
            out = Output("segment.requested", task_key(rec["video_id"], rec["track"], rec["segment_index"]), request)
        elif out.topic == "segment.requested" and not is_redone:
            finished = transcoded.reusable(rec)
            if finished:
                outputs += [restamp(task, f, n) for f in finished]
                reused += 1
                continue
        outputs.append(restamp(task, out, n))
    log.info(
        "generation %d: %d tasks reused from generation %d, %d requested again",
        ev["generation"],
        reused,
        failed["generation"],
        sum(o.topic == "segment.requested" for o in outputs),
    )
    return outputs


def restamp(task: Task, out: Output, n: int) -> Output:
    """An output of the failed generation as this task's: its envelope, the same body."""
    rec = out.record
    env = task.envelope(out.topic, n, track=rec["track"], segment_index=rec["segment_index"])
    return Output(out.topic, out.key, {**rec, **env}, out.schema, out.partition)
