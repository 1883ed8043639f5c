"""Pictures on the real ImageNet VGG-19 weights, judged by measures that are not the loss.

Skipped where the shared weights or images are absent. Small sizes keep this to seconds;
bench/quality.py judges the same things at 512 px on contact sheets.
"""

from __future__ import annotations

import pytest

from nstd.images import resize
from nstd.metrics import Judge
from nstd.params import resolve

pytestmark = [pytest.mark.real_weights, pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def pair(real_pair):
    return real_pair


def run(engine, pair, **raw):
    content, style = pair
    params = resolve({"size": 96, "seed": 1, "iterations": 40, "coarse_iterations": 10, **raw})
    image = engine.stylize(content, [(style, 1.0)], params).image
    h, w = image.shape[:2]
    return image, Judge(engine, resize(content.rgb, w, h), resize(style.rgb, w, h))(image)


def test_raising_strength_raises_style_match_and_lowers_content_preservation(real_engine, pair):
    scores = [run(real_engine, pair, strength=s)[1] for s in (0.2, 0.5, 0.8)]
    print([s.as_dict() for s in scores])
    styles, contents = [s.style for s in scores], [s.content for s in scores]
    assert styles[0] < styles[1] < styles[2], styles
    assert contents[0] > contents[1] > contents[2], contents
    # the knob's ends are far apart: a visible range, not a flat stretch
    assert styles[2] - styles[0] > 0.2 and contents[0] - contents[2] > 0.1


def test_the_default_keeps_the_content_and_shows_the_style(real_engine, pair):
    _, default = run(real_engine, pair)
    assert default.content > 0.6, default  # the houses stay recognisable
    assert default.style > 0.35, default  # and the painting is plain to see


def test_a_masked_region_without_style_stays_close_to_the_content(real_engine, pair):
    import numpy as np

    from nstd.engine.regions import Region

    content, style = pair
    h, w = content.rgb.shape[:2]
    left = np.zeros((h, w), np.float32)
    left[:, : w // 2] = 1.0
    params = resolve({"size": 128, "seed": 1, "iterations": 40, "coarse_iterations": 10})
    result = real_engine.stylize(content, [], params, regions=[Region(left, [(style, 1.0)], "left.png"),
                                                               Region(1 - left, [], "right.png")])
    image = result.image
    hh, ww = image.shape[:2]
    change = np.abs(image - resize(content.rgb, ww, hh)).mean(-1)
    styled, kept = change[:, : ww // 2 - 8].mean(), change[:, ww // 2 + 8:].mean()
    print(f"mean change: styled half {styled:.1f}, unstyled half {kept:.1f}")
    assert styled > 2 * kept, (styled, kept)
    assert styled > 15  # the styled half really changed
