"""Keras 3 activation functions on NumPy arrays, with their exact gradients.

Every function follows the formulas of Keras 3.15 and computes in the
floating dtype of its input (float32 in, float32 out; non-float input is
treated as Keras's default float32). The one exception is exact ``gelu``,
whose erfc is evaluated in float64 and rounded once. Overflow to ``inf``
and ``nan`` from ``inf`` inputs happen silently, as they do in Keras.

Gradient conventions at kinks (`activation_vjp`) follow JAX autodiff of the
``jax.nn`` functions that Keras's JAX backend calls:

- ``relu'(0) = 0``; ``leaky_relu'(0) = 1``;
- ``relu6``, ``hard_sigmoid`` and ``hard_silu`` use JAX's ``relu6`` rule:
  zero derivative at both bounds (``relu6`` at 0 and 6, ``hard_sigmoid`` at
  -3 and 3);
- ``hard_tanh'(±1) = 1`` (both ``jax.nn.hard_tanh`` and TF's
  ``clip_by_value`` keep the gradient on the closed interval);
- ``sparse_sigmoid'(±1) = 0.25`` (``jnp.clip`` splits ties evenly);
- ``celu'(0) = 1``; ``elu'(0) = 1``; ``selu'(0) = scale * alpha``;
- ``hard_shrink`` and ``soft_shrink`` have zero derivative at ±0.5;
- ``sparsemax``: an output exactly at the threshold gets half the gradient
  (``jnp.maximum`` tie rule).

TF differs only at isolated points: ``leaky_relu'(0) = 0.2``,
``celu'(0) = 2``, ``sparse_sigmoid'(±1) = 0`` and full gradient at
sparsemax ties.

Exact ``gelu`` scales by 1/√2 as Keras's backend does: TensorFlow, Keras's
default, casts the Python constant through float32, so float64 gelu sees
``float32(1/√2)``; JAX, torch and NumPy keep it in float64. Like Keras, the
backend is read from the ``KERAS_BACKEND`` environment variable.
"""

from __future__ import annotations

import functools
import os
import types
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from . import _serialization

__all__ = [
    "activation_vjp",
    "celu",
    "elu",
    "exponential",
    "gelu",
    "get",
    "glu",
    "hard_shrink",
    "hard_sigmoid",
    "hard_silu",
    "hard_swish",
    "hard_tanh",
    "leaky_relu",
    "linear",
    "log_sigmoid",
    "log_softmax",
    "mish",
    "relu",
    "relu6",
    "selu",
    "serialize",
    "sigmoid",
    "silu",
    "soft_shrink",
    "softmax",
    "softplus",
    "softsign",
    "sparse_plus",
    "sparse_sigmoid",
    "sparsemax",
    "squareplus",
    "swish",
    "tanh",
    "tanh_shrink",
    "threshold",
]

Array = np.ndarray
_F = TypeVar("_F", bound=Callable[..., Any])

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
_SQRT_HALF = 0.7071067811865476
_SQRT_HALF_F32 = float(np.float32(_SQRT_HALF))
_INV_SQRT_PI = 0.5641895835477563
_SQRT_2_OVER_PI = 0.7978845608028654


