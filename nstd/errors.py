"""User-facing errors: each says which file, what is wrong, and what to do."""

from __future__ import annotations


class NstdError(Exception):
    """An error whose message is meant for the user, not a traceback."""

    #: Phase name used in reports ("weights", "input", "parameters", ...).
    phase = "nstd"
    #: Transient errors (out of memory, disk full) are worth retrying later.
    transient = False


class WeightsError(NstdError):
    phase = "weights"


class ImageError(NstdError):
    phase = "input"


class ParamError(NstdError):
    phase = "parameters"


class ConfigError(NstdError):
    phase = "config"
