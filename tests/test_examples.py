"""The example images the README's first command stylizes: present, decodable, small, credited."""

from __future__ import annotations

from pathlib import Path

import pytest

from nstd.images import load_image

pytestmark = pytest.mark.unit

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_every_example_image_decodes_is_small_and_has_its_credit():
    images = sorted(p for p in EXAMPLES.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"})
    names = {p.name for p in images}
    assert {"chelsea.jpg", "coffee.jpg", "starry_night.jpg"} <= names  # the README's commands use these
    assert sum(p.stat().st_size for p in images) < 300_000
    credits = (EXAMPLES / "CREDITS.md").read_text()
    for p in images:
        assert f"`{p.name}`" in credits, f"{p.name} has no line in examples/CREDITS.md"
        image = load_image(p)
        assert max(image.rgb.shape[:2]) <= 512 and image.rgb.shape[2] == 3
