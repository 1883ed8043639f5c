"""The plan that is made before any TensorFlow call: the size check, the scales, whole or
tiles, retries after running out of memory, time shares (the pure checks are unit tests;
the engine's are not)."""

from __future__ import annotations

import numpy as np
import pytest

from nstd.engine import memory
from nstd.engine.plan import (DETAIL_LAYERS, HOLD_SIGMA, MIN_SIDE, check_size, detail_params,
                              scale_budget, scales, smaller_tile, style_size, tile_side, visit_budget)
from nstd.errors import ParamError
from nstd.images import LoadedImage
from nstd.params import resolve, strength_weights
from tests.conftest import REPO


@pytest.mark.unit
def test_sizes_vgg_can_take_pass_and_give_the_output_size():
    assert check_size(48, 36, 32) == (32, 24)
    assert check_size(640, 16, None) == (640, 16)
    assert check_size(3000, 100, 480) == (480, 16)


@pytest.mark.unit
def test_a_thin_image_is_told_the_size_that_works():
    with pytest.raises(ParamError, match=r"a\.png: 300×10 px at size 64 would be 64×2 px, too thin .* Ask for "
                                         r"size: 480 or more"):
        check_size(300, 10, 64, largest=2048, source="a.png")
    assert check_size(300, 10, 480) == (480, 16)  # and that size works


@pytest.mark.unit
def test_an_image_no_allowed_size_can_save_is_told_to_crop():
    with pytest.raises(ParamError, match=r"3000×3 px at size 512 would be 512×1 px.*No size up to the limit "
                                         r"\(4096, limits\.size\) is enough.*at most 256× its short side"):
        check_size(3000, 3, 512, largest=4096)


def test_the_engine_refuses_a_thin_picture_before_tensorflow(engine):
    thin = LoadedImage(np.full((3, 3000, 3), 128, np.float32), None, "thin.png", "0")
    art = LoadedImage(np.full((40, 40, 3), 128, np.float32), None, "art.png", "0")
    with pytest.raises(ParamError, match=f"at least {MIN_SIDE} px on the short side"):
        engine.stylize(thin, [(art, 1.0)], resolve({"size": 64, "iterations": 2}))


@pytest.mark.parametrize("side", [MIN_SIDE, MIN_SIDE + 1])
def test_the_smallest_side_allowed_really_runs(engine, side):
    content = LoadedImage(np.random.default_rng(1).uniform(0, 255, (side, 64, 3)).astype(np.float32), None, "c", "0")
    art = LoadedImage(np.full((40, 40, 3), 128, np.float32), None, "art.png", "0")
    result = engine.stylize(content, [(art, 1.0)], resolve({"size": 64, "iterations": 2, "coarse_iterations": 1}))
    assert result.image.shape == (side, 64, 3)


@pytest.mark.unit
def test_scales_run_coarse_to_fine_and_skip_those_too_small_to_carry_style():
    p = resolve({"size": 96, "scales": [0.25, 0.5, 1.0], "iterations": 8, "coarse_iterations": 5})
    assert [(s.size, s.iterations) for s in scales(96, 72, p)] == [((48, 36), 5), ((96, 72), 8)]  # 24x18 skipped
    assert scales(96, 72, p)[-1].work == 96 * 72 * 8
    tiny = resolve({"scales": [0.5, 1.0], "iterations": 3, "coarse_iterations": 2})
    assert [s.size for s in scales(20, 16, tiny)] == [(20, 16)]  # the full size is never skipped
    assert [s.iterations for s in scales(200, 100, tiny)] == [2, 3]


