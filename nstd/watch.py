"""Noticing new files: native events where they work, polling where they cannot.

Events from other machines never reach inotify on network and FUSE file systems
(NFS, SMB/CIFS, sshfs, bindfs, 9p …), so ``auto`` mode reads the mount table and
polls there. Observers only *wake* the scanner; the scanner decides what is a job.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

log = logging.getLogger("nstd.watch")

#: File system types whose changes made elsewhere do not produce local inotify events.
REMOTE_FS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "glusterfs", "afs", "lustre", "gpfs",
             "beegfs", "davfs", "vboxsf", "virtiofs", "ncpfs", "fuse", "fuseblk"}


def _unescape(field: str) -> str:
    return field.encode().decode("unicode_escape") if "\\" in field else field


def mount_of(path: Path, mountinfo: str = "/proc/self/mountinfo") -> tuple[str, str, str]:
    """(mount point, fs type, source) of the mount that holds ``path``."""
    real = os.path.realpath(path)
    best = ("/", "unknown", "")
    try:
        lines = Path(mountinfo).read_text().splitlines()
    except OSError:
        return best
    for line in lines:
        left, _, right = line.partition(" - ")
        parts, rparts = left.split(), right.split()
        if len(parts) < 5 or not rparts:
            continue
        point = _unescape(parts[4])
        if (real == point or real.startswith(point.rstrip("/") + "/")) and len(point) >= len(best[0]):
            best = (point, rparts[0], _unescape(rparts[1]) if len(rparts) > 1 else "")
    return best


def choose_mode(path: Path, mode: str) -> tuple[str, str]:
    """``events`` or ``polling`` for ``path``, and why (for the log)."""
    point, fstype, source = mount_of(path)
    where = f"{fstype} ({source}) at {point}" if source else f"{fstype} at {point}"
    if mode != "auto":
        return mode, f"watch.mode is {mode}; file system {where}"
    if fstype in REMOTE_FS or fstype.startswith("fuse."):
        return "polling", f"{path} is on {where}: changes made elsewhere send no events here"
    return "events", f"{path} is on local {where}"


class Wake(FileSystemEventHandler):
    """Any change under the watched folder sets ``event``; scanning happens elsewhere."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in ("opened", "closed_no_write"):
            self.event.set()


def start_observer(path: Path, mode: str, poll_interval: float, wake: threading.Event) -> tuple[BaseObserver, str]:
    chosen, why = choose_mode(path, mode)
    observer = PollingObserver(timeout=poll_interval) if chosen == "polling" else Observer()
    observer.schedule(Wake(wake), str(path), recursive=True)
    observer.daemon = True
    observer.start()
    log.info("watching %s with %s (%s)", path, "polling every %gs" % poll_interval if chosen == "polling"
             else "native events", why)
    return observer, chosen
