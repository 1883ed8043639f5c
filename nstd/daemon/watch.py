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
    """Any change under the watched folder sets ``event``; scanning happens elsewhere.

    The folder's own deletion sets ``lost`` too: its watch is dead from then on.
    """

    def __init__(self, event: threading.Event, root: str, lost: threading.Event | None = None) -> None:
        self.event, self.root, self.lost = event, root, lost

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        if self.lost is not None and event.event_type == "deleted" and os.fsdecode(event.src_path) == self.root:
            self.lost.set()
        self.event.set()


def start_observer(path: Path, mode: str, poll_interval: float, wake: threading.Event,
                   lost: threading.Event | None = None) -> tuple[BaseObserver, str]:
    chosen, why = choose_mode(path, mode)
    observer = PollingObserver(timeout=poll_interval) if chosen == "polling" else Observer()
    observer.schedule(Wake(wake, str(path), lost), str(path), recursive=True)
    observer.daemon = True
    observer.start()
    log.info("watching %s with %s (%s)", path, "polling every %gs" % poll_interval if chosen == "polling"
             else "native events", why)
    return observer, chosen


class InboxWatch:
    """The observer for one inbox, re-armed when the folder is deleted and made again.

    inotify watches an inode, and a recreated folder may even get the same inode number,
    so the watch is known lost when the folder was seen missing, its own deletion event
    arrived, or its identity changed; :meth:`check` re-arms it once the folder is back.
    """

    def __init__(self, path: Path, mode: str, poll_interval: float, wake: threading.Event) -> None:
        self.path, self.mode, self.poll_interval, self.wake = path, mode, poll_interval, wake
        self.observer: BaseObserver | None = None
        self.identity: tuple[int, int] | None = None
        self.lost = threading.Event()
        self.missing_logged = False
        self._arm()

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def _arm(self) -> None:
        self.lost.clear()
        self.identity = self._stat()
        if self.identity is None:
            self.lost.set()
            return
        self.observer, _ = start_observer(self.path, self.mode, self.poll_interval, self.wake, self.lost)

    def check(self) -> None:
        """Call every second or so; cheap (one stat)."""
        now = self._stat()
        if now is None:
            self.lost.set()
            if not self.missing_logged:
                log.warning("the inbox %s is gone; jobs are picked up again once it is back", self.path)
                self.missing_logged = True
            return
        if now == self.identity and not self.lost.is_set():
            return
        log.warning("the inbox %s was deleted and made again; watching it again", self.path)
        self.stop()
        self.missing_logged = False
        self._arm()
        self.wake.set()

    def stop(self) -> None:
        if self.observer is not None:
            self.observer.stop()
            self.observer.join(timeout=5)
            self.observer = None
