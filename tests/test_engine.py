"""The engine as a library: correct loss, reproducible, resumable, bounded in time."""

from __future__ import annotations

import io

import numpy as np
import pytest

from nstd.engine import Checkpoint, load_checkpoint, save_checkpoint
from nstd.engine.checkpoint import TileState
from nstd.images import load_image, resize
from nstd.params import resolve
from tests.conftest import make_image, stopped_checkpoint
from tests.reference import origin_loss


@pytest.fixture
def pair(tmp_path):
    content = load_image(make_image(tmp_path / "c.png", (32, 32), seed=1))
    style = load_image(make_image(tmp_path / "s.png", (32, 32), seed=2))
    return content, style


def small(**kw):
    base = {"size": 32, "iterations": 6, "seed": 3}
    base.update(kw)
    return resolve(base)


def test_engine_loss_equals_independent_reference(engine, thin_net, pair):
    content, style = pair
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (32, 32, 3)).astype(np.float32)
    parts = engine.evaluate(image, content, [(style, 1.0)], resolve({"preset": "origin"}))
    ref = origin_loss(thin_net, image, content.rgb, style.rgb)
    assert parts["loss"] == pytest.approx(ref, rel=1e-3)
    assert parts["content"] > 0 and parts["style"] > 0


def test_stylize_lowers_loss_and_reports(engine, pair):
    content, style = pair
    seen = []
    p = small(preset="origin", solver="fast", size=64, iterations=10, coarse_iterations=10)
    result = engine.stylize(content, [(style, 1.0)], p, progress=seen.append)
    assert result.final["loss"] < result.initial["loss"] / 10
    assert result.shapes == [(32, 32), (64, 64)] and result.image.shape == (64, 64, 3)
    assert result.iterations == 20
    tiny = engine.stylize(content, [(style, 1.0)], small(size=32, iterations=2))
    assert tiny.shapes == [(32, 32)]  # a 16 px scale carries no style: skipped
    its = [(p.scale, p.iteration) for p in seen]
    assert its == sorted(its) and seen[-1].eta == pytest.approx(0, abs=1e-6)
    # the first step compiles: no ETA from it, then one from steady steps only
    assert seen[0].eta is None and seen[0].eta_text == "ETA ?"
    steady = [p.eta for p in seen[1:10]]
    assert all(e is not None and e >= 0 for e in steady)


def test_same_seed_same_image_other_seed_differs(engine, pair):
    content, style = pair
    p = small(preset="origin", size=32, iterations=5)
    a = engine.stylize(content, [(style, 1.0)], p).image
    b = engine.stylize(content, [(style, 1.0)], p).image
    c = engine.stylize(content, [(style, 1.0)], small(preset="origin", size=32, iterations=5, seed=4)).image
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_seed_is_chosen_and_recorded_when_not_given(engine, pair):
    content, style = pair
    chosen = small(seed=None, iterations=2, init="noise")  # noise: the seed shapes the picture
    first, second = (engine.stylize(content, [(style, 1.0)], chosen) for _ in range(2))
    assert first.seed != second.seed and not np.array_equal(first.image, second.image)  # chosen afresh
    again = engine.stylize(content, [(style, 1.0)], small(seed=first.seed, iterations=2, init="noise"))
    assert np.array_equal(again.image, first.image)  # the recorded seed is the one that made the picture


@pytest.mark.parametrize("solver, iterations", [("fast", 6), ("origin", 12)])
def test_resume_from_checkpoint_gives_the_same_image(engine, pair, solver, iterations):
    content, style = pair
    p = small(solver=solver, iterations=iterations, coarse_iterations=iterations, size=64)
    whole = engine.stylize(content, [(style, 1.0)], p)
    # stop after 9 iterations (fast: 6 at 32 px, then 3 at 64 px)
    state = load_checkpoint(stopped_checkpoint(engine, content, style, p, after=9))
    assert (state.scale, state.iteration) == ((1, 3) if solver == "fast" else (0, 9))
    resumed = engine.stylize(content, [(style, 1.0)], p, resume=state)
    assert np.array_equal(resumed.image, whole.image)
    assert resumed.iterations == whole.iterations and resumed.seed == whole.seed
    assert len(resumed.history) == len(whole.history)


