"""The style-transfer engine, usable as a library without the daemon.

    from nstd.engine import Engine, load_weights
    from nstd.images import load_image
    from nstd.params import resolve

    engine = Engine(load_weights("imagenet-vgg-verydeep-19.mat"))
    result = engine.stylize(load_image("photo.jpg"), [(load_image("style.jpg"), 1.0)], resolve({"size": 512}))

Names are imported lazily so that tools which only read weights or check
parameters do not pay for importing TensorFlow.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Engine": "stylize", "Interrupted": "stylize", "Progress": "stylize", "Result": "stylize",
    "Checkpoint": "checkpoint", "load_checkpoint": "checkpoint", "save_checkpoint": "checkpoint",
    "device_name": "stylize", "Hooks": "hooks",
    "VGGWeights": "weights", "load_weights": "weights",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(name)
    return getattr(import_module(f"nstd.engine.{_EXPORTS[name]}"), name)
