"""Deadline 10 event plugin: on job submission, ask the prewarm service to warm the job's inputs.

Install: copy this folder to <repository>/custom/events/PrewarmEvents, then in Deadline
Monitor (super user) Tools > Configure Events > PrewarmEvents set State and Server.

It runs inside Deadline's own Python, in the process that submitted the job, so it
imports only the standard library and `prewarm_hook.py` (a copy shipped in this
folder), and POSTs the job's info and plugin info with urllib rather than spawning
`prewarm submit`: no prewarm install on every submitting machine, no process start on
the submission path. The service does the parsing (frames, SceneFile, patterns).
Whatever happens, it logs and returns within `GiveUpSeconds`: the submission goes on.
"""

import os
import sys

from Deadline.Events import DeadlineEventListener
from Deadline.Scripting import RepositoryUtils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import prewarm_hook  # noqa: E402  (shipped beside this file)


def GetDeadlineEventListener():
    return PrewarmEvents()


def CleanupDeadlineEventListener(listener):
    listener.Cleanup()


class PrewarmEvents(DeadlineEventListener):
    def __init__(self):
        super().__init__()
        self.OnJobSubmittedCallback += self.OnJobSubmitted

    def Cleanup(self):
        del self.OnJobSubmittedCallback

    def OnJobSubmitted(self, job):
        try:
            server = self.GetConfigEntryWithDefault("Server", "").strip()
            if not server:
                self.LogWarning("PrewarmEvents: no Server configured; not warming")
                return
            body = {"deadline": {"job_info": job_info_text(job), "plugin_info": plugin_info_text(job),
                                 "extra_inputs": self.extra_inputs(job)}}
            give_up = float(self.GetConfigEntryWithDefault("GiveUpSeconds", "1.5") or 1.5)
            answer = prewarm_hook.post(server, body, self.GetConfigEntryWithDefault("Token", "").strip() or None,
                                       min(give_up, prewarm_hook.GIVE_UP_S))
            if answer is None:
                self.LogWarning("PrewarmEvents: no warm for job %s (see the log above)" % job.JobId)
            else:
                self.LogInfo("PrewarmEvents: job %s -> warm %s" % (job.JobId, ",".join(answer.get("ids", []))))
        except Exception as exc:  # never fail a submission over a warm
            self.LogWarning("PrewarmEvents: %s: %s" % (type(exc).__name__, exc))

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