def a_checkpoint(**kw) -> Checkpoint:
    x = np.arange(12, dtype=np.float64).reshape(2, 2, 3)
    return Checkpoint(scale=0, iteration=3, seed=1, solver={"x": x, "t": 3, "s": [x, x + 1], "first": None},
                      best_loss=float("inf"), best_x=x, best_parts={}, initial={"loss": 2.5}, iterations_done=3,
                      evaluations=4, elapsed=1.5, history=[{"scale": 1, "iteration": 3, "loss": 2.0}], **kw)


def test_a_checkpoint_reads_back_as_written_with_the_callers_labels():
    tiled = TileState(tile=4, side=128, image=np.ones((4, 4, 3)), sums=[np.eye(2), 2 * np.eye(3)], counts=[16, 4])
    back = load_checkpoint(save_checkpoint(a_checkpoint(tiled=tiled, labels={"params": "key", "frame": 2})))
    assert (back.scale, back.iteration, back.seed, back.evaluations, back.elapsed) == (0, 3, 1, 4, 1.5)
    assert back.best_loss == float("inf") and back.initial == {"loss": 2.5} and back.history[0]["loss"] == 2.0
    assert np.array_equal(back.solver["s"][1], back.best_x + 1) and back.solver["first"] is None
    assert (back.tiled.tile, back.tiled.side, back.tiled.counts) == (4, 128, [16, 4])
    assert all(np.array_equal(a, b) for a, b in zip(back.tiled.sums, tiled.sums))
    assert back.labels == {"params": "key", "frame": 2} and back.tiled is not None
    # a caller written when checkpoints were dicts reads and labels them as it did
    assert back["iteration"] == 3 and back.get("params") == "key" and back.get("nothing") is None
    again = load_checkpoint(save_checkpoint({**back, "frame": 3}))
    assert again.labels == {"params": "key", "frame": 3} and again.tiled.tile == 4
    assert load_checkpoint(save_checkpoint(a_checkpoint())).tiled is None
    with pytest.raises(ValueError, match="lacks 'seed'"):
        save_checkpoint({"scale": 0, "iteration": 3})


def test_a_checkpoint_of_another_format_is_refused_not_misread():
    """An upgrade mid-job must start the job over, not resume from state read another way."""
    data = save_checkpoint(a_checkpoint())
    assert load_checkpoint(data).iteration == 3
    with np.load(io.BytesIO(data)) as z:
        older = {k: z[k] for k in z.files if k != "__format__"}  # as nstd wrote them before format 2
    buf = io.BytesIO()
    np.savez(buf, **older)
    with pytest.raises(ValueError, match="another version of nstd"):
        load_checkpoint(buf.getvalue())


def test_hooks_come_as_one_object_or_as_keywords_not_both(engine, pair):
    from nstd.engine import Hooks

    content, style = pair
    seen, heard = [], []
    engine.stylize(content, [(style, 1.0)], small(iterations=2), hooks=Hooks(progress=seen.append))
    engine.stylize(content, [(style, 1.0)], small(iterations=2), progress=heard.append)
    assert [p.loss for p in seen] == [p.loss for p in heard] and len(seen) == 2
    with pytest.raises(TypeError, match="not both"):
        engine.stylize(content, [(style, 1.0)], small(), hooks=Hooks(), progress=seen.append)
    with pytest.raises(TypeError, match="progres"):
        engine.stylize(content, [(style, 1.0)], small(), progres=seen.append)  # a misspelt hook is no silent no-op


def test_time_limit_stops_early_with_best_image(engine, pair):
    content, style = pair
    r = engine.stylize(content, [(style, 1.0)], small(iterations=100000, time_limit=1.5, scales=[1.0]))
    assert r.stopped_by == "time_limit" and r.iterations < 100000
    best = min([r.initial["loss"]] + [h["loss"] for h in r.history])
    assert r.final["loss"] == pytest.approx(best, rel=1e-6)  # the best image seen is the one kept
    assert r.final["loss"] < r.initial["loss"]


