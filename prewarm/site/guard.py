"""The one path guard: which studio paths may be opened or listed on this machine, and where they are.

A job names studio paths (`/studio/proj/...`). Only the site's settings say where they
live here (the local side of the path map) and which of them may be touched (the
roots). A check on the text of a path is not enough: a file symlink inside a root may
point at `/etc/shadow`, and a folder may hold a link to `/etc`. So every path prewarm
opens, stats or lists goes through `Guard`:

- It is resolved one component at a time, below the root that holds it, symlinks
  included. A symlink's target is a path on the filer: an absolute target is a studio
  path (or an alias of one) and is mapped with the site's path map like any other
  path; a relative target is joined to its folder. At most `MAX_LINKS` links are
  followed, so a loop is refused rather than walked.
- The resolved studio path must lie inside the roots. Its local path then holds no
  symlink below the root's local folder.
- Files are opened one component at a time from the root's folder (`openat` with
  `O_NOFOLLOW`), so the kernel never follows a link below the root: a component swapped
  for a link between the check and the open is refused before anything beyond it is
  opened. The kernel's own name for the opened descriptor (`/proc/self/fd/N`) must then
  be that symlink-free local path, a second check.
- A warm's files (`open_file`) are looked up in a descriptor of their folder that the
  guard keeps (`KEEP_FOLDERS`), opened that way once and checked by its kernel name
  before each use, so a folder's path is not walked again for every file; the file is
  taken as an `O_PATH` descriptor first (which opens nothing), checked by kernel name and
  mode, and only then that inode opened. A kept folder that moved, went or became a link
  is forgotten and the path resolved from the root again.

Refusals are `Refused` (an `OSError`, so the warm loop's error handling sees it), whose
message names the studio path and what is wrong, never a local path of this machine.
Symlinks that stay inside the roots work as before: studios rely on `latest` links.
FIFOs, devices and sockets are never opened (`NotAFile`): opening a FIFO blocks until
a writer comes, a device may act on open, and reading either never ends.

The same class guards the project's own folders (a trace store, a spool, a traces
folder named on the command line): `Guard.local(folder)` is rooted at that folder,
so a link in it that leads out of it is refused like a link out of a studio root.

The local folder of each root is trusted as configured (it may itself be a link, such
as a mount point); everything below it is not.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat as statmod
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field, replace

from prewarm.plan.pathmap import PathMap, Prefix

MAX_LINKS = 40
"""Symlinks followed while resolving one path, as Linux's own limit: more is a loop."""

KEEP_FOLDERS = 256
"""Folder descriptors a guard keeps (`Guard.open_file`), the least recently used closed first beyond it.
A job's files lie in a few folders; an O_PATH descriptor costs the gateway nothing while it is kept."""

CHANGED = "changed while being opened (a symlink swapped in?)"


NO_ROOTS = ("this machine has no allowed studio roots: set `roots` or `path_map` in its settings file "
            "(PREWARM_CONFIG or /etc/prewarm/config.yaml)")


class NotAFile(OSError):
    """A FIFO, device or socket where a file or a folder was expected: not opened."""

    WHY = "not a regular file or folder (a FIFO, device or socket): not opened"

    def __init__(self, studio: str) -> None:
        super().__init__(errno.EINVAL, self.WHY)
        self.studio = studio
        self.why = self.WHY

    def __str__(self) -> str:
        return f"{self.studio}: {self.why}"


class Refused(OSError):
    """A path the site does not allow: outside the roots, or led outside them by a symlink."""

    def __init__(self, studio: str, why: str) -> None:
        super().__init__(errno.EACCES, why)
        self.studio = studio
        self.why = why

    def __str__(self) -> str:
        return f"{self.studio}: {self.why}"


@dataclass(frozen=True, slots=True)
class Resolved:
    """Where a studio path really is: its symlink-free studio path and the local path of that."""

    studio: str
    local: str
    mode: int = 0
    """`st_mode` of the local path when it was resolved (0: a root, not looked at)."""
    stat: os.stat_result | None = field(default=None, compare=False)
    """What the file system said of it: its `lstat` when resolved, its descriptor's `fstat` once
    `open_resolved` opened it (so a reader asks again for neither: on a gateway mount each is a request)."""


def is_clean(path: str) -> bool:
    """Absolute, normalised, no `..` and no NUL: the only shape of path prewarm accepts."""
    return (path.startswith("/") and "\0" not in path and posixpath.normpath(path) == path
            and ".." not in path.split("/"))


