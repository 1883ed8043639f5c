"""Video clips: reading, flow, writing, the frame loop and its resume (in the process).

The daemon's side (every job form, kill -9, hostile clips in failed/) is in
tests/test_video_daemon.py. Clips are made at test time (tests/videos.py): a pan over a
picture, so the true motion is known.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("av")
pytest.importorskip("cv2")

from nstd.video import flow  # noqa: E402
from nstd.video.clip import ClipLimits, VideoError, open_clip  # noqa: E402
from nstd.video.encode import AudioSource, ClipWriter, even_size  # noqa: E402
from tests.conftest import make_image  # noqa: E402
from tests.videos import audio_packets, decode, make_clip, pan_frames  # noqa: E402


# --- flow -------------------------------------------------------------------------------


@pytest.mark.unit
def test_flow_warp_matches_a_known_pan_far_better_than_no_warp():
    frames = pan_frames((64, 48), frames=2, pan=3)
    m = flow.motion(frames[0], frames[1])
    inner = (slice(4, -4), slice(4, -8))  # the right edge came in from outside the frame
    # the true motion: each pixel of frame 1 was 3 px to the right in frame 0
    assert abs(float(np.median(m.backward[..., 0][inner])) - 3.0) < 0.3
    assert abs(float(np.median(m.backward[..., 1][inner]))) < 0.3
    warped_err = np.abs(m.warp(frames[0].astype(np.float32)) - frames[1])[inner].mean()
    still_err = np.abs(frames[0].astype(np.float32) - frames[1])[inner].mean()
    assert warped_err < still_err / 4, (warped_err, still_err)
    # the strip that entered across the right edge is not trusted; the rest is
    assert m.mask[:, -2:].mean() == 0.0
    assert m.mask[inner].mean() > 0.9
    # the warp error of the inputs themselves is their floor: far under an unwarped comparison
    assert flow.warp_error(frames, frames) < still_err / 4


@pytest.mark.unit
def test_reliability_mask_drops_a_disocclusion():
    """A square moves right over a still background: where it was, the background shows
    again (hidden in the previous frame), and that is marked unreliable."""
    from tests.videos import textured

    bg = textured((64, 48), seed=5).astype(np.float32)
    fg = textured((16, 16), seed=9).astype(np.float32)
    a, b = bg.copy(), bg.copy()
    a[16:32, 10:26] = fg
    b[16:32, 18:34] = fg  # moved 8 px right: columns 10–17 are uncovered in b
    m = flow.motion(a, b)
    assert m.mask[18:30, 11:17].mean() < 0.5, m.mask[16:32, 8:36]
    assert m.mask[2:12, 40:60].mean() > 0.9  # still background far away is trusted


# --- reading ----------------------------------------------------------------------------


@pytest.mark.unit
def test_reads_frames_rate_duration_and_sound(tmp_path):
    path = make_clip(tmp_path / "pan.mp4", frames=8, fps=25)
    with open_clip(path) as clip:
        info = clip.info
        assert (info.width, info.height, info.fps, info.frames, info.audio) == (48, 32, 25.0, 8, "aac")
        assert info.duration == pytest.approx(0.32, abs=1e-3)
        frames = list(clip.frames())
    assert [f.index for f in frames] == list(range(8))
    assert [round(f.time, 3) for f in frames] == [round(i / 25, 3) for i in range(8)]
    truth = pan_frames((48, 32), 8, 2)
    assert np.abs(frames[3].rgb - truth[3]).mean() < 6  # H.264 at its default quality


@pytest.mark.unit
def test_start_and_duration_trim_and_say_which_frames(tmp_path):
    path = make_clip(tmp_path / "pan.mp4", frames=10, fps=25, audio=False)
    with open_clip(path) as clip:
        frames = list(clip.frames(start=0.12, duration=0.16))
    assert [f.index for f in frames] == [3, 4, 5, 6]
    with open_clip(path) as clip, pytest.raises(VideoError, match=r"pan.mp4: start 5 s is at or past the end"):
        list(clip.frames(start=5))


@pytest.mark.unit
def test_rotation_is_applied(tmp_path):
    pics = pan_frames((48, 32), 3, 2)
    for p in pics:
        p[:6, :6] = (255, 0, 0)  # a red corner: top left as stored
    path = make_clip(tmp_path / "phone.mp4", pictures=pics, rotation=90, audio=False)
    with open_clip(path) as clip:
        assert (clip.info.width, clip.info.height, clip.info.rotation) == (32, 48, 90)
        first = next(iter(clip.frames()))
    assert first.rgb.shape == (48, 32, 3)
    # 90° counter-clockwise: the stored top-left corner is now bottom left
    assert first.rgb[-4:, :4, 0].mean() > 200 and first.rgb[:4, :4, 0].mean() < 200


@pytest.mark.unit
def test_animated_gif_webp_and_a_folder_of_frames_are_clips(tmp_path):
    pics = [Image.fromarray(p) for p in pan_frames((40, 24), 5, 2)]
    pics[0].save(tmp_path / "a.gif", save_all=True, append_images=pics[1:], duration=100, loop=0)
    pics[0].save(tmp_path / "a.webp", save_all=True, append_images=pics[1:], duration=100, loop=0, lossless=True)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, p in enumerate(pics):
        p.save(folder / f"f{i + 1}.png")  # f10 would sort after f9, not after f1
    from nstd.video.clip import is_clip_path

    for path in (tmp_path / "a.gif", tmp_path / "a.webp", folder):
        assert is_clip_path(path)
        with open_clip(path) as clip:
            got = list(clip.frames())
        assert len(got) == 5, path
        assert np.abs(got[4].rgb - np.asarray(pics[4], np.float32)).mean() < 12, path
    make_image(tmp_path / "still.gif", (20, 20))
    assert not is_clip_path(tmp_path / "still.gif")


@pytest.mark.unit
def test_variable_frame_rate_keeps_each_frames_time(tmp_path):
    times = [0.0, 0.04, 0.08, 0.2, 0.24, 0.5]
    path = make_clip(tmp_path / "vfr.mp4", frames=6, times=times, audio=False)
    out = tmp_path / "out.mp4"
    with open_clip(path) as clip:
        frames = list(clip.frames())
        assert any("variable frame rate" in n for n in clip.info.notes)
    writer = ClipWriter(out, (48, 32), clip.info.fps, variable_rate=True)
    ends = times[1:] + [times[-1] + 0.04]
    for f, end in zip(frames, ends):
        writer.write(f.rgb, f.time, end - f.time)
    writer.finish()
    _, got, facts = decode(out)
    assert got == pytest.approx(times, abs=1e-3)
    assert facts["duration"] == pytest.approx(0.54, abs=0.01)


# --- hostile clips ----------------------------------------------------------------------


def hostile(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Each bad clip, and what its error must say (besides its name)."""
    good = make_clip(tmp_path / "good.mp4", frames=8)
    slow = make_clip(tmp_path / "slow.mp4", frames=8, faststart=False)  # index at the end
    data = good.read_bytes()
    cases = {}
    (tmp_path / "cut.mp4").write_bytes(slow.read_bytes()[: len(slow.read_bytes()) // 2])
    cases["cut"] = (tmp_path / "cut.mp4", "truncated or corrupt")
    (tmp_path / "short.mp4").write_bytes(data[: len(data) * 2 // 3])  # index first: frames missing at the end
    cases["short"] = (tmp_path / "short.mp4", "truncated")
    (tmp_path / "notes.mp4").write_text("these are my holiday notes, not a video\n" * 20)
    cases["text"] = (tmp_path / "notes.mp4", "the name says MP4, but the file is text")
    make_image(tmp_path / "photo.png")
    (tmp_path / "photo.mp4").write_bytes((tmp_path / "photo.png").read_bytes())
    cases["png"] = (tmp_path / "photo.mp4", "the file is a PNG image, not a video")
    (tmp_path / "empty.mp4").write_bytes(b"")
    cases["empty"] = (tmp_path / "empty.mp4", "the file is empty")
    cases["audio"] = (make_audio_only(tmp_path / "song.mp4"), "holds only audio (aac)")
    cases["zero"] = (make_zero_frames(tmp_path / "nothing.mkv"), "holds no video frames")
    return cases


def mux_silence(out: Any) -> Any:
    """A second of silent mono AAC (8 kHz) muxed into ``out``; its stream, to be flushed."""
    import av

    a = out.add_stream("aac", rate=8000)
    a.layout = "mono"
    for n in range(0, 8000, 1024):
        fr = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        fr.sample_rate, fr.pts = 8000, n
        for p in a.encode(fr):
            out.mux(p)
    return a


def make_audio_only(path: Path) -> Path:
    import av

    with av.open(str(path), "w") as out:
        a = mux_silence(out)
        for p in a.encode(None):
            out.mux(p)
    return path


def make_zero_frames(path: Path) -> Path:
    """A Matroska file with a video stream (48×32 H.264) and not one frame in it, beside sound."""
    import av

    with av.open(str(path), "w", format="matroska") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 48, 32, "yuv420p"
        a = mux_silence(out)
        for p in [*a.encode(None), *v.encode(None)]:
            out.mux(p)
    return path


@pytest.mark.unit
def test_hostile_clips_fail_with_the_file_and_the_problem(tmp_path):
    for what, (path, says) in hostile(tmp_path).items():
        with pytest.raises(VideoError) as caught:
            with open_clip(path) as clip:
                list(clip.frames())
        text = str(caught.value)
        assert text.startswith(path.name + ":"), (what, text)
        assert says in text, (what, text)


@pytest.mark.unit
def test_limits_refuse_long_and_large_clips_before_decoding(tmp_path):
    path = make_clip(tmp_path / "long.mp4", frames=10, audio=False)
    with pytest.raises(VideoError, match=r"long.mp4: about 10 frames .* over the limit of 5 \(limits.frames\)"):
        with open_clip(path, ClipLimits(frames=5)) as clip:
            list(clip.frames())
    with pytest.raises(VideoError, match=r"long.mp4: 0.4 s of video is over the limit of 0.2 s "
                                         r"\(limits.video_seconds\)"):
        with open_clip(path, ClipLimits(video_seconds=0.2)) as clip:
            list(clip.frames())
    with pytest.raises(VideoError, match=r"long.mp4: 48×32 = 1,536 pixels a frame is over the limit of 1,000"):
        open_clip(path, ClipLimits(input_pixels=1000))
    ten_hours = make_clip(tmp_path / "ten_hours.mp4", frames=2, times=[0.0, 36000.0], audio=False)
    with pytest.raises(VideoError, match=r"ten_hours.mp4: 10 h 0 min of video is over the limit of 10 min 0 s "
                                         r"\(limits.video_seconds\)"):
        with open_clip(ten_hours) as clip:
            next(iter(clip.frames()))
    with open_clip(path, ClipLimits(frames=5)) as clip:  # a trimmed part within the limit is fine
        assert len(list(clip.frames(start=0.0, duration=0.2))) == 5


# --- writing ----------------------------------------------------------------------------


@pytest.mark.unit
def test_mp4_keeps_frames_duration_and_copies_the_sound_unchanged(tmp_path):
    src = make_clip(tmp_path / "in.mp4", frames=8)
    frames, times, facts = decode(src)
    out = tmp_path / "out.mp4"
    writer = ClipWriter(out, (48, 32), 25.0, audio=AudioSource(src))
    for f, t in zip(frames, times):
        writer.write(255 - f, t, 0.04)
        assert not out.exists()  # nothing under the final name until it is complete
    assert writer.finish() == out
    got, got_times, got_facts = decode(out)
    assert len(got) == 8 and got_times == pytest.approx(times)
    assert got_facts["duration"] == pytest.approx(facts["duration"], abs=0.03)
    assert audio_packets(out) == audio_packets(src)  # packet for packet
    assert np.abs(got[5].astype(float) - (255 - frames[5])).mean() < 4
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".nstd.")]


@pytest.mark.unit
def test_webm_gif_webp_and_frames_outputs(tmp_path):
    src = make_clip(tmp_path / "in.mp4", frames=6)
    frames, times, _ = decode(src)
    for name, n_files in (("o.webm", None), ("o.gif", None), ("o.webp", None), ("o.png", 6)):
        writer = ClipWriter(tmp_path / name, (48, 32), 25.0, audio=AudioSource(src))
        for f, t in zip(frames, times):
            writer.write(f, t, 0.04)
        done = writer.finish()
        if n_files:
            assert done == tmp_path / "o" and sorted(p.name for p in done.iterdir())[0] == "frame_000001.png"
            assert len(list(done.iterdir())) == n_files
            assert any("sound is not kept" in n for n in writer.notes)
            continue
        with open_clip(done) as clip:
            got = list(clip.frames())
        assert len(got) == 6, name
        if name == "o.webm":
            assert clip.info.audio == "opus" and any("re-encoded as opus" in n for n in writer.notes)


@pytest.mark.unit
def test_odd_sizes_are_cropped_for_h264_and_kept_for_gif(tmp_path):
    assert even_size(49, 33, "x.mp4") == (48, 32)
    assert even_size(49, 33, "x.gif") == (49, 33)
    with pytest.raises(ValueError, match="even"):
        ClipWriter(tmp_path / "x.mp4", (49, 33), 25.0)
    assert not list(tmp_path.iterdir())


@pytest.mark.unit
def test_an_abandoned_write_leaves_nothing(tmp_path):
    writer = ClipWriter(tmp_path / "x.mp4", (48, 32), 25.0)
    writer.write(np.zeros((32, 48, 3)), 0.0, 0.04)
    writer.abort()
    assert not list(tmp_path.iterdir())


# --- the frame loop (thin engine) -------------------------------------------------------


def clip_params(**extra):
    from nstd.params import resolve

    return resolve({"size": 48, "iterations": 6, "coarse_iterations": 2, "frame_iterations": 3, "seed": 1,
                    **extra})


def run_clip(engine, src: Path, out: Path, work: Path, style, params, **kw):
    from nstd.video.clip_job import stylize_clip

    with open_clip(src) as clip:
        return stylize_clip(engine, clip, [(style, 1.0)], params, out, work, key="k", **kw)


@pytest.fixture
def style(tmp_path):
    from nstd.images import load_image

    return load_image(make_image(tmp_path / "style.png", (40, 40), seed=2))


def test_clip_end_to_end_frames_sound_duration_and_report(engine, tmp_path, style):
    src = make_clip(tmp_path / "in.mp4", size=(49, 33), frames=7)  # odd: cropped for H.264
    seen = []
    result = run_clip(engine, src, tmp_path / "out.mp4", tmp_path / "work", style, clip_params(size=None),
                      progress=seen.append)
    frames, times, facts = decode(result.output)
    _, in_times, in_facts = decode(src)
    assert len(frames) == 7 and times == pytest.approx(in_times)
    assert facts["size"] == (48, 32) and any("cropped, to 48×32" in n for n in result.notes)
    assert facts["duration"] == pytest.approx(in_facts["duration"], abs=0.03)
    assert audio_packets(result.output) == audio_packets(src)
    assert result.used == {"frames": 7, "first_frame": 0, "last_frame": 6, "start": 0.0, "end": 0.28,
                           "size": [48, 32], "audio": "copied"}
    assert result.frames[0]["iterations"] > result.frames[1]["iterations"] == 3
    assert all(r["reliable"] > 0.5 for r in result.frames[1:])
    assert {p.frame for p in seen} == set(range(1, 8)) and seen[-1].frames == 7
    report = result.report()["clip"]
    assert report["used"]["frames"] == 7 and len(report["per_frame"]) == 7


def test_later_frames_start_from_the_warped_previous_frame(engine, tmp_path, style):
    """Warm starts hold consecutive frames together: with the same few iterations, frames
    stylized each on their own flicker far more (the warp error over reliable pixels)."""
    src = make_clip(tmp_path / "in.mp4", size=(64, 48), frames=6, pan=2, audio=False)
    params = clip_params(size=None, iterations=12, coarse_iterations=4, frame_iterations=4, init="noise")
    video = run_clip(engine, src, tmp_path / "v.mp4", tmp_path / "w1", style, params)
    with open_clip(src) as clip:
        inputs = [f.rgb for f in clip.frames()]
    ours = [np.asarray(Image.open(tmp_path / "w1" / "frames" / f"{i:06d}.png"), np.float32) for i in range(6)]
    alone = []
    for i, rgb in enumerate(inputs):  # the flicker baseline: each frame a still of its own, new noise each
        from nstd.images import LoadedImage
        import dataclasses

        r = engine.stylize(LoadedImage(rgb, None, f"f{i}", f"{i}"), [(style, 1.0)],
                           dataclasses.replace(params, size=None, seed=100 + i))
        alone.append(r.image)
    ours_err, alone_err = flow.warp_error(ours, inputs), flow.warp_error(alone, inputs)
    assert ours_err < alone_err / 2, (ours_err, alone_err)
    assert video.used["frames"] == 6


def test_a_stopped_clip_resumes_exactly(engine, tmp_path, style):
    """Stopped between frames and inside a frame, then resumed: the same video, bit for bit."""
    from nstd.engine import Interrupted, load_checkpoint, save_checkpoint

    src = make_clip(tmp_path / "in.mp4", frames=6)
    params = clip_params(frame_iterations=6)
    whole = run_clip(engine, src, tmp_path / "whole.mp4", tmp_path / "w0", style, params)

    saved: list[bytes] = []
    calls = {"n": 0}

    def stop_soon() -> bool:  # asked before each frame and each iteration: stops inside frame 3
        if len(list((tmp_path / "w1" / "frames").glob("*.png"))) >= 2:
            calls["n"] += 1
        return calls["n"] > 3

    with pytest.raises(Interrupted):
        run_clip(engine, src, tmp_path / "part.mp4", tmp_path / "w1", style, params, should_stop=stop_soon,
                 checkpoint=lambda s: saved.append(save_checkpoint(s)))
    done = sorted(p.name for p in (tmp_path / "w1" / "frames").glob("*.png"))
    assert 1 <= len(done) < 6 and not (tmp_path / "part.mp4").exists()
    state = load_checkpoint(saved[-1])
    assert state["frame"] == len(done) and state["iteration"] > 0  # inside the first unfinished frame
    resumed = run_clip(engine, src, tmp_path / "part.mp4", tmp_path / "w1", style, params, resume=state)
    assert [f["pixels_sha256"] for f in resumed.frames] == [f["pixels_sha256"] for f in whole.frames]
    assert len(decode(resumed.output)[0]) == 6
    a = [np.asarray(Image.open(tmp_path / w / "frames" / f"{i:06d}.png")) for w in ("w0", "w1") for i in range(6)]
    assert all(np.array_equal(a[i], a[6 + i]) for i in range(6))


@pytest.mark.unit
def test_the_temporal_term_counts_reliable_pixels_and_its_gradient_is_right():
    from nstd.video.temporal import Temporal, term

    rng = np.random.default_rng(0)
    content = rng.uniform(0, 255, (6, 8, 3))
    target = rng.uniform(0, 255, (6, 8, 3))
    mask = np.ones((6, 8), np.float32)
    mask[:, :4] = 0  # the left half is not trusted
    t = Temporal(target, mask, 2.0)
    assert term(target, t, content) == 0.0
    x = target.copy()
    x[:, :4] += 50  # away from the target only where it is not trusted: free
    assert term(x, t, content) == 0.0
    x = target + np.std(content.reshape(-1, 3), axis=0)  # one standard deviation everywhere: costs the weight
    assert term(x, t, content) == pytest.approx(2.0, rel=0.05)
    fg = t.wrap(lambda v: (0.0, np.zeros_like(v), {"loss": 0.0}), content)
    x = rng.uniform(0, 255, (6, 8, 3))
    _, grad, parts = fg(x)
    assert parts["temporal"] == parts["loss"] > 0
    for idx in [(1, 6, 0), (4, 5, 2), (2, 1, 1)]:
        e = np.zeros_like(x)
        e[idx] = 1e-3
        numeric = (fg(x + e)[0] - fg(x - e)[0]) / 2e-3
        assert grad[idx] == pytest.approx(numeric, rel=1e-4, abs=1e-9)
    assert not Temporal(target, mask, 1.0).applies(np.zeros((3, 4, 3)))


def test_the_engine_adds_the_temporal_term_to_a_frame(engine, tmp_path, style):
    """With the term, a frame stays nearer the warped previous frame it started from."""
    import dataclasses

    from nstd.images import LoadedImage
    from nstd.video.temporal import Temporal

    frames = pan_frames((48, 32), 2, 3)
    content = LoadedImage(frames[1].astype(np.float32), None, "f1", "f1")
    start = LoadedImage(frames[0].astype(np.float32), None, "f0", "f0")  # stands in for the warped previous
    params = dataclasses.replace(clip_params(), size=None, init="previous", scales=(1.0,), iterations=8,
                                 coarse_iterations=None)
    free = engine.stylize(content, [(style, 1.0)], params, init_image=start)
    held = engine.stylize(content, [(style, 1.0)], params, init_image=start,
                          temporal=Temporal(start.rgb, np.ones((32, 48), np.float32), 50.0))
    assert "temporal" in held.final and "temporal" not in free.final
    away = [float(np.abs(r.image - start.rgb).mean()) for r in (free, held)]
    assert away[1] < away[0] / 2, away


@pytest.mark.unit
def test_nstd_submit_takes_a_clip_and_refuses_a_text_named_mp4(tmp_path):
    from nstd.config import parse
    from nstd.errors import NstdError
    from nstd.spool.submit import submit

    cfg = parse({"paths": {k: k for k in ("inbox", "outbox", "failed", "archive", "state")}}, "test", tmp_path)
    cfg.paths.inbox.mkdir()
    clip = make_clip(tmp_path / "pan.mp4", frames=4)
    style = make_image(tmp_path / "style.png", (20, 20))
    job = submit(cfg, "pan", ("pan.mp4", clip.read_bytes()), [("style.png", style.read_bytes())], {"duration": 1})
    assert sorted(p.name for p in job.iterdir()) == ["content.mp4", "job.yaml", "style1.png"]
    with pytest.raises(NstdError, match="notes.mp4: the name says MP4, but the file is text"):
        submit(cfg, "notes", ("notes.mp4", b"shopping list\n" * 10), [("style.png", style.read_bytes())], {})


@pytest.mark.unit
def test_an_animated_output_too_big_to_hold_is_refused_before_painting():
    from nstd.errors import ParamError
    from nstd.video.encode import ANIMATION_BYTES, check_animation

    most = ANIMATION_BYTES // (512 * 288 * 3)
    check_animation("clip.gif", most, 512, 288)  # fits
    check_animation("clip.mp4", 10**6, 512, 288)  # streamed: any length
    for name in ("clip.gif", "clip.webp"):
        with pytest.raises(ParamError, match=rf"{name}: an animated .* {most + 1} frames of 512x288 would need .*"
                                             rf"at most 512 MiB, {most} such frames\). Ask for .mp4 or .webm"):
            check_animation(name, most + 1, 512, 288)
