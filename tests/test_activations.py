"""Activations: values against float64 oracles, dtypes, lookup, serialization,
gradients against finite differences, and real Keras 3.15 outputs."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from conv1d_rs import activations

REFERENCE = Path(__file__).parent / "data" / "keras_reference"

NAMES = (
    "celu elu exponential gelu glu hard_shrink hard_sigmoid hard_silu "
    "hard_swish hard_tanh leaky_relu linear log_sigmoid log_softmax mish relu "
    "relu6 selu sigmoid silu soft_shrink softmax softplus softsign sparse_plus "
    "sparse_sigmoid sparsemax squareplus swish tanh tanh_shrink threshold"
).split()
CALLABLE_NAMES = [n for n in NAMES if n != "threshold"]
AXIS_NAMES = {"softmax", "log_softmax", "sparsemax", "glu"}

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


# --------------------------------------------------------------------------
# Independent float64 oracles: plain scalar formulas from `math`.
# --------------------------------------------------------------------------


def _sig(v: float) -> float:
    if v >= 0:
        return 1.0 / (1.0 + math.exp(-v))
    e = math.exp(v)
    return e / (1.0 + e)


def _softplus(v: float) -> float:
    return max(v, 0.0) + math.log1p(math.exp(-abs(v)))


def _hard_sigmoid(v: float) -> float:
    return min(max(v + 3.0, 0.0), 6.0) / 6.0


SCALAR_ORACLES: dict[str, Callable[[float], float]] = {
    "celu": lambda v: v if v > 0 else math.expm1(v),
    "elu": lambda v: v if v > 0 else math.expm1(v),
    "exponential": math.exp,
    # Keras's default (TensorFlow) backend rounds 1/sqrt(2) to float32, in float64 too.
    "gelu": lambda v: 0.5 * v * math.erfc(-v * float(np.float32(1 / math.sqrt(2.0)))),
    "hard_shrink": lambda v: v if abs(v) > 0.5 else 0.0,
    "hard_sigmoid": _hard_sigmoid,
    "hard_silu": lambda v: v * _hard_sigmoid(v),
    "hard_tanh": lambda v: min(max(v, -1.0), 1.0),
    "leaky_relu": lambda v: v if v > 0 else 0.2 * v,
    "linear": lambda v: v,
    "log_sigmoid": lambda v: -_softplus(-v),
    "mish": lambda v: v * math.tanh(_softplus(v)),
    "relu": lambda v: max(v, 0.0),
    "relu6": lambda v: min(max(v, 0.0), 6.0),
    "selu": lambda v: SELU_SCALE * (v if v > 0 else SELU_ALPHA * math.expm1(v)),
    "sigmoid": _sig,
    "silu": lambda v: v * _sig(v),
    "soft_shrink": lambda v: v - 0.5 if v > 0.5 else (v + 0.5 if v < -0.5 else 0.0),
    "softplus": _softplus,
    "softsign": lambda v: v / (abs(v) + 1.0),
    "sparse_plus": lambda v: 0.0 if v <= -1 else (v if v >= 1 else (v + 1) ** 2 / 4),
    "sparse_sigmoid": lambda v: min(max(0.5 * (v + 1.0), 0.0), 1.0),
    "squareplus": lambda v: (v + math.sqrt(v * v + 4.0)) / 2.0,
    "tanh": math.tanh,
    "tanh_shrink": lambda v: v - math.tanh(v),
}
SCALAR_ORACLES["swish"] = SCALAR_ORACLES["silu"]
SCALAR_ORACLES["hard_swish"] = SCALAR_ORACLES["hard_silu"]


def _rows(x: np.ndarray, fn: Callable[[list[float]], list[float]]) -> np.ndarray:
    """Apply a per-row oracle along the last axis."""
    flat = x.reshape(-1, x.shape[-1])
    return np.array([fn(list(map(float, row))) for row in flat]).reshape(
        x.shape[:-1] + (-1,)
    )


def _softmax_row(row: list[float]) -> list[float]:
    m = max(row)
    e = [math.exp(v - m) for v in row]
    total = math.fsum(e)
    return [v / total for v in e]


def _log_softmax_row(row: list[float]) -> list[float]:
    m = max(row)
    log_total = math.log(math.fsum(math.exp(v - m) for v in row))
    return [v - m - log_total for v in row]


def _sparsemax_row(row: list[float]) -> list[float]:
    """Keras's definition: tau = (sum of cumsums over the support - 1) / k."""
    ordered = sorted(row, reverse=True)
    cumsums = [math.fsum(ordered[: i + 1]) for i in range(len(ordered))]
    support = [
        ordered[i] - (cumsums[i] - 1) / (i + 1) > 0 for i in range(len(ordered))
    ]
    k = sum(support)
    tau = (math.fsum(c for c, s in zip(cumsums, support) if s) - 1) / k
    return [max(v - tau, 0.0) for v in row]


