"""Keras 3 weight initializers producing NumPy arrays.

Constructor arguments, defaults, validation messages and ``get_config()``
follow Keras 3.15.1. Random draws come from NumPy's ``Generator``: they
match Keras's distributions, not its values (Keras's own draws already
differ between backends). An integer seed gives the same values on every
call; ``seed=None`` draws fresh values on every call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import _serialization

__all__ = [
    "Constant",
    "GlorotNormal",
    "GlorotUniform",
    "HeNormal",
    "HeUniform",
    "Identity",
    "Initializer",
    "LecunNormal",
    "LecunUniform",
    "Ones",
    "Orthogonal",
    "RandomNormal",
    "RandomUniform",
    "TruncatedNormal",
    "VarianceScaling",
    "Zeros",
    "compute_fans",
    "get",
    "serialize",
]

Shape = Sequence[int]
DTypeLike = Any

# Standard deviation of a standard normal truncated to [-2, 2].
_TRUNCATED_STDDEV = 0.87962566103423978
_MODULE = "keras.initializers"


def _standardize_dtype(dtype: DTypeLike) -> np.dtype:
    """`None` means Keras's floatx, float32."""
    return np.dtype(np.float32 if dtype is None else dtype)


def _float_dtype(dtype: DTypeLike) -> np.dtype:
    """A floating dtype for random draws (integer weights cannot be drawn)."""
    dt = _standardize_dtype(dtype)
    if not np.issubdtype(dt, np.floating):
        raise ValueError(
            "Random initializers need a floating point dtype. "
            f"Received: dtype={dtype}"
        )
    return dt


def _shape_tuple(shape: Shape) -> tuple[int, ...]:
    return tuple(int(d) for d in shape)


def compute_fans(
    shape: Shape,
    input_axes: Sequence[int] | None = None,
    output_axes: Sequence[int] | None = None,
) -> tuple[int, int]:
    """Number of input and output units of a weight of this shape.

    For a convolution kernel ``(..., in, out)`` the receptive field size
    multiplies both. Explicit `input_axes` and `output_axes` (both given)
    override this.
    """
    shape = _shape_tuple(shape)
    if input_axes is not None and output_axes is not None:
        return (
            int(math.prod(shape[a] for a in input_axes)),
            int(math.prod(shape[a] for a in output_axes)),
        )
    if len(shape) < 1:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive_field = math.prod(shape[:-2])
    return shape[-2] * receptive_field, shape[-1] * receptive_field


