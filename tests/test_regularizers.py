"""Regularizers: penalties and gradients against independent oracles,
validation, configs, lookup, serialization and real Keras losses."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from conv1d_rs import regularizers as R

REFERENCE = Path(__file__).parent / "data" / "keras_reference"
F32_001 = 0.009999999776482582  # float32(0.01) as Keras reports it


def _abs_sum(x: np.ndarray) -> float:
    return math.fsum(abs(float(v)) for v in x.ravel())


def _square_sum(x: np.ndarray) -> float:
    return math.fsum(float(v) ** 2 for v in x.ravel())


def _orthogonal_oracle(x: np.ndarray, factor: float, mode: str) -> float:
    """``factor * 0.5 * mean |cos|`` over pairs of distinct rows/columns."""
    vectors = [list(map(float, v)) for v in (x if mode == "rows" else x.T)]
    norms = [math.sqrt(math.fsum(c * c for c in v)) for v in vectors]
    total = 0.0
    for i, (u, nu) in enumerate(zip(vectors, norms)):
        for j, (w, nw) in enumerate(zip(vectors, norms)):
            if i != j:
                total += abs(math.fsum(a * b for a, b in zip(u, w))) / (nu * nw)
    pairs = len(vectors) * (len(vectors) - 1) / 2
    return factor * 0.5 * total / pairs


def _finite_difference(fn: Callable[[np.ndarray], float], x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[i] = h
        grad[i] = (fn(x + step) - fn(x - step)) / (2 * h)
    return grad


KERNEL = np.random.default_rng(0).standard_normal((3, 4, 6))


# --------------------------------------------------------------------------
# Penalties.
# --------------------------------------------------------------------------


def _f32(value: float) -> float:
    """A factor as TF applies it: through a float32 tensor."""
    return float(np.float32(value))


def test_l1_penalty() -> None:
    assert R.L1()(KERNEL) == pytest.approx(F32_001 * _abs_sum(KERNEL), rel=1e-14)
    assert R.L1(0.25)(KERNEL) == pytest.approx(0.25 * _abs_sum(KERNEL), rel=1e-14)


def test_l2_penalty() -> None:
    assert R.L2()(KERNEL) == pytest.approx(_f32(0.01) * _square_sum(KERNEL), rel=1e-14)
    assert R.L2(0.5)(KERNEL) == pytest.approx(0.5 * _square_sum(KERNEL), rel=1e-14)


def test_l1l2_penalty() -> None:
    expected = _f32(0.003) * _abs_sum(KERNEL) + _f32(0.02) * _square_sum(KERNEL)
    assert R.L1L2(l1=0.003, l2=0.02)(KERNEL) == pytest.approx(expected, rel=1e-14)
    assert R.L1L2(l2=0.1)(KERNEL) == pytest.approx(_f32(0.1) * _square_sum(KERNEL), rel=1e-14)
    assert R.L1L2()(KERNEL) == 0.0


def test_l1l2_skips_zero_terms() -> None:
    # Keras never multiplies a zero factor, so infinite weights give 0 or inf.
    x = np.array([np.inf, 1.0])
    assert R.L1L2()(x) == 0.0
    assert R.L1L2(l1=0.1)(x) == math.inf


def test_penalties_are_floats_computed_in_input_dtype() -> None:
    x32 = KERNEL.astype(np.float32)
    value = R.L1()(x32)
    assert type(value) is float
    assert value == float(np.float32(F32_001) * np.sum(np.abs(x32)))
    assert R.L2()(x32) == float(np.float32(0.01) * np.sum(np.square(x32)))
    assert R.L1L2(0.003, 0.02)(x32) == float(
        np.float32(0) + np.float32(0.003) * np.sum(np.abs(x32)) + np.float32(0.02) * np.sum(np.square(x32))
    )
    # float64 input uses the float32-rounded factors widened to float64.
    assert R.L1()(KERNEL) == F32_001 * float(np.sum(np.abs(KERNEL)))
    assert R.L2()(KERNEL) == _f32(0.01) * float(np.sum(np.square(KERNEL)))


@pytest.mark.parametrize("mode", ["rows", "columns"])
def test_orthogonal_penalty(mode: str) -> None:
    x = np.random.default_rng(1).standard_normal((5, 7))
    reg = R.OrthogonalRegularizer(factor=0.3, mode=mode)
    assert reg(x) == pytest.approx(_orthogonal_oracle(x, reg.factor, mode), rel=1e-12)


def test_orthogonal_penalty_is_zero_for_orthogonal_vectors() -> None:
    q, _ = np.linalg.qr(np.random.default_rng(2).standard_normal((6, 4)))
    assert R.OrthogonalRegularizer(mode="columns")(q * 3.0) == pytest.approx(0.0, abs=1e-16)
    assert R.OrthogonalRegularizer(mode="rows")(q.T) == pytest.approx(0.0, abs=1e-16)


def test_orthogonal_penalty_with_zero_row() -> None:
    # Keras caps 1/norm at 1/eps, so a zero row is simply ignored.
    x = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    expected = 0.01 * 0.5 * (2 * math.sqrt(0.5)) / 3
    assert R.OrthogonalRegularizer(factor=0.01)(x) == pytest.approx(
        float(np.float32(0.01)) / 0.01 * expected, rel=1e-7
    )


def test_orthogonal_regularizer_rejects_conv_kernel() -> None:
    with pytest.raises(ValueError) as info:
        R.OrthogonalRegularizer()(np.zeros((3, 4, 6)))
    assert str(info.value) == (
        "Inputs to OrthogonalRegularizer must have rank 2. Received: inputs.shape=(3, 4, 6)"
    )
    with pytest.raises(ValueError, match="must have rank 2"):
        R.OrthogonalRegularizer().gradient(np.zeros(3))


# --------------------------------------------------------------------------
# Gradients.
# --------------------------------------------------------------------------

MATRICES = hnp.arrays(np.float64, (4, 5), elements=st.floats(-3, 3, allow_nan=False))


@settings(max_examples=30, deadline=None, derandomize=True, database=None)
@given(x=MATRICES)
def test_weight_gradients_match_finite_differences(x: np.ndarray) -> None:
    # Keep elements away from |x|'s kink at 0.
    x = np.where(np.abs(x) < 1e-3, 0.5, x)
    for reg in (R.L1(), R.L1(0.3), R.L2(), R.L2(0.7), R.L1L2(0.2, 0.05), R.L1L2()):
        np.testing.assert_allclose(reg.gradient(x), _finite_difference(reg, x), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("mode", ["rows", "columns"])
@settings(max_examples=20, deadline=None, derandomize=True, database=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_orthogonal_gradient_matches_finite_differences(mode: str, seed: int) -> None:
    x = np.random.default_rng(seed).standard_normal((4, 5))
    reg = R.OrthogonalRegularizer(factor=0.5, mode=mode)
    np.testing.assert_allclose(reg.gradient(x), _finite_difference(reg, x), rtol=1e-6, atol=1e-9)


def test_l1_gradient_at_zero_is_zero() -> None:
    np.testing.assert_array_equal(R.L1(0.5).gradient(np.array([-2.0, 0.0, 3.0])), [-0.5, 0.0, 0.5])


def test_gradients_keep_dtype() -> None:
    x = KERNEL.astype(np.float32)
    for reg in (R.L1(), R.L2(), R.L1L2(0.1, 0.1), R.L1L2()):
        assert reg.gradient(x).dtype == np.float32
    assert R.OrthogonalRegularizer().gradient(x[0]).dtype == np.float32
    assert R.Regularizer().gradient(x).dtype == np.float32


# --------------------------------------------------------------------------
# Validation and configs.
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "name"),
    [(lambda v: R.L1(v), "l1"), (lambda v: R.L2(v), "l2"),
     (lambda v: R.L1L2(l1=v), "l1"), (lambda v: R.L1L2(l2=v), "l2"),
     (lambda v: R.OrthogonalRegularizer(factor=v), "factor")],
)
@pytest.mark.parametrize("value", [-1, -0.5, math.inf, -math.inf, math.nan, "0.1", np.float32(0.1)])
def test_invalid_factors(build: Callable[[Any], Any], name: str, value: Any) -> None:
    with pytest.raises(ValueError) as info:
        build(value)
    assert str(info.value) == (
        f"Invalid value for argument {name}: expected a non-negative float.Received: {name}={value}"
    )


def test_invalid_factor_message_matches_spec() -> None:
    with pytest.raises(ValueError) as info:
        R.L2(-1)
    assert str(info.value) == "Invalid value for argument l2: expected a non-negative float.Received: l2=-1"


def test_invalid_orthogonal_mode() -> None:
    with pytest.raises(ValueError) as info:
        R.OrthogonalRegularizer(mode="diagonal")
    assert str(info.value) == (
        'Invalid value for argument `mode`. Expected one of {"rows", "columns"}. Received: mode=diagonal'
    )


@pytest.mark.parametrize(
    ("reg", "config"),
    [
        (R.L1(), {"l1": F32_001}),
        (R.L1(None), {"l1": F32_001}),
        (R.L1(0.5), {"l1": 0.5}),
        (R.L1(0.003), {"l1": float(np.float32(0.003))}),
        (R.L1(2), {"l1": 2.0}),
        (R.L2(), {"l2": 0.01}),
        (R.L2(None), {"l2": 0.01}),
        (R.L2(3), {"l2": 3.0}),
        (R.L1L2(), {"l1": 0.0, "l2": 0.0}),
        (R.L1L2(None, None), {"l1": 0.0, "l2": 0.0}),
        (R.L1L2(0.003, 0.02), {"l1": 0.003, "l2": 0.02}),
        (R.OrthogonalRegularizer(), {"factor": F32_001, "mode": "rows"}),
        (R.OrthogonalRegularizer(0.5, "columns"), {"factor": 0.5, "mode": "columns"}),
    ],
)
def test_get_config_matches_keras(reg: R.Regularizer, config: dict[str, Any]) -> None:
    assert reg.get_config() == config
    assert all(type(v) is float for k, v in reg.get_config().items() if k != "mode")


def test_from_config_keeps_the_stored_factor() -> None:
    # A float64 backend writes {"l1": 0.01}; reading it back must not round it.
    assert R.L1.from_config({"l1": 0.01}).get_config() == {"l1": 0.01}
    assert R.L1.from_config({"l1": F32_001}).get_config() == {"l1": F32_001}
    reg = R.OrthogonalRegularizer.from_config({"factor": 0.01, "mode": "rows"})
    assert reg.get_config() == {"factor": 0.01, "mode": "rows"}
    with pytest.raises(ValueError, match="Invalid value for argument l1"):
        R.L1.from_config({"l1": -1.0})


def test_base_regularizer() -> None:
    assert R.Regularizer()(KERNEL) == 0.0
    with pytest.raises(NotImplementedError):
        R.Regularizer().get_config()


# --------------------------------------------------------------------------
# Lookup and serialization.
# --------------------------------------------------------------------------

NAMES = {
    "L1": R.L1, "l1": R.L1, "L2": R.L2, "l2": R.L2, "L1L2": R.L1L2, "l1l2": R.L1L2,
    "OrthogonalRegularizer": R.OrthogonalRegularizer,
    "orthogonal_regularizer": R.OrthogonalRegularizer,
}


@pytest.mark.parametrize(("name", "cls"), sorted(NAMES.items()))
def test_get_by_name(name: str, cls: type) -> None:
    reg = R.get(name)
    assert type(reg) is cls
    assert reg.get_config() == cls().get_config()


def test_l1l2_string_has_zero_factors() -> None:
    assert R.get("l1l2").get_config() == {"l1": 0.0, "l2": 0.0}


@pytest.mark.parametrize("bad", ["l1_l2", "L1_L2", "Orthogonal", "no_such", "", 0.01,
                                 {"class_name": "L3", "config": {}}])
def test_get_rejects(bad: Any) -> None:
    with pytest.raises(ValueError) as info:
        R.get(bad)
    assert str(info.value) == f"Could not interpret regularizer identifier: {bad}"


def test_get_other_identifiers() -> None:
    assert R.get(None) is None
    assert type(R.get(R.L2)) is R.L2
    reg = R.L2(0.3)
    assert R.get(reg) is reg

    def custom(x: np.ndarray) -> float:
        return float(np.sum(x))

    assert R.get(custom) is custom
    from_dict = R.get({"class_name": "L1L2", "config": {"l1": 0.003, "l2": 0.02}})
    assert type(from_dict) is R.L1L2 and from_dict.get_config() == {"l1": 0.003, "l2": 0.02}
    keras_form = {"module": "keras.regularizers", "class_name": "L2",
                  "config": {"l2": 0.5}, "registered_name": None}
    assert R.get(keras_form).get_config() == {"l2": 0.5}


@pytest.mark.parametrize(
    "reg", [R.L1(), R.L1(0.2), R.L2(), R.L2(0.5), R.L1L2(), R.L1L2(0.003, 0.02),
            R.OrthogonalRegularizer(), R.OrthogonalRegularizer(0.1, "columns")],
)
def test_serialize_round_trip(reg: R.Regularizer) -> None:
    data = R.serialize(reg)
    assert data == {"module": "keras.regularizers", "class_name": type(reg).__name__,
                    "config": reg.get_config(), "registered_name": None}
    assert R.serialize(R.get(data)) == data
    assert json.loads(json.dumps(data)) == data


def test_serialize_none_and_functions() -> None:
    assert R.serialize(None) is None

    def custom(x: np.ndarray) -> float:
        return 0.0

    assert R.serialize(custom) == {"module": __name__, "class_name": "function",
                                   "config": "custom", "registered_name": "custom"}


# --------------------------------------------------------------------------
# Real Keras 3.15.1 configs and losses.
# --------------------------------------------------------------------------


def _forward_cases() -> list[dict[str, Any]]:
    cases = json.loads((REFERENCE / "cases.json").read_text())["cases"]
    return [c for c in cases if c["kind"] == "forward"]


def test_keras_reference_configs_round_trip() -> None:
    for case in _forward_cases():
        for key in ("kernel_regularizer", "bias_regularizer", "activity_regularizer"):
            value = case["config"][key]
            assert R.serialize(R.get(value)) == value, (case["id"], key)


def test_keras_reference_losses() -> None:
    """Keras's `layer.losses`: activity (divided by batch size), kernel, bias."""
    arrays = np.load(REFERENCE / "cases.npz")
    checked = 0
    for case in _forward_cases():
        cfg, cid = case["config"], case["id"]
        expected = []
        activity = R.get(cfg["activity_regularizer"])
        if activity is not None:
            y = arrays[f"{cid}/y"]
            expected.append(activity(y) / y.shape[0])
        kernel_reg = R.get(cfg["kernel_regularizer"])
        if kernel_reg is not None:
            expected.append(kernel_reg(arrays[f"{cid}/kernel"]))
        bias_reg = R.get(cfg["bias_regularizer"])
        if bias_reg is not None and cfg["use_bias"]:
            expected.append(bias_reg(arrays[f"{cid}/bias"]))
        # float64 on JAX applies the exact factor, we (like TF) its float32.
        rel = {"float32": 2e-6, "float64": 1e-12}[case["dtype"]]
        if case["dtype"] == "float64" and case["backend"] == "jax":
            rel = 5e-8
        np.testing.assert_allclose(expected, case["losses"], rtol=rel, atol=1e-30, err_msg=cid)
        checked += len(expected)
    assert checked > 300
