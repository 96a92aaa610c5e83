"""Deadline 10 Pre-Task job script: tells prewarm this task's frames started, and on which Worker.

Set as a job's PreTaskScript (the PrewarmEvents plug-in does it when `TaskScripts` is on).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import prewarm_live  # noqa: E402  (shipped beside this file)


def __main__(*args):
    prewarm_live.report_task(args[0], "start")
