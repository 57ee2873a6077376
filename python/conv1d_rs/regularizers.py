"""Keras 3 weight and activity regularizers on NumPy arrays.

A regularizer maps an array to a penalty (``reg(x) -> float``, computed in
``x``'s dtype) and gives its gradient (``reg.gradient(x)``). Defaults,
validation messages and ``get_config()`` follow Keras 3.15.1: ``L1`` and
``OrthogonalRegularizer`` store their factor as float32, so
``L1().get_config() == {'l1': 0.009999999776482582}``.

``from_config`` keeps the factor in the config bit for bit, so a config
written by a backend that stores it in float64 (JAX with x64 enabled writes
``{'l1': 0.01}``) serializes back unchanged.

Penalties and gradients apply every factor rounded to float32, also to
float64 weights: Keras's TensorFlow backend casts a Python float through a
float32 tensor (``tf.cast(0.01, float64) == 0.009999999776482582``). JAX
with x64 enabled uses the exact factor instead; the two differ by about
2e-8 relative.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from . import _serialization

__all__ = [
    "L1",
    "L1L2",
    "L2",
    "OrthogonalRegularizer",
    "Regularizer",
    "get",
    "serialize",
]

_MODULE = "keras.regularizers"
_EPSILON = 1e-7  # Keras's backend epsilon, used by ops.nn.normalize


def validate_float_arg(value: Any, name: str) -> float:
    """A non-negative finite factor as a Python float (Keras's check)."""
    if (
        not isinstance(value, (float, int))
        or math.isinf(value)
        or math.isnan(value)
        or value < 0
    ):
        # The missing space after the period is Keras's.
        raise ValueError(
            f"Invalid value for argument {name}: expected a non-negative float."
            f"Received: {name}={value}"
        )
    return float(value)


def _float32(value: float) -> float:
    """`value` rounded to float32, as Keras stores it in a float32 tensor."""
    return float(np.float32(value))


def _as_float_array(x: Any) -> np.ndarray:
    a = np.asarray(x)
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float32)
    return a


class Regularizer:
    """Base class: a penalty ``reg(x)`` and its gradient ``reg.gradient(x)``."""

    def __call__(self, x: np.ndarray) -> float:
        return 0.0

    def gradient(self, x: np.ndarray) -> np.ndarray:
        """d penalty / d x, in `x`'s dtype."""
        return np.zeros_like(_as_float_array(x))

    def get_config(self) -> dict[str, Any]:
        raise NotImplementedError(
            f"{object.__repr__(self)} does not implement get_config()"
        )

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Regularizer:
        """Rebuild a regularizer from `get_config()` output."""
        return cls(**config)

    def __repr__(self) -> str:
        try:
            config = self.get_config()
        except NotImplementedError:
            config = {}
        args = ", ".join(f"{k}={v!r}" for k, v in config.items())
        return f"{type(self).__name__}({args})"


def _cast_factor(factor: float, dtype: np.dtype) -> np.generic:
    """`factor` in `dtype` the way TF casts a Python float (via float32)."""
    return dtype.type(np.float32(factor))


def _l1_penalty(factor: float, x: np.ndarray) -> np.generic:
    return _cast_factor(factor, x.dtype) * np.sum(np.abs(x))


def _l2_penalty(factor: float, x: np.ndarray) -> np.generic:
    return _cast_factor(factor, x.dtype) * np.sum(np.square(x))


def _l1_gradient(factor: float, x: np.ndarray) -> np.ndarray:
    # d|x|/dx = sign(x), with 0 at 0 as TF and JAX give.
    return _cast_factor(factor, x.dtype) * np.sign(x)


def _l2_gradient(factor: float, x: np.ndarray) -> np.ndarray:
    return _cast_factor(factor, x.dtype) * (2 * x)


class L1L2(Regularizer):
    """``l1 * sum(|x|) + l2 * sum(x²)``, skipping a zero factor."""

    def __init__(self, l1: float | None = 0.0, l2: float | None = 0.0) -> None:
        self.l1 = validate_float_arg(0.0 if l1 is None else l1, name="l1")
        self.l2 = validate_float_arg(0.0 if l2 is None else l2, name="l2")

    def __call__(self, x: np.ndarray) -> float:
        x = _as_float_array(x)
        penalty = x.dtype.type(0)
        if self.l1 != 0.0:
            penalty = penalty + _l1_penalty(self.l1, x)
        if self.l2 != 0.0:
            penalty = penalty + _l2_penalty(self.l2, x)
        return float(penalty)

    def gradient(self, x: np.ndarray) -> np.ndarray:
        x = _as_float_array(x)
        grad = np.zeros_like(x)
        if self.l1 != 0.0:
            grad = grad + _l1_gradient(self.l1, x)
        if self.l2 != 0.0:
            grad = grad + _l2_gradient(self.l2, x)
        return grad

    def get_config(self) -> dict[str, Any]:
        return {"l1": self.l1, "l2": self.l2}


class L1(Regularizer):
    """``l1 * sum(|x|)``; `l1` is stored as float32."""

    def __init__(self, l1: float | None = 0.01) -> None:
        l1 = 0.01 if l1 is None else l1
        self.l1 = _float32(validate_float_arg(l1, name="l1"))

    def __call__(self, x: np.ndarray) -> float:
        return float(_l1_penalty(self.l1, _as_float_array(x)))

    def gradient(self, x: np.ndarray) -> np.ndarray:
        return _l1_gradient(self.l1, _as_float_array(x))

    def get_config(self) -> dict[str, Any]:
        return {"l1": self.l1}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> L1:
        obj = cls(**config)
        if config.get("l1") is not None:
            obj.l1 = float(config["l1"])
        return obj


