"""User-facing errors: each says which file, what is wrong, and what to do."""

from __future__ import annotations


class NstdError(Exception):
    """An error whose message is meant for the user, not a traceback."""

    #: Phase name used in reports ("weights", "input", "parameters", ...).
    phase = "nstd"


class WeightsError(NstdError):
    phase = "weights"


class ImageError(NstdError):
    """An image that cannot be used. ``arriving``: the data stops short, so the file may
    still be being copied; every other image error is certain from the bytes we have."""

    phase = "input"

    def __init__(self, message: str, arriving: bool = False) -> None:
        super().__init__(message)
        self.arriving = arriving


class ParamError(NstdError):
    phase = "parameters"


class ConfigError(NstdError):
    phase = "config"
