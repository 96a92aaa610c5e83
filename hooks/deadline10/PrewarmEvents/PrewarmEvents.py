"""Deadline 10 event plugin: on job submission, ask the prewarm service to warm the job's inputs;
then tell it what becomes of the job (started, finished, requeued, failed, suspended, resumed,
deleted), so it re-plans the frames still to start and stops warming a job that has ended.

Install: copy this folder to <repository>/custom/events/PrewarmEvents, then in Deadline
Monitor (super user) Tools > Configure Events > PrewarmEvents set State and Server.

It runs inside Deadline's own Python, in the process that submitted the job, so it
imports only the standard library and `prewarm_hook.py` (a copy shipped in this
folder), and POSTs the job's info and plugin info with urllib rather than spawning
`prewarm submit`: no prewarm install on every submitting machine, no process start on
the submission path. The service does the parsing (frames, SceneFile, patterns).
Whatever happens, it logs and returns within `GiveUpSeconds`: the submission goes on.

Deadline has no per-task event: frames are reported by the Pre-/Post-Task job scripts
shipped here (`PrewarmPreTask.py`, `PrewarmPostTask.py`); with `TaskScripts` on, this
plug-in sets them on each submitted job that has none of its own.
"""

import os
import sys

from Deadline.Events import DeadlineEventListener
from Deadline.Scripting import RepositoryUtils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import prewarm_hook  # noqa: E402  (shipped beside this file)
import prewarm_live  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

JOB_EVENTS = {"OnJobStarted": "started", "OnJobFinished": "finished", "OnJobRequeued": "requeued",
              "OnJobFailed": "failed", "OnJobSuspended": "suspended", "OnJobResumed": "resumed",
              "OnJobDeleted": "deleted"}


def GetDeadlineEventListener():
    return PrewarmEvents()


def CleanupDeadlineEventListener(listener):
    listener.Cleanup()


class PrewarmEvents(DeadlineEventListener):
    def __init__(self):
        super().__init__()
        self.OnJobSubmittedCallback += self.OnJobSubmitted
        for callback, event in JOB_EVENTS.items():
            getattr(self, callback + "Callback").__iadd__(self._job_event(event))

    def Cleanup(self):
        del self.OnJobSubmittedCallback
        for callback in JOB_EVENTS:
            delattr(self, callback + "Callback")

    def _job_event(self, event):
        def handler(job):
            try:
                server = self.GetConfigEntryWithDefault("Server", "").strip()
                if not server or not self.GetBooleanConfigEntryWithDefault("Live", True):
                    return
                answer = prewarm_live.job_event(server, self.GetConfigEntryWithDefault("Token", "").strip() or None,
                                                job.JobId, event, self._give_up())
                if answer is not None:
                    self.LogInfo("PrewarmEvents: job %s %s: %s" % (job.JobId, event, answer.get("result")))
            except Exception as exc:  # never fail a farm operation over a warm
                self.LogWarning("PrewarmEvents: %s: %s" % (type(exc).__name__, exc))
        return handler

    def _give_up(self):
        return min(float(self.GetConfigEntryWithDefault("GiveUpSeconds", "1.5") or 1.5), prewarm_hook.GIVE_UP_S)

    def OnJobSubmitted(self, job):
        try:
            server = self.GetConfigEntryWithDefault("Server", "").strip()
            if not server:
                self.LogWarning("PrewarmEvents: no Server configured; not warming")
                return
            body = {"deadline": {"job_info": job_info_text(job), "plugin_info": plugin_info_text(job),
                                 "extra_inputs": self.extra_inputs(job)}}
            token = self.GetConfigEntryWithDefault("Token", "").strip() or None
            if self.GetBooleanConfigEntryWithDefault("Live", True):  # warmed, and live: its frames re-plan it
                answer = prewarm_live.post_json(server, "/live/jobs", {"job": job.JobId, "submission": body}, token,
                                                self._give_up())
                if self.GetBooleanConfigEntryWithDefault("TaskScripts", False):
                    self.set_task_scripts(job)
            else:
                answer = prewarm_hook.post(server, body, token, self._give_up())
            if answer is None:
                self.LogWarning("PrewarmEvents: no warm for job %s (see the log above)" % job.JobId)
            else:
                self.LogInfo("PrewarmEvents: job %s -> warm %s" % (job.JobId, ",".join(answer.get("ids", []))))
        except Exception as exc:  # never fail a submission over a warm
            self.LogWarning("PrewarmEvents: %s: %s" % (type(exc).__name__, exc))

    def set_task_scripts(self, job):
        """Report each task's frames: this folder's Pre-/Post-Task scripts, unless the job has its own."""
        changed = False
        for prop, name in (("JobPreTaskScript", "PrewarmPreTask.py"), ("JobPostTaskScript", "PrewarmPostTask.py")):
            if not getattr(job, prop, ""):
                setattr(job, prop, os.path.join(HERE, name))
                changed = True
        if changed:
            RepositoryUtils.SaveJob(job)

    def extra_inputs(self, job):
        """Auxiliary files (often the scene itself) and the configured extra input patterns."""
        out = []
        if self.GetBooleanConfigEntryWithDefault("AuxiliaryFiles", True):
            folder = RepositoryUtils.GetJobAuxiliaryPath(job)
            out.extend(os.path.join(folder, name) for name in job.JobAuxiliarySubmissionFileNames)
        extra = self.GetConfigEntryWithDefault("ExtraInputs", "")
        out.extend(p.strip() for p in extra.split(";") if p.strip())
        return out


def job_info_text(job):
    """The job info keys the service reads, as Deadline's job info file would hold them."""
    lines = ["Name=%s" % job.JobName, "Frames=%s" % job.JobFrames, "Plugin=%s" % job.JobPlugin,
             "Priority=%s" % job.JobPriority, "BatchName=%s" % job.JobBatchName]
    for key in job.GetJobExtraInfoKeys():
        lines.append("ExtraInfoKeyValue%d=%s=%s" % (len(lines), key, job.GetJobExtraInfoKeyValue(key)))
    return "\n".join(line.replace("\n", " ") for line in lines) + "\n"


def plugin_info_text(job):
    return "".join("%s=%s\n" % (key, job.GetJobPluginInfoKeyValue(key).replace("\n", " "))
                   for key in job.GetJobPluginInfoKeys())
