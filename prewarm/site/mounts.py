"""Which mount a file is on, what kind of mount that is, and so how to read it.

Where the worker runs decides how a read reaches the gateway's cache:
- on a render-side client of the gateway's export (NFS without `fsc`, or FUSE), a
  buffered re-read is answered by this host's page cache and never reaches the
  gateway, so reads use `O_DIRECT` (knfsd serves every READ buffered, through its own
  cache, so a direct read here still fills it);
- on the gateway itself, reading its own `fsc` NFS client mount, `O_DIRECT` skips
  fscache (`nfs_file_direct_read` makes no fscache calls): the read crosses the WAN
  and caches nothing. Reads there are buffered, and the pages are dropped afterwards
  (`POSIX_FADV_DONTNEED`) only on kernels >= 6.4, where netfs keeps a page whose
  cache write is still running; older kernels may cancel that write.

`/proc/self/mountinfo` tells the two apart: the filesystem type (`nfs`, `nfs4`,
`fuse.*`) and the super options, where the gateway's mount shows `fsc`. The gateway
twin (FUSE) cannot carry NFS options, so it declares the options of the mount it
plays in its source field (`prewarm-twin:vers=3;rsize=1048576;fsc;...`); the parser
merges them into the mount's options, and every decision below reads options the
same way for a real mount and for the twin.

Parsing and deciding are pure (text in, values out); `read_mounts` and
`this_kernel` are the only functions that look at the machine.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

MOUNTINFO = "/proc/self/mountinfo"

TWIN_FSTYPE = "fuse.prewarm-twin"
TWIN_SOURCE = "prewarm-twin"
"""The twin mounts with this subtype, and its source is `TWIN_SOURCE` + `:` + its declared options."""

NFS_TYPES = frozenset({"nfs", "nfs4"})

MAX_MOUNTS = 100_000
"""Lines of mountinfo parsed at most: a container host has hundreds, this bounds a pathological one."""


class ReadMode(StrEnum):
    """How the warmer reads: chosen per mount (`auto`), or forced for every file."""

    AUTO = "auto"
    DIRECT = "direct"
    BUFFERED = "buffered"


@dataclass(frozen=True, slots=True)
class Mount:
    """One line of mountinfo, with per-mount and super options merged (super options win)."""

    mount_id: int
    device: str
    """`major:minor`, as `os.stat().st_dev` of a file on it gives them."""
    mountpoint: str
    fstype: str
    source: str
    options: Mapping[str, str] = field(default_factory=dict)
    """`{"rsize": "1048576", "fsc": "", ...}`: flags map to ""."""

    @property
    def twin(self) -> bool:
        return self.fstype == TWIN_FSTYPE

    @property
    def nfs(self) -> bool:
        """An NFS client mount, or the twin standing for one."""
        return self.fstype in NFS_TYPES or self.twin

    @property
    def fsc(self) -> bool:
        """The gateway's own mount: NFS with fscache on."""
        return self.nfs and "fsc" in self.options

    def agent_url(self) -> str | None:
        """Where the knfsd agent of the server behind this mount answers.

        NFS: the agent listens on port 80 of the address the client is connected to
        (`addr=`), so behind a load balancer it is the proxy this client is pinned to.
        A mount may declare its agent (`agent=URL`, as the twin does): that wins.
        """
        if self.options.get("agent"):
            return self.options["agent"]
        if self.twin:
            return None
        if self.fstype in NFS_TYPES and self.options.get("addr"):
            addr = self.options["addr"]
            return f"http://[{addr}]" if ":" in addr else f"http://{addr}"
        return None


_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape(text: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), text)


def parse_options(text: str, sep: str = ",") -> dict[str, str]:
    out: dict[str, str] = {}
    for item in text.split(sep):
        if item:
            key, _, value = item.partition("=")
            out[key] = value
    return out


def twin_source(options: Mapping[str, str]) -> str:
    """The source field a twin mounts with, declaring the options of the mount it plays.

    `;` separates them: a comma would split libfuse's own `-o` option list.
    """
    return TWIN_SOURCE + ":" + ";".join(k if v == "" else f"{k}={v}" for k, v in options.items())


def _line(line: str) -> Mount | None:
    left, sep, right = line.partition(" - ")
    if not sep:
        return None
    head, tail = left.split(), right.split()
    if len(head) < 6 or len(tail) < 2:
        return None
    try:
        mount_id = int(head[0])
    except ValueError:
        return None
    fstype, source = _unescape(tail[0]), _unescape(tail[1])
    options = parse_options(head[5])
    options.update(parse_options(tail[2]) if len(tail) > 2 else {})
    if fstype == TWIN_FSTYPE and source.startswith(TWIN_SOURCE + ":"):
        options.update(parse_options(source[len(TWIN_SOURCE) + 1:], sep=";"))
    return Mount(mount_id, head[2], _unescape(head[4]), fstype, source, options)


def parse_mountinfo(text: str) -> tuple[Mount, ...]:
    """Every well-formed line of a mountinfo file, in its order (later mounts stack on earlier ones)."""
    out = []
    for i, line in enumerate(text.splitlines()):
        if i >= MAX_MOUNTS:
            break
        m = _line(line)
        if m is not None:
            out.append(m)
    return tuple(out)


def by_device(mounts: Sequence[Mount], device: str) -> Mount | None:
    """The mount of a file whose `st_dev` is `major:minor`; the top one where several share it."""
    for m in reversed(mounts):
        if m.device == device:
            return m
    return None


def by_path(mounts: Sequence[Mount], path: str) -> Mount | None:
    """The mount an absolute, already resolved path lies on: the longest, topmost mountpoint over it."""
    path = posixpath.normpath(path)
    best: Mount | None = None
    for m in mounts:
        mp = m.mountpoint
        if (path == mp or path.startswith(mp.rstrip("/") + "/")) and (
                best is None or len(mp) >= len(best.mountpoint)):
            best = m
    return best


