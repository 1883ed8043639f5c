"""Where claimed work is queued and who holds it: the share alone (``local``) or a Redis server.

The worker asks its queue for work, offers it the jobs it claims from the inbox, and
renews, releases and completes what it holds through it. Two implementations:

* :class:`LocalQueue`: today's embedded behaviour. A claim is a rename on the share; a
  lease is ``lease.yaml`` in the work folder, renewed by the heartbeat and judged stale by
  the wall clocks of whoever reads it. Right for one machine.
* :class:`RedisQueue`: a Redis Stream with one consumer group. Each claimed job is one
  entry; an entry is delivered to one worker; the server measures how long each
  delivered entry has been idle, and the holder's heartbeat resets that (``XCLAIM …
  JUSTID``), so a lease is the server's clock, never a host's. An entry idle past
  ``lease_timeout`` is taken over (``XAUTOCLAIM``) by an idle worker, which resumes from
  the checkpoint in the shared work folder. Every delivery increments the job's fencing
  token; renewals and the check before publishing compare it in the same Lua script as
  the delivery, so a worker that was paused or cut off, and comes back, learns that it
  lost the job and publishes nothing. A job is ingested from the inbox by one host only
  (``SET NX`` on the job's name and file signature); the files still move by one rename
  on the share, done by that host alone.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

from nstd.spool import jobs
from nstd.config import Config
from nstd.daemon.runner import LostJob
from nstd.daemon.scanner import Pending
from nstd.spool.workitem import WorkItem, renew_lease

log = logging.getLogger("nstd")


class LocalQueue:
    """Work handed over in the process; orphans found by the scanner from stale lease files."""

    backend = "local"

    def next(self, work_root: Path, orphans: list[Path]) -> WorkItem | None:
        """Work to resume: ``orphans`` are the scanner's folders with stale leases."""
        for work in orphans:
            item = WorkItem.take_over(work, work_root)
            if item is not None:
                log.info("job=%s resuming work left by an earlier daemon (%s)", item.label, work.name)
                return item
        return None

    def may_claim(self, p: Pending) -> bool:
        return True

    def ingest(self, item: WorkItem, work_root: Path) -> WorkItem | None:
        return item

    def _enqueue(self, work: str, name: str) -> int | None:
        """1: queued now; 0: it already was; None: the server could not say."""
        return self._call("queue a job", lambda: self._queue(keys=[self.known_key, self.stream], args=[work, name]))

    def renew(self, works: list[Path]) -> list[Path]:
        """Renew the leases of ``works``; returns those this worker no longer owns (none here)."""
        for work in works:
            try:
                renew_lease(work)
            except OSError as exc:
                log.warning("cannot renew the lease of %s: %s", work.name, exc)
        return []

    def release(self, work: Path) -> None:
        renew_lease(work, released=True)

    def fence(self, work: Path, should_stop: Callable[[], bool]) -> None:
        pass

    def complete(self, work: Path) -> None:
        pass

    def forget(self, work: Path) -> None:
        pass

    def fleet(self) -> dict[str, Any] | None:
        return None


# KEYS: stream, fence hash, owner hash. ARGV: group, consumer, lease ms.
# An idle-past-the-lease entry first (a dead or cut-off worker's), else a new one; either
# way the job's fencing token goes up in the same atomic step.
_TAKE = """
local entry = nil
local taken = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], '0-0', 'COUNT', 1)
if taken[2] and taken[2][1] and taken[2][1][2] then entry = taken[2][1] end
local over = entry ~= nil
if not entry then
  local got = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', 1, 'STREAMS', KEYS[1], '>')
  if got and got[1] and got[1][2][1] then entry = got[1][2][1] end
end
if not entry then return nil end
local work = nil
for i = 1, #entry[2], 2 do if entry[2][i] == 'work' then work = entry[2][i + 1] end end
local token = redis.call('HINCRBY', KEYS[2], entry[1], 1)
redis.call('HSET', KEYS[3], entry[1], ARGV[2])
return {entry[1], work, token, over and 1 or 0}
"""
# KEYS: stream, fence hash. ARGV: group, consumer, id, token, idle ms. Resets the entry's
# idle time (renew: 0; release: past the lease) only while the token is still ours.
_RENEW = """
if tonumber(redis.call('HGET', KEYS[2], ARGV[3]) or '-1') ~= tonumber(ARGV[4]) then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'IDLE', ARGV[5], 'JUSTID')
return 1
"""
# KEYS: stream, fence hash, owner hash, known set. ARGV: group, id, token, work folder.
# Acknowledge and forget, all or nothing.
_COMPLETE = """
if tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '-1') ~= tonumber(ARGV[3]) then return 0 end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
redis.call('SREM', KEYS[4], ARGV[4])
return 1
"""
# KEYS: known set, stream. ARGV: work folder, job name. A work folder is known and has its
# entry, or neither: a reply lost half way must not leave it known with nothing to run it.
_QUEUE = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('XADD', KEYS[2], '*', 'work', ARGV[1], 'name', ARGV[2])
return 1
"""
# KEYS: the job's ingest mark. ARGV: consumer, seconds. Ours if we set it now or set it
# before (our SET ran but its reply was lost when the server went away).
_MARK = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 1 end
return redis.call('GET', KEYS[1]) == ARGV[1] and 1 or 0
"""


