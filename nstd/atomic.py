"""Crash-safe file writes: temp name on the same file system, fsync, rename.

Nobody (user, NAS client, another daemon) ever sees a half-written file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (no-op where directories can't be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_temp(path: Path, write: Callable[[BinaryIO], None], mode: int | None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
    except BaseException:
        os.unlink(tmp)
        raise
    return Path(tmp)


def write_atomic(path: Path, write: Callable[[BinaryIO], None], mode: int | None = None) -> Path:
    """Write ``path`` via ``write(fh)``, replacing any existing file atomically."""
    path = Path(path)
    tmp = _write_temp(path, write, mode)
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return path


def write_bytes_atomic(path: Path, data: bytes, mode: int | None = None) -> Path:
    return write_atomic(path, lambda fh: fh.write(data), mode)


def numbered(path: Path, n: int) -> Path:
    """``out.png`` → ``out-1.png`` for n=1 (n=0 gives the path itself)."""
    if n == 0:
        return path
    suffixes = "".join(path.suffixes[-2:]) if path.name.endswith(".report.yaml") else path.suffix
    stem = path.name[: len(path.name) - len(suffixes)] if suffixes else path.name
    return path.with_name(f"{stem}-{n}{suffixes}")


def write_new(path: Path, write: Callable[[BinaryIO], None], mode: int | None = None) -> Path:
    """Write without ever overwriting: ``out.png`` is taken → ``out-1.png``, ``out-2.png``…

    Uses link() so the check and the publish are one atomic step, also on NFS.
    Returns the path actually written.
    """
    path = Path(path)
    tmp = _write_temp(path, write, mode)
    try:
        for n in range(10_000):
            candidate = numbered(path, n)
            try:
                os.link(tmp, candidate)
            except FileExistsError:
                continue
            except OSError:  # SMB and some FUSE mounts have no hard links
                if candidate.exists():
                    continue
                os.rename(tmp, candidate)
                fsync_dir(path.parent)
                return candidate
            fsync_dir(path.parent)
            return candidate
        raise FileExistsError(f"{path}: 10000 numbered variants already exist")
    finally:
        if tmp.exists():
            os.unlink(tmp)
