"""Number formats and compilers: bf16 numerics, the measured choice, its cache, resume across formats."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from nstd.engine import Engine, load_checkpoint, load_weights, precision, tiling
from nstd.engine.precision import ChoiceCache, Measuring, Precision
from nstd.engine.steps import size_class
from nstd.images import load_image
from nstd.params import resolve
from tests.conftest import make_image, stopped_checkpoint


@pytest.fixture
def pair(tmp_path):
    return (load_image(make_image(tmp_path / "c.png", (96, 72), seed=1)),
            load_image(make_image(tmp_path / "s.png", (64, 64), seed=2)))


def test_bf16_computes_correctly_on_any_cpu(thin_mat, pair):
    """Slow where the CPU has no bf16 units, but right: the same loss and gradient as fp32."""
    content, style = pair
    p = resolve({"size": 96, "iterations": 30, "scales": [1.0], "seed": 1})
    runs = {c: Engine(load_weights(thin_mat), compute=c, compiler="graph").stylize(content, [(style, 1.0)], p)
            for c in ("fp32", "bf16")}
    assert runs["bf16"].precision == ["bf16/graph"] and runs["fp32"].precision == ["fp32/graph"]
    fp32, bf16 = runs["fp32"].final["loss"], runs["bf16"].final["loss"]
    start = runs["fp32"].initial["loss"]
    assert bf16 < start / 3 and abs(bf16 - fp32) <= 0.05 * fp32, (fp32, bf16, start)
    # one step's loss and gradient side by side at the same image
    engines = {c: Engine(load_weights(thin_mat), compute=c, compiler="graph") for c in ("fp32", "bf16")}
    c_rgb = content.rgb[:64, :64]
    grams = engines["fp32"].blend_grams([(style, 1.0)], 64, 64, p)
    weights = engines["fp32"].loss_weights(c_rgb, grams, p)
    x = np.random.default_rng(3).uniform(0, 255, c_rgb.shape)
    (l32, g32, _), (l16, g16, _) = (engines[c].objective(c_rgb, grams, p, weights)(x) for c in ("fp32", "bf16"))
    cosine = g32.ravel() @ g16.ravel() / (np.linalg.norm(g32) * np.linalg.norm(g16))
    assert abs(l16 - l32) <= 0.01 * l32 and cosine > 0.99, (l32, l16, cosine)


def test_auto_measures_once_per_shape_and_remembers_it_on_disk(thin_mat, pair, tmp_path, caplog):
    content, style = pair
    # measure even this small shape, and bf16 too, as on an AVX512_BF16 CPU
    measuring = Measuring(min_pixels=0, supported=("fp32", "bf16"))
    p = resolve({"size": 96, "iterations": 3, "scales": [1.0], "seed": 1})
    cache = ChoiceCache(tmp_path / "cache")
    engine = Engine(load_weights(thin_mat), choices=cache, measuring=measuring)
    with caplog.at_level(logging.INFO, logger="nstd"):
        first = engine.stylize(content, [(style, 1.0)], p)
    assert [(s.height, s.width) for s in engine.chooser.measured] == [(72, 96)]
    line = next(r.message for r in caplog.records if r.message.startswith("step 96x72"))
    for candidate in ("fp32/xla", "fp32/graph", "bf16/xla", "bf16/graph"):
        assert candidate in line, line  # every candidate was timed
    assert cache.path.is_file() and first.precision[0] in line.split("→")[1]

    again = Engine(load_weights(thin_mat), choices=ChoiceCache(tmp_path / "cache"), measuring=measuring)
    assert again.stylize(content, [(style, 1.0)], p).precision == first.precision
    assert again.chooser.measured == []  # the choice came from the disk


def test_a_tiled_scale_measures_each_size_class_once_whatever_its_windows(thin_mat, tmp_path):
    """Tiles differ in their frames and edge windows in their sizes; timing the candidates
    again for each cost a fresh machine minutes per tiled scale."""
    content = load_image(make_image(tmp_path / "c.png", (192, 144), seed=1))
    style = load_image(make_image(tmp_path / "s.png", (64, 64), seed=2))
    engine = Engine(load_weights(thin_mat), choices=ChoiceCache(tmp_path / "cache"),
                    measuring=Measuring(min_pixels=0, supported=("fp32",)))  # two compilers to time
    p = resolve({"size": 192, "iterations": 2, "scales": [1.0], "seed": 1, "tile_size": 128})
    engine.stylize(content, [(style, 1.0)], p)
    windows = [w for shifted in (False, True) for w in tiling.windows(192, 144, 128, shifted)]
    sizes = {(w.cols.stop - w.cols.start, w.rows.stop - w.rows.start) for w in windows}
    classes = {size_class(*s) for s in sizes}
    assert len(sizes) > len(classes)  # several window sizes share a class
    measured = [size_class(s.width, s.height) for s in engine.chooser.measured]
    assert sorted(measured) == sorted(classes), engine.chooser.measured


def test_a_photo_of_a_new_shape_starts_without_measuring_and_a_big_one_is_timed_on_a_crop(thin_mat, pair, tmp_path,
                                                                                          monkeypatch):
    """Photos come in every shape: the choice is kept per size class, so a second photo of
    another aspect ratio runs at once; a shape over ``probe_pixels`` is timed on a centre crop."""
    content, style = pair
    measuring = Measuring(min_pixels=0, supported=("fp32", "bf16"), probe_pixels=48 * 48)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the user's cache folder, fresh
    engine = Engine(load_weights(thin_mat), measuring=measuring)
    p = resolve({"size": 96, "iterations": 2, "scales": [1.0], "seed": 1})
    engine.stylize(content, [(style, 1.0)], p)
    assert len(engine.chooser.measured) == 1 and engine.chooser.rate() > 0  # a step's seconds per pixel
    plans = []  # a fresh process knows the rate from the disk, so the plan has its time before the first step
    fresh = Engine(load_weights(thin_mat), measuring=measuring)
    fresh.stylize(content, [(style, 1.0)], p, plan=plans.append)
    assert plans[0].estimate > 0 and "on this machine" in plans[0].describe()
    square = load_image(make_image(tmp_path / "square.png", (90, 90), seed=4))
    r = engine.stylize(square, [(style, 1.0)], p)
    assert r.shapes == [(96, 96)] and len(engine.chooser.measured) == 1  # 96×96 after 96×72: nothing timed
    wide = load_image(make_image(tmp_path / "wide.png", (160, 80), seed=5))
    engine.stylize(wide, [(style, 1.0)], resolve({"size": 150, "iterations": 2, "scales": [1.0], "seed": 1}))
    assert [(s.width, s.height) for s in engine.chooser.measured[1:]] == [(150, 75)]
    timed = {(shape.width, shape.height) for shape, _ in engine.steps.compiled}
    assert (67, 33) in timed  # the centre crop of 48×48 pixels' worth, 2:1 like the photo


def test_auto_never_takes_a_format_that_changes_the_result(thin_mat, pair, tmp_path, caplog):
    content, style = pair
    strict = Measuring(min_pixels=0, supported=("fp32", "bf16"), gradient_cosine=1.5)  # none can agree this well
    p = resolve({"size": 96, "iterations": 3, "scales": [1.0], "seed": 1})
    with caplog.at_level(logging.INFO, logger="nstd"):
        r = Engine(load_weights(thin_mat), compiler="xla", choices=ChoiceCache(tmp_path), measuring=strict).stylize(
            content, [(style, 1.0)], p)
    assert r.precision == ["fp32/xla"]
    assert any("refused bf16/xla" in rec.message for rec in caplog.records)


def test_resume_is_exact_within_a_format_and_says_so_across_formats(thin_mat, pair):
    content, style = pair
    p = resolve({"size": 96, "iterations": 6, "scales": [1.0], "seed": 1, "optimizer": "adam"})
    bf16 = Engine(load_weights(thin_mat), compute="bf16", compiler="graph")
    whole = bf16.stylize(content, [(style, 1.0)], p)
    saved = stopped_checkpoint(bf16, content, style, p, after=3)
    assert load_checkpoint(saved).precision == "bf16/graph"
    resumed = bf16.stylize(content, [(style, 1.0)], p, resume=load_checkpoint(saved))
    assert np.array_equal(resumed.image, whole.image) and not resumed.notes
    other = Engine(load_weights(thin_mat), compute="fp32", compiler="graph")
    moved = other.stylize(content, [(style, 1.0)], p, resume=load_checkpoint(saved))
    assert any("resumed on fp32/graph; the checkpoint was made on bf16/graph" in n for n in moved.notes)


def test_shapes_too_small_to_measure_take_the_cheapest_compile():
    import tensorflow as tf

    gpu = bool(tf.config.list_logical_devices("GPU"))
    assert precision.small_shape("auto", "auto") == Precision("fp32", "xla" if gpu else "graph")
    assert precision.small_shape("bf16", "xla") == Precision("bf16", "xla")  # what was asked for stays


def test_precision_names_round_trip():
    assert Precision.parse("bf16/graph") == Precision("bf16", "graph") and str(Precision()) == "fp32/xla"
    assert precision.candidates("fp32", "graph") == [Precision("fp32", "graph")]
    assert precision.candidates("auto", "auto", ("fp32", "bf16"))[1:] == [
        Precision("fp32", "graph"), Precision("bf16", "xla"), Precision("bf16", "graph")]
