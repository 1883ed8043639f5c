"""A claimed job's work folder: its meta, its lease and its log; claim, take over, renew, release.

A work folder lives under ``paths.state/work`` on the inbox's file system, so a claim is a
rename out of the inbox. It holds ``input/`` (the job's files), ``meta.yaml`` (what the job
is, see :class:`Meta`), ``lease.yaml`` (who holds it, renewed by the heartbeat),
``job.log``, and, while it runs, ``checkpoint.npz``. ``published.yaml`` marks a job whose
outputs are out, so the rest of the finish is safe to repeat.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nstd.spool import jobs
from nstd.atomic import write_bytes_atomic
from nstd.spool.jobs import JobError, read_yaml, write_yaml
from nstd.untrusted import short

log = logging.getLogger("nstd")


class ClaimRefused(JobError):
    """A job this daemon can never claim as it is; nothing was moved and nothing is left behind."""


@dataclass
class Meta:
    """What the job is and what became of it so far (``meta.yaml``)."""

    name: str
    rel: str = "."  # the inbox folder it came from
    form: str = "yaml"  # yaml | pair | folder
    arrived: float = 0.0  # wall clock: first seen in the inbox
    claimed: float = 0.0
    attempts: int = 0  # tries that ended in a retryable failure
    expired: str | None = None  # why it fails without running: it waited too long, or can never run
    archive_to: str | None = None  # decided at publish: where the originals go ("" = deleted)

    @classmethod
    def read(cls, path: Path) -> "Meta":
        raw = read_yaml(path)
        given = {f.name: raw[f.name] for f in dataclasses.fields(cls) if raw.get(f.name) is not None}
        meta = cls(**{**given, "name": str(given.get("name", "job"))})
        meta.attempts = int(meta.attempts)
        return meta


class JobLog:
    """The job's own human-readable log, kept in its work folder (survives restarts)."""

    def __init__(self, path: Path, name: str) -> None:
        self.path, self.name = path, name

    def __call__(self, message: str, *args: Any, level: int = logging.INFO) -> None:
        text = message % args if args else message
        log.log(level, "job=%s %s", self.name, text)
        self._append(text)

    def detail(self, text: str) -> None:
        """For the developer: into the job's log file only, not the daemon's log."""
        self._append(f"details: {text.rstrip()}")

    def _append(self, text: str) -> None:
        with open(self.path, "a") as fh:
            fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")

    def text(self) -> str:
        return self.path.read_text() if self.path.exists() else ""


class WorkItem:
    """One work folder and its meta; the only writer of its ``meta.yaml`` and ``lease.yaml``."""

    def __init__(self, path: Path, meta: Meta) -> None:
        self.path, self.meta = path, meta
        self.log = JobLog(path / "job.log", self.label)

    @classmethod
    def load(cls, path: Path) -> "WorkItem":
        return cls(path, Meta.read(path / "meta.yaml"))

    @property
    def label(self) -> str:
        """How users name the job: its inbox folder and name."""
        return self.meta.name if self.meta.rel == "." else str(Path(self.meta.rel) / self.meta.name)

    @property
    def inputs(self) -> Path:
        return self.path / "input"

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint.npz"

    @property
    def published(self) -> dict[str, Any]:
        """What ``outbox.publish`` wrote, once it has (else empty)."""
        return read_yaml(self.path / "published.yaml")

    def save(self) -> None:
        write_yaml(self.path / "meta.yaml", dataclasses.asdict(self.meta))

    # --- the lease ---------------------------------------------------------------------------

    def renew(self) -> None:
        renew_lease(self.path)

    def release(self) -> None:
        """Let any daemon take it over now (we stop; the checkpoint stays)."""
        renew_lease(self.path, released=True)

    def remove(self) -> None:
        """Gone for good. Renamed to a hidden name first: the heartbeat may be renewing the
        lease on another thread, and a renewal landing inside a folder being emptied would
        keep it alive with just a lease (the scanner clears hidden leftovers of a crash)."""
        gone = self.path.with_name(f".gone-{self.path.name}")
        try:
            os.rename(self.path, gone)
        except FileNotFoundError:
            return
        shutil.rmtree(gone, ignore_errors=True)

    # --- claiming ------------------------------------------------------------------------------

    @classmethod
    def claim(cls, c: jobs.Candidate, work_root: Path, arrived: float, expired: str | None = None
              ) -> "WorkItem | None":
        """Move ``c``'s files into a new work folder; None if another daemon was faster.

        The folder is prepared under a hidden name (lease and meta written) and renamed
        into place before the first input moves, so no daemon ever sees a claim in
        progress without its lease.
        """
        if jobs.kind(c.primary) == "missing":
            return None  # another daemon was faster
        _check_parts(c)
        job_id = _job_id(c.name)
        staging, work = work_root / f".{job_id}", work_root / job_id
        (staging / "input").mkdir(parents=True)
        write_yaml(staging / "lease.yaml", _lease())
        meta = Meta(c.name, str(c.rel), c.form, arrived, time.time(), expired=expired)
        write_yaml(staging / "meta.yaml", dataclasses.asdict(meta))
        os.rename(staging, work)
        inp = work / "input"
        try:
            os.rename(c.primary, inp / c.primary.name)
        except FileNotFoundError:
            shutil.rmtree(work, ignore_errors=True)
            return None
        except PermissionError:  # e.g. another user's folder: renaming a folder needs write permission on it
            shutil.rmtree(work, ignore_errors=True)
            what = "folder" if c.form == "folder" else "file"
            raise ClaimRefused(f"{c.primary.name}: cannot take this job: the daemon's user may not move the {what} "
                               f"(permission denied). Its owner can make it group-writable for the daemon's group "
                               f"(chmod g+w), or copy the job in again. The inputs stay where they are.") from None
        if c.form != "folder":
            for p in c.files:
                if p == c.primary or jobs.kind(p) not in ("file", "link"):
                    continue  # a part that became a folder meanwhile stays: the job fails naming it
                try:
                    if p in c.shared:
                        _copy_shared(p, inp / p.name)
                    else:
                        os.rename(p, inp / p.name)
                except FileNotFoundError:
                    pass  # reported when the job is read
        return cls(work, meta)

    @classmethod
    def take_over(cls, work: Path, work_root: Path) -> "WorkItem | None":
        """Adopt an abandoned work folder by renaming it (atomic: one daemon wins)."""
        meta = Meta.read(work / "meta.yaml")
        new = work_root / _job_id(meta.name)
        try:
            os.rename(work, new)
        except OSError:
            return None
        write_yaml(new / "lease.yaml", _lease())
        return cls(new, meta)