def inside(path: str, roots: tuple[str, ...]) -> bool:
    """Whether the text of a studio path lies under one of `roots` (whole components).

    Only a first filter (a plan naming `/etc/passwd` is refused before anything is
    opened); what may really be touched is decided by `Guard.resolve`.
    """
    path = path.rstrip("/") or "/"  # a directory may be written with a trailing slash
    return is_clean(path) and _root_of(path, roots) is not None


def _root_of(path: str, roots: tuple[str, ...]) -> str | None:
    best = None
    for r in roots:
        if (r == "/" or path == r or path.startswith(r + "/")) and (best is None or len(r) > len(best)):
            best = r
    return best


class Guard:
    """Resolves, checks and opens studio paths for this machine's settings.

    Folder resolutions are cached for the guard's life (one plan, one batch): a job
    touches thousands of files in a few folders, and on a gateway mount every
    uncached LOOKUP is a WAN round trip. Safe to share between threads.
    """

    def __init__(self, roots: tuple[str, ...], path_map: PathMap) -> None:
        self.roots = tuple(r.rstrip("/") or "/" for r in roots)
        self.path_map = path_map
        self._root_local: dict[str, str] = {}
        self._dirs: dict[str, Resolved] = {}
        self._lock = threading.Lock()
        self._folders: OrderedDict[str, int] = OrderedDict()
        """A folder's symlink-free local path -> an O_PATH descriptor on it, opened from its root one
        component at a time and checked (`open_file`); closed when the guard is collected."""
        self._closer = weakref.finalize(self, _close_all, self._folders)

    @classmethod
    def local(cls, folder: str) -> Guard:
        """A guard whose one root is a folder of this machine, named by its own path.

        For the project's own folders: what lies below `folder` may be touched, and a
        link leading out of it is refused. A link target written through the folder's
        real path (the folder reached through a link of its own) is the same place.
        """
        root = posixpath.normpath(os.path.abspath(folder))
        real = os.path.realpath(root)
        aliases = (real,) if real != root else ()
        return cls((root,), PathMap((Prefix(root, aliases, root),)))

    def __reduce__(self) -> tuple[type[Guard], tuple[tuple[str, ...], PathMap]]:
        """Travel to worker processes as its settings; caches and the lock are rebuilt there."""
        return (type(self), (self.roots, self.path_map))

    def allows(self, studio: str) -> bool:
        """The text check alone (see `inside`)."""
        return inside(studio, self.roots)

    def refusal(self, studio: str) -> str | None:
        """Why the text of `studio` alone is refused, or None: the check made before any IO."""
        if not self.roots:
            return NO_ROOTS
        return None if inside(studio, self.roots) else "outside the allowed studio roots"

    def resolve(self, studio: str) -> Resolved:
        """The symlink-free location of `studio`; `Refused` or the file system's OSError."""
        path = studio.rstrip("/") or "/"
        if not self.roots:
            raise Refused(studio, NO_ROOTS)
        if not is_clean(path):
            raise Refused(studio, "not a clean absolute path")
        links = 0
        while True:
            root = _root_of(path, self.roots)
            if root is None:
                why = "outside the allowed roots" if links == 0 else "a symlink leads outside the allowed roots"
                raise Refused(studio, why)
            target = self._walk(root, path)
            if isinstance(target, Resolved):
                return target
            links += 1
            if links > MAX_LINKS:
                raise Refused(studio, f"more than {MAX_LINKS} symlinks: a loop?")
            path = target

    def _walk(self, root: str, path: str) -> Resolved | str:
        """Resolved, or the studio path to start again from when a component is a symlink.

        Starts at the deepest folder on the way already resolved (or the root) and walks
        down one component at a time: a loop, not recursion, so a path of 2,000
        components costs 2,000 lstat calls, not a RecursionError.
        """
        if path == root:
            return Resolved(root, self._local_root(root))
        names: list[str] = []
        folder = path
        while True:
            folder, _, name = folder.rpartition("/")
            folder = folder or "/"
            names.append(name)
            base = Resolved(root, self._local_root(root)) if folder == root else self._dirs.get(folder)
            if base is not None:
                break
        names.reverse()
        for i, name in enumerate(names):
            local = posixpath.join(base.local, name)
            st = os.lstat(local)
            if statmod.S_ISLNK(st.st_mode):
                return posixpath.join(self._follow(base.studio, local), *names[i + 1:])
            here = Resolved(posixpath.join(base.studio, name), local, st.st_mode, st)
            if statmod.S_ISDIR(st.st_mode):
                with self._lock:
                    self._dirs[here.studio] = here
            base = here
        return base

    def _follow(self, folder: str, link: str) -> str:
        """The studio path a symlink names: absolute targets are filer paths, mapped like any path."""
        target = os.readlink(link)
        if target.startswith("/"):
            return posixpath.normpath(self.path_map.to_studio(target))
        return posixpath.normpath(posixpath.join(folder, target))

    def _local_root(self, root: str) -> str:
        local = self._root_local.get(root)
        if local is None:
            local = self._root_local[root] = os.path.realpath(self.path_map.to_local(root))
        return local

    def folder(self, studio: str) -> Resolved:
        """The resolved folder that holds `studio`, with its attributes (a root's asked for once)."""
        parent = studio.rstrip("/").rpartition("/")[0] or "/"
        with self._lock:
            where = self._dirs.get(parent)
        if where is not None and where.stat is not None:
            return where  # resolved before: not walked again (each component a LOOKUP at the gateway)
        where = self.resolve(parent)
        if where.stat is None:
            with self._lock:
                known = self._dirs.get(where.studio)
            if known is None or known.stat is None:
                known = replace(where, stat=os.stat(where.local))
                with self._lock:
                    self._dirs[where.studio] = known
            where = known
        return where

    def open_file(self, studio: str, flags: int = os.O_RDONLY) -> tuple[int, Resolved]:
        """`open`, for the files a warm reads: the same checks, and on a gateway only the file's own LOOKUP,
        OPEN and GETATTR.

        The file's name is looked up in a descriptor of its folder that the guard keeps: that folder
        was resolved inside the roots and opened from its root one component at a time once (O_PATH,
        never following a link), so its path is not walked again for every file (each component a
        LOOKUP at the gateway). The kernel's name for the kept folder must still be its symlink-free
        local path (a folder moved, removed or swapped for a link since gives another name). The file
        is then taken as an `O_PATH` descriptor (`openat`, never following a link), which opens
        nothing: its kernel name must be the folder's path joined with its name, and its `fstat` a
        regular file or folder; only then is that very inode opened, through `/proc/self/fd`, so a
        FIFO or device is never opened and a name swapped after the check changes nothing. A file that
        is a symlink, or a kept folder that changed, takes the full resolution of `open` from the
        root (which follows links that stay inside the roots and refuses the others).
        """
        parent, _, name = studio.rstrip("/").rpartition("/")
        if studio.rstrip("/") in self.roots or not is_clean(studio.rstrip("/") or "/"):
            return self.open(studio, flags)
        folder = self.folder(studio)
        if folder.studio != (parent or "/"):
            return self.open(studio, flags)  # the folder is reached through a link: named as resolved there
        local = posixpath.join(folder.local, name)
        dirfd = self._folder_fd(studio, folder)
        try:
            if os.readlink(f"/proc/self/fd/{dirfd}") != folder.local:
                self._forget(folder)  # the kept folder was removed or moved: decide from the root again
                return self.open(studio, flags)
            at = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirfd)
        finally:
            os.close(dirfd)
        try:
            if os.readlink(f"/proc/self/fd/{at}") != local:
                self._forget(folder)  # moved or swapped since it was checked: decide from the root again
                return self.open(studio, flags)
            st = os.fstat(at)
            if statmod.S_ISLNK(st.st_mode):  # a link: followed from the root, inside the roots only
                return self.open(studio, flags)
            if not (statmod.S_ISREG(st.st_mode) or statmod.S_ISDIR(st.st_mode)):
                raise NotAFile(studio)
            fd = os.open(f"/proc/self/fd/{at}", (flags & ~os.O_NONBLOCK) | os.O_NOCTTY | os.O_CLOEXEC)
        finally:
            os.close(at)
        return fd, Resolved(posixpath.join(folder.studio, name), local, st.st_mode, st)

    def _folder_fd(self, studio: str, folder: Resolved) -> int:
        """A descriptor of `folder` (a duplicate of the kept one: the caller closes it, so evicting the
        kept one never closes a descriptor another thread is opening a file in)."""
        with self._lock:
            kept = self._folders.get(folder.local)
            if kept is not None:
                self._folders.move_to_end(folder.local)
                return os.dup(kept)
        fd = self._open_beneath(studio, folder, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != folder.local:
                raise Refused(studio, CHANGED)
            mine = os.dup(fd)
        except BaseException:
            os.close(fd)
            raise
        with self._lock:
            old = self._folders.pop(folder.local, None)
            self._folders[folder.local] = fd
            while len(self._folders) > KEEP_FOLDERS:
                os.close(self._folders.popitem(last=False)[1])
        if old is not None:
            os.close(old)
        return mine

    def _forget(self, folder: Resolved) -> None:
        """Drop what the guard knows of `folder` (its descriptor and the resolutions below it): it changed."""
        with self._lock:
            fd = self._folders.pop(folder.local, None)
            for known in [k for k in self._dirs if k == folder.studio or k.startswith(folder.studio + "/")]:
                del self._dirs[known]
        if fd is not None:
            os.close(fd)

    def _check(self, studio: str, fd: int, local: str, flags: int) -> os.stat_result:
        """The checks after an open: the kernel's name for `fd` is `local`, it is a file or a folder; its
        `fstat`. The non-blocking flag is cleared once it is known to be one, unless asked for."""
        real = os.readlink(f"/proc/self/fd/{fd}")
        st = os.fstat(fd)
        if real != local:
            raise Refused(studio, CHANGED)
        if not (statmod.S_ISREG(st.st_mode) or statmod.S_ISDIR(st.st_mode)):
            raise NotAFile(studio)
        if not flags & os.O_NONBLOCK:
            os.set_blocking(fd, True)
        return st

    def open(self, studio: str, flags: int = os.O_RDONLY) -> tuple[int, Resolved]:
        """A descriptor on the resolved file or folder, checked after the open; the caller closes it."""
        return self.open_resolved(studio, self.resolve(studio), flags)

    def open_resolved(self, studio: str, where: Resolved, flags: int = os.O_RDONLY) -> tuple[int, Resolved]:
        """Open what `resolve` found, then make sure the descriptor is that file; `where` again, with the
        descriptor's `fstat`.

        Opened non-blocking and one component at a time below the root, never following a
        link, so a FIFO or a symlink swapped in after the check can neither hang the open
        nor lead out; the kernel's name for the descriptor is compared as well. The
        non-blocking flag is cleared once the descriptor is known to be a file or folder.
        """
        if where.mode and not (statmod.S_ISREG(where.mode) or statmod.S_ISDIR(where.mode)):
            raise NotAFile(studio)
        fd = self._open_beneath(studio, where, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            st = self._check(studio, fd, where.local, flags)
        except BaseException:
            os.close(fd)
            raise
        return fd, replace(where, stat=st)

    def for_library(self, path: str) -> str | None:
        """The local path to hand a library that opens files itself (usd-core, BAT), for `path` (a local
        or studio path): symlink-free when it exists, as mapped when it does not (the library then
        says it is missing), None when the guard refuses it (the caller must not open it)."""
        studio = self.path_map.to_studio(path)
        try:
            return self.resolve(studio).local
        except Refused:
            return None
        except OSError:
            return self.path_map.to_local(studio)

    def _open_beneath(self, studio: str, where: Resolved, flags: int) -> int:
        """Open `where.local` one component at a time from its root's folder, never following a link:
        a folder swapped for a link after `resolve` is refused before anything beyond it is opened."""
        root = _root_of(where.studio, self.roots)
        base = self._local_root(root) if root is not None else ""
        if not root or where.local == base:
            return os.open(where.local, flags)
        parts = where.local[len(base):].strip("/").split("/")
        fd = os.open(base, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for name in parts[:-1]:
                try:
                    step = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                except (NotADirectoryError, OSError) as exc:
                    if exc.errno in (errno.ENOTDIR, errno.ELOOP):
                        raise Refused(studio, CHANGED) from exc
                    raise
                os.close(fd)
                fd = step
            try:
                return os.open(parts[-1], flags, dir_fd=fd)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise Refused(studio, CHANGED) from exc
                raise
        finally:
            os.close(fd)

    def is_real(self, studio: str) -> bool:
        """Whether `studio` exists inside the roots and no symlink is on its way (for listings
        of prewarm's own folders, which hold real files and folders only)."""
        try:
            return self.resolve(studio).studio == (studio.rstrip("/") or "/")
        except OSError:
            return False

    def stat(self, studio: str) -> os.stat_result:
        """The attributes of what `studio` resolves to (a LOOKUP and GETATTR of each component)."""
        return os.lstat(self.resolve(studio).local)

    def listdir(self, studio: str) -> list[str]:
        """The names in a folder, read through a descriptor checked like a file's."""
        fd, _ = self.open(studio, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with os.scandir(fd) as it:
                return sorted(entry.name for entry in it)
        finally:
            os.close(fd)


def _close_all(fds: OrderedDict[str, int]) -> None:
    """Close the kept folder descriptors (when the guard is collected)."""
    while fds:
        os.close(fds.popitem()[1])
