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


def is_internal_text(exc: BaseException) -> bool:
    """An error from inside TensorFlow, whose op text means nothing to a user."""
    text = str(exc)
    return type(exc).__module__.startswith("tensorflow") or "{{node " in text or "{{function_node " in text


def plain(exc: BaseException) -> str:
    """What a user is told about ``exc``: nstd's own message, or one sentence in place of
    TensorFlow's internal text (which goes to the job log for the developer)."""
    if not is_internal_text(exc):
        return str(exc)
    return (f"the style transfer stopped inside TensorFlow ({type(exc).__name__}) on a case nstd does not check "
            "for; the full text is in the job log (job.log). Try another size or image, and report it with that "
            "log.")