def _check_parts(c: jobs.Candidate) -> None:
    """Only the job's own entries move: direct children of its folder, and only a folder job's
    first part is a folder (never the inbox or the job's own folder)."""
    home = c.primary.parent
    for p in [c.primary] if c.form == "folder" else c.files:  # a folder job's files move inside their folder
        if p.parent != home or p.name in ("", ".", ".."):
            raise ClaimRefused(f"{c.name}: {short(str(p.name))} is not an entry of the job's folder; nothing was "
                               "taken.")
    want = "dir" if c.form == "folder" else "file"
    if jobs.kind(c.primary) != want:
        what = "a folder" if want == "dir" else "a regular file"
        raise ClaimRefused(f"{c.primary.name}: is not {what} any more; nothing was taken. Copy the job in again.")


def lease_is_stale(lease: dict[str, Any], timeout: float, work: Path | None = None,
                   now: float | None = None) -> bool:
    """Released, its daemon gone from this host, or silent for longer than ``timeout``."""
    now = time.time() if now is None else now
    if not lease:  # unreadable: stale only once the folder itself is old
        try:
            return work is not None and now - work.stat().st_mtime > timeout
        except OSError:
            return False
    if lease.get("released"):
        return True
    if lease.get("host") == jobs.host_name() and isinstance(lease.get("pid"), int) and \
            not jobs.pid_alive(lease["pid"]):
        return True
    return now - float(lease.get("heartbeat", 0)) > timeout


def renew_lease(work: Path, released: bool = False) -> None:
    """The heartbeat's write: we still hold ``work`` (or, ``released``, no longer). A folder
    removed meanwhile (the job ended) stays removed."""
    try:
        write_bytes_atomic(work / "lease.yaml", yaml.safe_dump(_lease(released), sort_keys=False).encode(),
                           parents=False)
    except FileNotFoundError:
        pass


def _lease(released: bool = False) -> dict[str, Any]:
    return {"host": jobs.host_name(), "pid": os.getpid(), "heartbeat": time.time(), "released": released}


def _job_id(name: str) -> str:
    return f"{time.time_ns()}-{jobs.safe_name(jobs.host_name())}-{os.getpid()}-{jobs.safe_name(name)}"


def _copy_shared(src: Path, dst: Path) -> None:
    """A part another waiting job needs too: a hard link (or, where there are none, a copy)."""
    if jobs.kind(src) != "file":
        os.rename(src, dst)  # a link or worse: moved, and the job fails saying what it is
        return
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)
