"""Every name prewarm uses in Redis and Celery: the one key schema.

Nothing else types a key. Lua scripts receive the names they touch (or their prefix)
as arguments, so a script and the Python around it cannot disagree.

    prewarm:jobs                          zset J -> created: the recent list
    prewarm:job:J                         hash: one warm job (`prewarm.state.jobs`)
    prewarm:job:J:PART                    PART in JOB_PARTS: plan, batches, done, findings,
                                          failed, samples, evaluation
    prewarm:shot:S:evaluations            list: the shot's latest `prewarm evaluate` results
    prewarm:gw:G:jobs                     zset: jobs with batches to send (`prewarm.state.dispatch`)
    prewarm:gw:G:inflight                 zset: batches sent and not finished
    prewarm:gw:G:rate                     the gateway's shared rate (`prewarm.state.throttle`)
    prewarm:gw:G:tat                      its bucket's theoretical arrival time
    prewarm:dd:G:{P}:id|w|c:...           what gateway G holds of studio path P (`prewarm.state.dedupe`);
                                          P is the path itself, or `b64:` and the URL-safe base64 of
                                          its bytes when they are not UTF-8 (see `dedupe`)
    prewarm:svc:dedupe:G:I                the warm of an identical submission (identity I)
    prewarm:svc:lock:I                    held while one submission of identity I is made

Celery: a queue per gateway node (`queue(G)` = `prewarm.G`), task `TASK`, task ids
`prewarm-J-N` (deterministic, so cancel can revoke batches it never saw sent).
"""

from __future__ import annotations

import base64
import re

PREFIX = "prewarm"

JOBS = f"{PREFIX}:jobs"

JOB_PARTS = ("plan", "batches", "done", "findings", "failed", "samples", "evaluation")

JOB_PREFIX = f"{PREFIX}:job:"
"""What a job id is appended to; the dispatch script builds job keys from it."""

GATEWAY_PARTS = ("jobs", "inflight", "rate", "tat")

TASK = "prewarm.warm_batch"


_JOB_ID = re.compile(r"[0-9a-f]{1,64}")


def is_job_id(text: str) -> bool:
    """Whether `text` is a warm job's id (hex, see `WarmJob.create`), checked before any key is made of it.

    A full match: `^...$` lets `abc\n` through (`$` matches before a final newline), and a
    request for `abc%0a` reached Redis.
    """
    return _JOB_ID.fullmatch(text) is not None


def job(job_id: str) -> str:
    return f"{JOB_PREFIX}{job_id}"


def job_part(job_id: str, part: str) -> str:
    if part not in JOB_PARTS:
        raise ValueError(f"no job key part {part!r}")
    return f"{JOB_PREFIX}{job_id}:{part}"


def shot_evaluations(shot: str) -> str:
    return f"{PREFIX}:shot:{shot}:evaluations"


def gateway(name: str, part: str) -> str:
    if part not in GATEWAY_PARTS:
        raise ValueError(f"no gateway key part {part!r}")
    return f"{PREFIX}:gw:{name}:{part}"


def gateway_pattern(part: str) -> str:
    """Matches `part` of every gateway (for SCAN)."""
    return gateway("*", part)


def gateway_of(key: str | bytes) -> str:
    """The gateway name in a `prewarm:gw:G:part` key."""
    text = key.decode() if isinstance(key, bytes) else key
    return text[len(f"{PREFIX}:gw:"):].rpartition(":")[0]


def dedupe(name: str, path: str) -> str:
    """The prefix of gateway `name`'s keys about studio path `path`.

    Every path has a key: one whose bytes are not UTF-8 (a file name from another system,
    carried by Python as surrogates, which Redis's client cannot encode) is written
    `b64:` and the URL-safe base64 of its bytes. A studio path starts with `/`, so the
    two forms never meet; neither loses a byte.
    """
    if not path.isascii():
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            path = "b64:" + base64.urlsafe_b64encode(path.encode("utf-8", "surrogateescape")).decode("ascii")
    return f"{PREFIX}:dd:{name}:{path}"


def dedupe_pattern(name: str) -> str:
    return f"{PREFIX}:dd:{name}:*"


def submission(name: str, identity: str) -> str:
    return f"{PREFIX}:svc:dedupe:{name}:{identity}"


def submission_lock(identity: str) -> str:
    return f"{PREFIX}:svc:lock:{identity}"


def queue(name: str) -> str:
    """One Celery queue per gateway node: gateways do not share caches."""
    return f"{PREFIX}.{name}"


def gateway_of_queue(queue: str) -> str | None:
    """The gateway a Celery queue warms, or None for a queue that is not prewarm's."""
    prefix = f"{PREFIX}."
    return queue[len(prefix):] if queue.startswith(prefix) and len(queue) > len(prefix) else None


def task_id(job_id: str, index: int) -> str:
    return f"{PREFIX}-{job_id}-{index}"


# --- Frame events and live re-planning (issue 24; `prewarm.state.frames`) ---
#
#     prewarm:live:L:PART      PART in LIVE_PARTS, for live job L (the farm's job id as events name it):
#                              meta (hash: manifest, warm ids, counters), frames (hash: frame -> state),
#                              known (set: the job's frames), log (list: the last odd events, capped),
#                              covered (hash: path -> spans already sent to the gateway),
#                              ready (hash: frame -> was its data warm when it started),
#                              needs (hash: "W:frame" -> the last batch of warm W that frame needs),
#                              lock (held while the job is re-planned),
#                              traced (set: frames with records in the store, finished or so far)
#     prewarm:live:L:filing:F  a lock held while frame F's records are filed (so far, or finished)
#     prewarm:live:due         zset L -> when a re-plan was first asked for (coalesced)
#     prewarm:live:refused     hash: events refused before any job could be named (counters)

LIVE_PARTS = ("meta", "frames", "known", "log", "covered", "ready", "needs", "lock", "traced")

LIVE_DUE = f"{PREFIX}:live:due"


def live_filing(job: str, frame: int) -> str:
    return f"{PREFIX}:live:{job}:filing:{frame}"

LIVE_REFUSED = f"{PREFIX}:live:refused"


def live(job: str, part: str) -> str:
    if part not in LIVE_PARTS:
        raise ValueError(f"no live key part {part!r}")
    return f"{PREFIX}:live:{job}:{part}"
