"""Confine a scene reader child to the roots with Landlock: the kernel, not a check made earlier, decides.

The guard checks a scene file and each layer or library before the reader is handed its
name, but usd-core and BAT open files by name themselves, later: a file swapped for a
symlink out of the roots between the check and the open would be read. Landlock (Linux
5.13 and later) lets an unprivileged process give up access to the whole file system
except some folders, for itself and its children, for good. `confine` does that in the
scene child once its libraries are loaded: reading is allowed only below the roots' local
folders (where they really are) and the Python installation the child runs from, writing
only in its own temporary folder. An open that a symlink leads out of those folders fails
with EACCES whatever the race, and the reader reports the layer as unreadable.

The system calls are made through ctypes (no binding is packaged for Debian, and three
calls do not need one); the ABI is the kernel's, `include/uapi/linux/landlock.h`.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
from collections.abc import Iterable

_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
"""Landlock's system call numbers: the same on every architecture (the generic table)."""
_VERSION = 1 << 0
"""`LANDLOCK_CREATE_RULESET_VERSION`: ask for the ABI version instead of making a ruleset."""
_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_ABI1_ALL = (1 << 13) - 1
"""Every file-system right of ABI 1: executing, reading, writing, and making or removing entries."""
_ABI2_REFER, _ABI3_TRUNCATE = 1 << 13, 1 << 14
READ = READ_FILE | READ_DIR | EXECUTE
"""Rights below the program's own folders (shared libraries are mapped executable)."""


class _RulesetAttr(ctypes.Structure):
    _fields_ = (("handled_access_fs", ctypes.c_uint64),)


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


class Unconfined(OSError):
    """This kernel cannot confine the reader (no Landlock, or it is switched off)."""


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def abi() -> int:
    """The kernel's Landlock ABI version; 0 when it has none."""
    version = _libc().syscall(_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_VERSION))
    return max(0, int(version))


def program_folders() -> list[str]:
    """Where the running Python and its packages live: the reader imports and maps from there.

    Not the working folder (`python -m` puts it first on `sys.path`, and a planner started in
    `/` or in a studio folder would allow all of it): prewarm's own package folder instead;
    and never `/`.
    """
    cwd = os.path.realpath(os.getcwd())
    package = os.path.join(os.path.dirname(__file__), "..")
    found = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, package,
             *(p for p in sys.path if p), "/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/local/lib"]
    real = dict.fromkeys(os.path.realpath(p) for p in found)
    return [p for p in real if p not in ("/", cwd) and os.path.isdir(p)]


def confine(read: Iterable[str], write: Iterable[str]) -> None:
    """From now on this process (and any child) reads only below `read` and writes only below
    `write`; `Unconfined` if the kernel cannot do it. Irreversible, by design."""
    libc = _libc()
    version = abi()
    if version < 1:
        raise Unconfined(errno.ENOSYS, "this kernel has no Landlock (Linux 5.13 or later, with the LSM on)")
    handled = _ABI1_ALL | (_ABI2_REFER if version >= 2 else 0) | (_ABI3_TRUNCATE if version >= 3 else 0)
    attr = _RulesetAttr(handled)
    ruleset = libc.syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)),
                           ctypes.c_uint32(0))
    if ruleset < 0:
        raise Unconfined(ctypes.get_errno(), "cannot make a Landlock ruleset")
    try:
        for folders, rights in ((read, READ), (write, handled)):
            for folder in folders:
                _allow(libc, ruleset, folder, rights)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or libc.syscall(_RESTRICT_SELF, ruleset,
                                                                               ctypes.c_uint32(0)) != 0:
            raise Unconfined(ctypes.get_errno(), "cannot restrict this process with Landlock")
    finally:
        os.close(ruleset)


def _allow(libc: ctypes.CDLL, ruleset: int, folder: str, rights: int) -> None:
    fd = os.open(folder, os.O_PATH | os.O_CLOEXEC)
    try:
        rule = _PathBeneathAttr(rights, fd)
        if libc.syscall(_ADD_RULE, ruleset, _PATH_BENEATH, ctypes.byref(rule), ctypes.c_uint32(0)) != 0:
            raise Unconfined(ctypes.get_errno(), "cannot allow a folder to the reader")
    finally:
        os.close(fd)