@dataclass(frozen=True, slots=True, order=True)
class Kernel:
    major: int
    minor: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    @property
    def drops_safely(self) -> bool:
        """`POSIX_FADV_DONTNEED` right after a buffered read leaves the fscache write alone (>= 6.4)."""
        return self >= Kernel(6, 4)

    def fscache_caveats(self) -> tuple[str, ...]:
        """What this kernel's NFS client and fscache are known to get wrong for a gateway."""
        out = []
        if self < Kernel(5, 11):
            out.append("knfsd cannot re-export NFS before 5.11")
        if self < Kernel(5, 17):
            out.append("before 5.17 a page dropped right after a read may cancel its cache write")
        if Kernel(5, 17) <= self < Kernel(6, 4):
            out.append("5.17-6.3 read fscache slowly (about 40 MB/s a thread); knfsd-cache-utils pins 5.13 or >= 6.4")
        return tuple(out)


def parse_kernel(release: str) -> Kernel | None:
    """`6.1.0-18-amd64` -> 6.1; None if the release string does not start with a version."""
    m = re.match(r"(\d+)\.(\d+)", release)
    return Kernel(int(m.group(1)), int(m.group(2))) if m else None


@dataclass(frozen=True, slots=True)
class ReadChoice:
    """How the files of one mount are read, and why (shown by `prewarm doctor`)."""

    direct: bool
    """Open with O_DIRECT (and fall back to buffered where the file system refuses it)."""
    drop_pages: bool
    """After each buffered read, drop the pages just read (`POSIX_FADV_DONTNEED`)."""
    why: str

    @property
    def mode(self) -> ReadMode:
        return ReadMode.DIRECT if self.direct else ReadMode.BUFFERED


def choose_read(mode: ReadMode, mount: Mount | None, kernel: Kernel | None) -> ReadChoice:
    """The read that reaches (and fills) the gateway's cache from a file on `mount`."""
    fsc = mount is not None and mount.fsc
    drop = not fsc or (kernel is not None and kernel.drops_safely)
    if mode is ReadMode.DIRECT:
        why = ("forced: O_DIRECT on the gateway's fsc mount skips fscache, this warm caches nothing"
               if fsc else "forced O_DIRECT")
        return ReadChoice(True, drop, why)
    if mode is ReadMode.BUFFERED:
        return ReadChoice(False, drop, "forced buffered" + ("" if drop else _KEEP_PAGES))
    if fsc:
        return ReadChoice(False, drop, "the gateway's own fsc mount: buffered reads fill fscache"
                          + ("" if drop else _KEEP_PAGES))
    if mount is not None and mount.nfs:
        return ReadChoice(True, True, "an NFS client without fsc: O_DIRECT, so reads reach the gateway, "
                                      "not this host's page cache")
    what = "no mount found" if mount is None else f"{mount.fstype}, not an NFS mount"
    return ReadChoice(True, True, f"{what}: O_DIRECT (buffered, pages dropped, where it is refused)")


_KEEP_PAGES = "; pages kept (dropping them on kernels < 6.4 may cancel the cache write)"


@dataclass(frozen=True, slots=True)
class OptionCheck:
    """One mount option against what knfsd-cache-utils sets on a proxy's origin mount."""

    option: str
    want: str
    have: str | None
    ok: bool
    why: str


KNFSD_OPTIONS: tuple[tuple[str, str, str], ...] = (
    ("fsc", "", "no fscache: nothing this machine reads is kept on the cache disk"),
    ("rsize", "1048576", "the largest READ; smaller means more round trips per MiB"),
    ("nocto", "", "without it every open revalidates attributes across the WAN"),
    ("acregmin", "600", "attributes expire sooner: more GETATTRs cross the WAN"),
    ("acregmax", "600", "attributes expire sooner: more GETATTRs cross the WAN"),
    ("acdirmin", "600", "directories expire sooner: more LOOKUPs cross the WAN"),
    ("acdirmax", "600", "directories expire sooner: more LOOKUPs cross the WAN"),
    ("nconnect", "16", "fewer TCP connections to the origin: less parallelism over the WAN"),
)
"""knfsd-cache-utils' origin mount (`...,nocto,nconnect=16,acregmin=acregmax=acdirmin=acdirmax=600,
rsize=wsize=1048576,fsc`). Changing rsize or the attribute timeouts on a live gateway changes
fscache's per-mount key and orphans the whole cache: fix them before the cache fills."""


def compare_options(options: Mapping[str, str]) -> list[OptionCheck]:
    """Each knfsd-cache-utils origin-mount option: set as it sets it, or not (and what that costs)."""
    out = []
    for name, want, cost in KNFSD_OPTIONS:
        have = options.get(name)
        ok = have is not None and (want == "" or have == want)
        out.append(OptionCheck(name, want, have, ok, "" if ok else cost))
    return out


def read_mounts(path: str = MOUNTINFO) -> tuple[Mount, ...]:
    with open(path, encoding="utf-8", errors="surrogateescape") as fh:
        return parse_mountinfo(fh.read())


def device_of(st_dev: int) -> str:
    return f"{os.major(st_dev)}:{os.minor(st_dev)}"


def mount_of(path: str, mounts: Iterable[Mount] | None = None) -> Mount | None:
    """The mount a local path is on (by its device; by its resolved path if no line has that device)."""
    table = tuple(read_mounts() if mounts is None else mounts)
    try:
        found = by_device(table, device_of(os.stat(path).st_dev))
    except OSError:
        found = None
    return found or by_path(table, os.path.realpath(path))


def this_kernel() -> Kernel | None:
    return parse_kernel(os.uname().release)