def test_cached_style_grams_equal_fresh_ones(engine, pair, thin_mat):
    from nstd.engine import Engine, load_weights

    _, style = pair
    layers = ("conv1_1", "conv3_1", "conv5_1")
    first = engine.style_grams(style, 32, 32, layers, "avg")
    again = engine.style_grams(style, 32, 32, layers, "avg")
    fresh = Engine(load_weights(thin_mat)).style_grams(style, 32, 32, layers, "avg")
    assert again is first
    for a, b in zip(first, fresh):
        assert np.array_equal(a, b)


def test_style_blend_has_the_gradient_of_the_weighted_per_style_losses(engine, pair, tmp_path):
    content, style = pair
    other = load_image(make_image(tmp_path / "s2.png", (32, 32), seed=9))
    image = np.random.default_rng(4).uniform(60, 200, (32, 32, 3))
    p = small(preset="origin", size=32)

    def gradient(styles):
        grams = engine.blend_grams(styles, 32, 32, p)
        c = resize(content.rgb, 32, 32)
        return engine.objective(c, grams, p, engine.loss_weights(c, grams, p))(image)[1]

    both = gradient([(style, 3.0), (other, 1.0)])
    one, two = gradient([(style, 1.0)]), gradient([(other, 1.0)])
    assert not np.allclose(one, two)
    np.testing.assert_allclose(both, 0.75 * one + 0.25 * two, rtol=1e-3, atol=1e-3 * np.abs(both).max())


@pytest.mark.parametrize("seed", [2, 9])
def test_normalised_objective_reads_zero_content_and_the_style_weight_at_the_content(engine, pair, tmp_path, seed):
    content, _ = pair
    style = load_image(make_image(tmp_path / "s.png", (40, 40), seed=seed))
    p = small(strength=0.5)
    parts = engine.evaluate(resize(content.rgb, 32, 32), content, [(style, 1.0)], p)
    assert parts["content"] == pytest.approx(0, abs=1e-6)
    assert parts["style"] == pytest.approx(p.style_weight, rel=1e-3)  # every layer reads 1 there, on any pair


def numpy_laplacian(rgb: np.ndarray) -> np.ndarray:
    """An independent reference: 4×4 mean of the luminance, then the 5-point Laplacian."""
    h, w = rgb.shape[:2]
    p = rgb.mean(-1).reshape(h // 4, 4, w // 4, 4).mean((1, 3))
    return 4 * p[1:-1, 1:-1] - p[:-2, 1:-1] - p[2:, 1:-1] - p[1:-1, :-2] - p[1:-1, 2:]


def test_laplacian_term_equals_independent_reference_relative_to_the_content(engine, pair):
    content, style = pair
    image = np.random.default_rng(4).uniform(0, 255, (32, 32, 3)).astype(np.float32)
    with_term, without = (engine.evaluate(image, content, [(style, 1.0)], small(strength=0.5, laplacian_weight=lw))
                          for lw in (2.0, 0.0))
    lap_c, lap_x = numpy_laplacian(content.rgb), numpy_laplacian(image)
    expected = np.mean((lap_x - lap_c) ** 2) / np.mean(lap_c ** 2)
    p = small(strength=0.5)
    assert with_term["content"] - without["content"] == pytest.approx(p.content_weight * 2.0 * expected, rel=1e-3)
    assert with_term["style"] == pytest.approx(without["style"], rel=1e-6)
    at_content = engine.evaluate(resize(content.rgb, 32, 32), content, [(style, 1.0)], small(laplacian_weight=2.0))
    assert at_content["content"] == pytest.approx(0, abs=1e-6)


def test_laplacian_of_a_tile_is_the_whole_images_inside_its_frame():
    from nstd.engine.backend import tf
    from nstd.engine.losses import laplacian

    x = tf.constant(np.random.default_rng(5).uniform(0, 255, (1, 64, 96, 3)), tf.float32)
    whole = laplacian(x).numpy()  # pooled 16x24, valid 14x22: Laplacian at pooled (1..14, 1..22)
    framed = laplacian(x, (8, 16, 4, 12)).numpy()  # pooled rows 2..11, columns 1..20; valid: 3..10, 2..19
    np.testing.assert_allclose(framed, whole[:, 2:10, 1:19], rtol=1e-5, atol=1e-3)


def test_alpha_is_reapplied_and_colours_preserved(engine, tmp_path):
    from PIL import Image

    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., :3] = np.asarray(Image.open(make_image(tmp_path / "c.png", (32, 32), seed=1)))
    rgba[..., 3] = 200
    Image.fromarray(rgba, "RGBA").save(tmp_path / "ca.png")
    content = load_image(tmp_path / "ca.png")
    style = load_image(make_image(tmp_path / "s.png", (32, 32), seed=5))
    r = engine.stylize(content, [(style, 1.0)], small(preserve_colors=True))
    assert r.alpha is not None and np.allclose(r.alpha, 200, atol=1)
    ycc = lambda a: np.asarray(Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).convert("YCbCr"), float)  # noqa: E731
    chroma_err = np.abs(ycc(r.image)[..., 1:] - ycc(resize(content.rgb, 32, 32))[..., 1:]).mean()
    assert chroma_err < 3


