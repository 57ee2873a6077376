"""Initializers: distributions against the Keras formulas, fans, seeds,
configs, lookup and serialization (Keras 3.15.1 forms)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conv1d_rs import initializers as I

REFERENCE = Path(__file__).parent / "data" / "keras_reference"
TRUNCATED_STD = 0.87962566103423978

# 5 * 100 * 80 = 40,000 draws; fan_in = 500, fan_out = 400.
CONV_SHAPE = (5, 100, 80)
FAN_IN, FAN_OUT = 500, 400


def _close(value: float, expected: float, rel: float = 0.03) -> bool:
    return abs(value - expected) <= rel * abs(expected)


# --------------------------------------------------------------------------
# Fans.
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "fans"),
    [((), (1, 1)), ((7,), (7, 7)), ((4, 9), (4, 9)), ((3, 4, 6), (12, 18)),
     ((2, 3, 4, 5), (24, 30)), ([3, 4, 6], (12, 18))],
)
def test_compute_fans(shape: Any, fans: tuple[int, int]) -> None:
    assert I.compute_fans(shape) == fans


def test_compute_fans_explicit_axes() -> None:
    assert I.compute_fans((3, 4, 6), input_axes=[0, 1], output_axes=[2]) == (12, 6)
    assert I.compute_fans((3, 4, 6), input_axes=[1], output_axes=[0, 2]) == (4, 18)
    # Both are needed; one alone is ignored, as in Keras.
    assert I.compute_fans((3, 4, 6), input_axes=[1]) == (12, 18)


def test_variance_scaling_uses_explicit_axes() -> None:
    init = I.VarianceScaling(scale=1.0, mode="fan_in", distribution="uniform",
                             seed=0, input_axes=[1], output_axes=[2])
    values = init((4, 10000, 2))
    assert np.abs(values).max() <= math.sqrt(3 / 10000)


# --------------------------------------------------------------------------
# Distributions.
# --------------------------------------------------------------------------


def _check_uniform(values: np.ndarray, limit: float) -> None:
    assert values.min() >= -limit and values.max() <= limit
    assert values.max() > 0.99 * limit and values.min() < -0.99 * limit
    assert _close(values.var(), limit**2 / 3)
    assert abs(values.mean()) < 0.02 * limit


def _check_truncated(values: np.ndarray, stddev: float) -> None:
    """`stddev` is the standard deviation after truncation."""
    bound = 2 * stddev / TRUNCATED_STD
    assert np.abs(values).max() <= bound * (1 + 1e-6)
    assert np.abs(values).max() > 0.98 * bound
    assert _close(values.std(), stddev)
    assert abs(values.mean()) < 0.03 * stddev


def _check_normal(values: np.ndarray, mean: float, stddev: float) -> None:
    assert _close(values.std(), stddev)
    assert abs(values.mean() - mean) < 0.03 * stddev
    # An untruncated normal has about 4.6% of its draws beyond 2 sigma.
    assert 0.035 < np.mean(np.abs(values - mean) > 2 * stddev) < 0.057


@pytest.mark.parametrize(
    ("cls", "limit"),
    [(I.GlorotUniform, math.sqrt(6 / (FAN_IN + FAN_OUT))),
     (I.HeUniform, math.sqrt(6 / FAN_IN)),
     (I.LecunUniform, math.sqrt(3 / FAN_IN))],
)
def test_uniform_presets(cls: type, limit: float) -> None:
    values = cls(seed=1)(CONV_SHAPE)
    assert values.dtype == np.float32 and values.shape == CONV_SHAPE
    _check_uniform(values, limit)


@pytest.mark.parametrize(
    ("cls", "stddev"),
    [(I.GlorotNormal, math.sqrt(2 / (FAN_IN + FAN_OUT))),
     (I.HeNormal, math.sqrt(2 / FAN_IN)),
     (I.LecunNormal, math.sqrt(1 / FAN_IN))],
)
def test_normal_presets(cls: type, stddev: float) -> None:
    values = cls(seed=2)(CONV_SHAPE)
    assert values.dtype == np.float32
    _check_truncated(values, stddev)


@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "fan_avg"])
@pytest.mark.parametrize("distribution", ["uniform", "truncated_normal", "untruncated_normal", "normal"])
def test_variance_scaling(mode: str, distribution: str) -> None:
    fan = {"fan_in": FAN_IN, "fan_out": FAN_OUT, "fan_avg": (FAN_IN + FAN_OUT) / 2}[mode]
    scale = 0.7 / fan
    values = I.VarianceScaling(scale=0.7, mode=mode, distribution=distribution, seed=3)(
        CONV_SHAPE, dtype="float64"
    )
    assert values.dtype == np.float64
    if distribution == "uniform":
        _check_uniform(values, math.sqrt(3 * scale))
    elif distribution == "untruncated_normal":
        _check_normal(values, 0.0, math.sqrt(scale))
    else:
        _check_truncated(values, math.sqrt(scale))


def test_variance_scaling_small_fan_is_not_amplified() -> None:
    # scale / max(1, fan): a fan below one does not increase the scale.
    values = I.VarianceScaling(scale=2.0, distribution="uniform", seed=0)((0, 5))
    assert values.shape == (0, 5)
    values = I.VarianceScaling(scale=0.5, mode="fan_in", distribution="uniform", seed=0)((1, 40000))
    _check_uniform(values, math.sqrt(1.5))


def test_random_normal() -> None:
    _check_normal(I.RandomNormal(seed=4)((200, 200)), 0.0, 0.05)
    _check_normal(I.RandomNormal(mean=1.5, stddev=2.0, seed=4)((200, 200)), 1.5, 2.0)


def test_truncated_normal() -> None:
    values = I.TruncatedNormal(mean=-1.0, stddev=3.0, seed=5)((200, 200))
    assert np.all(np.abs(values + 1.0) <= 6.0 + 1e-5)
    assert _close(values.std(), 3.0 * TRUNCATED_STD)
    assert abs(values.mean() + 1.0) < 0.05


def test_random_uniform() -> None:
    values = I.RandomUniform(seed=6)((200, 200))
    _check_uniform(values, 0.05)
    values = I.RandomUniform(minval=2.0, maxval=5.0, seed=6)((200, 200), dtype="float64")
    assert values.min() >= 2.0 and values.max() < 5.0
    assert _close(values.mean(), 3.5, 0.01) and _close(values.var(), 0.75)


@pytest.mark.parametrize("shape", [(3, 4, 6), (6, 3), (3, 6), (5, 5), (2, 3, 1)])
def test_orthogonal(shape: tuple[int, ...]) -> None:
    values = I.Orthogonal(gain=2.0, seed=7)(shape, dtype="float64")
    assert values.shape == shape
    matrix = values.reshape(-1, shape[-1]) / 2.0
    if matrix.shape[0] >= matrix.shape[1]:
        np.testing.assert_allclose(matrix.T @ matrix, np.eye(matrix.shape[1]), atol=1e-12)
    else:
        np.testing.assert_allclose(matrix @ matrix.T, np.eye(matrix.shape[0]), atol=1e-12)


def test_orthogonal_is_uniform_over_signs() -> None:
    # With the sign fix, each entry is symmetric around zero across seeds.
    firsts = [I.Orthogonal(seed=s)((4, 4), dtype="float64")[0, 0] for s in range(400)]
    assert 0.4 < np.mean(np.array(firsts) > 0) < 0.6


def test_orthogonal_rejects_rank_1() -> None:
    with pytest.raises(ValueError) as info:
        I.Orthogonal()((5,))
    assert str(info.value) == (
        "The tensor to initialize must be at least two-dimensional. "
        "Received: shape=(5,) of rank 1."
    )


def test_identity() -> None:
    np.testing.assert_array_equal(I.Identity()((3, 3)), np.eye(3, dtype=np.float32))
    np.testing.assert_array_equal(I.Identity(gain=2.5)((2, 4)), 2.5 * np.eye(2, 4))
    assert I.Identity()((2, 2), dtype="float64").dtype == np.float64


def test_identity_rejects_conv_kernel() -> None:
    with pytest.raises(ValueError) as info:
        I.Identity()((3, 4, 6))
    assert str(info.value) == (
        "Identity matrix initializer can only be used for 2D matrices. "
        "Received: shape=(3, 4, 6) of rank 3."
    )


def test_constant_fills() -> None:
    np.testing.assert_array_equal(I.Zeros()((2, 3)), np.zeros((2, 3), np.float32))
    np.testing.assert_array_equal(I.Ones()((2, 3)), np.ones((2, 3), np.float32))
    np.testing.assert_array_equal(I.Constant(2)((4,)), np.full(4, 2.0, np.float32))
    np.testing.assert_array_equal(I.Constant(0.5)((2,), dtype="float64"), [0.5, 0.5])
    assert I.Constant(2)((3,)).dtype == np.float32
    assert I.Zeros()((2,), dtype="int32").dtype == np.int32
    assert I.Ones()((2,), dtype=None).dtype == np.float32


@pytest.mark.parametrize("cls", [I.RandomNormal, I.TruncatedNormal, I.RandomUniform,
                                 I.GlorotUniform, I.Orthogonal])
def test_random_initializers_need_float_dtype(cls: type) -> None:
    with pytest.raises(ValueError, match="floating point dtype"):
        cls()((3, 3), dtype="int32")


# --------------------------------------------------------------------------
# Seeds.
# --------------------------------------------------------------------------

RANDOM_CLASSES = [I.RandomNormal, I.TruncatedNormal, I.RandomUniform, I.VarianceScaling,
                  I.GlorotUniform, I.GlorotNormal, I.HeUniform, I.HeNormal,
                  I.LecunUniform, I.LecunNormal, I.Orthogonal]


@pytest.mark.parametrize("cls", RANDOM_CLASSES)
def test_int_seed_is_reproducible(cls: type) -> None:
    init = cls(seed=1234)
    np.testing.assert_array_equal(init((3, 4, 6)), init((3, 4, 6)))
    np.testing.assert_array_equal(init((3, 4, 6)), cls(seed=1234)((3, 4, 6)))
    assert not np.array_equal(init((3, 4, 6)), cls(seed=1235)((3, 4, 6)))


@pytest.mark.parametrize("cls", RANDOM_CLASSES)
def test_no_seed_draws_fresh_values(cls: type) -> None:
    init = cls()
    assert not np.array_equal(init((3, 4, 6)), init((3, 4, 6)))


def test_negative_seed_is_accepted() -> None:
    init = I.RandomNormal(seed=-5)
    np.testing.assert_array_equal(init((3,)), init((3,)))


@pytest.mark.parametrize("seed", ["1", 1.5, [1]])
def test_invalid_seed(seed: Any) -> None:
    with pytest.raises(ValueError) as info:
        I.GlorotUniform(seed=seed)
    assert str(info.value) == (
        "`seed` argument should be an instance of `keras.random.SeedGenerator()` "
        f"or an integer. Received: seed={seed}"
    )


# --------------------------------------------------------------------------
# VarianceScaling validation.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [0, 0.0, -1.5])
def test_variance_scaling_rejects_scale(scale: float) -> None:
    with pytest.raises(ValueError) as info:
        I.VarianceScaling(scale=scale)
    assert str(info.value) == f"Argument `scale` must be positive float. Received: scale={scale}"


def test_variance_scaling_rejects_mode() -> None:
    with pytest.raises(ValueError) as info:
        I.VarianceScaling(mode="fan_sum")
    # Keras prints a set, so the order of the names is not fixed.
    message = str(info.value)
    assert message.startswith("Invalid `mode` argument: fan_sum. Please use one of {")
    assert all(f"'{m}'" in message for m in ("fan_in", "fan_out", "fan_avg"))


def test_variance_scaling_rejects_distribution() -> None:
    with pytest.raises(ValueError) as info:
        I.VarianceScaling(distribution="Cauchy")
    message = str(info.value)
    assert message.startswith("Invalid `distribution` argument: cauchy.Please use one of {")
    assert all(f"'{d}'" in message for d in ("uniform", "truncated_normal", "untruncated_normal"))


def test_variance_scaling_distribution_spelling() -> None:
    assert I.VarianceScaling(distribution="normal").distribution == "truncated_normal"
    assert I.VarianceScaling(distribution="Uniform").distribution == "uniform"
    assert I.VarianceScaling(distribution="UNTRUNCATED_NORMAL").distribution == "untruncated_normal"


# --------------------------------------------------------------------------
# Configs, lookup, serialization.
# --------------------------------------------------------------------------

PRESET_CONFIG = {"seed": None, "input_axes": None, "output_axes": None}


@pytest.mark.parametrize(
    ("init", "config"),
    [
        (I.GlorotUniform(), PRESET_CONFIG),
        (I.GlorotNormal(), PRESET_CONFIG),
        (I.HeUniform(), PRESET_CONFIG),
        (I.HeNormal(), PRESET_CONFIG),
        (I.LecunUniform(), PRESET_CONFIG),
        (I.LecunNormal(), PRESET_CONFIG),
        (I.VarianceScaling(), {"seed": None, "scale": 1.0, "mode": "fan_in",
                               "distribution": "truncated_normal", "input_axes": None,
                               "output_axes": None}),
        (I.RandomNormal(), {"seed": None, "mean": 0.0, "stddev": 0.05}),
        (I.TruncatedNormal(), {"seed": None, "mean": 0.0, "stddev": 0.05}),
        (I.RandomUniform(), {"seed": None, "minval": -0.05, "maxval": 0.05}),
        (I.Orthogonal(), {"seed": None, "gain": 1.0}),
        (I.Zeros(), {}),
        (I.Ones(), {}),
        (I.Constant(2), {"value": 2}),
        (I.Constant(), {"value": 0.0}),
        (I.Identity(gain=3.0), {}),
        (I.HeNormal(seed=9, input_axes=[0], output_axes=[1]),
         {"seed": 9, "input_axes": [0], "output_axes": [1]}),
    ],
)
def test_get_config_matches_keras(init: I.Initializer, config: dict[str, Any]) -> None:
    assert init.get_config() == config
    assert list(init.get_config()) == list(config)


def test_constant_config_of_numpy_scalar_is_plain() -> None:
    config = I.Constant(np.float32(0.5)).get_config()
    assert config == {"value": 0.5} and type(config["value"]) is float


NAMES = {
    "Constant": I.Constant, "constant": I.Constant,
    "GlorotNormal": I.GlorotNormal, "glorot_normal": I.GlorotNormal,
    "GlorotUniform": I.GlorotUniform, "glorot_uniform": I.GlorotUniform,
    "HeNormal": I.HeNormal, "he_normal": I.HeNormal,
    "HeUniform": I.HeUniform, "he_uniform": I.HeUniform,
    "Identity": I.Identity, "identity": I.Identity, "IdentityInitializer": I.Identity,
    "LecunNormal": I.LecunNormal, "lecun_normal": I.LecunNormal,
    "LecunUniform": I.LecunUniform, "lecun_uniform": I.LecunUniform,
    "Ones": I.Ones, "ones": I.Ones, "one": I.Ones,
    "Orthogonal": I.Orthogonal, "orthogonal": I.Orthogonal,
    "OrthogonalInitializer": I.Orthogonal,
    "RandomNormal": I.RandomNormal, "random_normal": I.RandomNormal, "normal": I.RandomNormal,
    "RandomUniform": I.RandomUniform, "random_uniform": I.RandomUniform,
    "uniform": I.RandomUniform,
    "TruncatedNormal": I.TruncatedNormal, "truncated_normal": I.TruncatedNormal,
    "VarianceScaling": I.VarianceScaling, "variance_scaling": I.VarianceScaling,
    "Zeros": I.Zeros, "zeros": I.Zeros, "zero": I.Zeros,
}


@pytest.mark.parametrize(("name", "cls"), sorted(NAMES.items()))
def test_get_by_name(name: str, cls: type) -> None:
    init = I.get(name)
    assert type(init) is cls
    assert I.get(name) is not init  # a fresh instance each time


@pytest.mark.parametrize("bad", ["no_such_init", "Glorot_Uniform", "GLOROT_UNIFORM",
                                 "glorotuniform", "he-normal", "", 3,
                                 {"class_name": "Nope", "config": {}}])
def test_get_rejects(bad: Any) -> None:
    with pytest.raises(ValueError) as info:
        I.get(bad)
    assert str(info.value) == f"Could not interpret initializer identifier: {bad}"


def test_get_class_instance_callable_and_none() -> None:
    assert type(I.get(I.HeUniform)) is I.HeUniform
    init = I.RandomNormal(stddev=3.0)
    assert I.get(init) is init

    def custom(shape: Any, dtype: Any = None) -> np.ndarray:
        return np.full(shape, 7.0)

    assert I.get(custom) is custom
    assert I.get(None) is None


def test_get_array_identifier() -> None:
    value = np.arange(6.0).reshape(2, 3)
    init = I.get(value)
    np.testing.assert_array_equal(init((2, 3)), value.astype(np.float32))
    assert init((2, 3), dtype="float64").dtype == np.float64
    with pytest.raises(ValueError, match=r"Expected `shape` to be \(2, 3\)"):
        init((3, 2))


def test_get_config_dicts() -> None:
    keras_form = {"module": "keras.initializers", "class_name": "VarianceScaling",
                  "config": {"seed": 3, "scale": 2.0, "mode": "fan_out",
                             "distribution": "uniform", "input_axes": None,
                             "output_axes": None},
                  "registered_name": None}
    init = I.get(keras_form)
    assert type(init) is I.VarianceScaling and init.get_config() == keras_form["config"]
    legacy = I.get({"class_name": "GlorotUniform", "config": {"seed": None}})
    assert type(legacy) is I.GlorotUniform
    assert type(I.get({"class_name": "zeros", "config": {}})) is I.Zeros
    assert I.get({"class_name": "Constant", "config": {"value": 4}}).value == 4


@pytest.mark.parametrize(
    "init",
    [I.GlorotUniform(seed=3), I.GlorotNormal(), I.HeUniform(), I.HeNormal(input_axes=[0], output_axes=[1]),
     I.LecunUniform(), I.LecunNormal(), I.VarianceScaling(2.0, "fan_avg", "uniform", seed=1),
     I.RandomNormal(1.0, 2.0, seed=4), I.TruncatedNormal(0.5, 0.1), I.RandomUniform(-1.0, 2.0),
     I.Orthogonal(gain=0.5, seed=2), I.Zeros(), I.Ones(), I.Constant(2.5), I.Identity()],
)
def test_serialize_round_trip(init: I.Initializer) -> None:
    data = I.serialize(init)
    assert data == {"module": "keras.initializers", "class_name": type(init).__name__,
                    "config": init.get_config(), "registered_name": None}
    rebuilt = I.get(data)
    assert type(rebuilt) is type(init) and rebuilt.get_config() == init.get_config()
    assert json.loads(json.dumps(data)) == data
    clone = init.clone()
    assert type(clone) is type(init) and clone.get_config() == init.get_config()


def test_serialize_none_and_custom() -> None:
    assert I.serialize(None) is None

    class MyInit(I.Initializer):
        def __call__(self, shape: Any, dtype: Any = "float32") -> np.ndarray:
            return np.zeros(shape, dtype)

    assert I.serialize(MyInit()) == {"module": __name__, "class_name": "MyInit",
                                     "config": {}, "registered_name": "MyInit"}


def test_keras_reference_configs_round_trip() -> None:
    cases = json.loads((REFERENCE / "cases.json").read_text())["cases"]
    forward = [c for c in cases if c["kind"] == "forward"]
    assert forward
    for case in forward:
        for key in ("kernel_initializer", "bias_initializer"):
            value = case["config"][key]
            assert I.serialize(I.get(value)) == value, (case["id"], key)
