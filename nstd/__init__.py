"""nstd: a neural-style-transfer daemon built around a resident VGG-19 optimizer."""

__version__ = "0.1.0"
