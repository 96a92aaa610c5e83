"""Dedupe across warm jobs: what the gateway already holds is not read again.

An index per file records which pieces were warmed and when (Redis clock). An entry
is trusted for `ttl_s` (the gateway cache's retention, `dedupe_ttl_s`), and only for
the file identity (size, mtime) it was warmed under: a file seen with another
identity drops its whole index, so a re-rendered texture is warmed afresh.

Two jobs over the same data must not both pull it over the WAN, so a reader claims a
piece (SET NX with a TTL) before reading it; the other job waits until the piece is
warmed (then skips it) or the claim lapses (then reads it). A claim held by the same
warm job is taken over at once: that is a batch redelivered after its worker died.

Gateways do not share caches, so the index is per gateway node G. Below the prefix
`prewarm.state.keys.dedupe(G, P)` of a studio path P, with identity I = "size:mtime":
`:id` holds I, the identity the index belongs to; `:w` is a zset "start-end" -> time
warmed; `:c:I:s-e` is a claim (the owner job id, expiring after `claim_ttl_s`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import redis

from prewarm.plan.ranges import ByteRange
from prewarm.plan.records import FileInfo
from prewarm.state import keys
from prewarm.warm.results import Claim

CLAIM_CHUNK = 512
"""Pieces claimed per pipelined round trip when a batch starts."""

FLUSH_EVERY = 64
"""Warmed pieces recorded per pipelined round trip (claims stay held until then)."""

_CLAIM = """
local ttl = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cur = redis.call('GET', KEYS[1])
if cur ~= ARGV[1] then
  if cur then redis.call('DEL', KEYS[2]) end
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ttl)
end
local cutoff = now - ttl
for i = 2, 3 do
  local s = redis.call('ZSCORE', KEYS[2], ARGV[i])
  if s and tonumber(s) > cutoff then return 'skip' end
end
if redis.call('SET', KEYS[3], ARGV[5], 'NX', 'PX', ARGV[6]) then return 'read' end
if redis.call('GET', KEYS[3]) == ARGV[5] then return 'read' end
return 'wait'
"""

_WARMED = """
local ttl = tonumber(ARGV[3])
if redis.call('GET', KEYS[1]) == ARGV[1] then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  redis.call('ZADD', KEYS[2], now, ARGV[2])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
  redis.call('EXPIRE', KEYS[1], ttl)
end
if redis.call('GET', KEYS[3]) == ARGV[4] then redis.call('DEL', KEYS[3]) end
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""


def _ident(info: FileInfo) -> str:
    return f"{info.size}:{info.mtime!r}"


class RedisDedupe:
    """The `warm.Dedupe` of a warm job `owner`, over Redis."""

    def __init__(self, r: redis.Redis[bytes], gateway: str, owner: str, granule: int, ttl_s: int,
                 claim_ttl_s: float = 60.0,
                 poll_s: float = 0.05, sleep: Callable[[float], None] = time.sleep) -> None:
        self._r = r
        self._lock = threading.Lock()
        self._pending: list[tuple[FileInfo, ByteRange]] = []
        self._claim = r.register_script(_CLAIM)
        self._warmed = r.register_script(_WARMED)
        self._release = r.register_script(_RELEASE)
        self.gateway = gateway
        self.owner = owner
        self.granule = granule
        self.ttl_s = ttl_s
        self.claim_ms = int(claim_ttl_s * 1000)
        self.poll_s = poll_s
        self._sleep = sleep

    def _keys(self, info: FileInfo, piece: ByteRange) -> list[str]:
        base = keys.dedupe(self.gateway, info.path)
        return [f"{base}:id", f"{base}:w", f"{base}:c:{_ident(info)}:{piece.offset}-{piece.end}"]

    def _granule_member(self, info: FileInfo, piece: ByteRange) -> str:
        g = piece.offset // self.granule * self.granule
        return f"{g}-{min(g + self.granule, info.size)}"

    def claim(self, ident: FileInfo, piece: ByteRange) -> bool:
        keys = self._keys(ident, piece)
        args = self._claim_args(ident, piece)
        while True:
            answer = self._claim(keys=keys, args=args)
            if answer == b"read":
                return True
            if answer == b"skip":
                return False
            self._sleep(self.poll_s)

    def _claim_args(self, ident: FileInfo, piece: ByteRange) -> list[object]:
        return [_ident(ident), f"{piece.offset}-{piece.end}", self._granule_member(ident, piece),
                self.ttl_s, self.owner, self.claim_ms]

    def claim_now(self, items: list[tuple[FileInfo, ByteRange]]) -> list[Claim]:
        out: list[Claim] = []
        for i in range(0, len(items), CLAIM_CHUNK):
            with self._r.pipeline(transaction=False) as p:
                for ident, piece in items[i:i + CLAIM_CHUNK]:
                    self._claim(keys=self._keys(ident, piece), args=self._claim_args(ident, piece), client=p)
                out.extend(Claim(a.decode()) for a in p.execute())
        return out

    def warmed(self, ident: FileInfo, piece: ByteRange) -> None:
        """Recorded in pipelined groups: one round trip per `FLUSH_EVERY` pieces, not per piece."""
        with self._lock:
            self._pending.append((ident, piece))
            if len(self._pending) < FLUSH_EVERY:
                return
            todo, self._pending = self._pending, []
        self._record(todo)

    def flush(self) -> None:
        with self._lock:
            todo, self._pending = self._pending, []
        self._record(todo)

    def _record(self, todo: list[tuple[FileInfo, ByteRange]]) -> None:
        if not todo:
            return
        with self._r.pipeline(transaction=False) as p:
            for ident, piece in todo:
                self._warmed(keys=self._keys(ident, piece),
                             args=[_ident(ident), f"{piece.offset}-{piece.end}", self.ttl_s, self.owner], client=p)
            p.execute()

    def release(self, ident: FileInfo, piece: ByteRange) -> None:
        self._release(keys=self._keys(ident, piece)[2:], args=[self.owner])


def forget_gateway(r: redis.Redis[bytes], gateway: str) -> int:
    """Drop gateway `gateway`'s whole index; returns the keys deleted.

    For when that gateway's cache was wiped or the node replaced: until the entries'
    TTL ran out, every job would skip pieces the gateway no longer holds.
    """
    found = list(r.scan_iter(keys.dedupe_pattern(gateway), count=1000))
    for i in range(0, len(found), 1000):
        r.delete(*found[i:i + 1000])
    return len(found)
