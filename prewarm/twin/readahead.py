"""Which pages a gateway's NFS client fetches for one read: Linux readahead, page by page. Pure.

knfsd serves a READ through its own NFS client mount, so what crosses the WAN is
what that client's page cache asks for, and that is decided by `mm/readahead.c`
(`ondemand_readahead`, Linux 6.x, order-0 pages):
- a read whose first page is missing starts a *synchronous* readahead; a read that
  reaches a page carrying the readahead mark starts an *asynchronous* one;
- a standalone random read is read as is: its own pages, nothing more (a 37 KB tile
  read costs 10 pages, about 40 KB);
- a read at offset 0, a read right after the previous one (`prev_pos`), the page the
  last window expected, or a read preceded by cached pages (context readahead) is
  sequential: a window of `get_init_ra_size` pages (4x or 2x the request, rounded up
  to a power of two), growing 4x then 2x per window (`get_next_ra_size`) up to
  `ra_pages` (`read_ahead_kb`, 8 MiB on knfsd-cache-utils proxies);
- only pages not already cached (or on their way) are fetched, and nothing past EOF.

`read_pages` applies those rules to one `FilePages` (one file's page cache and its
readahead state) and returns the runs of pages that are newly on their way; the
caller fetches them (split at `rsize`) and marks them ready. Left out: large folios,
the `io_pages` allowance for reads larger than the window, `FMODE_RANDOM`, and memory
pressure (a cached page stays until the cache culls its whole file).
"""

from __future__ import annotations

from dataclasses import dataclass, field

PAGE = 4096

MISSING, PENDING, READY = 0, 1, 2
"""A page is absent, on its way (counts as cached for readahead, like a locked page), or readable."""

Run = tuple[int, int]
"""Pages `[first, end)` to fetch."""


@dataclass
class RaState:
    """`struct file_ra_state`: the last readahead window and where the previous read ended."""

    start: int = 0
    size: int = 0
    async_size: int = 0
    prev_pos: int = -1