class Initializer:
    """Base class: ``init(shape, dtype)`` returns the initial array."""

    def __call__(self, shape: Shape, dtype: DTypeLike = "float32") -> np.ndarray:
        raise NotImplementedError(
            "Initializer subclasses must implement the `__call__()` method."
        )

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments needed to rebuild this initializer."""
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Initializer:
        """Rebuild an initializer from `get_config()` output."""
        return cls(**config)

    def clone(self) -> Initializer:
        """A new initializer with the same configuration."""
        return self.__class__.from_config(self.get_config())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class Zeros(Initializer):
    """All zeros."""

    def __call__(self, shape: Shape, dtype: DTypeLike = "float32") -> np.ndarray:
        return np.zeros(_shape_tuple(shape), dtype=_standardize_dtype(dtype))


class Ones(Initializer):
    """All ones."""

    def __call__(self, shape: Shape, dtype: DTypeLike = "float32") -> np.ndarray:
        return np.ones(_shape_tuple(shape), dtype=_standardize_dtype(dtype))


class Constant(Initializer):
    """Every element equal to a scalar `value`."""

    def __init__(self, value: float = 0.0) -> None:
        self.value = value

    def __call__(self, shape: Shape, dtype: DTypeLike = "float32") -> np.ndarray:
        dt = _standardize_dtype(dtype)
        return np.full(_shape_tuple(shape), np.asarray(self.value).astype(dt))

    def get_config(self) -> dict[str, Any]:
        value = self.value
        # Keras serializes NumPy scalars as plain Python numbers.
        if isinstance(value, np.generic):
            value = value.item()
        return {"value": value}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Constant:
        return cls(config["value"])


class Identity(Initializer):
    """``gain`` times the identity matrix; 2-D shapes only.

    As in Keras, `get_config()` is empty, so `gain` is not serialized.
    """

    def __init__(self, gain: float = 1.0) -> None:
        self.gain = gain

    def __call__(self, shape: Shape, dtype: DTypeLike = "float32") -> np.ndarray:
        if len(shape) != 2:
            raise ValueError(
                "Identity matrix initializer can only be used for 2D matrices. "
                f"Received: shape={shape} of rank {len(shape)}."
            )
        dt = _standardize_dtype(dtype)
        rows, cols = _shape_tuple(shape)
        return (self.gain * np.eye(rows, cols, dtype=dt)).astype(dt, copy=False)


class RandomInitializer(Initializer):
    """Base for initializers that draw random numbers.

    `seed` is ``None`` (fresh draws on every call) or an int (the same draw
    on every call).
    """

    def __init__(self, seed: int | None = None) -> None:
        if seed is not None and not isinstance(seed, int):
            raise ValueError(
                "`seed` argument should be an instance of "
                "`keras.random.SeedGenerator()` or an integer. "
                f"Received: seed={seed}"
            )
        self.seed = seed

    def _rng(self) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng()
        # Generator seeds must be non-negative; Keras accepts any int.
        return np.random.default_rng(int(self.seed) % 2**64)

    def get_config(self) -> dict[str, Any]:
        return {"seed": self.seed}


def _truncated_standard_normal(
    rng: np.random.Generator, shape: tuple[int, ...]
) -> np.ndarray:
    """Standard normal draws, redrawing any value outside [-2, 2]."""
    z = rng.standard_normal(shape)
    outside = np.abs(z) > 2.0
    while outside.any():
        z[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(z) > 2.0
    return z


class RandomNormal(RandomInitializer):
    """Normal draws with `mean` and `stddev`."""

    def __init__(
        self, mean: float = 0.0, stddev: float = 0.05, seed: int | None = None
    ) -> None:
        self.mean = mean
        self.stddev = stddev
        super().__init__(seed=seed)

    def __call__(self, shape: Shape, dtype: DTypeLike = "float32") -> np.ndarray:
        dt = _float_dtype(dtype)
        z = self._standard_draw(self._rng(), _shape_tuple(shape))
        return (self.mean + self.stddev * z).astype(dt)

    @staticmethod
    def _standard_draw(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        return rng.standard_normal(shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mean": self.mean, "stddev": self.stddev}


class TruncatedNormal(RandomNormal):
    """Normal draws with `mean` and `stddev`, redrawn beyond two stddevs."""

    @staticmethod
    def _standard_draw(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        return _truncated_standard_normal(rng, shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mean": self.mean, "stddev": self.stddev}


class RandomUniform(RandomInitializer):
    """Uniform draws in ``[minval, maxval)``."""

    def __init__(
        self, minval: float = -0.05, maxval: float = 0.05, seed: int | None = None
    ) -> None:
        self.minval = minval
        self.maxval = maxval
        super().__init__(seed=seed)

    def __call__(self, shape: Shape, dtype: DTypeLike = "float32") -> np.ndarray:
        dt = _float_dtype(dtype)
        u = self._rng().uniform(self.minval, self.maxval, _shape_tuple(shape))
        return u.astype(dt)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "minval": self.minval,
            "maxval": self.maxval,
        }


_MODES = ("fan_in", "fan_out", "fan_avg")
_DISTRIBUTIONS = ("uniform", "truncated_normal", "untruncated_normal")


def _set_repr(values: Sequence[str]) -> str:
    """Render names like a Python set literal (Keras prints a set)."""
    return "{" + ", ".join(repr(v) for v in values) + "}"


class VarianceScaling(RandomInitializer):
    """Draws scaled by the weight's fan: the base of Glorot, He and Lecun.

    ``scale`` is divided by ``max(1, n)`` with ``n`` the fan chosen by
    `mode`; "truncated_normal" then uses stddev ``sqrt(scale) / 0.8796...``
    truncated at two stddevs, "untruncated_normal" stddev ``sqrt(scale)``
    and "uniform" the limit ``sqrt(3 * scale)``.
    """

    def __init__(
        self,
        scale: float = 1.0,
        mode: str = "fan_in",
        distribution: str = "truncated_normal",
        seed: int | None = None,
        input_axes: Sequence[int] | None = None,
        output_axes: Sequence[int] | None = None,
    ) -> None:
        if scale <= 0.0:
            raise ValueError(
                "Argument `scale` must be positive float. "
                f"Received: scale={scale}"
            )
        if mode not in _MODES:
            raise ValueError(
                f"Invalid `mode` argument: {mode}. "
                f"Please use one of {_set_repr(_MODES)}"
            )
        distribution = distribution.lower()
        if distribution == "normal":
            distribution = "truncated_normal"
        if distribution not in _DISTRIBUTIONS:
            # The missing space after the period is Keras's.
            raise ValueError(
                f"Invalid `distribution` argument: {distribution}."
                f"Please use one of {_set_repr(_DISTRIBUTIONS)}"
            )
        self.scale = scale
        self.mode = mode
        self.distribution = distribution
        self.input_axes = input_axes
        self.output_axes = output_axes
        super().__init__(seed=seed)

    def _scaled(self, shape: Shape) -> float:
        """`scale` divided by the fan that `mode` selects."""
        fan_in, fan_out = compute_fans(shape, self.input_axes, self.output_axes)
        fan = {
            "fan_in": fan_in,
            "fan_out": fan_out,
            "fan_avg": (fan_in + fan_out) / 2.0,
        }[self.mode]
        return self.scale / max(1.0, fan)

    def __call__(self, shape: Shape, dtype: DTypeLike = "float32") -> np.ndarray:
        dt = _float_dtype(dtype)
        shape = _shape_tuple(shape)
        scale = self._scaled(shape)
        rng = self._rng()
        if self.distribution == "truncated_normal":
            stddev = math.sqrt(scale) / _TRUNCATED_STDDEV
            return (stddev * _truncated_standard_normal(rng, shape)).astype(dt)
        if self.distribution == "untruncated_normal":
            return (math.sqrt(scale) * rng.standard_normal(shape)).astype(dt)
        limit = math.sqrt(3.0 * scale)
        return rng.uniform(-limit, limit, shape).astype(dt)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "scale": self.scale,
            "mode": self.mode,
            "distribution": self.distribution,
            "input_axes": self.input_axes,
            "output_axes": self.output_axes,
        }


class _PresetVarianceScaling(VarianceScaling):
    """VarianceScaling with fixed scale, mode and distribution."""

    _SCALE = 1.0
    _MODE = "fan_in"
    _DISTRIBUTION = "truncated_normal"

    def __init__(
        self,
        seed: int | None = None,
        input_axes: Sequence[int] | None = None,
        output_axes: Sequence[int] | None = None,
    ) -> None:
        super().__init__(
            scale=self._SCALE,
            mode=self._MODE,
            distribution=self._DISTRIBUTION,
            seed=seed,
            input_axes=input_axes,
            output_axes=output_axes,
        )

    def get_config(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "input_axes": self.input_axes,
            "output_axes": self.output_axes,
        }


class GlorotUniform(_PresetVarianceScaling):
    """Uniform in ``±sqrt(6 / (fan_in + fan_out))``."""

    _MODE = "fan_avg"
    _DISTRIBUTION = "uniform"


class GlorotNormal(_PresetVarianceScaling):
    """Truncated normal, stddev ``sqrt(2 / (fan_in + fan_out))``."""

    _MODE = "fan_avg"


class HeUniform(_PresetVarianceScaling):
    """Uniform in ``±sqrt(6 / fan_in)``."""

    _SCALE = 2.0
    _DISTRIBUTION = "uniform"


class HeNormal(_PresetVarianceScaling):
    """Truncated normal, stddev ``sqrt(2 / fan_in)``."""

    _SCALE = 2.0


class LecunUniform(_PresetVarianceScaling):
    """Uniform in ``±sqrt(3 / fan_in)``."""

    _DISTRIBUTION = "uniform"


class LecunNormal(_PresetVarianceScaling):
    """Truncated normal, stddev ``sqrt(1 / fan_in)``."""


class Orthogonal(RandomInitializer):
    """``gain`` times a random orthogonal matrix reshaped to `shape`.

    The matrix is ``(prod(shape[:-1]), shape[-1])``: orthonormal columns,
    or orthonormal rows when it has fewer rows than columns.
    """

    def __init__(self, gain: float = 1.0, seed: int | None = None) -> None:
        self.gain = gain
        super().__init__(seed=seed)

    def __call__(self, shape: Shape, dtype: DTypeLike = "float32") -> np.ndarray:
        if len(shape) < 2:
            raise ValueError(
                "The tensor to initialize must be "
                "at least two-dimensional. Received: "
                f"shape={shape} of rank {len(shape)}."
            )
        dt = _float_dtype(dtype)
        shape = _shape_tuple(shape)
        rows, cols = math.prod(shape[:-1]), shape[-1]
        a = self._rng().standard_normal((max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        # Fixing the signs of R's diagonal makes Q uniformly distributed.
        q = q * np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        return (self.gain * q.reshape(shape)).astype(dt)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "gain": self.gain}


_CLASSES: tuple[type[Initializer], ...] = (
    Initializer, Constant, Identity, Ones, Zeros, GlorotNormal, GlorotUniform,
    HeNormal, HeUniform, LecunNormal, LecunUniform, Orthogonal, RandomNormal,
    RandomUniform, TruncatedNormal, VarianceScaling,
)
_SNAKE_NAMES = {
    "Initializer": "initializer",
    "Constant": "constant",
    "Identity": "identity",
    "Ones": "ones",
    "Zeros": "zeros",
    "GlorotNormal": "glorot_normal",
    "GlorotUniform": "glorot_uniform",
    "HeNormal": "he_normal",
    "HeUniform": "he_uniform",
    "LecunNormal": "lecun_normal",
    "LecunUniform": "lecun_uniform",
    "Orthogonal": "orthogonal",
    "RandomNormal": "random_normal",
    "RandomUniform": "random_uniform",
    "TruncatedNormal": "truncated_normal",
    "VarianceScaling": "variance_scaling",
}
_BUILTINS: dict[str, type[Initializer]] = {cls.__name__: cls for cls in _CLASSES}
_BUILTINS.update({_SNAKE_NAMES[cls.__name__]: cls for cls in _CLASSES})
_BUILTINS.update(
    {
        "IdentityInitializer": Identity,
        "normal": RandomNormal,
        "one": Ones,
        "OrthogonalInitializer": Orthogonal,
        "uniform": RandomUniform,
        "zero": Zeros,
    }
)


def _array_initializer(value: np.ndarray) -> Callable[..., np.ndarray]:
    """An initializer returning `value`, which must have the asked shape."""

    def initialize_fn(shape: Shape, dtype: DTypeLike = "float32") -> np.ndarray:
        if _shape_tuple(shape) != tuple(value.shape):
            raise ValueError(
                f"Expected `shape` to be {value.shape} for direct "
                f"tensor as initializer. Received shape={shape}"
            )
        return np.array(value, dtype=_standardize_dtype(dtype))

    return initialize_fn


def get(identifier: Any) -> Callable[..., np.ndarray] | None:
    """Keras's `initializers.get`.

    Accepts a (case-sensitive) name, a config dict, a class, an instance or
    other callable, an array of initial values, or None.
    """
    if identifier is None:
        return None
    if isinstance(identifier, (np.ndarray, np.generic)):
        return _array_initializer(np.asarray(identifier))
    return _serialization.resolve(identifier, _BUILTINS, "initializer")


def serialize(initializer: Any) -> dict[str, Any] | None:
    """Keras's ``{'module', 'class_name', 'config', 'registered_name'}`` form."""
    return _serialization.serialize_object(initializer, _MODULE, _BUILTINS)
