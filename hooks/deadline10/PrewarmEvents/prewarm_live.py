"""Frame and job events from Deadline 10 to the prewarm service (standard library only, Python 3.7+).

Used by the PrewarmEvents event plugin (job events) and by the Pre-/Post-Task job scripts
shipped beside it (`PrewarmPreTask.py`, `PrewarmPostTask.py`: each task's frames started,
then finished, on which Worker). Like `prewarm_hook.py`, every call gives up after
`give_up_s` and never raises: a render must never wait on, or fail over, a warm.

The task scripts find the service in the PrewarmEvents plug-in's own settings (Server,
Token), else in $PREWARM_SERVER and $PREWARM_SERVICE_TOKEN. A frame's trace is sent with
its `done` when the job names where traces land (ExtraInfo `prewarm_trace=PATH` with
`####` or `{frame}` for the frame number): the path a render run under
`prewarm record --keep-raw PATH` wrote, or a trace drop, as a studio path: the service
reads it (under its roots); one it cannot read is a finding of the job, which warms on.
"""

import logging
import os
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request

import prewarm_hook  # shipped beside this file: its one way of posting to the service

log = logging.getLogger("prewarm-hook")

GIVE_UP_S = prewarm_hook.GIVE_UP_S
MAX_FRAMES_PER_REQUEST = 1000


def post_json(server, path, body, token=None, give_up_s=GIVE_UP_S):
    """POST `body` to `server` + /api/v1 + `path` (`prewarm_hook.post_json`): the answer, or None, logged."""
    return prewarm_hook.post_json(server, path, body, token, give_up_s, goes_on="the farm goes on")


def job_event(server, token, job_id, event, give_up_s=GIVE_UP_S):
    """A job-level event: started, finished, requeued, failed, suspended, resumed, deleted."""
    path = "/live/jobs/%s/events" % urllib.parse.quote(job_id, safe="")
    return post_json(server, path, {"event": event}, token, give_up_s)


def frame_events(server, token, job_id, frames, event, node, traces=None, give_up_s=GIVE_UP_S):
    """`event` (start, done) for each of `frames`; `traces` maps a frame to its trace path."""
    traces = traces or {}
    events = []
    for f in frames:
        e = {"job": job_id, "frame": int(f), "event": event, "node": node, "at": time.time()}
        if f in traces:
            e["trace"] = traces[f]
        events.append(e)
    answers = []
    for i in range(0, len(events), MAX_FRAMES_PER_REQUEST):
        answers.append(post_json(server, "/frames", {"events": events[i:i + MAX_FRAMES_PER_REQUEST]}, token,
                                 give_up_s))
    return answers


def trace_path(pattern, frame):
    """The trace of `frame` under a job's `prewarm_trace` pattern (#### padded, or {frame})."""
    if not pattern:
        return None
    path = pattern.replace("{frame}", str(frame))
    return re.sub(r"#+", lambda m: "%0*d" % (len(m.group(0)), frame), path)


# Pre-/Post-Task job scripts


def report_task(deadline_plugin, event):
    """What the task scripts do: the current task's frames `start` (Pre-Task) or `done` (Post-Task)."""
    try:
        server, token = _service()
        if not server:
            deadline_plugin.LogWarning("prewarm: no Server configured for PrewarmEvents; frames not reported")
            return
        job = deadline_plugin.GetJob()
        frames = task_frames(deadline_plugin)
        node = _worker_name(deadline_plugin)
        traces = {}
        if event == "done":
            pattern = job.GetJobExtraInfoKeyValue("prewarm_trace") if "prewarm_trace" in job.GetJobExtraInfoKeys() \
                else ""
            traces = {f: p for f, p in ((f, trace_path(pattern, f)) for f in frames) if p}
        frame_events(server, token, job.JobId, frames, event, node, traces)
        deadline_plugin.LogInfo("prewarm: job %s frames %s %s on %s" % (job.JobId, _span(frames), event, node))
    except Exception as exc:  # never fail a task over a warm
        deadline_plugin.LogWarning("prewarm: %s: %s" % (type(exc).__name__, exc))


def task_frames(deadline_plugin):
    task = deadline_plugin.GetCurrentTask() if hasattr(deadline_plugin, "GetCurrentTask") else None
    frames = list(getattr(task, "TaskFrameList", None) or [])
    if not frames:
        frames = list(range(int(deadline_plugin.GetStartFrame()), int(deadline_plugin.GetEndFrame()) + 1))
    return [int(f) for f in frames]


def _worker_name(deadline_plugin):
    for name in ("GetSlaveName", "GetWorkerName"):
        if hasattr(deadline_plugin, name):
            return str(getattr(deadline_plugin, name)())
    return socket.gethostname()


def _service():
    server = os.environ.get("PREWARM_SERVER", "")
    token = os.environ.get("PREWARM_SERVICE_TOKEN", "")
    try:
        from Deadline.Scripting import RepositoryUtils

        config = RepositoryUtils.GetEventPluginConfig("PrewarmEvents")
        server = config.GetConfigEntryWithDefault("Server", "").strip() or server
        token = config.GetConfigEntryWithDefault("Token", "").strip() or token
    except Exception:  # outside Deadline, or an older repository: the environment's
        pass
    return server, token or None


def _span(frames):
    return "%s-%s" % (frames[0], frames[-1]) if len(frames) > 1 else ",".join(str(f) for f in frames)