@dataclass
class FilePages:
    """One file's pages as the page cache holds them."""

    state: bytearray
    marks: set[int] = field(default_factory=set)
    """Pages carrying PG_readahead: reaching one starts the next window."""
    ra: RaState = field(default_factory=RaState)

    @classmethod
    def of_size(cls, size: int) -> FilePages:
        return cls(bytearray(-(-size // PAGE)))


def _roundup_pow2(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


def init_size(req: int, max_pages: int) -> int:
    """`get_init_ra_size`: the first window of a sequential run."""
    new = _roundup_pow2(req)
    if new <= max_pages // 32:
        return new * 4
    if new <= max_pages // 4:
        return new * 2
    return max_pages


def next_size(cur: int, max_pages: int) -> int:
    """`get_next_ra_size`: ramp up fast while small, then double, up to the maximum."""
    if cur < max_pages // 16:
        return 4 * cur
    if cur <= max_pages // 2:
        return 2 * cur
    return max_pages


def read_pages(fp: FilePages, offset: int, length: int, size: int, max_pages: int) -> list[Run]:
    """What one `read(offset, length)` of a file of `size` bytes adds to the page cache.

    Pages added are set PENDING; the caller makes them READY once fetched (or MISSING
    again if the fetch failed).
    """
    npages = len(fp.state)
    if length <= 0 or offset >= size or npages == 0:
        return []
    first = offset // PAGE
    last_req = -(-(offset + length) // PAGE)
    last = min(last_req, npages)
    runs: list[Run] = []
    i = first
    while i < last:
        miss = fp.state.find(MISSING, i, last)
        stop = last if miss < 0 else miss
        for m in sorted(x for x in fp.marks if i <= x < stop):
            fp.marks.discard(m)
            _ondemand(fp, m, last_req - m, True, max_pages, runs)
        if miss < 0:
            break
        if fp.state[miss] != MISSING:  # the readahead a mark started brought it
            i = miss
            continue
        _ondemand(fp, miss, last_req - miss, False, max_pages, runs)
        if fp.state[miss] == MISSING:  # the window left it out: read on its own, as read_folio does
            _add(fp, miss, 1, 0, runs)
        i = miss
    fp.ra.prev_pos = min(offset + length, size)
    return runs


def _ondemand(fp: FilePages, index: int, req: int, marked: bool, max_pages: int, runs: list[Run]) -> None:
    """`ondemand_readahead`: size and place the next window, then read it."""
    ra = fp.ra
    if index == 0 or _initial(fp, index, req, marked, max_pages):
        ra.start = index
        ra.size = init_size(req, max_pages)
        ra.async_size = ra.size - req if ra.size > req else ra.size
    elif not _sequel(fp, index, req, marked, max_pages):
        _add(fp, index, req, 0, runs)  # standalone random read: as is, readahead state untouched
        return
    if index == ra.start and ra.size == ra.async_size:
        add = next_size(ra.size, max_pages)  # the read would hit its own mark: merge the next window now
        if ra.size + add <= max_pages:
            ra.async_size = add
            ra.size += add
        else:
            ra.size = max_pages
            ra.async_size = max_pages >> 1
    _add(fp, ra.start, ra.size, ra.async_size, runs)


def _initial(fp: FilePages, index: int, req: int, marked: bool, max_pages: int) -> bool:
    """Whether the read starts a new sequential run (checked after the window's own cases fail)."""
    ra = fp.ra
    if _expected(ra, index) or marked:
        return False
    if req > max_pages:
        return True
    return ra.prev_pos >= 0 and 0 <= index - (ra.prev_pos // PAGE) <= 1


def _expected(ra: RaState, index: int) -> bool:
    return index in (ra.start + ra.size - ra.async_size, ra.start + ra.size)


def _sequel(fp: FilePages, index: int, req: int, marked: bool, max_pages: int) -> bool:
    """Set the window for a read continuing a run (the expected page, a mark, cached history)."""
    ra = fp.ra
    if _expected(ra, index):
        ra.start += ra.size
        ra.size = next_size(ra.size, max_pages)
        ra.async_size = ra.size
        return True
    if marked:
        start = _next_missing(fp, index + 1, max_pages)
        if start - index - 1 == max_pages:
            start -= 1
        ra.start = start
        ra.size = next_size(start - index + req, max_pages)
        ra.async_size = ra.size
        return True
    history = _history(fp, index, max_pages)
    if history <= req:
        return False
    if history >= index:
        history *= 2
    ra.start = index
    ra.size = min(history + req, max_pages)
    ra.async_size = 1
    return True


def _next_missing(fp: FilePages, index: int, max_scan: int) -> int:
    """`page_cache_next_miss`: the first page not cached in `[index, index+max_scan)`, else index+max_scan."""
    found = fp.state.find(MISSING, index, min(index + max_scan, len(fp.state)))
    if found >= 0:
        return found
    return min(index + max_scan, len(fp.state))


def _history(fp: FilePages, index: int, max_pages: int) -> int:
    """`count_history_pages`: how many pages right before `index` are cached, up to `max_pages`."""
    lo = max(index - max_pages, 0)
    gap = fp.state.rfind(MISSING, lo, index)
    return index - 1 - gap if gap >= 0 else index - lo


def _add(fp: FilePages, start: int, nr: int, lookahead: int, runs: list[Run]) -> None:
    """`do_page_cache_ra`: add the missing pages of `[start, start+nr)` (clipped at EOF), mark one."""
    end_index = len(fp.state) - 1
    if start > end_index:
        return
    if nr > end_index - start:
        nr = end_index - start + 1
    mark = start + nr - lookahead if lookahead > 0 else -1
    run_start = -1
    for idx in range(start, start + nr):
        if fp.state[idx] != MISSING:
            if run_start >= 0:
                runs.append((run_start, idx))
                run_start = -1
            continue
        fp.state[idx] = PENDING
        if idx == mark:
            fp.marks.add(idx)
        if run_start < 0:
            run_start = idx
    if run_start >= 0:
        runs.append((run_start, start + nr))
