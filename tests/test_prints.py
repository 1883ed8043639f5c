"""Print-ready output (issue 24): a print-size request, the DPI and an sRGB profile in every
format, TIFF output, JPEG quality, and a photo smaller than the print upscaled and reported."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image, ImageCms, features

from nstd import config
from nstd.errors import ConfigError, ParamError
from nstd.images import encode, save_image, srgb_profile
from nstd.params import fit_print, layered, parse_set, resolve
from tests.conftest import make_image

ROOT = Path(__file__).resolve().parents[1]
LANDSCAPE, PORTRAIT = (3000, 2000), (2000, 3000)


def long_side(raw, photo=LANDSCAPE) -> int:
    return fit_print(resolve(raw), photo).size


# --- the request ----------------------------------------------------------------------------


@pytest.mark.parametrize("value, landscape, portrait", [
    ("12x8in@300dpi", 3600, 2400),  # a box: the photo fits inside it, its shape kept
    ("12 × 8 in @ 300 dpi", 3600, 2400),
    ("12inx8in@300dpi", 3600, 2400),
    ("12.5x8in@300ppi", 3600, 2400),  # landscape: 8 in high limits it, 12 in wide is not reached
    ("24in@300dpi", 7200, 10800),  # one length: the width
    ("x8in@300dpi", 3600, 2400),  # the height only
    ("30x20cm@254dpi", 3000, 2000),  # 30 cm at 254 dpi is exactly 3000 px
    ("300x200mm@254dpi", 3000, 2000),
    ({"width": "24in", "dpi": 300}, 7200, 10800),
    ({"height": "16 in", "dpi": "300dpi"}, 7200, 4800),
    ({"width": "30cm", "height": "20cm", "dpi": 254}, 3000, 2000),
])
def test_a_print_request_parses_in_every_form_and_fits_the_photo(value, landscape, portrait):
    params = resolve({"print": value})
    assert params.dpi == 300 or params.dpi == 254
    assert long_side({"print": value}, LANDSCAPE) == landscape
    assert long_side({"print": value}, PORTRAIT) == portrait


def test_a_box_is_never_overshot_on_either_side():
    from nstd.images import fit_size

    for photo in [(1000, 700), (700, 1000), (1234, 567), (999, 1001)]:
        size = long_side({"print": "12x8in@300dpi"}, photo)
        w, h = fit_size(*photo, size)
        assert w <= 3600 and h <= 2400 and (w == 3600 or h == 2400 or abs(w - 3600) <= 1 or abs(h - 2400) <= 1)


def test_set_values_and_config_defaults_take_the_same_forms(tmp_path):
    assert long_side(parse_set(["print=12x8in@300dpi"])) == 3600
    assert long_side(parse_set(["print={width: 24in, dpi: 300}"])) == 7200
    cfg = config.load(write_config(tmp_path, {"defaults": {"print": "30x20cm@254dpi"}}))
    assert long_side(layered(cfg.defaults, {})) == 3000


def test_the_dpi_comes_from_the_request_or_else_the_dpi_key():
    assert resolve({"print": "12x8in@300dpi", "dpi": 150}).dpi == 300  # the request's own wins
    assert long_side({"print": "12x8in", "dpi": 150}) == 1800
    with pytest.raises(ParamError, match="needs a dpi"):
        resolve({"print": "12x8in"})
    assert resolve({}).dpi == 72 and resolve({"dpi": "300dpi"}).dpi == 300


def test_size_and_print_are_one_choice_across_layers(tmp_path):
    with pytest.raises(ParamError, match="either 'size' or 'print'"):
        resolve({"size": 512, "print": "12x8in@300dpi"})
    with pytest.raises(ConfigError, match="either 'size' or 'print'"):
        config.load(write_config(tmp_path, {"defaults": {"size": 512, "print": "12x8in@300dpi"}}))
    # a job's print replaces the config's size, and a job's size the config's print
    assert long_side(layered({"size": 512}, {"print": "12x8in@300dpi"})) == 3600
    params = resolve(layered({"print": "12x8in@300dpi"}, {"size": 640}))
    assert params.print is None and params.size == 640
    assert resolve(layered({"size": 512}, {"print": None})).size == 512


@pytest.mark.parametrize("value, needle, shown", [
    ("12x8@300dpi", "has no unit", "'12x8@300dpi'"),
    ("big", "is not a print size", "'big'"),
    ("x@300dpi", "is not a print size", "'x@300dpi'"),
    ("12x8in@0dpi", "dpi must be 1 to 10000", "'12x8in@0dpi'"),
    ("0x8in@300dpi", "more than 0", "'0x8in@300dpi'"),
    (12, "is not a print size", "= 12 "),
    ({"width": 24, "dpi": 300}, "is not a length", "'print.width' = 24 in {'width': 24, 'dpi': 300}"),
    ({"widht": "24in", "dpi": 300}, "unknown key 'widht'", "{'widht': '24in', 'dpi': 300}"),
    ({"dpi": 300}, "neither a width nor a height", "{'dpi': 300}"),
])
def test_a_bad_request_names_the_value_and_the_accepted_forms(value, needle, shown):
    with pytest.raises(ParamError) as info:
        resolve({"print": value})
    text = str(info.value)
    assert needle in text and shown in text, text
    assert "Accepted forms: 12x8in@300dpi" in text and "units in, cm or mm" in text, text


def test_a_print_over_limits_size_is_refused_with_what_to_change():
    params = resolve({"print": "36x24in@300dpi"})
    with pytest.raises(ParamError) as info:
        fit_print(params, LANDSCAPE, 4096, "poster.yaml")
    assert str(info.value).startswith(
        "poster.yaml: a 36×24 in print at 300 dpi is 10800 px on its long side, over limits.size 4096; ask for "
        "a lower dpi (at this print size, 113 dpi fits) or a smaller print, or raise limits.size.")
    assert fit_print(resolve({"print": "36x24in@113dpi"}), LANDSCAPE, 4096).size == 4068  # the hint holds
    # one side given: the message names the whole print the photo makes
    with pytest.raises(ParamError, match="a 61×40.7 cm print at 300 dpi is 7204 px"):
        fit_print(resolve({"print": {"width": "61cm", "dpi": 300}}), LANDSCAPE, 4096)


def test_the_default_limit_allows_4096_px():
    assert config.Limits().size == 4096
    assert yaml.safe_load((ROOT / "config.yaml").read_text())["limits"]["size"] == 4096


# --- the files ----------------------------------------------------------------------------


FORMATS = [".png", ".jpg", ".jpeg", ".tif", ".tiff"] + ([".webp"] if features.check("webp") else [])


def written_dpi(im: Image.Image) -> tuple[float, float]:
    if im.format == "WEBP":  # WebP has no density field: it is in the EXIF
        exif = im.getexif()
        assert exif.get(0x0128) == 2  # inches
        return float(exif[0x011A]), float(exif[0x011B])
    return im.info["dpi"]


@pytest.mark.parametrize("ext", FORMATS)
@pytest.mark.parametrize("with_alpha", [False, True])
def test_every_format_carries_the_dpi_and_an_srgb_profile(tmp_path, ext, with_alpha):
    rng = np.random.default_rng(0)
    rgb = rng.uniform(0, 255, (30, 40, 3)).astype(np.float32)
    alpha = np.full((30, 40), 128, np.float32) if with_alpha else None
    out = save_image(tmp_path / f"out{ext}", rgb, alpha, dpi=300)
    im = Image.open(out)
    assert written_dpi(im) == pytest.approx((300, 300), abs=0.01)
    profile = ImageCms.ImageCmsProfile(io.BytesIO(im.info["icc_profile"]))
    assert "sRGB" in ImageCms.getProfileDescription(profile)
    assert profile.profile.xcolor_space.strip() == "RGB"
    im.load()
    if ext in (".tif", ".tiff"):
        assert im.format == "TIFF" and im.info["compression"] != "raw"
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), np.rint(rgb).astype(np.uint8))  # lossless
    plain = Image.open(save_image(tmp_path / f"plain{ext}", rgb, alpha))  # no dpi asked: the profile still
    assert "icc_profile" in plain.info


def test_the_same_picture_gives_the_same_bytes_though_the_profile_is_made_anew():
    rgb = np.full((16, 16, 3), 100, np.float32)
    srgb_profile.cache_clear()
    first = encode(rgb, None, ".png", dpi=300)
    time.sleep(1.1)  # littlecms stamps the profile with the time of day
    srgb_profile.cache_clear()
    assert encode(rgb, None, ".png", dpi=300) == first


def test_jpeg_quality_is_a_parameter_and_changes_the_file():
    y, x = np.mgrid[0:64, 0:64].astype(np.float32)
    rgb = np.stack([127 + 100 * np.sin(x / 5), 127 + 100 * np.cos(y / 7), (x + y) * 2], axis=-1)
    assert resolve({}).jpeg_quality == 95
    low, high = (encode(rgb, None, ".jpg", quality=resolve({"jpeg_quality": q}).jpeg_quality) for q in (30, 95))
    assert len(low) < len(high) * 0.8
    error = [np.abs(np.asarray(Image.open(io.BytesIO(b)), np.float32) - np.rint(rgb)).mean() for b in (low, high)]
    assert error[0] > error[1] * 1.5
    for bad in (0, 101, 50.5, True, "high"):
        with pytest.raises(ParamError, match="jpeg_quality"):
            resolve({"jpeg_quality": bad})


def test_dpi_and_jpeg_quality_never_invalidate_a_checkpoint():
    from nstd.daemon.runner import params_key

    base = params_key(resolve({"size": 3600}))
    assert params_key(resolve({"size": 3600, "dpi": 300, "jpeg_quality": 80})) == base
    assert params_key(fit_print(resolve({"print": "12x8in@300dpi"}), LANDSCAPE)) == base
    assert params_key(resolve({"size": 3000})) != base


# --- through the daemon and the CLI ---------------------------------------------------------


def write_config(root: Path, overrides: dict) -> Path:
    """The test daemon's config (defaults: size 32; limits.size 256); ``defaults`` replaced if given."""
    from tests.daemon_harness import write_config as harness_config

    weights = root / "weights.npz"  # the engine is a double: any readable file will do
    weights.touch()
    path = harness_config(root, weights, **{k: v for k, v in overrides.items() if k != "defaults"})
    if "defaults" in overrides:
        raw = yaml.safe_load(path.read_text())
        path.write_text(yaml.safe_dump({**raw, "defaults": overrides["defaults"]}))
    return path


