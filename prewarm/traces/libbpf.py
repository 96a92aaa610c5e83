"""The few libbpf calls the eBPF recorder makes, through ctypes.

libbpf (Debian's `libbpf1`) is the kernel's own loader library: it reads the compiled object,
moves every field the program reads to this kernel's offsets (CO-RE, from the kernel's BTF),
loads and verifies the programs, attaches each by its section name, and reads the ring
buffer. No maintained Python binding of it exists (BCC's needs the kernel's headers, which
cloud kernels such as this machine's do not ship; bpftrace 0.17 has no raw tracepoints), so
this module declares the functions used and nothing else: no ELF, relocation or
attach logic is written here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from collections.abc import Callable
from typing import Any

__all__ = ["Libbpf", "LibbpfError", "Loaded", "Ring", "library", "load"]

_PRINT = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
_SAMPLE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
_P = ctypes.c_void_p
_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "libbpf_set_print": (_P, [_PRINT]),
    "bpf_object__open_file": (_P, [ctypes.c_char_p, _P]),
    "bpf_object__find_map_by_name": (_P, [_P, ctypes.c_char_p]),
    "bpf_map__set_max_entries": (ctypes.c_int, [_P, ctypes.c_uint32]),
    "bpf_map__fd": (ctypes.c_int, [_P]),
    "bpf_object__next_map": (_P, [_P, _P]),
    "bpf_object__load": (ctypes.c_int, [_P]),
    "bpf_object__next_program": (_P, [_P, _P]),
    "bpf_program__attach": (_P, [_P]),
    "bpf_link__destroy": (ctypes.c_int, [_P]),
    "bpf_object__close": (None, [_P]),
    "bpf_map_update_elem": (ctypes.c_int, [ctypes.c_int, _P, _P, ctypes.c_uint64]),
    "bpf_map_lookup_elem": (ctypes.c_int, [ctypes.c_int, _P, _P]),
    "bpf_map_lookup_and_delete_batch": (ctypes.c_int, [ctypes.c_int, _P, _P, _P, _P,
                                                       ctypes.POINTER(ctypes.c_uint32), _P]),
    "ring_buffer__new": (_P, [ctypes.c_int, _SAMPLE, _P, _P]),
    "ring_buffer__poll": (ctypes.c_int, [_P, ctypes.c_int]),
    "ring_buffer__consume": (ctypes.c_int, [_P]),
    "ring_buffer__free": (None, [_P]),
}


@functools.cache
def library() -> str | None:
    """libbpf's shared library as the dynamic linker finds it (None: not installed); looked up once
    (`find_library` runs `ldconfig -p`), by the check of whether the recorder can run and by its load."""
    return ctypes.util.find_library("bpf")


class LibbpfError(RuntimeError):
    """libbpf could not open, load or attach the program; the message is libbpf's own first reason."""


class Libbpf:
    """libbpf.so.1 with its functions typed, and what it last said (its log, kept for the reason of a failure)."""

    def __init__(self) -> None:
        name = library()
        if name is None:
            raise LibbpfError("libbpf is not installed (apt-get install libbpf1)")
        self.lib = ctypes.CDLL(name, use_errno=True)
        for fn, (res, args) in _SIGNATURES.items():
            f = getattr(self.lib, fn)
            f.restype, f.argtypes = res, args
        self.log: list[str] = []
        libc = ctypes.CDLL(None)
        libc.vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]

        def keep(level: int, fmt: bytes, args: int) -> int:
            buf = ctypes.create_string_buffer(512)
            libc.vsnprintf(buf, 512, fmt, args)
            if len(self.log) < 400:
                self.log.append(buf.value.decode(errors="replace").strip())
            return 0

        self._print = _PRINT(keep)  # kept alive as long as libbpf may call it
        self.lib.libbpf_set_print(self._print)

    def reason(self, fallback: str) -> str:
        """libbpf's first line that says what failed (its verifier log follows it), else `fallback`."""
        for line in self.log:
            if "failed" in line or "error" in line.lower():
                return line[:300]
        return fallback


