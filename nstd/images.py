"""Reading and writing images safely: any mode in, RGB float out; atomic writes."""

from __future__ import annotations

import functools
import hashlib
import io
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError, features

from nstd.atomic import write_atomic, write_new
from nstd.errors import ImageError

DEFAULT_MAX_PIXELS = 100_000_000
#: nstd checks the pixel count itself (``max_pixels``, from the header, before decoding);
#: Pillow's global guess would give a second, different limit and a second message.
Image.MAX_IMAGE_PIXELS = None
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}


@dataclass
class LoadedImage:
    """RGB pixels in 0–255 (float32, [h, w, 3]), the alpha channel if any, and provenance."""

    rgb: np.ndarray
    alpha: np.ndarray | None
    path: str
    sha256: str

    @property
    def size(self) -> tuple[int, int]:
        return self.rgb.shape[1], self.rgb.shape[0]


def load_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Read and decode a file the user named (the CLI); inbox files go through
    :func:`nstd.untrusted.read_regular` and :func:`decode_image` instead."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(f"{path}: cannot read the image ({exc.strerror or exc}).") from exc
    return decode_image(data, path, max_pixels)


def decode_image(data: bytes, path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Decode fully, apply EXIF orientation, normalise any mode to RGB (+alpha).

    The pixel count is checked from the header before decoding, so a decompression
    bomb costs nothing. Truncated or corrupt files raise :class:`ImageError`.
    """
    if not data:
        raise ImageError(f"{path.name}: the file is empty; copy the image again.")
    try:
        im = Image.open(io.BytesIO(data))
        w, h = im.size
    except UnidentifiedImageError:  # no decoder knows the first bytes: certain, not still copying
        raise ImageError(f"{path.name}: not an image nstd can read. Use PNG, JPEG, WebP or TIFF.") from None
    except Exception as exc:  # noqa: BLE001 - a header cut short: the copy may still be arriving
        raise ImageError(f"{path.name}: the image header is truncated or corrupt ({type(exc).__name__}). Copy the "
                         "file again or re-export it as PNG/JPEG.", arriving=True) from None
    if w * h > max_pixels:
        raise ImageError(f"{path.name}: {w}×{h} = {w * h:,} pixels is over the limit of {max_pixels:,}; "
                         "scale the image down or raise limits.input_pixels.")
    try:
        im.load()
        rgb, alpha = _to_rgb(ImageOps.exif_transpose(im))
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for bad data
        raise ImageError(
            f"{path.name}: the image data is truncated or corrupt ({type(exc).__name__}: {str(exc)[:120]}). "
            "Copy the file again or re-export it as PNG/JPEG.", arriving=True) from None
    return LoadedImage(rgb, alpha, str(path), hashlib.sha256(data).hexdigest())


def _to_rgb(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Any PIL mode → float RGB 0–255 and optional alpha 0–255."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit / float greyscale
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        grey = np.clip(arr / top * 255.0, 0, 255).astype(np.float32)
        return np.repeat(grey[..., None], 3, axis=2), None
    has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
    if has_alpha:
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32)
        return np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3])
    return np.asarray(im.convert("RGB"), dtype=np.float32), None


def resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """High-quality resize of a float image or plane (per channel, no 8-bit rounding)."""
    if img.shape[:2] == (height, width):
        return img
    planes = img[..., None] if img.ndim == 2 else img
    out = np.stack(
        [np.asarray(Image.fromarray(np.ascontiguousarray(planes[..., c], dtype=np.float32))
                    .resize((width, height), Image.LANCZOS)) for c in range(planes.shape[2])],
        axis=-1,
    )
    return out if img.ndim == 3 else out[..., 0]


def fit_size(width: int, height: int, longest: int | None) -> tuple[int, int]:
    """(w, h) scaled so the longest side is ``longest`` (None keeps the size)."""
    if longest is None:
        return width, height
    scale = longest / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def to_pil(rgb: np.ndarray, alpha: np.ndarray | None = None) -> Image.Image:
    pixels = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    if alpha is None:
        return Image.fromarray(pixels, "RGB")
    a = np.clip(np.rint(alpha), 0, 255).astype(np.uint8)[..., None]
    return Image.fromarray(np.concatenate([pixels, a], axis=2), "RGBA")


#: TIFF is written LZW-compressed (lossless, read by every print workflow) where Pillow has libtiff.
TIFF_COMPRESSION = "tiff_lzw"
#: The ICC header's creation date (bytes 24–35), fixed: lcms stamps the current time, and the
#: same job must give the same bytes.
_ICC_DATE = struct.pack(">6H", 2000, 1, 1, 0, 0, 0)


@functools.lru_cache(maxsize=1)
def srgb_profile() -> bytes | None:
    """The sRGB ICC profile embedded in every result (None where Pillow lacks littlecms)."""
    try:
        from PIL import ImageCms
    except ImportError:  # pragma: no cover - every Pillow wheel has it
        return None
    data = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    data[24:36] = _ICC_DATE
    return bytes(data)


def _resolution_exif(dpi: float) -> bytes:
    """EXIF with X/YResolution in inches: WebP's only place for a DPI."""
    exif = Image.Exif()
    exif[0x011A] = exif[0x011B] = dpi  # XResolution, YResolution
    exif[0x0128] = 2  # ResolutionUnit: inch
    return exif.tobytes()


def encode(rgb: np.ndarray, alpha: np.ndarray | None, suffix: str, *, dpi: float | None = None,
           quality: int = 95) -> bytes:
    """Encode for the output extension, print-ready: an sRGB ICC profile in every format;
    with ``dpi``, the resolution (PNG pHYs, JPEG JFIF density, TIFF resolution tags, WebP
    EXIF). ``quality`` is JPEG's. JPEG has no alpha, so it is dropped there."""
    fmt = FORMATS.get(suffix.lower())
    if fmt is None:
        raise ImageError(f"output extension {suffix!r} is not supported; use one of {', '.join(sorted(FORMATS))}.")
    im = to_pil(rgb, None if fmt == "JPEG" else alpha)
    buf = io.BytesIO()
    kwargs: dict = {}
    icc = srgb_profile()
    if icc is not None:
        kwargs["icc_profile"] = icc
    if fmt == "JPEG":
        kwargs["quality"] = int(quality)
    elif fmt == "WEBP":
        kwargs["quality"] = 95
    elif fmt == "TIFF" and features.check("libtiff"):
        kwargs["compression"] = TIFF_COMPRESSION
    if dpi is not None:
        if fmt == "WEBP":
            kwargs["exif"] = _resolution_exif(dpi)
        else:  # JFIF density is a whole number; PNG stores pixels per metre; TIFF a rational
            kwargs["dpi"] = (round(dpi), round(dpi)) if fmt == "JPEG" else (dpi, dpi)
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def save_image(path: Path, rgb: np.ndarray, alpha: np.ndarray | None = None, *, overwrite: bool = True,
               mode: int | None = None, dpi: float | None = None, quality: int = 95) -> Path:
    """Write atomically; with ``overwrite=False`` pick ``NAME-1.EXT`` etc. instead."""
    data = encode(rgb, alpha, Path(path).suffix, dpi=dpi, quality=quality)
    writer = write_atomic if overwrite else write_new
    return writer(Path(path), lambda fh: fh.write(data), mode)


def luminance_transfer(stylized: np.ndarray, content: np.ndarray) -> np.ndarray:
    """Keep the stylized luminance, take colour (YCbCr chroma) from the content."""
    def ycbcr(rgb: np.ndarray) -> np.ndarray:
        return np.asarray(to_pil(rgb).convert("YCbCr"), dtype=np.float32)

    y = ycbcr(stylized)[..., 0]
    cc = ycbcr(content)
    merged = np.stack([y, cc[..., 1], cc[..., 2]], axis=-1)
    return np.asarray(Image.fromarray(np.clip(np.rint(merged), 0, 255).astype(np.uint8), "YCbCr").convert("RGB"),
                      dtype=np.float32)


def histogram_transfer(stylized: np.ndarray, content: np.ndarray) -> np.ndarray:
    """Give each RGB channel of the stylized image the content's distribution (quantile
    mapping): the painting's strokes and shading stay, the photo's palette comes back."""
    out = np.empty_like(stylized, dtype=np.float32)
    for c in range(3):
        src = stylized[..., c].ravel()
        order = np.argsort(src, kind="stable")
        target = np.sort(content[..., c].ravel())
        ranks = np.empty_like(order)
        ranks[order] = np.arange(src.size)
        positions = ranks * (target.size - 1) / max(src.size - 1, 1)
        out[..., c] = np.interp(positions, np.arange(target.size), target).reshape(stylized.shape[:2])
    return out
