"""Clips through the real daemon: every job form, kill -9 mid-clip, hostile clips.

Tiny synthetic clips (48×32 px, a pan, 6–10 frames, AAC sound) and the thin random
network; see tests/videos.py and tests/test_video.py for the in-process side.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

pytest.importorskip("av")
pytest.importorskip("cv2")

from tests.conftest import make_image  # noqa: E402
from tests.daemon_harness import Daemon, archived, outputs, show_logs, wait_until, write_config  # noqa: E402
from tests.test_video import make_audio_only, make_zero_frames  # noqa: E402
from tests.videos import audio_packets, decode, make_clip  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

CLIP_DEFAULTS = {"size": 48, "iterations": 4, "coarse_iterations": 2, "frame_iterations": 3, "seed": 1}


def config(root, thin_mat, **extra):
    return write_config(root, thin_mat, defaults=CLIP_DEFAULTS, **extra)


def test_a_clip_in_every_job_form_comes_out_whole(tmp_path, thin_mat):
    root = tmp_path / "nstd"
    cfg = config(root, thin_mat)
    inbox = root / "inbox"
    inbox.mkdir(parents=True)
    with Daemon(cfg) as d:
        d.wait_log("ready:", 120)
        # pair form: NAME.content.mp4 + NAME.style.png, the defaults, H.264 out with the sound
        make_clip(root / "src" / "pan.mp4", frames=8)
        make_image(inbox / "pan.style.png", (36, 36), seed=2)
        shutil.copy(root / "src" / "pan.mp4", inbox / "pan.content.mp4")
        # a YAML naming a clip, a part of it, as WebM
        make_clip(inbox / "holiday.mov", frames=8)
        make_image(inbox / "art.png", (36, 36), seed=4)
        (inbox / "holiday.yaml").write_text(yaml.safe_dump(
            {"content": "holiday.mov", "style": "art.png", "output": "holiday.webm", "start": 0.08,
             "duration": 0.16}))
        # a folder job with content.mp4, out as a folder of frames
        reel = inbox / "reel"
        reel.mkdir()
        make_clip(reel / "content.mp4", frames=6, audio=False)
        make_image(reel / "style.png", (36, 36), seed=5)
        (reel / "job.yaml").write_text("output: reel.png\n")
        try:
            wait_until(lambda: len(list((root / "outbox").glob("*.report.yaml"))) == 3, 200, "three reports")
        except AssertionError:
            show_logs([d])
            raise
        assert d.stop() == 0
    out = root / "outbox"
    frames, times, facts = decode(out / "pan.mp4")
    _, in_times, in_facts = decode(root / "src" / "pan.mp4")
    assert len(frames) == 8 and times == pytest.approx(in_times)  # frames in = frames out, same times
    assert facts["duration"] == pytest.approx(in_facts["duration"], abs=0.03)
    assert audio_packets(out / "pan.mp4") == audio_packets(root / "src" / "pan.mp4")  # the sound, unchanged
    report = yaml.safe_load((out / "pan.report.yaml").read_text())
    assert report["clip"]["used"]["frames"] == 8 and report["clip"]["used"]["audio"] == "copied"
    assert report["inputs"]["content"]["path"].endswith("pan.content.mp4")
    assert archived(root / "archive" / "pan") == ["pan.content.mp4", "pan.style.png"]
    frames, times, facts = decode(out / "holiday.webm")
    assert len(frames) == 4 and facts["codec"] == "vp9" and facts["audio"] == "opus"
    used = yaml.safe_load((out / "holiday.report.yaml").read_text())["clip"]["used"]
    assert (used["first_frame"], used["last_frame"], used["frames"]) == (2, 5, 4)
    assert sorted(p.name for p in (out / "reel").iterdir()) == [f"frame_{i:06d}.png" for i in range(1, 7)]
    assert "frame 6/6" in (out / "reel.log").read_text()
    assert not list((root / "failed").iterdir())
    assert not [p for p in root.rglob("*") if p.name.startswith(".nstd.")]


def frames_done(root) -> int:
    """Finished frames, as the frame store counts them: by their records, written after the PNG."""
    return sum(1 for _ in (root / "state" / "work").glob("*/frames/[0-9]*.yaml"))


def slow_clip(root, thin_mat, frames: int, frame_iterations: int, **extra):
    """A config whose later frames are slow enough to act between them, and a clip to drop."""
    cfg = write_config(root, thin_mat, defaults={**CLIP_DEFAULTS, "frame_iterations": frame_iterations}, **extra)
    (root / "inbox").mkdir(parents=True)
    make_clip(root / "src" / "clip.mp4", frames=frames)
    return cfg


def drop_clip(root, name: str = "clip") -> None:
    """The clip and its style into the inbox as a pair."""
    make_image(root / "inbox" / f"{name}.style.png", (36, 36), seed=2)
    shutil.copy(root / "src" / "clip.mp4", root / "inbox" / f"{name}.content.mp4")


def test_kill_9_mid_clip_resumes_at_the_first_unfinished_frame_and_comes_out_once(tmp_path, thin_mat):
    root = tmp_path / "nstd"
    cfg = slow_clip(root, thin_mat, frames=10, frame_iterations=60)
    with Daemon(cfg) as d:
        d.wait_log("ready:", 120)
        drop_clip(root)
        wait_until(lambda: frames_done(root) >= 3, 200, "three finished frames")
        d.proc.kill()  # kill -9: no checkpoint, no goodbye
        d.proc.wait(10)
    done_before = frames_done(root)
    assert 3 <= done_before < 10 and not outputs(root, "*.mp4")
    with Daemon(cfg) as d:
        wait_until(lambda: outputs(root, "*.mp4"), 200, "the clip")
        drop_clip(root, "again")  # the same job again, uninterrupted, for comparison
        wait_until(lambda: (root / "outbox" / "again.report.yaml").is_file(), 200, "the uninterrupted run")
        assert d.stop() == 0
    assert [p.name for p in outputs(root, "*.mp4")] == ["again.mp4", "clip.mp4"]  # one output each, no clip-1
    # the frames are identical (libx264's bytes for the same frames can differ between two encodes)
    frames = {n: [f["pixels_sha256"] for f in yaml.safe_load((root / "outbox" / f"{n}.report.yaml").read_text())
                  ["clip"]["per_frame"]] for n in ("clip", "again")}
    assert len(set(frames["clip"])) == 10 and frames["clip"] == frames["again"]
    decoded, times, _ = decode(root / "outbox" / "clip.mp4")
    assert len(decoded) == 10 and times == decode(root / "outbox" / "again.mp4")[1]
    log = (root / "outbox" / "clip.log").read_text()
    assert "resuming the clip" in log
    assert all(int(n) > done_before for n in re.findall(r"frame (\d+) resumes from its checkpoint", log)), log
    for i in range(1, 11):  # every frame was stylized once: the restart took up the first unfinished one
        said = len(re.findall(rf"frame {i}/10 \(source frame \d+, [\d.]+ s\) done", log))
        # the kill may fall between the last finished frame's record and its log line
        assert said == 1 or (i == done_before and said == 0), (i, log)


def test_a_running_clip_shows_its_frame_and_last_frame_in_status_and_metrics(tmp_path, thin_mat):
    """`nstd status` names the frame and the preview (the last finished frame), /metrics the frame."""
    import urllib.request

    from PIL import Image

    from tests.daemon_harness import free_port
    from tests.test_daemon_cli import nstd
    from tests.test_web_metrics import samples

    root, port = tmp_path / "nstd", free_port()
    cfg = slow_clip(root, thin_mat, frames=6, frame_iterations=400, http={"listen": f"127.0.0.1:{port}"})
    with Daemon(cfg) as d:
        d.wait_log("ready:", 120)
        drop_clip(root)
        wait_until(lambda: frames_done(root) >= 2, 200, "two finished frames")

        def on_a_later_frame() -> str | None:  # the status file follows within a heartbeat
            text = nstd("status", "--config", str(cfg)).stdout
            m = re.search(r"running: clip frame (\d)/6 ", text)
            return text if m and int(m.group(1)) >= 3 else None

        text = wait_until(on_a_later_frame, 60, "status on the third frame or later")
        preview = Path(re.search(r"preview: (.+)", text).group(1))
        assert preview.parent == root / "outbox"
        with Image.open(preview) as im:
            assert im.size == (48, 32)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            s = samples(r.read().decode())
        assert s[("nstd_clip_frames", ())] == 6 and s[("nstd_clip_frame", ())] >= 3
        assert s[("nstd_job_eta_seconds", ())] > 0
        assert d.stop() == 0


def test_hostile_clips_fail_naming_the_file_and_keep_their_inputs(tmp_path, thin_mat):
    root = tmp_path / "nstd"
    cfg = config(root, thin_mat, limits={"size": 256, "frames": 6})
    inbox = root / "inbox"
    inbox.mkdir(parents=True)
    src = root / "src"
    slow = make_clip(src / "slow.mp4", frames=8, faststart=False)
    (src / "cut.mp4").write_bytes(slow.read_bytes()[: slow.stat().st_size // 2])
    (src / "notes.mp4").write_text("these are my holiday notes, not a video\n" * 20)
    make_audio_only(src / "song.mp4")
    make_zero_frames(src / "nothing.mkv")
    make_clip(src / "long.mp4", frames=10, audio=False)
    expect = {"cut": ("cut.content.mp4", "truncated or corrupt"),
              "notes": ("notes.content.mp4", "the file is text, not a video"),
              "song": ("song.content.mp4", "holds only audio (aac)"),
              "nothing": ("nothing.content.mkv", "holds no video frames"),
              "long": ("long.content.mp4", "over the limit of 6 (limits.frames)")}
    with Daemon(cfg) as d:
        d.wait_log("ready:", 120)
        for name, (file, _) in expect.items():
            make_image(inbox / f"{name}.style.png", (36, 36), seed=2)
            shutil.copy(src / (name + (".mkv" if name == "nothing" else ".mp4")), inbox / file)
        try:
            wait_until(lambda: all((root / "failed" / n / "error.yaml").is_file() for n in expect), 120,
                       "every hostile clip failed")
        except AssertionError:
            show_logs([d])
            raise
        make_clip(src / "fine.mp4", frames=6)  # and the daemon goes on
        make_image(inbox / "fine.style.png", (36, 36), seed=2)
        shutil.copy(src / "fine.mp4", inbox / "fine.content.mp4")
        wait_until(lambda: (root / "outbox" / "fine.mp4").is_file(), 120, "the next, good clip")
        assert d.stop() == 0
    for name, (file, says) in expect.items():
        error = yaml.safe_load((root / "failed" / name / "error.yaml").read_text())
        assert file in error["message"] and says in error["message"], (name, error["message"])
        assert sorted(error["inputs"]) == sorted([file, f"{name}.style.png"]), name
        assert (root / "failed" / name / file).read_bytes() == (
            src / (name + (".mkv" if name == "nothing" else ".mp4"))).read_bytes()
    assert not list(inbox.iterdir())


def test_nstd_stylize_takes_a_clip_and_writes_video_and_report(tmp_path, thin_mat):
    import subprocess
    import sys

    src = make_clip(tmp_path / "walk.mp4", frames=6)
    style = make_image(tmp_path / "art.png", (36, 36), seed=2)
    cmd = [sys.executable, "-m", "nstd", "stylize", str(src), str(style), "-o", str(tmp_path / "out.mp4"),
           "--weights", str(thin_mat), "--size", "48", "--iterations", "4", "--seed", "1",
           "--set", "frame_iterations=2", "--set", "coarse_iterations=2", "--set", "start=0.04"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    assert "frame 5/5" in done.stderr and "wrote" in done.stderr
    frames, times, facts = decode(tmp_path / "out.mp4")
    assert len(frames) == 5 and times[0] == 0.0 and facts["audio"] == "aac"
    report = yaml.safe_load((tmp_path / "out.report.yaml").read_text())
    assert report["clip"]["used"]["first_frame"] == 1 and report["clip"]["used"]["frames"] == 5
    assert not list(tmp_path.glob(".out.mp4.nstd-work"))  # the frames are gone once the video is out
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert again.returncode == 2 and "already exists" in again.stderr