class Ring:
    """The program's ring buffer, each record handed to `on_event` as bytes."""

    def __init__(self, bpf: Libbpf, fd: int, on_event: Callable[[bytes], None]) -> None:
        def sample(_ctx: int, data: int, size: int) -> int:
            on_event(ctypes.string_at(data, size))
            return 0

        self._bpf = bpf
        self._sample = _SAMPLE(sample)
        self._rb = bpf.lib.ring_buffer__new(fd, self._sample, None, None)
        if not self._rb:
            raise LibbpfError(f"ring buffer: {os.strerror(ctypes.get_errno())}")

    def poll(self, timeout_ms: int) -> None:
        self._bpf.lib.ring_buffer__poll(self._rb, timeout_ms)

    def consume(self) -> None:
        self._bpf.lib.ring_buffer__consume(self._rb)

    def close(self) -> None:
        if self._rb:
            self._bpf.lib.ring_buffer__free(self._rb)
            self._rb = None


class Loaded:
    """A loaded object with all its programs attached; `close()` detaches them and frees the maps
    (the kernel does the same when the process dies: nothing is pinned)."""

    def __init__(self, bpf: Libbpf, obj: int, links: list[int]) -> None:
        self.bpf, self._obj, self._links = bpf, obj, links

    def map_fd(self, name: str) -> int:
        return int(self.bpf.lib.bpf_map__fd(self.bpf.lib.bpf_object__find_map_by_name(self._obj, name.encode())))

    def map_fds(self) -> list[int]:
        """The descriptors of all the object's maps."""
        fds, m = [], self.bpf.lib.bpf_object__next_map(self._obj, None)
        while m:
            fds.append(int(self.bpf.lib.bpf_map__fd(m)))
            m = self.bpf.lib.bpf_object__next_map(self._obj, m)
        return fds

    def update(self, name: str, key: ctypes._CData, value: ctypes._CData) -> None:
        if self.bpf.lib.bpf_map_update_elem(self.map_fd(name), ctypes.byref(key), ctypes.byref(value), 0):
            raise LibbpfError(f"map {name}: {os.strerror(ctypes.get_errno())}")

    def lookup(self, name: str, key: ctypes._CData, value: ctypes._CData) -> bool:
        return bool(self.bpf.lib.bpf_map_lookup_elem(self.map_fd(name), ctypes.byref(key), ctypes.byref(value)) == 0)

    def drain(self, name: str, keys: ctypes.Array[Any], values: ctypes.Array[Any], most: int) -> tuple[int, bool]:
        """Take up to `most` entries out of hash map `name` into `keys` and `values` (deleted as they are
        read): how many, and whether the map's end was reached. The kernel stops a batch at a bucket that
        would not fit whole, so fewer than `most` does not mean the map is empty: only the end does."""
        count = ctypes.c_uint32(most)
        out_batch = ctypes.c_uint64(0)
        rc = self.bpf.lib.bpf_map_lookup_and_delete_batch(self.map_fd(name), None, ctypes.byref(out_batch), keys,
                                                          values, ctypes.byref(count), None)
        errno = ctypes.get_errno() if rc else 0
        if rc and errno != 2:  # ENOENT: the end was reached, `count` entries were read
            raise LibbpfError(f"map {name}: {os.strerror(errno)}")
        return count.value, rc != 0

    def close(self) -> None:
        for link in self._links:
            self.bpf.lib.bpf_link__destroy(link)
        self._links = []
        if self._obj:
            self.bpf.lib.bpf_object__close(self._obj)
            self._obj = 0


def load(bpf: Libbpf, path: str, sizes: dict[str, int]) -> Loaded:
    """Open the object at `path`, size its maps (`sizes`: map name to entries), load it and attach
    every program by its section; LibbpfError with libbpf's reason, and nothing left loaded, if any step fails."""
    obj = bpf.lib.bpf_object__open_file(path.encode(), None)
    if not obj:
        raise LibbpfError(bpf.reason(f"cannot open {path}: {os.strerror(ctypes.get_errno())}"))
    links: list[int] = []
    loaded = Loaded(bpf, obj, links)
    try:
        for name, entries in sizes.items():
            m = bpf.lib.bpf_object__find_map_by_name(obj, name.encode())
            if not m or bpf.lib.bpf_map__set_max_entries(m, entries):
                raise LibbpfError(f"the program has no map {name}")
        if bpf.lib.bpf_object__load(obj):
            raise LibbpfError(bpf.reason(f"load: {os.strerror(ctypes.get_errno())}"))
        prog = bpf.lib.bpf_object__next_program(obj, None)
        while prog:
            link = bpf.lib.bpf_program__attach(prog)
            if not link:
                raise LibbpfError(bpf.reason(f"attach: {os.strerror(ctypes.get_errno())}"))
            links.append(link)
            prog = bpf.lib.bpf_object__next_program(obj, prog)
    except LibbpfError:
        loaded.close()
        raise
    return loaded
