"""Retention: old logs, reports, archived originals and failed jobs are removed, if asked.

Off by default (nothing is ever deleted unless ``retention.days`` or ``retention.keep`` is
set). Result images in the outbox are never touched; neither is anything a job did not
make. A job folder in ``archive/`` carries :data:`ARCHIVE_MARKER`, one in ``failed/`` its
``error.yaml``: only those folders are candidates, never the sub-folders that mirror the inbox.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import time
from pathlib import Path

log = logging.getLogger("nstd")

ARCHIVE_MARKER = ".nstd-archived.yaml"
OUTBOX_SUFFIXES = (".report.yaml", ".log")


def _mtime(path: Path) -> float:
    return os.lstat(path).st_mtime


def job_folders(root: Path, marker: str) -> list[Path]:
    """Folders under ``root`` holding ``marker`` (never through links)."""
    out = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        if marker in files:
            out.append(Path(folder))
            dirs[:] = []  # a job folder's insides are its inputs
    return out


def outbox_records(outbox: Path) -> list[Path]:
    return [p for p in outbox.rglob("*") if p.name.endswith(OUTBOX_SUFFIXES) and not p.name.startswith(".")
            and stat.S_ISREG(os.lstat(p).st_mode)]


def expired(paths: list[Path], now: float, days: float | None, keep: int | None) -> list[Path]:
    """Those older than ``days``, and all but the newest ``keep``."""
    dated = sorted(((_mtime(p), p) for p in paths), reverse=True)
    return [p for i, (t, p) in enumerate(dated)
            if (days is not None and now - t > days * 86400) or (keep is not None and i >= keep)]


def prune(outbox: Path, archive: Path | None, failed: Path, days: float | None, keep: int | None,
          now: float | None = None) -> int:
    """Remove what retention says is old; returns how many records went. Errors are logged, not raised."""
    if days is None and keep is None:
        return 0
    now = time.time() if now is None else now
    gone = 0
    groups = [outbox_records(outbox) if outbox.is_dir() else [],
              job_folders(failed, "error.yaml") if failed.is_dir() else [],
              job_folders(archive, ARCHIVE_MARKER) if archive is not None and archive.is_dir() else []]
    for paths in groups:
        for p in expired(paths, now, days, keep):
            try:
                shutil.rmtree(p) if stat.S_ISDIR(os.lstat(p).st_mode) else p.unlink()
                gone += 1
            except OSError as exc:
                log.warning("retention: could not remove %s (%s)", p, exc)
    if gone:
        log.info("retention: removed %d old record(s) (days %s, keep %s)", gone, days, keep)
    return gone
