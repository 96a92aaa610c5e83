"""Report routes of the warm service; the reports engineer owns their content.

Kept as its own router so the service can include it unconditionally while the
report routes are written separately.
"""

from fastapi import APIRouter

router = APIRouter()