def _quiet(fn: _F) -> _F:
    """Run `fn` with NumPy floating-point warnings off.

    Keras returns ``inf``/``nan`` silently for overflowing or infinite
    inputs; NumPy would warn on the same arithmetic.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with np.errstate(all="ignore"):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _as_float(x: Any) -> Array:
    """`x` as an array of its own float dtype, or float32 (Keras floatx)."""
    a = np.asarray(x)
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float32)
    return a


# --------------------------------------------------------------------------
# erfc (float64), W. J. Cody's rational Chebyshev approximations (CALERF).
# --------------------------------------------------------------------------

_ERF_A = (3.16112374387056560e00, 1.13864154151050156e02,
          3.77485237685302021e02, 3.20937758913846947e03,
          1.85777706184603153e-1)
_ERF_B = (2.36012909523441209e01, 2.44024637934444173e02,
          1.28261652607737228e03, 2.84423683343917062e03)
_ERF_C = (5.64188496988670089e-1, 8.88314979438837594e00,
          6.61191906371416295e01, 2.98635138197400131e02,
          8.81952221241769090e02, 1.71204761263407058e03,
          2.05107837782607147e03, 1.23033935479799725e03,
          2.15311535474403846e-8)
_ERF_D = (1.57449261107098347e01, 1.17693950891312499e02,
          5.37181101862009858e02, 1.62138957456669019e03,
          3.29079923573345963e03, 4.36261909014324716e03,
          3.43936767414372164e03, 1.23033935480374942e03)
_ERF_P = (3.05326634961232344e-1, 3.60344899949804439e-1,
          1.25781726111229246e-1, 1.60837851487422766e-2,
          6.58749161529837803e-4, 1.63153871373020978e-2)
_ERF_Q = (2.56852019228982242e00, 1.87295284992346047e00,
          5.27905102951428412e-1, 6.05183413124413191e-2,
          2.33520497626869185e-3)
_ERF_SQRPI = 5.6418958354775628695e-1  # 1/sqrt(pi)
_ERF_XSMALL = 1.11e-16
_ERF_XBIG = 26.543  # erfc(x) underflows to 0 beyond this


def _exp_neg_square(y: Array) -> Array:
    """exp(-y*y) without the cancellation error of squaring y directly."""
    head = np.trunc(y * 16.0) / 16.0
    return np.exp(-head * head) * np.exp(-(y - head) * (y + head))


def _erf_small(x: Array) -> Array:
    """erf(x) for |x| <= 0.46875."""
    ysq = np.where(np.abs(x) > _ERF_XSMALL, x * x, 0.0)
    num = _ERF_A[4] * ysq
    den = ysq
    for a, b in zip(_ERF_A[:3], _ERF_B[:3]):
        num = (num + a) * ysq
        den = (den + b) * ysq
    return x * (num + _ERF_A[3]) / (den + _ERF_B[3])


def _erfc_mid(y: Array) -> Array:
    """erfc(y) for 0.46875 < y <= 4."""
    num = _ERF_C[8] * y
    den = y
    for c, d in zip(_ERF_C[:7], _ERF_D[:7]):
        num = (num + c) * y
        den = (den + d) * y
    return _exp_neg_square(y) * (num + _ERF_C[7]) / (den + _ERF_D[7])


def _erfc_large(y: Array) -> Array:
    """erfc(y) for 4 < y < 26.543."""
    ysq = 1.0 / (y * y)
    num = _ERF_P[5] * ysq
    den = ysq
    for p, q in zip(_ERF_P[:4], _ERF_Q[:4]):
        num = (num + p) * ysq
        den = (den + q) * ysq
    tail = ysq * (num + _ERF_P[4]) / (den + _ERF_Q[4])
    return _exp_neg_square(y) * (_ERF_SQRPI - tail) / y


def _erfc(x: Any) -> Array:
    """Complementary error function in float64 (relative error ~1e-16)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.abs(x)
    out = np.full(x.shape, np.nan)  # NaN input stays NaN
    small = y <= 0.46875
    mid = (y > 0.46875) & (y <= 4.0)
    large = (y > 4.0) & (y < _ERF_XBIG)
    out[small] = 1.0 - _erf_small(x[small])
    out[mid] = _erfc_mid(y[mid])
    out[large] = _erfc_large(y[large])
    out[y >= _ERF_XBIG] = 0.0
    # erfc(-y) = 2 - erfc(y); the small branch already used the signed x.
    flip = (x < 0) & ~small
    out[flip] = 2.0 - out[flip]
    return out


# --------------------------------------------------------------------------
# Shared building blocks (unwrapped, so activations can call them freely).
# --------------------------------------------------------------------------


