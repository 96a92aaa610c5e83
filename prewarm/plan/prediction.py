"""What the predictor takes and gives (`plan/predict.py`): the files a manifest names
(`Candidate`), the spans frames will read (`Prediction`), the result with its findings
(`PredictResult`), and the IO it is handed (`Lookup`, `Structures`).

Compiled with the models (setup.py's `COMPILED`): they make predictions in their inner loops,
and the ordering (`plan/ordering.py`) reads them in its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prewarm.plan.ranges import Span
from prewarm.plan.records import FileInfo, Reason
from prewarm.plan.stats import PredictStats
from prewarm.plan.structure import Structure

Lookup = Callable[[str], FileInfo | None]
Structures = Callable[[str], Structure | None]
"""A file's structure (levels, tiles, tables) when a reader could read it, else None: the byte model."""


@dataclass(frozen=True, slots=True)
class Prediction:
    """`frames` will read `spans` of `path` (a normal span list)."""

    path: str
    frames: tuple[int, ...]
    spans: list[Span]
    reason: Reason
    tier: int = 0
    """Order within a frame's needs: 0 for headers and tables, a level's resolution for its tiles."""
    last: bool = False
    """After everything a frame is known to need: fallbacks, finest levels of never-traced textures."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """A file the manifest names (or a directory input holds): may be read, traces decide."""

    path: str
    frame: int | None = None
    """The job frame this file belongs to (a frame-pattern input), None for shared files."""
    whole: bool = False
    frames: tuple[int, ...] | None = None
    """A shared file read only by these frames, as a scene says (a value clip); None: every frame."""
    tile_set: int | None = None
    """Files of one tile pattern (`<UDIM>`, `<UVTILE>`) share a number: siblings."""


Deferred = Callable[[], Iterable[Prediction]]
"""One traced file's predictions, not yet made: pure work, its IO (size, structure) done."""


@dataclass
class PredictResult:
    predictions: list[Prediction] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)
    """(path, reason): files traces say frames will read, which do not exist."""
    stats: PredictStats = field(default_factory=PredictStats)
    changed: list[tuple[str, str]] = field(default_factory=list)
    """(path, reason): traced files that changed since their traces were made (re-published)."""
    deferred: list[tuple[str, Deferred]] = field(default_factory=list)
    """With `predict(defer=True)`: the shared and structured traced files, by path, whose
    predictions the ordering makes file by file, perhaps in other processes."""