def test_with_an_edge_the_border_reads_as_if_the_picture_went_on(engine):
    """A flat picture has the same features everywhere once VGG sees it reflected past its
    border (a detail pass); with VGG's zero padding its border features differ, which is
    what an optimiser painted a line along."""
    from nstd.engine.backend import tf
    from nstd.engine.plan import DETAIL_EDGE

    flat = tf.fill([1, 48, 64, 3], 140.0)
    for name in ("conv1_1", "conv3_1"):
        plain = engine.vgg.features(flat, (name,), "avg")[name].numpy()
        edged = engine.vgg.features(flat, (name,), "avg", edge=DETAIL_EDGE)[name].numpy()
        assert edged.shape == plain.shape
        assert np.ptp(edged, axis=(1, 2)).max() < 1e-3 * np.abs(edged).max()
        assert np.ptp(plain, axis=(1, 2)).max() > 0.05 * np.abs(plain).max()


def test_the_loss_is_the_exact_sum_of_the_steps_terms_in_any_order():
    """The host adds the step's float32 terms exactly, so no order of additions (which
    TensorFlow may change between calls) can move the loss the solver compares."""
    from nstd.engine.backend import tf
    from nstd.engine.steps import StepOutput

    terms = [3e7, 1.5, -3e7, 0.25]
    parts = [StepOutput(tf.zeros([1, 2, 2, 3]), tf.constant(t[:2], tf.float32), tf.constant(t[2:], tf.float32),
                        tf.constant(0.125)).parts() for t in (terms, terms[::-1])]
    assert parts[0]["loss"] == parts[1]["loss"] == 1.875  # float32 adds give 2.25 one way, 2.0 the other
    assert parts[0]["content"] == 3e7 + 1.5 and parts[0]["style"] == -3e7 + 0.25 and parts[0]["tv"] == 0.125


def test_step_is_compiled_once_per_shape(engine, pair):
    content, style = pair
    p = small(scales=[1.0], iterations=2)
    engine.stylize(content, [(style, 1.0)], p)
    n = len(engine.steps.compiled)
    engine.stylize(content, [(style, 2.0)], small(scales=[1.0], iterations=3, content_weight=5.0))
    assert len(engine.steps.compiled) == n
    traced = [f.experimental_get_tracing_count() for f in engine.steps.compiled.values()]
    assert max(traced) == 1


def test_step_flops_count_convolutions_both_ways_and_the_gram_products(engine):
    """The bench's GFLOP/s is only as honest as this count: check it by hand on two layers."""
    c1 = engine.vgg.kernels[0].shape[-1]  # conv1_1: 3 -> c1 channels, at full size
    c2 = engine.vgg.kernels[1].shape[-1]  # conv1_2: c1 -> c2
    h, w = 24, 40
    convs = 2 * (2 * h * w * 9 * 3 * c1) + 2 * (2 * h * w * 9 * c1 * c2)
    assert engine.vgg.step_flops(h, w, ("conv1_2",)) == convs
    assert engine.vgg.step_flops(h, w, ("conv1_1", "conv1_2"), ("conv1_1",)) == convs + 6 * h * w * c1 * c1
    # conv2_1 runs on the pooled image: its cost is a quarter of what it would be at full size
    c3 = engine.vgg.kernels[2].shape[-1]
    deeper = engine.vgg.step_flops(h, w, ("conv2_1",)) - convs
    assert deeper == 2 * (2 * (h // 2) * (w // 2) * 9 * c2 * c3)
