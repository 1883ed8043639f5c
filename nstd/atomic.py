"""Crash-safe file writes: temp name on the same file system, fsync, rename.

Nobody (user, NAS client, another daemon) ever sees a half-written file.
"""

from __future__ import annotations

import os
import secrets
import stat
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


def _write_temp(path: Path, write: Callable[[BinaryIO], None], mode: int | None, parents: bool = True) -> Path:
    """A new, fsynced file beside ``path``.

    Created with 0o666 so the process umask applies (mkstemp's 0600 would hide results
    from share users); ``mode`` overrides it. The temporary name is short and fixed in
    length, so it fits wherever ``path``'s own name fits. ``parents=False``: a missing
    folder is FileNotFoundError, never made again (it was removed on purpose).
    """
    if parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.parent / f".nstd.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
            break
        except FileExistsError:
            continue
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
    return tmp


def write_atomic(path: Path, write: Callable[[BinaryIO], None], mode: int | None = None,
                 parents: bool = True) -> Path:
    """Write ``path`` via ``write(fh)``, replacing any existing file atomically."""
    path = Path(path)
    tmp = _write_temp(path, write, mode, parents)
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return path


def write_bytes_atomic(path: Path, data: bytes, mode: int | None = None, parents: bool = True) -> Path:
    return write_atomic(path, lambda fh: fh.write(data), mode, parents)


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
                if os.path.lexists(candidate):
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
    tmp = dst.with_name(f".nstd.{secrets.token_hex(6)}.moving")
    if src.is_dir() and not src.is_symlink():
        shutil.copytree(src, tmp, symlinks=True)  # a link is copied as a link, never followed
        for f in tmp.rglob("*"):
            _fsync_regular(f)
    else:
        shutil.copy2(src, tmp, follow_symlinks=False)
        _fsync_regular(tmp)
    os.rename(tmp, dst)
    fsync_dir(dst.parent)
    if src.is_dir() and not src.is_symlink():
        shutil.rmtree(src)
    else:
        src.unlink()
    return dst


def _fsync_regular(path: Path) -> None:
    """fsync a regular file; links and anything else are left alone (never opened)."""
    if not stat.S_ISREG(os.lstat(path).st_mode):
        return
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def free_name(path: Path) -> Path:
    """``path`` if unused, else ``path-1``, ``path-2``… (for folders and files). A link takes
    its name too, even one whose target is gone: nothing may be moved onto it."""
    n = 0
    while os.path.lexists(numbered(path, n)):
        n += 1
    return numbered(path, n)
