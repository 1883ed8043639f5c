"""Retention: off by default; by age or count; only job records, never results or user files."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from nstd.spool.retention import ARCHIVE_MARKER, prune

pytestmark = pytest.mark.unit

DAY = 86400.0


def job(folder: Path, marker: str, age_days: float, now: float) -> Path:
    folder.mkdir(parents=True)
    (folder / marker).write_text("job: x\n")
    (folder / "photo.jpg").write_bytes(b"x")
    t = now - age_days * DAY
    for p in (folder / marker, folder / "photo.jpg", folder):
        os.utime(p, (t, t))
    return folder


def record(path: Path, age_days: float, now: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x")
    os.utime(path, (now - age_days * DAY,) * 2)
    return path


def layout(tmp_path: Path, now: float) -> dict[str, Path]:
    out, arch, failed = tmp_path / "outbox", tmp_path / "archive", tmp_path / "failed"
    return {
        "old_report": record(out / "sub" / "old.report.yaml", 40, now),
        "old_log": record(out / "sub" / "old.log", 40, now),
        "old_image": record(out / "sub" / "old.png", 40, now),  # results are never removed
        "new_report": record(out / "new.report.yaml", 1, now),
        "old_archive": job(arch / "sub" / "old", ARCHIVE_MARKER, 40, now),
        "new_archive": job(arch / "new", ARCHIVE_MARKER, 1, now),
        "user_folder": job(arch / "mine", "notes.txt", 400, now),  # no marker: not ours
        "old_failed": job(failed / "old", "error.yaml", 40, now),
        "new_failed": job(failed / "new", "error.yaml", 2, now),
    }


def test_off_by_default_removes_nothing(tmp_path):
    now = time.time()
    paths = layout(tmp_path, now)
    assert prune(tmp_path / "outbox", tmp_path / "archive", tmp_path / "failed", None, None, now) == 0
    assert all(p.exists() for p in paths.values())


def test_by_age_removes_only_old_job_records(tmp_path):
    now = time.time()
    paths = layout(tmp_path, now)
    gone = prune(tmp_path / "outbox", tmp_path / "archive", tmp_path / "failed", 30, None, now)
    assert gone == 4
    for name in ("old_report", "old_log", "old_archive", "old_failed"):
        assert not paths[name].exists(), name
    for name in ("old_image", "new_report", "new_archive", "user_folder", "new_failed"):
        assert paths[name].exists(), name
    assert (tmp_path / "archive" / "sub").is_dir()  # the mirrored sub-folder itself stays


def test_by_count_keeps_the_newest(tmp_path):
    now = time.time()
    paths = layout(tmp_path, now)
    prune(tmp_path / "outbox", tmp_path / "archive", tmp_path / "failed", None, 1, now)
    assert paths["new_failed"].exists() and not paths["old_failed"].exists()
    assert paths["new_archive"].exists() and not paths["old_archive"].exists()
    assert paths["new_report"].exists() and paths["old_image"].exists()
    assert paths["user_folder"].exists()
