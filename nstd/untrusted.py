"""Reading what users put in the inbox, treating every file as an attacker's.

One rule for every job form: a job is made of **regular files inside the inbox**. A
symbolic link is never followed, never part of a job and never copied as anything but
a link; sizes are checked with ``lstat``/``fstat`` before a byte is read; YAML is parsed
with aliases refused and a node budget, so a small file cannot expand into a big one.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from nstd.errors import NstdError

#: A job YAML holds a few dozen keys; this bounds what one can cost before it is understood.
MAX_YAML_NODES = 2000
#: Default largest job YAML (limits.yaml_bytes).
YAML_BYTES = 65_536
#: Default limits.scan_entries, scan_depth and scan_bytes: what one scan of the inbox looks at.
SCAN_ENTRIES = 20_000
SCAN_DEPTH = 16
SCAN_BYTES = 16 << 20  # of job YAML read anew


class UnsafeInput(NstdError):
    """An inbox file that is not a plain regular file of acceptable size."""

    phase = "input"


def kind(path: Path) -> str:
    """What ``path`` is without following links: file, dir, link, missing or other."""
    try:
        mode = os.lstat(path).st_mode
    except (OSError, ValueError):  # ValueError: a NUL byte, which no name on disk holds
        return "missing"
    if stat.S_ISLNK(mode):
        return "link"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    return "other"


def is_regular(path: Path) -> bool:
    return kind(path) == "file"


def read_regular(path: Path, max_bytes: int, what: str = "file", limit: str = "the limit") -> bytes:
    """The bytes of a regular file, never through a link, refusing anything over ``max_bytes``.

    The size comes from ``fstat`` on the opened descriptor, before reading: a sparse
    multi-gigabyte file costs nothing.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if kind(path) == "link":
            raise UnsafeInput(f"{path.name}: is a symbolic link; nstd never follows links. Copy the {what} "
                              "itself into the inbox.") from None
        raise UnsafeInput(f"{path.name}: cannot open the {what} ({exc.strerror or exc}).") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeInput(f"{path.name}: is not a regular file; put the {what} itself in the inbox.")
        if st.st_size > max_bytes:
            raise UnsafeInput(f"{path.name}: {st.st_size:,} bytes is over the limit of {max_bytes:,} bytes "
                              f"({limit}) for this {what}; make it smaller or raise {limit}.")
        chunks, left = [], max_bytes + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > max_bytes:  # grew while we read
            raise UnsafeInput(f"{path.name}: grew past the limit of {max_bytes:,} bytes while being read.")
        return data
    finally:
        os.close(fd)


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader without aliases and with a node budget: cost stays linear in the text."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "YAML aliases (*name) are not allowed in a job file",
                                              event.start_mark)
        self._nodes += 1
        if self._nodes > MAX_YAML_NODES:
            raise yaml.composer.ComposerError(None, None, f"more than {MAX_YAML_NODES} YAML nodes",
                                              self.peek_event().start_mark)
        return super().compose_node(parent, index)


def load_yaml(text: str) -> Any:
    """Parse untrusted YAML: no aliases, at most :data:`MAX_YAML_NODES` nodes, plain data only."""
    return yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 - a SafeLoader subclass


def short(value: Any, limit: int = 80) -> str:
    """``repr`` of a user's value, cut: a message never grows with the input."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"