def _sigmoid(x: Array) -> Array:
    """Logistic function without overflow for large |x|."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _softplus(x: Array) -> Array:
    """log(1 + exp(x)) without overflow."""
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def _relu6(x: Array) -> Array:
    return np.minimum(np.maximum(x, 0), 6)


def _hard_sigmoid(x: Array) -> Array:
    return _relu6(x + 3) / 6


def _split_halves(x: Array, axis: int) -> tuple[Array, Array]:
    """Split `x` into equal halves along `axis` (Keras's glu check)."""
    if x.shape[axis] % 2 != 0:
        raise ValueError(
            "axis size must be divisible by 2. "
            f"Received: x.shape={x.shape} with axis={axis}"
        )
    a, b = np.split(x, 2, axis=axis)
    return a, b


def _sparsemax_parts(
    z: Array,
) -> tuple[Array, Array, Array]:
    """Keras's sparsemax along the last axis: (tau, support size k, order).

    Keras computes ``tau = (sum of the cumulative sums over the support
    - 1) / k``; that is not the textbook threshold (outputs need not sum
    to 1), but it is what every Keras backend returns.
    """
    n = z.shape[-1]
    order = np.argsort(-z, axis=-1, kind="stable")
    z_sorted = np.take_along_axis(z, order, axis=-1)
    cumsum = np.cumsum(z_sorted, axis=-1)
    r = np.arange(1, n + 1, dtype=z.dtype)
    support = z_sorted - (cumsum - 1) / r > 0
    k = np.sum(support, axis=-1, keepdims=True).astype(z.dtype)
    tau = (np.sum(np.where(support, cumsum, 0), axis=-1, keepdims=True) - 1) / k
    return tau, k, order


# --------------------------------------------------------------------------
# Activations.
# --------------------------------------------------------------------------


@_quiet
def relu(
    x: Array,
    negative_slope: float = 0.0,
    max_value: float | None = None,
    threshold: float = 0.0,
) -> Array:
    """Rectified linear unit with Keras's optional slope, cap and threshold."""
    x = _as_float(x)
    if negative_slope != 0.0:
        if max_value is None and threshold == 0:
            return leaky_relu(x, negative_slope=negative_slope)
        negative_part: Array | int = np.maximum(-x + threshold, 0)
    else:
        negative_part = 1
    clip_max = max_value is not None
    if threshold != 0:
        y = np.where(x > x.dtype.type(threshold), x, 0).astype(x.dtype)
    elif max_value == 6:
        y = _relu6(x)
        clip_max = False
    else:
        y = np.maximum(x, 0)
    if clip_max:
        y = np.clip(y, x.dtype.type(0), x.dtype.type(max_value))
    if negative_slope != 0.0:
        y = y - negative_slope * negative_part
    return y


@_quiet
def leaky_relu(x: Array, negative_slope: float = 0.2) -> Array:
    """``x`` for ``x > 0``, else ``negative_slope * x``."""
    x = _as_float(x)
    return np.where(x > 0, x, negative_slope * x)


@_quiet
def relu6(x: Array) -> Array:
    """``min(max(x, 0), 6)``."""
    return _relu6(_as_float(x))


@_quiet
def softmax(x: Array, axis: int | None = -1) -> Array:
    """Softmax along `axis` (all elements when `axis` is None)."""
    x = _as_float(x)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


@_quiet
def elu(x: Array, alpha: float = 1.0) -> Array:
    """``x`` for ``x > 0``, else ``alpha * (exp(x) - 1)``."""
    x = _as_float(x)
    # expm1 only sees non-positive values, so the unused branch can't overflow.
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


@_quiet
def selu(x: Array) -> Array:
    """Scaled ELU with the self-normalizing constants."""
    x = _as_float(x)
    negative = (_SELU_SCALE * _SELU_ALPHA) * np.expm1(np.minimum(x, 0))
    return np.where(x > 0, _SELU_SCALE * x, negative)


@_quiet
def softplus(x: Array) -> Array:
    """``log(exp(x) + 1)``."""
    return _softplus(_as_float(x))


@_quiet
def softsign(x: Array) -> Array:
    """``x / (|x| + 1)``."""
    x = _as_float(x)
    return x / (np.abs(x) + 1)


@_quiet
def soft_shrink(x: Array, threshold: float = 0.5) -> Array:
    """``x ∓ threshold`` outside ``±threshold``, else 0."""
    x = _as_float(x)
    inner = np.where(x < -threshold, x + threshold, 0).astype(x.dtype)
    return np.where(x > threshold, x - threshold, inner)


@_quiet
def sparse_plus(x: Array) -> Array:
    """0 for ``x <= -1``, ``(x + 1)² / 4`` for ``-1 < x < 1``, else ``x``."""
    x = _as_float(x)
    inner = np.where(x < 1, 0.25 * (x + 1) ** 2, x)
    return np.where(x <= -1, 0, inner).astype(x.dtype)


@_quiet
def silu(x: Array) -> Array:
    """``x * sigmoid(x)`` (also known as swish)."""
    x = _as_float(x)
    return x * _sigmoid(x)


@_quiet
def squareplus(x: Array, b: float = 4) -> Array:
    """``(x + sqrt(x² + b)) / 2``."""
    x = _as_float(x)
    return (x + np.sqrt(np.square(x) + x.dtype.type(b))) / 2


@_quiet
def gelu(x: Array, approximate: bool = False) -> Array:
    """Gaussian error linear unit; exact erf form unless `approximate`.

    The exact form is evaluated in float64 (``x/2 * erfc(-x/√2)``, which keeps
    relative accuracy for negative x) and rounded once to the input dtype.
    """
    x = _as_float(x)
    if approximate:
        inner = _SQRT_2_OVER_PI * (x + 0.044715 * x**3)
        return 0.5 * x * (1.0 + np.tanh(inner))
    x64 = x.astype(np.float64)
    return (0.5 * x64 * _erfc(-x64 * _gelu_scale(x.dtype))).astype(x.dtype)


def _gelu_scale(dtype: np.dtype) -> float:
    """The 1/√2 of exact gelu in `dtype`, as the Keras backend rounds it (module docstring)."""
    if dtype == np.float64 and os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        return _SQRT_HALF
    return _SQRT_HALF_F32


@_quiet
def celu(x: Array, alpha: float = 1.0) -> Array:
    """``max(x, 0) + alpha * expm1(min(x, 0) / alpha)``."""
    x = _as_float(x)
    return np.maximum(x, 0) + alpha * np.expm1(np.minimum(x, 0) / alpha)


@_quiet
def glu(x: Array, axis: int = -1) -> Array:
    """Gated linear unit: ``a * sigmoid(b)`` for the halves of `axis`."""
    a, b = _split_halves(_as_float(x), axis)
    return a * _sigmoid(b)


@_quiet
def tanh(x: Array) -> Array:
    """Hyperbolic tangent."""
    return np.tanh(_as_float(x))


@_quiet
def tanh_shrink(x: Array) -> Array:
    """``x - tanh(x)``."""
    x = _as_float(x)
    return x - np.tanh(x)


@_quiet
def hard_tanh(x: Array) -> Array:
    """``clip(x, -1, 1)``."""
    x = _as_float(x)
    return np.clip(x, x.dtype.type(-1), x.dtype.type(1))


@_quiet
def hard_shrink(x: Array, threshold: float = 0.5) -> Array:
    """``x`` where ``|x| > threshold``, else 0."""
    x = _as_float(x)
    return np.where(np.abs(x) > threshold, x, 0).astype(x.dtype)


@_quiet
def threshold(x: Array, threshold: float, default_value: float) -> Array:
    """``x`` where ``x > threshold``, else `default_value`."""
    x = _as_float(x)
    return np.where(x > threshold, x, default_value).astype(x.dtype)


@_quiet
def sigmoid(x: Array) -> Array:
    """``1 / (1 + exp(-x))``."""
    return _sigmoid(_as_float(x))


@_quiet
def exponential(x: Array) -> Array:
    """``exp(x)``; overflows to ``inf`` like Keras."""
    return np.exp(_as_float(x))


@_quiet
def hard_sigmoid(x: Array) -> Array:
    """Keras 3 form ``relu6(x + 3) / 6``."""
    return _hard_sigmoid(_as_float(x))


@_quiet
def log_sigmoid(x: Array) -> Array:
    """``-softplus(-x)``."""
    return -_softplus(-_as_float(x))


@_quiet
def sparse_sigmoid(x: Array) -> Array:
    """0 for ``x <= -1``, 1 for ``x >= 1``, else ``(x + 1) / 2``."""
    x = _as_float(x)
    inner = np.where(x >= 1, 1, 0.5 * (x + 1))
    return np.where(x <= -1, 0, inner).astype(x.dtype)


@_quiet
def hard_silu(x: Array) -> Array:
    """``x * hard_sigmoid(x)`` (also known as hard swish)."""
    x = _as_float(x)
    return x * _hard_sigmoid(x)


def linear(x: Array) -> Array:
    """Identity: returns `x` unchanged."""
    return x


@_quiet
def mish(x: Array) -> Array:
    """``x * tanh(softplus(x))``."""
    x = _as_float(x)
    return x * np.tanh(_softplus(x))


@_quiet
def log_softmax(x: Array, axis: int | None = -1) -> Array:
    """Log of softmax along `axis`, computed without forming the softmax."""
    x = _as_float(x)
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


@_quiet
def sparsemax(x: Array, axis: int = -1) -> Array:
    """Keras's sparsemax: ``max(x - tau, 0)`` along `axis`."""
    z = np.moveaxis(_as_float(x), axis, -1)
    tau, _, _ = _sparsemax_parts(z)
    return np.moveaxis(np.maximum(z - tau, 0), -1, axis)


swish = silu
hard_swish = hard_silu

_BUILTINS: dict[str, Callable[..., Array]] = {
    fn.__name__: fn
    for fn in (
        relu, leaky_relu, relu6, softmax, celu, elu, selu, softplus,
        softsign, squareplus, soft_shrink, sparse_plus, silu, gelu, glu,
        tanh, tanh_shrink, threshold, sigmoid, sparse_sigmoid, exponential,
        hard_sigmoid, hard_silu, hard_tanh, hard_shrink, linear, mish,
        log_softmax, log_sigmoid, sparsemax,
    )
}
_BUILTINS["swish"] = silu
_BUILTINS["hard_swish"] = hard_silu
_CANONICAL_NAMES: dict[Callable[..., Array], str] = {
    fn: fn.__name__ for fn in _BUILTINS.values()
}

# --------------------------------------------------------------------------
# Lookup and serialization.
# --------------------------------------------------------------------------


def get(identifier: Any) -> Callable[..., Array]:
    """Keras's `activations.get`: a name, a config dict, a callable or None."""
    if identifier is None:
        return linear
    if isinstance(identifier, dict):
        # Keras writes builtins as {"class_name": "function", "config": name}.
        name = identifier.get("config")
        fn = _BUILTINS.get(name) if isinstance(name, str) else None
        if fn is None:
            raise ValueError(
                "Could not interpret activation function identifier: "
                f"{identifier}"
            )
        return fn
    return _serialization.resolve(
        identifier, _BUILTINS, "activation function", instantiate_classes=False
    )


def serialize(activation: Callable[..., Any]) -> str | dict[str, Any]:
    """A builtin's canonical name, or Keras's dict form for other callables."""
    name = _CANONICAL_NAMES.get(activation)
    if name is not None:
        return name
    if not isinstance(activation, types.FunctionType) and hasattr(
        activation, "get_config"
    ):
        return _serialization.object_config(activation, "keras.activations", {})
    if not callable(activation):
        raise ValueError(
            f"Unknown activation function '{activation}' cannot be serialized."
        )
    return _serialization.function_config(activation)


# --------------------------------------------------------------------------
# Gradients.
# --------------------------------------------------------------------------


def _d_linear(x: Array) -> Array:
    return np.ones_like(x)


def _d_relu(x: Array) -> Array:
    return (x > 0).astype(x.dtype)


def _d_leaky_relu(x: Array) -> Array:
    return np.where(x >= 0, 1, 0.2).astype(x.dtype)


def _d_relu6(x: Array) -> Array:
    return ((x > 0) & (x < 6)).astype(x.dtype)


def _d_hard_sigmoid(x: Array) -> Array:
    return ((x > -3) & (x < 3)).astype(x.dtype) / 6


def _d_hard_silu(x: Array) -> Array:
    return _hard_sigmoid(x) + x * _d_hard_sigmoid(x)


def _d_hard_tanh(x: Array) -> Array:
    return ((x >= -1) & (x <= 1)).astype(x.dtype)


def _d_sparse_sigmoid(x: Array) -> Array:
    # jnp.clip splits the gradient evenly at the bounds.
    inside = np.where((x > -1) & (x < 1), 0.5, 0.0)
    return np.where(np.abs(x) == 1, 0.25, inside).astype(x.dtype)


def _d_sparse_plus(x: Array) -> Array:
    inner = np.where(x >= 1, 1, 0.5 * (x + 1))
    return np.where(x <= -1, 0, inner).astype(x.dtype)


def _d_shrink(x: Array) -> Array:
    """Derivative of both hard_shrink and soft_shrink (threshold 0.5)."""
    return (np.abs(x) > 0.5).astype(x.dtype)


def _d_elu(x: Array) -> Array:
    return np.where(x > 0, 1, np.exp(np.minimum(x, 0))).astype(x.dtype)


def _d_selu(x: Array) -> Array:
    negative = (_SELU_SCALE * _SELU_ALPHA) * np.exp(np.minimum(x, 0))
    return np.where(x > 0, _SELU_SCALE, negative).astype(x.dtype)


def _d_celu(x: Array) -> Array:
    # At 0, jnp.maximum and jnp.minimum each pass half: 0.5 + 0.5 * exp(0) = 1.
    return np.where(x > 0, 1, np.exp(np.minimum(x, 0))).astype(x.dtype)


def _d_exponential(x: Array) -> Array:
    return np.exp(x)


def _d_softplus(x: Array) -> Array:
    return _sigmoid(x)


def _d_log_sigmoid(x: Array) -> Array:
    return _sigmoid(-x)


def _d_sigmoid(x: Array) -> Array:
    s = _sigmoid(x)
    return s * (1 - s)


def _d_tanh(x: Array) -> Array:
    t = np.tanh(x)
    return 1 - t * t


def _d_tanh_shrink(x: Array) -> Array:
    t = np.tanh(x)
    return t * t


def _d_softsign(x: Array) -> Array:
    d = np.abs(x) + 1
    return 1 / (d * d)


def _d_silu(x: Array) -> Array:
    s = _sigmoid(x)
    return s * (1 + x * (1 - s))


def _d_mish(x: Array) -> Array:
    t = np.tanh(_softplus(x))
    return t + x * (1 - t * t) * _sigmoid(x)


def _d_gelu(x: Array) -> Array:
    x64 = x.astype(np.float64)
    scale = _gelu_scale(x.dtype)
    cdf = 0.5 * _erfc(-x64 * scale)
    # d/dx erfc(-x * scale) / 2, with the same rounded scale that Keras differentiates.
    pdf = _INV_SQRT_PI * scale * np.exp(-np.square(x64 * scale))
    return (cdf + x64 * pdf).astype(x.dtype)


def _d_squareplus(x: Array) -> Array:
    return 0.5 * (1 + x / np.sqrt(np.square(x) + 4))


_ELEMENTWISE_DERIVATIVES: dict[Callable[..., Array], Callable[[Array], Array]] = {
    linear: _d_linear,
    relu: _d_relu,
    leaky_relu: _d_leaky_relu,
    relu6: _d_relu6,
    hard_sigmoid: _d_hard_sigmoid,
    hard_silu: _d_hard_silu,
    hard_tanh: _d_hard_tanh,
    sparse_sigmoid: _d_sparse_sigmoid,
    sparse_plus: _d_sparse_plus,
    hard_shrink: _d_shrink,
    soft_shrink: _d_shrink,
    elu: _d_elu,
    selu: _d_selu,
    celu: _d_celu,
    exponential: _d_exponential,
    softplus: _d_softplus,
    log_sigmoid: _d_log_sigmoid,
    sigmoid: _d_sigmoid,
    tanh: _d_tanh,
    tanh_shrink: _d_tanh_shrink,
    softsign: _d_softsign,
    silu: _d_silu,
    mish: _d_mish,
    gelu: _d_gelu,
    squareplus: _d_squareplus,
}


def _softmax_vjp(x: Array, dy: Array, axis: int | None) -> Array:
    s = softmax(x, axis=axis)
    return s * (dy - np.sum(dy * s, axis=axis, keepdims=True))


def _log_softmax_vjp(x: Array, dy: Array, axis: int | None) -> Array:
    s = softmax(x, axis=axis)
    return dy - s * np.sum(dy, axis=axis, keepdims=True)


def _glu_vjp(x: Array, dy: Array, axis: int) -> Array:
    a, b = _split_halves(x, axis)
    s = _sigmoid(b)
    return np.concatenate([dy * s, dy * a * s * (1 - s)], axis=axis)


def _sparsemax_vjp(x: Array, dy: Array, axis: int) -> Array:
    z = np.moveaxis(x, axis, -1)
    g = np.moveaxis(dy, axis, -1)
    tau, k, order = _sparsemax_parts(z)
    margin = z - tau
    # jnp.maximum gives half the gradient to an output exactly at zero.
    active = np.where(margin > 0, 1.0, np.where(margin == 0, 0.5, 0.0))
    g = (g * active).astype(z.dtype)
    # tau = sum_{i<k} (k - i) * z_sorted[i] / k - 1/k, with i the sorted rank.
    rank = np.empty_like(order)
    positions = np.broadcast_to(np.arange(z.shape[-1]), order.shape)
    np.put_along_axis(rank, order, positions, axis=-1)
    dtau = np.where(rank < k, (k - rank) / k, 0).astype(z.dtype)
    dz = g - np.sum(g, axis=-1, keepdims=True) * dtau
    return np.moveaxis(dz, -1, axis)


_AXIS_VJPS: dict[Callable[..., Array], Callable[[Array, Array, Any], Array]] = {
    softmax: _softmax_vjp,
    log_softmax: _log_softmax_vjp,
    glu: _glu_vjp,
    sparsemax: _sparsemax_vjp,
}


@_quiet
def activation_vjp(
    fn: Callable[..., Any] | str, x: Array, dy: Array, axis: int = -1
) -> Array:
    """Gradient of ``sum(fn(x) * dy)`` with respect to `x`.

    `fn` is a builtin activation (or its name) used with its default
    arguments; `axis` is the axis of softmax, log_softmax, sparsemax and glu.
    The result has `x`'s float dtype.
    """
    if isinstance(fn, str):
        fn = get(fn)
    x = _as_float(x)
    dy = np.asarray(dy).astype(x.dtype, copy=False)
    derivative = _ELEMENTWISE_DERIVATIVES.get(fn)
    if derivative is not None:
        return (derivative(x) * dy).astype(x.dtype, copy=False)
    axis_vjp = _AXIS_VJPS.get(fn)
    if axis_vjp is not None:
        return axis_vjp(x, dy, axis).astype(x.dtype, copy=False)
    if fn is threshold:
        raise TypeError(
            "threshold() needs its `threshold` and `default_value` arguments, "
            "so it has no gradient as a one-argument activation"
        )
    raise TypeError(
        "A gradient is only available for builtin activations. "
        f"Received: {fn!r}"
    )
