"""Fixtures live in tests/fixtures/, one plugin module per kind of real part they start.

Two things here hold for the whole suite. Markers come from what a test uses: one that
uses a fixture starting a real Redis, Celery worker or FUSE twin is `integration`, and a
property test (hypothesis) is `slow`, so `make test-fast` (`-m "not integration and not
slow"`) leaves out exactly those without each test having to say so. And a run stops at
the start on a compiled module older than its source (README, Development): the build
would run instead of the edit, so `make setup` must rebuild it first.
"""

from __future__ import annotations

import re
import sysconfig
from pathlib import Path

import pytest

pytest_plugins = [
    "tests.fixtures.data",
    "tests.fixtures.twin",
    "tests.fixtures.services",
    "tests.fixtures.studio",
    "tests.fixtures.service",
    "tests.fixtures.scenes",
]

ROOT = Path(__file__).resolve().parents[1]

# The fixtures that start a real service; a test using any of them, however indirectly
# (`r` -> `redis_url` -> `redis_server`), needs that service.
INTEGRATION_FIXTURES = frozenset({"redis_server", "persistent_redis", "celery_worker", "gateway_twin"})


def compiled_sources(root: Path = ROOT) -> list[Path]:
    """The modules setup.py compiles, read from its COMPILED list (the Makefile reads it too)."""
    return [root / m for m in re.findall(r'^ *"(prewarm/[\w/]+\.py)",$', (root / "setup.py").read_text(), re.M)]


def stale_builds(root: Path = ROOT) -> list[str]:
    """In-tree builds older than a source they are compiled from, or than setup.py (one
    compilation of all: an edit to any of them makes every build stale)."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    sources = [*compiled_sources(root), root / "setup.py"]
    newest = max(s.stat().st_mtime for s in sources)
    builds = [root / "prewarm" / f"native__mypyc{suffix}", *(s.with_suffix(suffix) for s in sources[:-1])]
    return [str(b.relative_to(root)) for b in builds if b.exists() and b.stat().st_mtime < newest]


def pytest_sessionstart(session: pytest.Session) -> None:
    stale = stale_builds()
    if stale:
        pytest.exit(f"{stale[0]} is older than its sources: `make setup` rebuilds it "
                    "(or `make native-clean` to run the plain sources)", returncode=2)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
        if getattr(getattr(item, "obj", None), "is_hypothesis_test", False):
            item.add_marker(pytest.mark.slow)
