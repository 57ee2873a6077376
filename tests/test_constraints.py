"""Constraints: formulas against an independent per-slice oracle, configs,
lookup and serialization (Keras 3.15.1 forms)."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conv1d_rs import constraints as C

REFERENCE = Path(__file__).parent / "data" / "keras_reference"
EPS = 1e-7
KERNEL = np.random.default_rng(0).standard_normal((3, 4, 6)) * 1.5


def _per_slice(w: np.ndarray, axis: int | Sequence[int] | None,
               scale: Callable[[float], float]) -> np.ndarray:
    """Multiply each slice along `axis` by ``scale(norm of the slice)``."""
    axes = tuple(range(w.ndim)) if axis is None else (
        (axis,) if isinstance(axis, int) else tuple(axis)
    )
    axes = tuple(a % w.ndim for a in axes)
    kept = [d for d in range(w.ndim) if d not in axes]
    out = np.empty_like(w)
    for kept_index in itertools.product(*(range(w.shape[d]) for d in kept)):
        index: list[Any] = [slice(None)] * w.ndim
        for d, i in zip(kept, kept_index):
            index[d] = i
        part = w[tuple(index)]
        norm = math.sqrt(math.fsum(float(v) ** 2 for v in part.ravel()))
        out[tuple(index)] = part * scale(norm)
    return out


AXES = [0, 1, -1, [0, 1], [1, 2], (0, 2), None]


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("max_value", [0.5, 2, 10.0])
def test_max_norm(axis: Any, max_value: float) -> None:
    expected = _per_slice(KERNEL, axis, lambda n: min(n, max_value) / (EPS + n))
    np.testing.assert_allclose(C.MaxNorm(max_value, axis)(KERNEL), expected, rtol=1e-13)


@pytest.mark.parametrize("axis", AXES)
def test_unit_norm(axis: Any) -> None:
    expected = _per_slice(KERNEL, axis, lambda n: 1 / (EPS + n))
    np.testing.assert_allclose(C.UnitNorm(axis)(KERNEL), expected, rtol=1e-13)


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize(("low", "high", "rate"), [(0.0, 1.0, 1.0), (1.5, 2.5, 1.0), (1.0, 2.0, 0.3)])
def test_min_max_norm(axis: Any, low: float, high: float, rate: float) -> None:
    def scale(n: float) -> float:
        return (rate * min(max(n, low), high) + (1 - rate) * n) / (EPS + n)

    expected = _per_slice(KERNEL, axis, scale)
    np.testing.assert_allclose(C.MinMaxNorm(low, high, rate, axis)(KERNEL), expected, rtol=1e-13)


def test_non_neg() -> None:
    np.testing.assert_array_equal(C.NonNeg()(KERNEL), np.where(KERNEL > 0, KERNEL, 0.0))


def test_norms_land_in_range() -> None:
    w = KERNEL * 10
    assert np.all(np.linalg.norm(C.MaxNorm(2)(w), axis=0) <= 2 + 1e-9)
    np.testing.assert_allclose(np.linalg.norm(C.UnitNorm(axis=[0, 1])(w), axis=(0, 1)), 1, rtol=1e-6)
    norms = np.sqrt(np.sum(C.MinMaxNorm(0.5, 0.8)(KERNEL) ** 2, axis=0))
    assert np.all((norms >= 0.5 - 1e-6) & (norms <= 0.8 + 1e-9))


def test_zero_slices_stay_zero() -> None:
    w = np.zeros((3, 2))
    for constraint in (C.MaxNorm(), C.UnitNorm(), C.MinMaxNorm(1.0, 2.0), C.NonNeg()):
        np.testing.assert_array_equal(constraint(w), w)


@pytest.mark.parametrize("constraint", [C.MaxNorm(), C.MinMaxNorm(), C.UnitNorm(), C.NonNeg(),
                                        C.MaxNorm(1.5, [0, 1])])
def test_float32_stays_float32(constraint: C.Constraint) -> None:
    w = KERNEL.astype(np.float32)
    out = constraint(w)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, constraint(KERNEL), rtol=1e-5, atol=1e-6)


def test_base_constraint_is_identity() -> None:
    assert C.Constraint()(KERNEL) is KERNEL


# --------------------------------------------------------------------------
# Configs, lookup, serialization.
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("constraint", "config"),
    [
        (C.MaxNorm(), {"max_value": 2, "axis": 0}),
        (C.MinMaxNorm(), {"min_value": 0.0, "max_value": 1.0, "rate": 1.0, "axis": 0}),
        (C.UnitNorm(), {"axis": 0}),
        (C.NonNeg(), {}),
        (C.Constraint(), {}),
        (C.MaxNorm(3.5, [0, 1]), {"max_value": 3.5, "axis": [0, 1]}),
        (C.MinMaxNorm(0.1, 0.9, 0.5, 1), {"min_value": 0.1, "max_value": 0.9, "rate": 0.5, "axis": 1}),
        (C.UnitNorm(axis=[0, 1]), {"axis": [0, 1]}),
    ],
)
def test_get_config_matches_keras(constraint: C.Constraint, config: dict[str, Any]) -> None:
    assert constraint.get_config() == config
    assert list(constraint.get_config()) == list(config)


def test_max_norm_default_is_an_int() -> None:
    assert type(C.MaxNorm().get_config()["max_value"]) is int


NAMES = {
    "MaxNorm": C.MaxNorm, "max_norm": C.MaxNorm,
    "MinMaxNorm": C.MinMaxNorm, "min_max_norm": C.MinMaxNorm,
    "NonNeg": C.NonNeg, "non_neg": C.NonNeg,
    "UnitNorm": C.UnitNorm, "unit_norm": C.UnitNorm,
}


@pytest.mark.parametrize(("name", "cls"), sorted(NAMES.items()))
def test_get_by_name(name: str, cls: type) -> None:
    constraint = C.get(name)
    assert type(constraint) is cls
    assert constraint.get_config() == cls().get_config()


@pytest.mark.parametrize("bad", ["nope", "maxnorm", "Max_Norm", "nonneg", "", 1,
                                 {"class_name": "Positive", "config": {}}])
def test_get_rejects(bad: Any) -> None:
    with pytest.raises(ValueError) as info:
        C.get(bad)
    assert str(info.value) == f"Could not interpret constraint identifier: {bad}"


def test_get_other_identifiers() -> None:
    assert C.get(None) is None
    assert type(C.get(C.UnitNorm)) is C.UnitNorm
    constraint = C.MaxNorm(4)
    assert C.get(constraint) is constraint

    def clip(w: np.ndarray) -> np.ndarray:
        return np.clip(w, -1, 1)

    assert C.get(clip) is clip
    keras_form = {"module": "keras.constraints", "class_name": "MaxNorm",
                  "config": {"max_value": 3, "axis": [0, 1]}, "registered_name": None}
    assert C.get(keras_form).get_config() == {"max_value": 3, "axis": [0, 1]}
    assert type(C.get({"class_name": "non_neg", "config": {}})) is C.NonNeg


@pytest.mark.parametrize("constraint", [C.MaxNorm(), C.MaxNorm(1.5, [0, 1]), C.MinMaxNorm(),
                                        C.MinMaxNorm(0.2, 0.4, 0.5, 2), C.UnitNorm(), C.NonNeg()])
def test_serialize_round_trip(constraint: C.Constraint) -> None:
    data = C.serialize(constraint)
    assert data == {"module": "keras.constraints", "class_name": type(constraint).__name__,
                    "config": constraint.get_config(), "registered_name": None}
    assert C.serialize(C.get(data)) == data
    assert json.loads(json.dumps(data)) == data


def test_serialize_none_and_custom() -> None:
    assert C.serialize(None) is None

    class Positive(C.Constraint):
        def __call__(self, w: np.ndarray) -> np.ndarray:
            return np.abs(w)

    assert C.serialize(Positive()) == {"module": __name__, "class_name": "Positive",
                                       "config": {}, "registered_name": "Positive"}


def test_keras_reference_configs_round_trip() -> None:
    cases = json.loads((REFERENCE / "cases.json").read_text())["cases"]
    forward = [c for c in cases if c["kind"] == "forward"]
    assert forward
    for case in forward:
        for key in ("kernel_constraint", "bias_constraint"):
            value = case["config"][key]
            assert C.serialize(C.get(value)) == value, (case["id"], key)