class RedisQueue:
    """A Redis Stream with one consumer group (see the module docstring)."""

    backend = "redis"
    GROUP = "workers"
    MARK_SECONDS = 600

    def __init__(self, cfg: Config, consumer: str, client: Any = None) -> None:
        import redis

        self.cfg, self.consumer = cfg, consumer
        self.redis = client or redis.Redis.from_url(cfg.queue.url, socket_timeout=5, socket_connect_timeout=5,
                                                    decode_responses=True)
        p = cfg.queue.prefix
        self.stream, self.fences, self.owners, self.known_key = f"{p}:jobs", f"{p}:fence", f"{p}:owner", f"{p}:work"
        self.ingest_prefix = f"{p}:ingest:"
        self.held: dict[str, tuple[str, int]] = {}  # work folder name -> (entry id, token)
        self._take, self._renew, self._complete, self._queue, self._mark = (
            self.redis.register_script(s) for s in (_TAKE, _RENEW, _COMPLETE, _QUEUE, _MARK))
        self._down_since: float | None = None
        self._retry_at = 0.0
        self._group_ready = False

    @property
    def lease_ms(self) -> int:
        return int(self.cfg.service.lease_timeout * 1000)

    # --- reaching the server -------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[[], Any], default: Any = None) -> Any:
        """``fn()``, or ``default`` while the server cannot be reached (logged once, retried with back-off)."""
        import redis

        now = time.monotonic()
        if self._down_since is not None and now < self._retry_at:
            return default
        try:
            if not self._group_ready:
                try:
                    self.redis.xgroup_create(self.stream, self.GROUP, id="0", mkstream=True)
                except redis.ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise
                self._group_ready = True
            value = fn()
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._group_ready = False  # made again on the next call
            log.error("the queue server %s has lost the queue (restarted without its append-only file?); "
                      "held jobs stop and are queued again from their checkpoints when their leases run out",
                      self.cfg.queue.url)
            return default
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            down = self._down_since or now
            wait = min(30.0, max(1.0, 2 * (now - down)))
            if self._down_since is None:
                log.error("cannot reach the queue server %s (%s while trying to %s); jobs wait in the inbox and "
                          "held jobs keep running; retrying with back-off", self.cfg.queue.url, exc, what)
            self._down_since, self._retry_at = down, now + wait
            return default
        if self._down_since is not None:
            log.info("the queue server %s answers again after %.0fs", self.cfg.queue.url, now - self._down_since)
            self._down_since = None
        return value

    # --- the worker's side ---------------------------------------------------------------------

    def next(self, work_root: Path, orphans: list[Path] = ()) -> WorkItem | None:
        """A job idle past its lease (taken over), else a new one; ``orphans`` no entry names are queued."""
        self.adopt(orphans)
        got = self._call("take a job", lambda: self._take(keys=[self.stream, self.fences, self.owners],
                                                          args=[self.GROUP, self.consumer, self.lease_ms]))
        if not got:
            return None
        entry, work, token, over = got[0], got[1], int(got[2]), bool(int(got[3]))
        path = work_root / str(work)
        if not (path / "meta.yaml").exists():  # gone (finished by a worker that lost the token late)
            log.warning("queue entry %s names %s, which is gone; dropping it", entry, path.name)
            self.held[path.name] = (entry, token)
            self.complete(path)
            return None
        self.held[path.name] = (entry, token)
        item = WorkItem.load(path)
        if over:
            log.info("job=%s taken over from a worker silent for over %.0fs (fencing token %d)", item.label,
                     self.cfg.service.lease_timeout, token)
        return item

    def may_claim(self, p: Pending) -> bool:
        """Only one host ingests a job: the one whose mark on its name and files is in Redis.

        The mark expires after :attr:`MARK_SECONDS`, far longer than a claim (one rename) and
        any host's stale view of the inbox takes, so a host that dies between marking and
        claiming delays the job by that much and no more, and the same files dropped again
        later are a new job."""
        inbox = str(self.cfg.paths.inbox)  # hosts mount the share at different paths: names are relative
        sig = [(os.path.relpath(path, inbox), size, mtime) for path, size, mtime in jobs.signature(p.candidate)]
        sig = hashlib.sha256(repr(sig).encode()).hexdigest()[:16]
        key = f"{self.ingest_prefix}{p.candidate.key}:{sig}"
        return bool(self._call("ingest a job", lambda: self._mark(keys=[key], args=[self.consumer, self.MARK_SECONDS]),
                               default=False))

    def ingest(self, item: WorkItem, work_root: Path) -> WorkItem | None:
        """Queue a job this host just claimed from the inbox; then take whatever is next."""
        if self._enqueue(item.path.name, item.label) is None:
            return None  # not queued, or not known whether: its lease goes stale and adopt() settles it
        log.info("job=%s queued in %s", item.label, self.cfg.queue.url)
        return self.next(work_root)

    def adopt(self, orphans: list[Path]) -> None:
        """Work folders no queue entry names (e.g. a host died between claim and queueing)."""
        for work in orphans:
            if self._enqueue(work.name, work.name):
                log.warning("queued work folder %s, which no queue entry named", work.name)

    def _enqueue(self, work: str, name: str) -> int | None:
        """1: queued now; 0: it already was; None: the server could not say."""
        return self._call("queue a job", lambda: self._queue(keys=[self.known_key, self.stream], args=[work, name]))

    def renew(self, works: list[Path]) -> list[Path]:
        """Reset the server's idle clock of each held entry; returns those we lost."""
        lost = []
        for work in works:
            renew_lease(work)  # the share's view, for `nstd status` and the scanner
            if work.name not in self.held:
                continue
            entry, token = self.held[work.name]
            ok = self._call("renew a lease", lambda e=entry, t=token: self._renew(
                keys=[self.stream, self.fences], args=[self.GROUP, self.consumer, e, t, 0]), default=None)
            if ok == 0:
                lost.append(work)
        return lost

    def release(self, work: Path) -> None:
        """Make a held entry claimable at once (we stop; the checkpoint is in the work folder)."""
        if work.name in self.held:
            entry, token = self.held.pop(work.name)
            self._call("release a job", lambda: self._renew(keys=[self.stream, self.fences],
                                                            args=[self.GROUP, self.consumer, entry, token,
                                                                  10 * self.lease_ms + 1]))

    def still_ours(self, work: Path) -> bool | None:
        """True or False from the server; None while it cannot be reached."""
        entry, token = self.held.get(work.name, (None, -1))
        if entry is None:
            return False
        current = self._call("check a fencing token", lambda: self.redis.hget(self.fences, entry), default="?")
        return None if current == "?" else current is not None and int(current) == token

    def fence(self, work: Path, should_stop: Callable[[], bool]) -> None:
        """Before publishing: the server must confirm the job is still ours (waits while it is down)."""
        while True:
            ours = self.still_ours(work)
            if ours:
                return
            if ours is False:
                raise LostJob(f"the queue handed it to another worker (fencing token {self.held.get(work.name)})")
            if should_stop():
                raise LostJob("stopping before the queue server could confirm the job is still ours")
            time.sleep(1.0)

    def forget(self, work: Path) -> None:
        """We lost ``work`` to another worker: nothing of it is ours to touch."""
        self.held.pop(work.name, None)

    def complete(self, work: Path) -> None:
        """The job left the queue for good (published, failed or gone)."""
        if work.name in self.held:
            entry, token = self.held.pop(work.name)
            self._call("complete a job", lambda: self._complete(keys=[self.stream, self.fences, self.owners,
                                                                      self.known_key],
                                                                args=[self.GROUP, entry, token, work.name]))

    def fleet(self) -> dict[str, Any] | None:
        """Queue depth and age, and who runs what, as the server sees it."""
        def read() -> dict[str, Any]:
            group = next((g for g in self.redis.xinfo_groups(self.stream) if g["name"] == self.GROUP), {})
            first = self.redis.xrange(self.stream, count=1)
            oldest = time.time() - int(first[0][0].split("-")[0]) / 1000 if first else None
            return {"backend": "redis", "url": self.cfg.queue.url, "entries": self.redis.xlen(self.stream),
                    "waiting": group.get("lag"), "running": group.get("pending"),
                    "oldest_age": None if oldest is None else round(oldest, 1),
                    "owners": self.redis.hgetall(self.owners)}

        return self._call("read the queue", read)
