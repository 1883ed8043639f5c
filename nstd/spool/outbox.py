"""Where finished and failed jobs go, written so nobody sees half a file.

  outbox/<sub>/NAME.EXT, NAME.report.yaml, NAME.log   (never overwritten: NAME-1.EXT …)
  outbox/<sub>/NAME.preview.EXT                        (while the job runs, if asked for)
  failed/<sub>/NAME/   every original input + error.yaml
  archive/<sub>/NAME/  originals after success (unless delete_originals)
"""

from __future__ import annotations

import grp
import os
import secrets
import shutil
import time
import traceback
from pathlib import Path
from typing import Any

from nstd.atomic import _fsync_regular, free_name, move_path, write_bytes_atomic, write_new
from nstd.config import Config
from nstd.errors import is_internal_text, plain
from nstd.spool.jobs import read_yaml, write_yaml
from nstd.spool.report import dump
from nstd.spool.retention import ARCHIVE_MARKER


def _input_files(work: Path) -> list[Path]:
    return sorted((work / "input").iterdir()) if (work / "input").is_dir() else []


def has_inputs(work: Path) -> bool:
    try:
        return any((work / "input").iterdir())
    except OSError:
        return False


def apply_output_mode(path: Path, config: Config) -> None:
    """File mode and group for shares where other users must read the results."""
    if config.output.file_mode is not None:
        os.chmod(path, config.output.file_mode)
    if config.output.group:
        try:
            os.chown(path, -1, grp.getgrnam(config.output.group).gr_gid)
        except (KeyError, PermissionError) as exc:
            raise OSError(f"cannot give {path} to group {config.output.group!r}: {exc}") from exc


#: Longest suffix nstd adds to an output stem: "-9999" (never overwrite) + ".report.yaml".
LONGEST_SUFFIX = len("-9999.preview.tiff".encode())
NAME_MAX = 255


def output_stem(name: str) -> str:
    """``name``, or where NAME.report.yaml and the like would not fit in a file name, its
    start plus a short hash (the same for the same name, so reruns stay recognisable)."""
    if len(name.encode()) + LONGEST_SUFFIX <= NAME_MAX:
        return name
    import hashlib

    tag = "~" + hashlib.sha256(name.encode()).hexdigest()[:8]
    room = NAME_MAX - LONGEST_SUFFIX - len(tag)
    cut = name.encode()[:room].decode(errors="ignore")
    return cut + tag


def preview_path(config: Config, name: str, rel: str) -> Path:
    """Where a running job shows its latest image; removed when the job ends either way."""
    return config.paths.outbox / rel / f"{output_stem(name)}.preview.{config.output.format}"


def preview_of(config: Config, label: str) -> Path:
    """The preview of a running job named by its label (``sub/name`` or ``name``)."""
    rel, _, name = label.rpartition("/")
    return preview_path(config, name, rel or ".")


def publish(work: Path, config: Config, name: str, rel: str, image_bytes: bytes | Path, ext: str,
            report: dict[str, Any], log_text: str) -> dict[str, str]:
    """Write the result trio to the outbox once; a resumed finish reuses what was written.

    ``image_bytes`` may be a finished file or folder instead (a clip: its video, or its
    frames with ``ext`` ""), copied in under a temporary name and renamed."""
    marker = work / "published.yaml"
    done = read_yaml(marker)
    folder = config.paths.outbox / rel
    if "image" not in done:
        if isinstance(image_bytes, Path):
            image = publish_path(image_bytes, folder / f"{output_stem(name)}{ext}", config)
        else:
            image = write_new(folder / f"{output_stem(name)}{ext}", lambda fh: fh.write(image_bytes))
        if not image.is_dir():  # a folder of frames: its files were given the mode
            apply_output_mode(image, config)
        done["image"] = str(image)
        write_yaml(marker, done)
    shown = Path(done["image"]).name
    stem = shown[: len(shown) - len(ext)]
    report["output"] = done["image"]
    for key, suffix, data in (("report", ".report.yaml", lambda: dump(report)),
                              ("log", ".log", lambda: log_text.encode())):
        if key not in done:
            path = write_new(folder / f"{stem}{suffix}", lambda fh, d=data: fh.write(d()))
            apply_output_mode(path, config)
            done[key] = str(path)
            write_yaml(marker, done)
    return done


def publish_path(src: Path, dest: Path, config: Config) -> Path:
    """A finished file or folder copied to ``dest`` (``dest-1`` … when taken), appearing at once."""
    if not src.is_dir():
        def copy(fh: Any) -> None:
            with open(src, "rb") as source:
                shutil.copyfileobj(source, fh, 1 << 20)

        return write_new(dest, copy)
    from nstd.video.encode import place_new

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".nstd.{secrets.token_hex(6)}.tmp"
    shutil.copytree(src, tmp)
    for f in tmp.iterdir():
        _fsync_regular(f)
        apply_output_mode(f, config)
    return place_new(tmp, dest)