@pytest.mark.unit
def test_a_scale_runs_whole_when_it_fits_and_in_tiles_when_it_does_not():
    p = resolve({"size": 512})
    roomy = memory.step_bytes(512 * 384) + 1
    assert tile_side(512, 384, p, last=True, available=roomy) is None
    side = tile_side(512, 384, p, last=True, available=roomy // 2)
    assert side is not None and memory.MIN_TILE <= side < 512 and side % 64 == 0
    assert memory.step_bytes((side + 2 * memory.TILE_MARGIN) ** 2) <= roomy // 2
    forced = resolve({"size": 512, "tile_size": 128})
    assert tile_side(512, 384, forced, last=True, available=roomy) == 128  # asked for: the last scale only
    assert tile_side(512, 384, forced, last=False, available=roomy) is None
    with pytest.raises(MemoryError, match="needs tiles of at least 128px"):
        tile_side(512, 384, p, last=True, available=memory.STEP_OVERHEAD)


@pytest.mark.unit
def test_out_of_memory_retries_with_half_the_area_then_half_the_side():
    assert smaller_tile(256, 192, None) == 128  # whole: tiles of about half the area
    assert smaller_tile(1024, 768, None) == 576
    assert smaller_tile(1024, 768, 576) == 256  # tiled: half the side, on the 64 px grid
    assert smaller_tile(1024, 768, 256) == 128
    assert smaller_tile(1024, 768, 128) is None  # nothing smaller works: the error stands
    assert smaller_tile(120, 100, None) is None  # a tile as large as the image is no retry


@pytest.mark.unit
def test_a_coarse_scale_takes_a_quarter_of_the_time_left_and_tiles_share_the_rest():
    assert scale_budget(None, 5.0, last=False) is None
    assert scale_budget(100.0, 20.0, last=False) == 20.0
    assert scale_budget(100.0, 20.0, last=True) == 80.0
    assert scale_budget(10.0, 20.0, last=True) == 0.0
    assert visit_budget(None, 1.0, 3) is None
    assert visit_budget(30.0, 6.0, 4) == 6.0 and visit_budget(30.0, 40.0, 4) == 0.0


@pytest.mark.unit
def test_a_style_is_sized_against_the_contents_longest_side():
    assert style_size(400, 200, 96, 72, 1.0) == (96, 48)
    assert style_size(400, 200, 96, 72, 0.5) == (48, 24)


@pytest.mark.unit
def test_the_plan_needs_no_tensorflow():
    import subprocess
    import sys

    code = ("import sys, nstd.engine.plan as p; from nstd.params import resolve; "
            "p.scales(96, 72, resolve({})); print(any(m.startswith('tensorflow') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr


@pytest.mark.unit
def test_a_big_picture_is_painted_at_paint_size_then_gains_detail_passes_that_double():
    p = resolve({"size": 4096})
    plan = scales(4096, 3072, p)
    assert [s.size for s in plan] == [(256, 192), (512, 384), (1024, 768), (2048, 1536), (4096, 3072)]
    assert [s.detail for s in plan] == [False, False, True, True, True]
    assert [s.iterations for s in plan] == [20, 100, 40, 40, 40]
    # each pass holds the one before blurred by the same share of its pixels
    assert all(s.hold == pytest.approx(2 * HOLD_SIGMA) for s in plan[2:])
    assert plan[2].work == 1024 * 768 * 40
    # a size just over a doubling is not given a pass of its own: the last pass takes it
    assert [s.size for s in scales(2400, 1800, p) if s.detail] == [(1024, 768), (2400, 1800)]
    assert scales(2400, 1800, p)[-1].hold == pytest.approx(HOLD_SIGMA * 2400 / 1024)
    # up to a quarter over paint_size, and with paint_size off, the old plan: no detail pass
    assert not any(s.detail for s in scales(640, 480, p))
    assert not any(s.detail for s in scales(4096, 3072, resolve({"size": 4096, "paint_size": None})))
    assert not any(s.detail for s in scales(4096, 3072, resolve({"size": 4096, "preset": "origin"})))


@pytest.mark.unit
def test_a_detail_pass_optimises_fine_style_layers_against_a_hold_at_the_jobs_strength():
    p = detail_params(resolve({"strength": 0.8}))
    assert p.content_layers == () and p.style_layers == DETAIL_LAYERS and p.laplacian_weight == 0.0
    assert (p.content_weight, p.style_weight) == strength_weights(0.8) and p.normalize


@pytest.mark.unit
def test_the_eta_prices_full_and_detail_steps_each_at_their_own_rate():
    from nstd.engine.loop import Eta
    from nstd.engine.plan import DETAIL_COST

    assert Eta().left([(False, 100.0)]) is None  # nothing timed: no estimate, not a guess
    before = Eta(prior=2.0)  # seconds per pixel of a full step, timed before the job
    assert before.left([(False, 10.0), (True, 10.0)]) == pytest.approx(20 + 20 * DETAIL_COST)
    running = Eta(prior=2.0)
    running.add(True, seconds=9.0, work=10.0)  # this job's detail steps ran slower than priced
    # the job's own steps beat the prior, and price the other kind too (a job resumed in a pass)
    assert running.rate(True) == pytest.approx(0.9) and running.rate(False) == pytest.approx(0.9 / DETAIL_COST)
    running.add(False, seconds=1.0, work=1.0)
    assert running.rate(False) == 1.0 and running.rate(True) == pytest.approx(0.9)
