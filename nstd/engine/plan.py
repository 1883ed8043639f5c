"""The picture's size, checked before any TensorFlow call: a size VGG-19 cannot take fails
with a sentence that says what size works, never with an op's internal text."""

from __future__ import annotations

import math

from nstd.errors import ParamError
from nstd.images import fit_size

#: VGG-19 halves the picture four times before conv5_1, and its 3×3 convolutions pad by
#: reflection, which needs two pixels: 16 px on the short side is the least that runs.
MIN_SIDE = 16


def check_size(width: int, height: int, size: int | None, largest: int | None = None,
               source: str = "the content image") -> tuple[int, int]:
    """The output size of a ``width``×``height`` image asked for at ``size`` (None: as is);
    raises :class:`ParamError` when its short side would be under :data:`MIN_SIDE`.

    ``largest``: the biggest size allowed (``limits.size``), so the message can say when
    no size works and the image must be cropped instead.
    """
    w, h = fit_size(width, height, size)
    if min(w, h) >= MIN_SIDE:
        return w, h
    asked = f"at size {size}" if size else "at its own size"
    need = math.ceil(MIN_SIDE * max(width, height) / min(width, height))
    text = (f"{source}: {width}×{height} px {asked} would be {w}×{h} px, too thin for VGG-19, which needs at "
            f"least {MIN_SIDE} px on the short side.")
    if largest is not None and need > largest:
        raise ParamError(f"{text} No size up to the limit ({largest}, limits.size) is enough: the image is too "
                         f"thin (sides {max(width, height) / min(width, height):,.0f}:1). Crop it so its long side "
                         f"is at most {largest // MIN_SIDE}× its short side.")
    raise ParamError(f"{text} Ask for size: {need} or more.")
