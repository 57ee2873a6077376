"""conv1d_rs: the Keras Conv1D layer, exact to Keras, with a multi-threaded Rust core.

>>> import numpy as np, conv1d_rs
>>> layer = conv1d_rs.Conv1D(16, 3, activation="relu")
>>> layer(np.zeros((1, 56, 1), dtype="float32")).shape
(1, 54, 16)
"""

from . import _core, activations, constraints, dtype_policies, initializers, regularizers
from .functional import ComputeOptions, compute_options, conv1d, conv1d_backward
from .layers import Conv1D, Convolution1D
from . import models, optimizers
from .models import Sequential

__version__: str = _core.__version__

__all__ = [
    "ComputeOptions",
    "Conv1D",
    "compute_options",
    "Convolution1D",
    "activations",
    "constraints",
    "conv1d",
    "conv1d_backward",
    "dtype_policies",
    "initializers",
    "regularizers",
    "models",
    "optimizers",
    "Sequential",
    "__version__",
]


def __getattr__(name: str) -> object:
    # conv1d_rs.torch imports torch, so it is loaded only when first used.
    if name == "torch":
        import importlib

        return importlib.import_module(".torch", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