class Engine:
    """A test double: a grey picture of the size the params ask for; it records the params."""

    device = "test double"

    def __init__(self) -> None:
        self.params = None

    def stylize(self, content, styles, params, **kw):
        from nstd.engine.stylize import Result
        from nstd.images import fit_size

        self.params = params
        w, h = fit_size(*content.size, params.size)
        loss = {"loss": 1.0, "content": 0.5, "style": 0.5, "tv": 0.0}
        return Result(np.full((h, w, 3), 128, np.float32), None, 1, loss, loss, [], 1, 1, "iterations",
                      {"total": 0.01}, [(w // 2, h // 2), (w, h)])


def run_daemon_job(tmp_path, job: dict) -> tuple[config.Config, Engine]:
    from nstd.spool import jobs
    from nstd.daemon.scanner import Pending
    from tests.test_worker import worker

    cfg = config.load(write_config(tmp_path, {}))
    for p in (cfg.paths.inbox, cfg.paths.outbox, cfg.paths.failed, cfg.paths.archive, cfg.paths.state / "work"):
        p.mkdir(parents=True, exist_ok=True)
    make_image(cfg.paths.inbox / "c.png", (48, 36), seed=1)
    make_image(cfg.paths.inbox / "s.png", seed=2)
    (cfg.paths.inbox / "x.yaml").write_text(yaml.safe_dump({"content": "c.png", "style": "s.png", **job}))
    engine = Engine()
    w, handoff, _ = worker(cfg, engine)
    handoff.publish([Pending([c for c in jobs.discover(cfg.paths.inbox) if c.name == "x"][0], 5.0)], [])
    assert w.loop(now=0.0)
    return cfg, engine


def test_a_daemon_job_prints_upscaled_to_the_requested_size_with_its_dpi(tmp_path):
    cfg, engine = run_daemon_job(tmp_path, {"print": "2x2in@48dpi", "output": "x.jpg", "jpeg_quality": 40})
    assert engine.params.size == 96 and engine.params.dpi == 48  # 2 in at 48 dpi, over the config's size 32
    out = cfg.paths.outbox / "x.jpg"
    im = Image.open(out)
    assert im.size == (96, 72) and im.info["dpi"] == (48, 48) and "icc_profile" in im.info
    grey = np.full((72, 96, 3), 128, np.float32)
    assert out.read_bytes() == encode(grey, None, ".jpg", dpi=48, quality=40)  # the job's quality was used
    report = yaml.safe_load((cfg.paths.outbox / "x.report.yaml").read_text())
    assert report["upscaled"] == {"from": [48, 36], "to": [96, 72], "method": "lanczos"}
    p = report["parameters"]
    assert p["print"] == {"width": "2in", "height": "2in", "dpi": 48} and p["size"] == 96 and p["dpi"] == 48
    assert "upscaled from 48x36 to 96x72" in (cfg.paths.outbox / "x.log").read_text()


def test_a_daemon_job_not_upscaled_says_so(tmp_path):
    cfg, engine = run_daemon_job(tmp_path, {"size": 40})
    report = yaml.safe_load((cfg.paths.outbox / "x.report.yaml").read_text())
    assert report["upscaled"] is None and engine.params.size == 40
    assert Image.open(cfg.paths.outbox / "x.png").info["dpi"] == pytest.approx((72, 72), abs=0.01)


def test_a_daemon_job_over_limits_size_fails_before_any_work(tmp_path):
    cfg, engine = run_daemon_job(tmp_path, {"print": "10x10in@300dpi"})
    assert engine.params is None
    error = yaml.safe_load((cfg.paths.failed / "x" / "error.yaml").read_text())
    assert "a 10×7.5 in print at 300 dpi is 3000 px on its long side, over limits.size 256" in error["message"]


def test_nstd_stylize_writes_a_tiff_print_with_its_dpi(tmp_path, thin_mat):
    content = make_image(tmp_path / "c.png", (48, 36), seed=1)
    style = make_image(tmp_path / "s.png", seed=2)
    run = subprocess.run([sys.executable, "-m", "nstd", "stylize", str(content), str(style), "-o",
                          str(tmp_path / "out.tif"), "--weights", str(thin_mat), "--iterations", "2", "--seed", "1",
                          "--set", "print=2x2in@40dpi", "--set", "coarse_iterations=1"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "plan: 1 scale(s): 80×60 (2 iterations)" in run.stderr  # told before the first step
    im = Image.open(tmp_path / "out.tif")
    im.load()
    assert im.format == "TIFF" and im.size == (80, 60) and im.info["dpi"] == pytest.approx((40, 40))
    assert "sRGB" in ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(im.info["icc_profile"])))
    report = yaml.safe_load((tmp_path / "out.report.yaml").read_text())
    assert report["upscaled"] == {"from": [48, 36], "to": [80, 60], "method": "lanczos"}
    assert report["parameters"]["size"] == 80 and report["parameters"]["dpi"] == 40


# --- big pictures: painted at paint_size, then detail passes ---------------------------------


@pytest.fixture
def print_pair(tmp_path):
    from nstd.images import load_image

    return (load_image(make_image(tmp_path / "c.png", (192, 144), seed=1)),
            load_image(make_image(tmp_path / "s.png", (96, 96), seed=2)))


def test_a_big_picture_keeps_the_painted_picture_and_adds_detail(engine, print_pair):
    """The detail passes hold everything coarser than their blur where the picture painted at
    paint_size put it, and change the finest octave: seen small, it stays that picture."""
    from nstd.engine.plan import DETAIL_EDGE
    from nstd.images import resize

    content, style = print_pair
    small = engine.stylize(content, [(style, 1.0)], resolve({"size": 64, "seed": 1, "iterations": 6}))
    # the hold alone (TV smooths every octave a little)
    raw = {"size": 192, "paint_size": 64, "seed": 1, "iterations": 6, "detail_iterations": 6, "detail_tv": 0.0}
    p = resolve(raw)
    plans, previews = [], []
    big = engine.stylize(content, [(style, 1.0)], p, plan=plans.append,
                         preview=lambda image, it: previews.append(image.shape))
    assert big.shapes == [(64, 48), (128, 96), (192, 144)] and big.image.shape == (144, 192, 3)
    assert previews == [(48, 64, 3), (96, 128, 3)]  # painted, then after the first pass: preview_every is 0
    assert [d for *_, d in plans[0].scales] == [False, True, True] and "detail 128×96" in plans[0].describe()
    drift = np.abs(resize(big.image, 64, 48) - small.image).mean()
    # the passes did work: the picture is not the small one upscaled
    assert np.abs(big.image - resize(small.image, 192, 144)).mean() > drift
    # and the hold is what keeps it: without it the same passes move the picture further, seen
    # 6x smaller (the hold's blur is 3.75 px of the 192 px picture), inside the border that
    # the passes see reflected (plan.DETAIL_EDGE)
    loose = engine.stylize(content, [(style, 1.0)], resolve({**raw, "detail_hold": 0.0}))
    e = DETAIL_EDGE
    inside = [x[e:-e, e:-e] for x in (big.image, loose.image, resize(small.image, 192, 144))]
    view = [resize(x, 27, 19) for x in inside]
    assert np.abs(view[0] - view[2]).mean() < 0.8 * np.abs(view[1] - view[2]).mean()


def test_a_big_job_killed_in_a_tiled_detail_pass_resumes_to_the_same_picture(engine, print_pair):
    from nstd.engine import load_checkpoint
    from tests.conftest import stopped_checkpoint

    content, style = print_pair
    p = resolve({"size": 192, "paint_size": 64, "seed": 1, "iterations": 3, "detail_iterations": 4,
                 "tile_size": 128})
    whole = engine.stylize(content, [(style, 1.0)], p)
    assert any("scale 3 (192x144) refined in 128px tiles" in n for n in whole.notes), whole.notes
    # 3 iterations at 64 px, 4 at 128 px, then the 192 px pass in tiles of 2 iterations each
    saved = stopped_checkpoint(engine, content, style, p, after=12, match=r"scale 3/3, tile 3/13, iteration 1")
    state = load_checkpoint(saved)
    assert state.scale == 2 and state.base is not None and state.base.shape == (144, 192, 3)
    resumed = engine.stylize(content, [(style, 1.0)], p, resume=state)
    assert np.array_equal(resumed.image, whole.image)

def test_a_detail_pass_step_gives_one_gradient_for_one_image(real_weights_path):
    """The tile of a 1024 px job: with Grappler's memory optimiser on and TensorFlow's ops run
    side by side, the same step on the same image gave several gradients in two dozen calls,
    and no big job resumed to the picture it would have made (backend.Repeatable)."""
    import dataclasses
    import hashlib

    from nstd.engine import Engine, load_weights

    engine = Engine(load_weights(real_weights_path), compute="fp32", compiler="graph")
    rng = np.random.default_rng(0)
    c, s = (rng.uniform(0, 255, (432, 560, 3)) for _ in range(2))
    p = resolve({"seed": 1})
    layers = tuple(n for n, _ in p.style_layers)[:3]
    p = dataclasses.replace(p, content_layers=[], style_layers=[(n, 1.0) for n in layers])
    grams = engine.objectives.targets.grams_of(s, layers, p.pooling)
    objective = engine.objectives.build(c, grams, p, engine.objectives.weights(c, grams, p, hold=2.5), hold=2.5)
    x = c + rng.normal(0, 10, c.shape)
    gradients = {hashlib.sha1(objective(x)[1].tobytes()).hexdigest() for _ in range(24)}
    assert len(gradients) == 1


#: A child process: one 1024×768 detail step's gradient, by its hash.
DETAIL_GRADIENT = """
import hashlib, sys
import numpy as np
from nstd.engine import Engine, load_weights, plan
from nstd.params import resolve
engine = Engine(load_weights(sys.argv[1]), compute="fp32", compiler="graph")
rng = np.random.default_rng(0)
c, s = (rng.uniform(0, 255, (768, 1024, 3)) for _ in range(2))
p = plan.detail_params(resolve({"seed": 1}))
grams = engine.grams_of(s, tuple(n for n, _ in p.style_layers), p.pooling)
fg = engine.objectives.build(c, grams, p, engine.objectives.weights(c, grams, p, hold=2.5), hold=2.5)
print(hashlib.sha1(fg(c + rng.normal(0, 10, c.shape))[1].tobytes()).hexdigest())
"""


@pytest.mark.slow
def test_a_detail_pass_step_gives_one_gradient_in_every_process(thin_mat):
    """With Grappler's memory optimiser on, each new process gave one of three gradients
    for this step (the order of a running total), so a job resumed in a new process left
    the picture it would have made. Six processes: all one gradient."""
    runs = [subprocess.run([sys.executable, "-c", DETAIL_GRADIENT, str(thin_mat)], capture_output=True, text=True,
                           timeout=300) for _ in range(6)]
    assert all(r.returncode == 0 for r in runs), [r.stderr[-2000:] for r in runs]
    assert len({r.stdout.strip() for r in runs}) == 1, [r.stdout for r in runs]


@pytest.mark.unit
def test_a_36_by_24_inch_print_at_300_dpi_fits_in_24_gib_on_paper():
    from nstd.engine import memory, plan

    p = fit_print(resolve({"print": "36x24in@300dpi"}), (3000, 2000))
    total = 24 * 2**30
    scales = plan.memory_plan(*plan.check_size(3000, 2000, p.size), p, int((total - plan.PROCESS_BYTES) * memory.SAFETY))
    assert scales[-1].scale.size == (10800, 7200) and scales[-1].side is not None  # the last pass in tiles
    assert plan.PROCESS_BYTES + max(m.peak for m in scales) < total
    assert "detail pass 10800×7200, 40 iterations, tiles of" in plan.describe_memory(scales)


@pytest.mark.unit
def test_the_memory_plan_counts_the_forward_pass_that_measures_a_tiled_scales_targets():
    """A 2048 px job in 1024 px tiles peaked at 6.45 GiB against 5.3 on paper: its targets
    are measured on the whole picture, which the plan had left out."""
    from nstd.engine import memory, plan

    last = plan.memory_plan(2048, 1536, resolve({"size": 2048, "tile_size": 1024}), 64 * 2**30)[-1]
    assert last.side == 1024
    assert last.peak >= memory.forward_bytes(2048 * 1536) > memory.step_bytes((1024 + 2 * memory.TILE_MARGIN) ** 2)


def test_nstd_check_prints_each_scale_with_its_memory(tmp_path):
    cfg = write_config(tmp_path, {})
    raw = yaml.safe_load(cfg.read_text())
    raw["limits"] = {**raw.get("limits", {}), "size": 2048}
    cfg.write_text(yaml.safe_dump(raw))
    inbox = Path(raw["paths"]["inbox"]) if "paths" in raw else tmp_path / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    make_image(inbox / "c.png", (300, 200), seed=1)
    make_image(inbox / "s.png", seed=2)
    (inbox / "big.yaml").write_text(yaml.safe_dump({"content": "c.png", "style": "s.png", "size": 2048}))
    run = subprocess.run([sys.executable, "-m", "nstd", "check", "--config", str(cfg), str(inbox / "big.yaml")],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    import re

    assert re.search(r"  scale 512×341, \d+ iterations, whole: [\d.]+ GiB\n  detail pass 1024×682, \d+ iterations, whole: "
                     r"[\d.]+ GiB\n  detail pass 2048×1365, \d+ iterations, whole: [\d.]+ GiB\n  peak about", run.stdout), \
        run.stdout


def test_a_big_job_out_of_time_keeps_the_finest_scale_reached_at_its_size(engine, print_pair):
    content, style = print_pair
    p = resolve({"size": 192, "paint_size": 64, "seed": 1, "iterations": 50, "detail_iterations": 50,
                 "time_limit": 0.1})
    r = engine.stylize(content, [(style, 1.0)], p, progress=lambda _: time.sleep(0.06))  # slow steps
    assert r.image.shape == (144, 192, 3) and r.stopped_by == "time_limit"
    import re

    assert any(re.fullmatch(r"time limit reached after scale (1/3 \(64x48\)|2/3 \(128x96\)); the picture was "
                            r"enlarged from there to 192x144", n) for n in r.notes), r.notes