def archive_target(config: Config, name: str, rel: str) -> Path | None:
    """Where a finished job's originals will go (None: deleted), decided before its report is written."""
    if config.paths.delete_originals or config.paths.archive is None:
        return None
    return free_name(config.paths.archive / rel / name)


def archive_inputs(work: Path, config: Config, name: str, rel: str, dest: Path | None) -> Path | None:
    """Originals to ``dest`` (from :func:`archive_target`), or deleted; returns where."""
    files = _input_files(work)
    if dest is None:
        for f in files:
            shutil.rmtree(f) if f.is_dir() and not f.is_symlink() else f.unlink()
        return None
    if dest.exists():  # taken since it was chosen (another daemon): the next free name
        dest = free_name(dest)
    dest.mkdir(parents=True)
    write_yaml(dest / ARCHIVE_MARKER, {"job": name, "archived": time.time()})
    for f in files:
        move_path(f, dest / f.name)
    return dest


def fail(work: Path, config: Config, name: str, rel: str, exc: BaseException, phase: str,
         parameters: dict[str, Any] | None, versions: dict[str, str], log_text: str) -> Path:
    """Every original input plus error.yaml (and the job log) to failed/<sub>/NAME/."""
    dest = free_name(config.paths.failed / rel / name)
    tmp = dest.with_name(f".nstd.{secrets.token_hex(6)}.failing")  # short: fits beside any name
    tmp.mkdir(parents=True, exist_ok=True)
    meta = read_yaml(work / "meta.yaml")
    for f in _input_files(work):
        move_path(f, tmp / f.name)
    user_error = getattr(exc, "phase", None) is not None or is_internal_text(exc)  # the latter: its text is in job.log
    error = {
        "job": name,
        "phase": phase,
        "error": type(exc).__name__,
        "message": plain(exc),
        "what_to_do": "fix the problem, then run 'nstd retry " + str(Path(rel) / name) + "' (or copy the inputs "
                      "back into the inbox)",
        "inputs": sorted(p.name for p in tmp.iterdir()),
        "inbox_folder": rel,
        "form": meta.get("form"),
        "parameters": parameters,
        "versions": versions,
    }
    if not user_error:
        error["traceback"] = "".join(traceback.format_exception(exc)).splitlines()
    write_yaml(tmp / "error.yaml", error)
    write_bytes_atomic(tmp / "job.log", log_text.encode())
    for made in (tmp / "error.yaml", tmp / "job.log"):
        apply_output_mode(made, config)
    move_path(tmp, dest)
    return dest


def refused(config: Config, name: str, rel: str, exc: BaseException, files: list[Path]) -> Path:
    """failed/<sub>/NAME/error.yaml for a job that could not be claimed; its inputs stay in the inbox."""
    dest = free_name(config.paths.failed / rel / name)
    tmp = dest.with_name(f".nstd.{secrets.token_hex(6)}.failing")
    tmp.mkdir(parents=True)
    write_yaml(tmp / "error.yaml", {
        "job": name, "phase": "claim", "error": type(exc).__name__, "message": str(exc),
        "what_to_do": "let the daemon's user move the files (chmod g+w for its group), or copy the job in again",
        "inputs": [], "inputs_stay_in": [str(p) for p in files[:50]], "inbox_folder": rel})
    os.rename(tmp, dest)
    return dest


def retry(config: Config, name: str) -> list[Path]:
    """Put a failed job's inputs back into the inbox where they came from."""
    src = config.paths.failed / name
    error = read_yaml(src / "error.yaml")
    if not src.is_dir() or not error:
        raise FileNotFoundError(f"{src}: no failed job there (expected a folder with error.yaml).")
    rel = Path(error.get("inbox_folder", "."))
    inbox = config.paths.inbox / rel
    inbox.mkdir(parents=True, exist_ok=True)
    inputs = [src / n for n in error.get("inputs", []) if (src / n).exists()]
    moved = []
    # images first, the job YAML last: the job becomes complete in one step
    for p in sorted(inputs, key=lambda p: p.suffix.lower() in (".yaml", ".yml")):
        target = inbox / p.name
        if target.exists():
            raise FileExistsError(f"{target} already exists in the inbox; move it away first.")
        hidden = inbox / f".{p.name}.retry"
        move_path(p, hidden)
        os.rename(hidden, target)
        moved.append(target)
    shutil.rmtree(src)
    return moved
