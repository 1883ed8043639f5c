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


def move_path(src: Path, dst: Path) -> Path:
    """rename(), or where src and dst are on different file systems, copy+fsync then delete.

    The copy is made under a hidden temporary name and renamed into place, so the
    destination never shows a partial file or folder.
    """
    import errno
    import shutil

    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(src, dst)
        return dst
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    tmp = dst.with_name(f".{dst.name}.moving")
    if src.is_dir():
        shutil.copytree(src, tmp)
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb+") as fh:
                    os.fsync(fh.fileno())
    else:
        shutil.copy2(src, tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
    os.rename(tmp, dst)
    fsync_dir(dst.parent)
    if src.is_dir():
        shutil.rmtree(src)
    else:
        src.unlink()
    return dst


def free_name(path: Path) -> Path:
    """``path`` if unused, else ``path-1``, ``path-2``… (for folders and files)."""
    n = 0
    while numbered(path, n).exists():
        n += 1
    return numbered(path, n)
