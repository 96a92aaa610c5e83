"""Deadline 10 Post-Task job script: tells prewarm this task's frames finished, with each frame's
trace when the job names where traces land (ExtraInfo `prewarm_trace`, see prewarm_live.py).

Set as a job's PostTaskScript (the PrewarmEvents plug-in does it when `TaskScripts` is on).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import prewarm_live  # noqa: E402  (shipped beside this file)


def __main__(*args):
    prewarm_live.report_task(args[0], "done")
