"""prewarm: plan which byte ranges a render job will read, and warm them through the caching gateway.

Four hot modules (the strace parser, the range algebra, the predictor and the plan's
ordering) are compiled by the package's build (setup.py, one mypyc compilation): an
installed package imports them as extensions. See the README's Development section.
"""

from __future__ import annotations

__version__ = "0.1.0"
