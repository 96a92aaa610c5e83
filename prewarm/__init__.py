"""prewarm: plan which byte ranges a render job will read, and warm them through the caching gateway.

The hot modules (the strace parser, the range algebra, the predictor, the plan's
ordering and the warm's batch cutting: setup.py's COMPILED) are compiled by the
package's build (one mypyc compilation): an installed package imports them as
extensions. See the README's Development section.
"""

from __future__ import annotations

__version__ = "0.1.0"
