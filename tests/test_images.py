"""Input images of every kind become RGB (+alpha); bad ones fail clearly; writes are atomic."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from nstd.atomic import write_new
from nstd.errors import ImageError
from nstd.images import load_image, luminance_transfer, save_image
from tests.conftest import make_image

pytestmark = pytest.mark.unit


def test_exif_orientation_is_applied(tmp_path):
    im = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    im.save(tmp_path / "rot.jpg", exif=exif)
    loaded = load_image(tmp_path / "rot.jpg")
    assert loaded.size == (20, 40)


@pytest.mark.parametrize("mode", ["L", "CMYK", "P", "LA", "RGBA", "I;16"])
def test_modes_become_rgb(tmp_path, mode):
    src = make_image(tmp_path / "src.png", (20, 10))
    im = Image.open(src)
    if mode == "I;16":
        grey = (np.asarray(im.convert("L"), np.uint16) * 257)
        im = Image.fromarray(grey)
        path = tmp_path / "g16.png"
    elif mode == "CMYK":
        im, path = im.convert("CMYK"), tmp_path / "c.jpg"
    else:
        im, path = im.convert(mode), tmp_path / f"{mode}.png"
    im.save(path)
    loaded = load_image(path)
    assert loaded.rgb.shape == (10, 20, 3) and loaded.rgb.dtype == np.float32
    assert 0 <= loaded.rgb.min() and loaded.rgb.max() <= 255 and loaded.rgb.max() > 20
    assert (loaded.alpha is not None) == (mode in ("LA", "RGBA"))
    if mode == "I;16":  # scaled to 8 bits, not clipped to white
        np.testing.assert_allclose(loaded.rgb[..., 0], np.asarray(Image.open(src).convert("L")), atol=1.0)


def test_alpha_round_trips(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 3] = np.arange(8)[None, :] * 30
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    img = load_image(tmp_path / "a.png")
    out = save_image(tmp_path / "out.png", img.rgb, img.alpha)
    assert np.array_equal(np.asarray(Image.open(out))[..., 3], rgba[..., 3])
    jpg = save_image(tmp_path / "out.jpg", img.rgb, img.alpha)  # JPEG: alpha dropped, still written
    assert Image.open(jpg).mode == "RGB"


def test_pixel_limit_refused_before_decoding(tmp_path):
    big = make_image(tmp_path / "big.png", (300, 200))
    with pytest.raises(ImageError, match="over the limit"):
        load_image(big, max_pixels=10_000)


def test_truncated_may_be_arriving_but_garbage_empty_and_bombs_are_certain(tmp_path):
    good = make_image(tmp_path / "ok.jpg", (64, 64))
    data = good.read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    (tmp_path / "junk.png").write_text("not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    # a PNG header that claims 30000×30000: Pillow's own bomb check fires in open()
    import struct
    import zlib
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0))
    (tmp_path / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"\0" * 64)))
    expect = {"cut.jpg": (True, "truncated"), "junk.png": (False, "not an image"), "empty.png": (False, "empty"),
              "bomb.png": (False, "900,000,000 pixels is over the limit")}
    for name, (arriving, words) in expect.items():
        with pytest.raises(ImageError) as err:
            load_image(tmp_path / name)
        assert name in str(err.value) and words in str(err.value)
        assert err.value.arriving is arriving, name


def test_atomic_save_leaves_no_temp_and_never_overwrites(tmp_path):
    rgb = np.full((4, 4, 3), 128, np.float32)
    first = save_image(tmp_path / "o.png", rgb, overwrite=False)
    second = save_image(tmp_path / "o.png", rgb, overwrite=False)
    third = write_new(tmp_path / "o.report.yaml", lambda fh: fh.write(b"a: 1\n"))
    fourth = write_new(tmp_path / "o.report.yaml", lambda fh: fh.write(b"a: 2\n"))
    assert (first.name, second.name, third.name, fourth.name) == ("o.png", "o-1.png", "o.report.yaml",
                                                                  "o-1.report.yaml")
    assert sorted(os.listdir(tmp_path)) == ["o-1.png", "o-1.report.yaml", "o.png", "o.report.yaml"]


def test_unsupported_output_extension(tmp_path):
    with pytest.raises(ImageError, match="not supported"):
        save_image(tmp_path / "o.bmpx", np.zeros((2, 2, 3), np.float32))


def test_luminance_transfer_keeps_content_colours():
    rng = np.random.default_rng(0)
    # mid-tones, like photos: every Y/Cb/Cr combination stays inside the RGB gamut
    content = rng.uniform(100, 160, (16, 16, 3)).astype(np.float32)
    stylized = rng.uniform(100, 160, (16, 16, 3)).astype(np.float32)
    out = luminance_transfer(stylized, content)
    to_ycc = lambda a: np.asarray(Image.fromarray(a.astype(np.uint8)).convert("YCbCr"), np.float32)  # noqa: E731
    np.testing.assert_allclose(to_ycc(out)[..., 1:], to_ycc(np.rint(content))[..., 1:], atol=4)
    np.testing.assert_allclose(to_ycc(out)[..., 0], to_ycc(np.rint(stylized))[..., 0], atol=4)


def test_histogram_transfer_gives_the_content_palette_and_keeps_the_structure():
    from nstd.images import histogram_transfer

    rng = np.random.default_rng(0)
    content = rng.uniform(100, 200, (32, 32, 3)).astype(np.float32)
    stylized = np.zeros((32, 32, 3), np.float32)
    stylized[:, :16] = 10.0  # dark left, bright right: the structure to keep
    stylized[:, 16:] = 240.0
    stylized += rng.uniform(0, 1, stylized.shape).astype(np.float32)
    out = histogram_transfer(stylized, content)
    for c in range(3):  # the content's distribution, exactly
        np.testing.assert_allclose(np.sort(out[..., c].ravel()), np.sort(content[..., c].ravel()), atol=1e-3)
    assert (out[:, :16].mean() < out[:, 16:].mean())  # and the stylized image's order