class L2(Regularizer):
    """``l2 * sum(x²)``."""

    def __init__(self, l2: float | None = 0.01) -> None:
        l2 = 0.01 if l2 is None else l2
        self.l2 = validate_float_arg(l2, name="l2")

    def __call__(self, x: np.ndarray) -> float:
        return float(_l2_penalty(self.l2, _as_float_array(x)))

    def gradient(self, x: np.ndarray) -> np.ndarray:
        return _l2_gradient(self.l2, _as_float_array(x))

    def get_config(self) -> dict[str, Any]:
        return {"l2": self.l2}


def _normalize_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keras's L2 normalize along axis 1: ``x * min(rsqrt(sum x²), 1/eps)``.

    Returns the normalized rows, the scale per row and whether the scale was
    the rsqrt (rather than the 1/eps cap).
    """
    square_sum = np.sum(np.square(x), axis=1, keepdims=True)
    with np.errstate(divide="ignore"):
        inv_norm = 1 / np.sqrt(square_sum)
    cap = x.dtype.type(1 / _EPSILON)
    scale = np.minimum(inv_norm, cap)
    return x * scale, scale, inv_norm <= cap


class OrthogonalRegularizer(Regularizer):
    """Penalizes non-orthogonal rows (or columns) of a 2-D weight.

    ``factor * 0.5 * sum(|offdiag(N Nᵀ)|) / (n(n-1)/2)`` with ``N`` the
    L2-normalized rows (``mode="rows"``) or columns (``mode="columns"``).
    """

    def __init__(self, factor: float = 0.01, mode: str = "rows") -> None:
        self.factor = _float32(validate_float_arg(factor, name="factor"))
        if mode not in {"rows", "columns"}:
            raise ValueError(
                "Invalid value for argument `mode`. Expected one of "
                f'{{"rows", "columns"}}. Received: mode={mode}'
            )
        self.mode = mode

    def _oriented(self, x: Any) -> np.ndarray:
        """`x` checked for rank 2, with the vectors to compare as rows."""
        x = _as_float_array(x)
        if x.ndim != 2:
            raise ValueError(
                "Inputs to OrthogonalRegularizer must have rank 2. Received: "
                f"inputs.shape={x.shape}"
            )
        return x if self.mode == "rows" else x.T

    def _pair_weight(self, size: int, dtype: np.dtype) -> np.generic:
        """``factor * 0.5 / num_pairs`` (nan/inf for a single vector)."""
        num_pairs = size * (size - 1.0) / 2.0
        with np.errstate(divide="ignore", invalid="ignore"):
            return _cast_factor(self.factor, dtype) * dtype.type(0.5) / dtype.type(num_pairs)

    def __call__(self, x: np.ndarray) -> float:
        rows = self._oriented(x)
        normalized, _, _ = _normalize_rows(rows)
        product = normalized @ normalized.T
        off_diagonal = product * (1 - np.eye(rows.shape[0], dtype=rows.dtype))
        weight = self._pair_weight(rows.shape[0], rows.dtype)
        with np.errstate(invalid="ignore"):
            return float(weight * np.sum(np.abs(off_diagonal)))

    def gradient(self, x: np.ndarray) -> np.ndarray:
        rows = self._oriented(x)
        normalized, scale, uncapped = _normalize_rows(rows)
        product = normalized @ normalized.T
        mask = 1 - np.eye(rows.shape[0], dtype=rows.dtype)
        weight = self._pair_weight(rows.shape[0], rows.dtype)
        with np.errstate(invalid="ignore"):
            d_product = weight * np.sign(product) * mask
        # d_product is symmetric, so both factors of N Nᵀ contribute equally.
        d_normalized = 2 * d_product @ normalized
        # Through N = x * scale, with scale = (sum x²)^(-1/2) unless capped.
        radial = np.sum(d_normalized * normalized, axis=1, keepdims=True)
        grad = scale * d_normalized - np.where(uncapped, scale * normalized * radial, 0)
        grad = grad.astype(rows.dtype, copy=False)
        return grad if self.mode == "rows" else grad.T

    def get_config(self) -> dict[str, Any]:
        return {"factor": self.factor, "mode": self.mode}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> OrthogonalRegularizer:
        obj = cls(**config)
        if config.get("factor") is not None:
            obj.factor = float(config["factor"])
        return obj


_BUILTINS: dict[str, type[Regularizer]] = {
    "Regularizer": Regularizer,
    "regularizer": Regularizer,
    "L1": L1,
    "l1": L1,
    "L2": L2,
    "l2": L2,
    "L1L2": L1L2,
    "l1l2": L1L2,
    "OrthogonalRegularizer": OrthogonalRegularizer,
    "orthogonal_regularizer": OrthogonalRegularizer,
}


def get(identifier: Any) -> Regularizer | Callable[..., Any] | None:
    """Keras's `regularizers.get`: a name, config dict, class, callable or None.

    Names are exact (``"l1_l2"`` is rejected, as in Keras 3).
    """
    if identifier is None:
        return None
    return _serialization.resolve(identifier, _BUILTINS, "regularizer")


def serialize(regularizer: Any) -> dict[str, Any] | None:
    """Keras's ``{'module', 'class_name', 'config', 'registered_name'}`` form."""
    return _serialization.serialize_object(regularizer, _MODULE, _BUILTINS)
