"""Keras 3 weight constraints on NumPy arrays.

A constraint maps a weight to its projected value; Keras applies it after
every optimizer update. Norms are taken over `axis` (an int or a list of
ints) with ``eps = 1e-7`` as in Keras 3.15.1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import _serialization

__all__ = [
    "Constraint",
    "MaxNorm",
    "MinMaxNorm",
    "NonNeg",
    "UnitNorm",
    "get",
    "serialize",
]

_MODULE = "keras.constraints"
_EPSILON = 1e-7  # Keras's backend epsilon

Axis = int | Sequence[int] | None


def _as_float_array(w: Any) -> np.ndarray:
    a = np.asarray(w)
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float32)
    return a


def _norms(w: np.ndarray, axis: Axis) -> np.ndarray:
    """``sqrt(sum(w², axis, keepdims=True))``; a list axis becomes a tuple."""
    if axis is not None and not isinstance(axis, int):
        axis = tuple(axis)
    return np.sqrt(np.sum(np.square(w), axis=axis, keepdims=True))


class Constraint:
    """Base class: ``constraint(w)`` returns the projected weight."""

    def __call__(self, w: np.ndarray) -> np.ndarray:
        return w

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments needed to rebuild this constraint."""
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Constraint:
        """Rebuild a constraint from `get_config()` output."""
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class MaxNorm(Constraint):
    """Rescale slices whose norm along `axis` exceeds `max_value`."""

    def __init__(self, max_value: float = 2, axis: Axis = 0) -> None:
        self.max_value = max_value
        self.axis = axis

    def __call__(self, w: np.ndarray) -> np.ndarray:
        w = _as_float_array(w)
        norms = _norms(w, self.axis)
        desired = np.clip(norms, 0, self.max_value)
        return w * (desired / (_EPSILON + norms))

    def get_config(self) -> dict[str, Any]:
        return {"max_value": self.max_value, "axis": self.axis}


class NonNeg(Constraint):
    """Clamp negative weights to zero."""

    def __call__(self, w: np.ndarray) -> np.ndarray:
        return np.maximum(_as_float_array(w), 0)


class UnitNorm(Constraint):
    """Scale slices along `axis` to unit norm."""

    def __init__(self, axis: Axis = 0) -> None:
        self.axis = axis

    def __call__(self, w: np.ndarray) -> np.ndarray:
        w = _as_float_array(w)
        return w / (_EPSILON + _norms(w, self.axis))

    def get_config(self) -> dict[str, Any]:
        return {"axis": self.axis}


class MinMaxNorm(Constraint):
    """Move slice norms along `axis` toward ``[min_value, max_value]``.

    The new norm is ``rate * clip(n, min, max) + (1 - rate) * n``.
    """

    def __init__(
        self,
        min_value: float = 0.0,
        max_value: float = 1.0,
        rate: float = 1.0,
        axis: Axis = 0,
    ) -> None:
        self.min_value = min_value
        self.max_value = max_value
        self.rate = rate
        self.axis = axis

    def __call__(self, w: np.ndarray) -> np.ndarray:
        w = _as_float_array(w)
        norms = _norms(w, self.axis)
        desired = (
            self.rate * np.clip(norms, self.min_value, self.max_value)
            + (1 - self.rate) * norms
        )
        return w * (desired / (_EPSILON + norms))

    def get_config(self) -> dict[str, Any]:
        return {
            "min_value": self.min_value,
            "max_value": self.max_value,
            "rate": self.rate,
            "axis": self.axis,
        }


_BUILTINS: dict[str, type[Constraint]] = {
    "Constraint": Constraint,
    "constraint": Constraint,
    "MaxNorm": MaxNorm,
    "max_norm": MaxNorm,
    "MinMaxNorm": MinMaxNorm,
    "min_max_norm": MinMaxNorm,
    "NonNeg": NonNeg,
    "non_neg": NonNeg,
    "UnitNorm": UnitNorm,
    "unit_norm": UnitNorm,
}


def get(identifier: Any) -> Constraint | Callable[..., Any] | None:
    """Keras's `constraints.get`: a name, config dict, class, callable or None."""
    if identifier is None:
        return None
    return _serialization.resolve(identifier, _BUILTINS, "constraint")


def serialize(constraint: Any) -> dict[str, Any] | None:
    """Keras's ``{'module', 'class_name', 'config', 'registered_name'}`` form."""
    return _serialization.serialize_object(constraint, _MODULE, _BUILTINS)
