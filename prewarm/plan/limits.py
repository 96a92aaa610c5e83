"""Every limit on the work one input can cause, in one place. Pure: numbers, and the checks that use them.

A manifest, a plan or a request is a few kilobytes; what it asks for must not cost
minutes of planning, gigabytes of memory or a week of Redis. Each limit below says
why it is where it is; the README's "Limits" table repeats them. Beyond a limit the
input is refused with a one-line error naming the field (exit 2, HTTP 4xx), before
any work is done.
"""

from __future__ import annotations

KiB = 1 << 10
MiB = 1 << 20
TiB = 1 << 40

MIN_GRANULE = 4 * KiB
"""The page: the gateway's NFS client and cachefiles fetch and keep whole 4 KiB pages, so a
smaller granule only multiplies reads (a 1-byte granule took 6.3 s for a 3 MB file)."""

MAX_GRANULE = 64 * MiB
"""64 READs at the gateway's 1 MiB `rsize`: a wider granule around a tile read warms mostly bytes
no frame reads, and beyond it the cut of ranges into granules stops meaning anything."""

MAX_FRAMES = 100_000
"""Frames in one job: more than an hour of film at 24 fps, longer than any shot renders as one
job. Planning cost grows with frames x per-frame inputs; 100,000 frames of a per-frame pattern
plan in seconds (bench/limits.py), a million took 21 s and an 80 MB answer."""

MAX_FRAME_NUMBER = 10**9
"""|frame| at most: frame numbers are 4-7 digits in practice; bigger ones are typos that would
not survive a plan's JSON validation (and `%09d` padding) on the other side."""

MAX_GATEWAYS = 32
"""Gateway nodes one job warms: each is a whole warm of the plan over the same WAN link (its
own cache), so N gateways pull N times the bytes. knfsd-cache-utils clusters run a few to a
few dozen proxies; 5,000 in one manifest was 5,000 warms."""

MAX_GATEWAY_NAME = 64
"""Characters in a gateway name (letters, digits, `.`, `_`, `-`): it becomes a Celery queue
and part of Redis keys."""

MAX_RANGES = 2_000_000
"""Ranges in one plan (and in its `dropped`): a whole 10,000-frame sequence of 20,000 inputs
read a tile at a time plans 1.6 million (bench/scale.py --frames 10000), a 100,000-frame job
with ten per-frame files 1 million; the sample jobs plan tens. Held as a columnar table
(about 40 bytes a range), so the largest plan costs tens of MB, not the 4.7 GB that 10
million range objects took. The planner refuses a job whose plan would hold more, so it
never writes a plan the warm side would refuse."""

MAX_FILES = 200_000
"""Files one plan names (its `files`, the files its inputs resolve to, missing ones counted too, and
the inputs a manifest lists): a folder input of a whole project is refused rather than walked, and
a manifest of a million missing inputs is refused rather than stat-ed (69 s, 1.24 GB). Every file
costs a stat at plan time and a LOOKUP, GETATTR and open through the gateway at warm time."""

MAX_YAML_NODES = 100_000
"""Values one YAML document (a manifest, a settings file, a job template) may hold: 100,000 inputs
written short, 20,000 in the long form. PyYAML keeps about a kilobyte per value and scans about
4 µs a byte, so a 13 MB manifest of 354,000 inputs took 54 s and 478 MB; composing stops here
(about 15 s and 150 MB at most). With the request body limit (`max_request_bytes`, which also
bounds a manifest file read by the CLI) no document costs more."""

MAX_METADATA = 2 * MAX_FILES
"""Metadata operations of one plan: a stat of each file and a listing of each folder."""

MAX_PLAN_BYTES = 16 * TiB
"""Bytes one plan may ask to warm: more than any gateway cache holds (knfsd-cache-utils'
largest local SSD cache is 9 TB), so a bigger plan would evict what it warmed."""

MAX_TRACE_FILES = 100_000
"""Trace files found below one `--traces` folder (one per traced frame)."""

MAX_TRACE_LINES = 20_000_000
"""Lines of one trace file (blank ones too): a frame's strace of 20 million calls is about 2 GB of
text, more than any render we traced (tens of thousands of reads a frame); a hostile file of 50
million blank lines cost 78 s to plan. Past it the trace is refused, not cut: a half-read frame
would plan as if its other reads never happened."""

MAX_TRACE_BYTES = 4 << 30
"""Bytes of one trace file after decompression (4 GiB, the 20 million lines above at 200 bytes): a
48 KB gzip can hold gigabytes of blank lines or NULs."""

MAX_TRACE_PATHS = 250_000
"""Distinct paths the traces of one import name (summed over files; each planning part counts its own):
each is held, with its descriptor, while the traces are read and aggregated (about 600 bytes a path:
a million cost 615 MB), and a JSONL trace of 3 million paths ended in a MemoryError. A render
reads tens of thousands of files; a plan may name 200,000."""

MAX_TRACE_LINE = 1 * MiB
"""Longest trace line read as one: strace truncates strings at 32 bytes by default; a longer
line is binary garbage, cut and counted as unreadable rather than held in memory whole."""

MAX_IN_FLIGHT = 1024
"""Reads in flight per worker (a thread each): 16 fill a 50 MB/s link at 30 ms."""

MAX_PRIORITY = 10**6
"""|priority| at most: priorities only order jobs; a 30-digit one is a typo."""

MAX_NESTING = 64
"""Depth of YAML or JSON nesting any prewarm input may have (a manifest needs 4, an OpenJD
template about 10): deeper documents are refused instead of overflowing the parser's stack."""

FOLD_MISSING = 10
"""An input with more missing files than this (a per-frame pattern over a million frames, an
empty UDIM folder) is reported as one finding with a count and the frames, not one per file."""

MAX_FINDINGS = 10_000
"""Findings one plan lists after folding: beyond it the rest are counted in one last entry."""


def granule_problem(value: int) -> str | None:
    """Why `value` is no granule, or None."""
    if not MIN_GRANULE <= value <= MAX_GRANULE:
        return f"must be between {MIN_GRANULE // KiB} KiB and {MAX_GRANULE // MiB} MiB, got {value}"
    return None


def gateway_problem(name: str) -> str | None:
    """Why `name` is no gateway name, or None."""
    if not name or len(name) > MAX_GATEWAY_NAME or not all(c.isascii() and (c.isalnum() or c in "._-")
                                                            for c in name):
        return (f"{name[:MAX_GATEWAY_NAME]!r} is not a gateway name: up to {MAX_GATEWAY_NAME} letters, digits, "
                "'.', '_' or '-'")
    return None
