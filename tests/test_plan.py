"""The size check that runs before any TensorFlow call (the pure checks are unit tests; the
engine's are not)."""

from __future__ import annotations

import numpy as np
import pytest

from nstd.engine.plan import MIN_SIDE, check_size
from nstd.errors import ParamError
from nstd.images import LoadedImage
from nstd.params import resolve


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