def _glu_row(row: list[float]) -> list[float]:
    half = len(row) // 2
    return [a * _sig(b) for a, b in zip(row[:half], row[half:])]


ROW_ORACLES: dict[str, Callable[[list[float]], list[float]]] = {
    "softmax": _softmax_row,
    "log_softmax": _log_softmax_row,
    "sparsemax": _sparsemax_row,
    "glu": _glu_row,
}


def oracle(name: str, x: np.ndarray) -> np.ndarray:
    """Float64 reference value of activation `name` along the last axis."""
    x = np.asarray(x, dtype=np.float64)
    if name in ROW_ORACLES:
        return _rows(x, ROW_ORACLES[name])
    scalar = SCALAR_ORACLES[name]
    return np.array([scalar(float(v)) for v in x.ravel()]).reshape(x.shape)


def _grid() -> np.ndarray:
    """Points over the interesting range, the kinks included; 6 per row."""
    kinks = [0.0, 0.5, -0.5, 1.0, -1.0, 3.0, -3.0, 6.0, -6.0]
    extra = [1e-3, -1e-3, 20.0, -20.0, 1e-8, -1e-8, 12.5, -12.5, 7.0, -7.0]
    points = np.concatenate([np.linspace(-8, 8, 161), kinks, extra])
    return points[: len(points) // 6 * 6].reshape(-1, 6)


# --------------------------------------------------------------------------
# Values and dtypes.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", CALLABLE_NAMES)
def test_float64_matches_oracle(name: str) -> None:
    x = _grid()
    y = activations.get(name)(x)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, oracle(name, x), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", CALLABLE_NAMES)
def test_float32_in_float32_out(name: str) -> None:
    x = _grid()
    if name == "sparsemax":
        # Evenly spaced rows put sparsemax's support test exactly at 0,
        # where float32 rounding decides the support.
        x = x + np.random.default_rng(0).uniform(-0.05, 0.05, x.shape)
    x = x.astype(np.float32)
    y = activations.get(name)(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, oracle(name, x), rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("name", CALLABLE_NAMES)
def test_float16_keeps_dtype(name: str) -> None:
    y = activations.get(name)(np.linspace(-2, 2, 12).reshape(2, 6).astype(np.float16))
    assert y.dtype == np.float16


@pytest.mark.parametrize("name", CALLABLE_NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_inputs_are_quiet(name: str, dtype: type) -> None:
    big = float(np.finfo(dtype).max) / 2
    finite: np.ndarray = np.array([[-big, -1e4, -100.0, -0.0, 0.0, 100.0],
                       [1e4, big, 1.0, -1.0, 50.0, -50.0]], dtype=dtype)
    infinite: np.ndarray = np.array([[np.inf, -np.inf, np.nan, 0.0, 1.0, -1.0]], dtype=dtype)
    fn = activations.get(name)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        y = fn(finite)
        fn(infinite)
    assert y.dtype == dtype
    assert not np.isnan(y).any()


def test_extreme_values_are_keras_limits() -> None:
    x = np.array([-1e4, 1e4], dtype=np.float32)
    np.testing.assert_array_equal(activations.sigmoid(x), [0.0, 1.0])
    np.testing.assert_array_equal(activations.softplus(x), [0.0, 1e4])
    np.testing.assert_array_equal(activations.log_sigmoid(x), [-1e4, 0.0])
    np.testing.assert_array_equal(activations.exponential(x), [0.0, np.inf])
    np.testing.assert_array_equal(activations.silu(x), [0.0, 1e4])
    np.testing.assert_array_equal(activations.gelu(x), [0.0, 1e4])
    np.testing.assert_array_equal(activations.softmax(x), [0.0, 1.0])
    np.testing.assert_array_equal(activations.log_softmax(x), [-2e4, 0.0])


def test_non_float_input_uses_float32() -> None:
    y = activations.sigmoid(np.array([0, 1, 2]))
    assert y.dtype == np.float32


def test_linear_returns_input_unchanged() -> None:
    x = np.arange(3.0)
    assert activations.linear(x) is x


def test_relu_full_signature_matches_keras_docstring() -> None:
    x = np.array([-10, -5, 0.0, 5, 10])
    np.testing.assert_array_equal(activations.relu(x), [0, 0, 0, 5, 10])
    np.testing.assert_array_equal(
        activations.relu(x, negative_slope=0.5), [-5, -2.5, 0, 5, 10]
    )
    np.testing.assert_array_equal(activations.relu(x, max_value=5.0), [0, 0, 0, 5, 5])
    np.testing.assert_array_equal(activations.relu(x, threshold=5.0), [0, 0, 0, 0, 10])
    np.testing.assert_array_equal(
        activations.relu(x, negative_slope=0.5, max_value=6, threshold=1.0),
        [-5.5, -3.0, -0.5, 5, 6],
    )


def test_keyword_parameters_like_keras() -> None:
    x = np.array([-2.0, -0.7, 0.3, 2.0])
    np.testing.assert_allclose(
        activations.elu(x, alpha=2.0), [2 * math.expm1(-2), 2 * math.expm1(-0.7), 0.3, 2.0]
    )
    np.testing.assert_allclose(
        activations.leaky_relu(x, negative_slope=0.1), [-0.2, -0.07, 0.3, 2.0]
    )
    np.testing.assert_allclose(activations.hard_shrink(x, threshold=1.0), [-2.0, 0, 0, 2.0])
    np.testing.assert_allclose(activations.soft_shrink(x, threshold=1.0), [-1.0, 0, 0, 1.0])
    np.testing.assert_allclose(activations.squareplus(x, b=0), np.maximum(x, 0))
    np.testing.assert_allclose(
        activations.celu(x, alpha=2.0), [2 * math.expm1(-1), 2 * math.expm1(-0.35), 0.3, 2.0]
    )
    tanh_form = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    np.testing.assert_allclose(activations.gelu(x, approximate=True), tanh_form)
    np.testing.assert_array_equal(activations.threshold(x, 0.0, -9.0), [-9.0, -9.0, 0.3, 2.0])


@pytest.mark.parametrize("backend", ["jax", "torch", "numpy"])
def test_float64_gelu_follows_the_keras_backend(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    x = _grid()
    scale_of = {"exact": 1 / math.sqrt(2.0), "float32": float(np.float32(1 / math.sqrt(2.0)))}
    expected = {k: np.vectorize(lambda v, s=s: 0.5 * v * math.erfc(-v * s))(x) for k, s in scale_of.items()}
    assert not np.allclose(expected["exact"], expected["float32"], rtol=1e-12, atol=0)
    np.testing.assert_allclose(activations.gelu(x), expected["float32"], rtol=1e-12, atol=0)
    monkeypatch.setenv("KERAS_BACKEND", backend)
    np.testing.assert_allclose(activations.gelu(x), expected["exact"], rtol=1e-12, atol=0)
    # float32 rounds the constant to float32 on every backend.
    x32 = x.astype(np.float32)
    expected32 = np.vectorize(lambda v: 0.5 * v * math.erfc(-v * scale_of["float32"]))(x32.astype(np.float64))
    np.testing.assert_array_equal(activations.gelu(x32), expected32.astype(np.float32))


def test_threshold_needs_its_arguments() -> None:
    with pytest.raises(TypeError, match=r"threshold\(\) missing 2 required positional arguments"):
        activations.get("threshold")(np.zeros(3))


def test_glu_rejects_odd_axis() -> None:
    with pytest.raises(ValueError) as info:
        activations.glu(np.zeros((1, 19, 3), dtype=np.float32))
    assert str(info.value) == (
        "axis size must be divisible by 2. Received: x.shape=(1, 19, 3) with axis=-1"
    )


@pytest.mark.parametrize("name", sorted(AXIS_NAMES))
def test_axis_argument(name: str) -> None:
    x = np.random.default_rng(1).standard_normal((4, 6, 2))
    fn = activations.get(name)
    moved = np.moveaxis(fn(np.moveaxis(x, 1, -1)), -1, 1)
    np.testing.assert_allclose(fn(x, axis=1), moved, rtol=1e-15, atol=1e-15)


def test_softmax_axis_none_uses_all_elements() -> None:
    x = np.arange(6.0).reshape(2, 3)
    np.testing.assert_allclose(
        activations.softmax(x, axis=None), oracle("softmax", x.reshape(1, 6)).reshape(2, 3)
    )


def test_keras_sparsemax_is_not_normalized() -> None:
    # Keras's threshold sums all cumulative sums over the support.
    np.testing.assert_allclose(activations.sparsemax(np.array([0.5, 0.4])), [0.3, 0.2])
    np.testing.assert_allclose(activations.sparsemax(np.array([1.0, 0.0])), [1.0, 0.0])


def test_erfc_is_accurate() -> None:
    x = np.concatenate([np.linspace(-7, 26, 20001), np.geomspace(1e-300, 1, 200)])
    x = np.concatenate([x, -x[-200:]])
    ref = np.array([math.erfc(v) for v in x])
    got = activations._erfc(x)
    np.testing.assert_allclose(got, ref, rtol=2e-15, atol=0)
    special = activations._erfc(np.array([np.inf, -np.inf, 30.0, -30.0, np.nan]))
    np.testing.assert_array_equal(special[:4], [0.0, 2.0, 0.0, 2.0])
    assert np.isnan(special[4])


# --------------------------------------------------------------------------
# Lookup and serialization.
# --------------------------------------------------------------------------


def test_get_every_keras_name() -> None:
    for name in NAMES:
        fn = activations.get(name)
        assert fn is getattr(activations, name)
        assert activations.serialize(fn) == {"swish": "silu", "hard_swish": "hard_silu"}.get(name, name)


def test_aliases_are_the_same_functions() -> None:
    assert activations.swish is activations.silu
    assert activations.hard_swish is activations.hard_silu
    assert activations.serialize(activations.get("swish")) == "silu"
    assert activations.serialize(activations.get("hard_swish")) == "hard_silu"


def test_get_none_is_linear() -> None:
    assert activations.get(None) is activations.linear
    assert activations.serialize(activations.get(None)) == "linear"


@pytest.mark.parametrize("bad", ["no_such_activation", "ReLU", "Relu", "", 3, 2.5, [1]])
def test_get_rejects(bad: Any) -> None:
    with pytest.raises(ValueError) as info:
        activations.get(bad)
    assert str(info.value) == f"Could not interpret activation function identifier: {bad}"


def test_get_config_dicts() -> None:
    keras_form = {"module": "keras.activations", "class_name": "function",
                  "config": "relu", "registered_name": "function"}
    assert activations.get(keras_form) is activations.relu
    assert activations.get({"config": "swish"}) is activations.silu
    with pytest.raises(ValueError, match="Could not interpret activation function identifier"):
        activations.get({"class_name": "function", "config": "nope"})


def test_callables_pass_through_and_serialize_as_functions() -> None:
    def custom_act(x: np.ndarray) -> np.ndarray:
        return x * 2

    assert activations.get(custom_act) is custom_act
    assert activations.serialize(custom_act) == {
        "module": __name__,
        "class_name": "function",
        "config": "custom_act",
        "registered_name": "custom_act",
    }


# --------------------------------------------------------------------------
# Gradients.
# --------------------------------------------------------------------------

KINKS: dict[str, tuple[float, ...]] = {
    "relu": (0.0,), "leaky_relu": (0.0,), "relu6": (0.0, 6.0),
    "hard_sigmoid": (-3.0, 3.0), "hard_silu": (-3.0, 3.0), "hard_swish": (-3.0, 3.0),
    "hard_tanh": (-1.0, 1.0), "hard_shrink": (-0.5, 0.5), "soft_shrink": (-0.5, 0.5),
    "sparse_sigmoid": (-1.0, 1.0), "sparse_plus": (-1.0, 1.0),
    "elu": (0.0,), "selu": (0.0,), "celu": (0.0,), "softsign": (0.0,),
}


def _away_from_kinks(name: str, x: np.ndarray) -> np.ndarray:
    """Move points within 1e-3 of a kink by 1e-2 (kinks are >= 0.5 apart)."""
    for kink in KINKS.get(name, ()):
        x = np.where(np.abs(x - kink) < 1e-3, x + 1e-2, x)
    # Distinct values: sort-based sparsemax is not differentiable at ties.
    return x + 1e-3 * np.arange(x.size).reshape(x.shape) / x.size


def _sparsemax_is_smooth_at(x: np.ndarray) -> bool:
    """No support change and no output at zero within the FD step."""
    for row in x.reshape(-1, x.shape[-1]):
        ordered = np.sort(row)[::-1]
        cumsum = np.cumsum(ordered)
        margins = ordered - (cumsum - 1) / np.arange(1, row.size + 1)
        support = margins > 0
        tau = (cumsum[support].sum() - 1) / support.sum()
        if np.min(np.abs(margins)) < 1e-4 or np.min(np.abs(row - tau)) < 1e-4:
            return False
        if np.min(np.diff(np.sort(row))) < 1e-4:
            return False
    return True


def _finite_difference(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                       dy: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central differences of sum(fn(x) * dy), one element at a time."""
    eye = np.eye(x.size).reshape((x.size,) + x.shape)
    axes = tuple(range(1, x.ndim + 1))
    plus = np.sum(fn(x + h * eye) * dy, axis=axes)
    minus = np.sum(fn(x - h * eye) * dy, axis=axes)
    return ((plus - minus) / (2 * h)).reshape(x.shape)


PAIRS = hnp.arrays(np.float64, (2, 2, 6), elements=st.floats(-6, 6, allow_nan=False))


@pytest.mark.parametrize("name", CALLABLE_NAMES)
@settings(max_examples=15, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.filter_too_much])
@given(pair=PAIRS)
def test_vjp_matches_finite_differences(name: str, pair: np.ndarray) -> None:
    fn = activations.get(name)
    x = _away_from_kinks(name, pair[0])
    dy = pair[1, :, :3] if name == "glu" else pair[1]
    if name == "sparsemax":
        assume(_sparsemax_is_smooth_at(x))
    fd = _finite_difference(fn, x, dy)
    analytic = activations.activation_vjp(fn, x, dy)
    assert analytic.shape == x.shape and analytic.dtype == np.float64
    scale = 1.0 + float(np.max(np.abs(fn(x)))) * float(np.max(np.abs(dy)))
    np.testing.assert_allclose(analytic, fd, rtol=1e-6, atol=1e-7 * scale)


@pytest.mark.parametrize("name", sorted(AXIS_NAMES))
def test_vjp_along_other_axis(name: str) -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 2, 3)) + np.arange(24).reshape(4, 2, 3) * 1e-2
    dy = rng.standard_normal((4, 2, 3)) if name != "glu" else rng.standard_normal((2, 2, 3))
    fn = activations.get(name)
    fd = _finite_difference(lambda v: fn(v, axis=-3), x, dy)
    np.testing.assert_allclose(activations.activation_vjp(fn, x, dy, axis=0), fd, rtol=1e-6, atol=1e-8)


def test_vjp_kink_conventions() -> None:
    vjp = activations.activation_vjp
    ones = np.ones(2)
    assert vjp("relu", np.array([0.0, 1.0]), ones).tolist() == [0.0, 1.0]
    assert vjp("leaky_relu", np.array([0.0, -1.0]), ones).tolist() == [1.0, 0.2]
    assert vjp("relu6", np.array([0.0, 6.0]), ones).tolist() == [0.0, 0.0]
    assert vjp("hard_sigmoid", np.array([-3.0, 3.0]), ones).tolist() == [0.0, 0.0]
    assert vjp("hard_silu", np.array([-3.0, 3.0]), ones).tolist() == [0.0, 1.0]
    assert vjp("hard_tanh", np.array([-1.0, 1.0]), ones).tolist() == [1.0, 1.0]
    assert vjp("sparse_sigmoid", np.array([-1.0, 1.0]), ones).tolist() == [0.25, 0.25]
    assert vjp("sparse_plus", np.array([-1.0, 1.0]), ones).tolist() == [0.0, 1.0]
    assert vjp("hard_shrink", np.array([-0.5, 0.5]), ones).tolist() == [0.0, 0.0]
    assert vjp("soft_shrink", np.array([-0.5, 0.5]), ones).tolist() == [0.0, 0.0]
    assert vjp("celu", np.array([0.0, 0.0]), ones).tolist() == [1.0, 1.0]
    assert vjp("elu", np.array([0.0, 0.0]), ones).tolist() == [1.0, 1.0]
    assert vjp("selu", np.array([0.0, 0.0]), ones).tolist() == [SELU_SCALE * SELU_ALPHA] * 2
    assert vjp("softsign", np.array([0.0, 0.0]), ones).tolist() == [1.0, 1.0]


def test_vjp_keeps_float32() -> None:
    x = np.linspace(-2, 2, 12, dtype=np.float32).reshape(2, 6)
    for name in CALLABLE_NAMES:
        dy = np.ones_like(activations.get(name)(x))
        assert activations.activation_vjp(name, x, dy).dtype == np.float32


def test_vjp_glu_odd_axis_raises() -> None:
    with pytest.raises(ValueError, match="axis size must be divisible by 2"):
        activations.activation_vjp("glu", np.zeros((2, 3)), np.zeros((2, 1)))


def test_vjp_rejects_non_builtin() -> None:
    with pytest.raises(TypeError, match="only available for builtin activations"):
        activations.activation_vjp(lambda v: v, np.zeros(2), np.zeros(2))
    with pytest.raises(TypeError):
        activations.activation_vjp("threshold", np.zeros(2), np.zeros(2))


# --------------------------------------------------------------------------
# Real Keras 3.15.1 outputs (tests/data/keras_reference).
# --------------------------------------------------------------------------


def _forward_cases() -> list[dict[str, Any]]:
    cases = json.loads((REFERENCE / "cases.json").read_text())["cases"]
    return [c for c in cases if c["kind"] == "forward"]


def _conv_taps(x: np.ndarray, cfg: dict[str, Any], k: int) -> list[np.ndarray]:
    """Channels-last input slices read by each kernel tap (float64)."""
    s, d = cfg["strides"][0], cfg["dilation_rate"][0]
    length, dk = x.shape[1], d * (k - 1) + 1
    padding = cfg["padding"].lower()
    if padding == "valid":
        left = right = 0
    elif padding == "causal":
        left, right = dk - 1, 0
    else:
        total = max((-(-length // s) - 1) * s + dk - length, 0)
        left, right = total // 2, total - total // 2
    xp = np.pad(x, ((0, 0), (left, right), (0, 0)))
    steps = (xp.shape[1] - dk) // s + 1
    return [xp[:, j * d: j * d + s * (steps - 1) + 1: s, :] for j in range(k)]


def _grouped(taps: list[np.ndarray], kernel: np.ndarray, groups: int) -> np.ndarray:
    """Grouped cross-correlation ``y[n,t,o]`` from the taps."""
    _, cg, filters = kernel.shape
    fg = filters // groups
    y = np.zeros(taps[0].shape[:2] + (filters,))
    for j, tap in enumerate(taps):
        for g in range(groups):
            y[..., g * fg:(g + 1) * fg] += tap[..., g * cg:(g + 1) * cg] @ kernel[j, :, g * fg:(g + 1) * fg]
    return y


def _kernel_grad(taps: list[np.ndarray], dpre: np.ndarray, kernel: np.ndarray, groups: int) -> np.ndarray:
    _, cg, filters = kernel.shape
    fg = filters // groups
    grad = np.zeros(kernel.shape)
    for j, tap in enumerate(taps):
        for g in range(groups):
            grad[j, :, g * fg:(g + 1) * fg] = np.einsum(
                "ntc,nto->co", tap[..., g * cg:(g + 1) * cg], dpre[..., g * fg:(g + 1) * fg]
            )
    return grad


def test_activations_and_gradients_match_keras_outputs(monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = np.load(REFERENCE / "cases.npz")
    seen: set[Any] = set()
    for case in _forward_cases():
        cfg, cid = case["config"], case["id"]
        monkeypatch.setenv("KERAS_BACKEND", case["backend"])
        channels_first = cfg["data_format"] == "channels_first"
        x = arrays[f"{cid}/x"].astype(np.float64)
        kernel = arrays[f"{cid}/kernel"].astype(np.float64)
        taps = _conv_taps(x.transpose(0, 2, 1) if channels_first else x, cfg, kernel.shape[0])
        pre = _grouped(taps, kernel, cfg["groups"])
        if cfg["use_bias"]:
            pre += arrays[f"{cid}/bias"]
        if channels_first:
            pre = pre.transpose(0, 2, 1)
        fn = activations.get(cfg["activation"])
        tol = 1e-5 if case["dtype"] == "float32" else 1e-8
        y_ref = arrays[f"{cid}/y"].astype(np.float64)
        assert np.all(np.abs(fn(pre) - y_ref) <= tol * (1 + np.abs(y_ref))), cid

        dpre = activations.activation_vjp(fn, pre, arrays[f"{cid}/dy"].astype(np.float64))
        if channels_first:
            dpre = dpre.transpose(0, 2, 1)
        dkernel_ref = arrays[f"{cid}/dkernel"]
        dkernel = _kernel_grad(taps, dpre, kernel, cfg["groups"])
        # Gradients sum many products: compare against their overall scale.
        grad_tol = 10 * tol * (1 + np.abs(dkernel_ref).max())
        assert np.all(np.abs(dkernel - dkernel_ref) <= grad_tol), cid
        if cfg["use_bias"]:
            dbias_ref = arrays[f"{cid}/dbias"]
            dbias = dpre.sum(axis=(0, 1))
            assert np.all(np.abs(dbias - dbias_ref) <= 10 * tol * (1 + np.abs(dbias_ref))), cid
        seen.add(activations.serialize(fn))
    assert seen == set(CALLABLE_NAMES) - {"swish", "hard_swish"}


def test_keras_activation_configs_round_trip() -> None:
    for case in _forward_cases():
        value = case["config"]["activation"]
        assert activations.serialize(activations.get(value)) == value
