"""Training: Conv1D.vjp against Keras's gradients and finite differences, optimizers, Sequential."""

from __future__ import annotations

import pathlib
from typing import Any, Callable, Optional

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import conv1d_rs
from conftest import REFERENCE_DIR, as_computed, case_arrays, forward_cases, tolerance
from conv1d_rs import constraints, optimizers
from grad_oracle import conv1d_backward_oracle

FORWARD = forward_cases()


def loaded_layer(case: dict[str, Any]) -> conv1d_rs.Conv1D:
    arrays = case_arrays(case["id"])
    layer = conv1d_rs.Conv1D(**case["kwargs"], dtype=case["dtype"])
    layer.build(case["input_shape"])
    layer.set_weights([arrays["kernel"]] + ([arrays["bias"]] if "bias" in arrays else []))
    return layer


def tolerance_factor(case: dict[str, Any]) -> float:
    activation = case["kwargs"]["activation"]
    if activation == "exponential":
        return 10.0  # exp amplifies the convolution's rounding (the README's advice)
    return 1.0


def assert_close_gradient(actual: np.ndarray, expected: np.ndarray, dtype: str, factor: float = 1.0) -> None:
    """`|a - e| <= factor * tol * (1 + |e|)` with the README's tol, as for the outputs."""
    assert actual.shape == expected.shape
    tol = factor * tolerance(dtype)
    expected64 = expected.astype(np.float64)
    finite = np.isfinite(expected64)
    assert np.array_equal(np.isfinite(actual), finite), "non-finite values differ"
    err = np.abs(actual.astype(np.float64) - expected64)
    worst = np.max((err / (tol * (1 + np.abs(expected64))))[finite], initial=0.0)
    assert worst <= 1.0, f"max error {worst:.3g} x tolerance"


# ---------------------------------------------------------------------------- Keras's gradients
@pytest.mark.parametrize("case", FORWARD, ids=[c["id"] for c in FORWARD])
def test_vjp_equals_keras_gradients(case: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    as_computed(case, monkeypatch)
    arrays = case_arrays(case["id"])
    layer = loaded_layer(case)
    dx, grads = layer.vjp(arrays["x"], arrays["dy"])
    factor = tolerance_factor(case)
    assert dx.dtype == np.dtype(case["dtype"]) and grads["kernel"].dtype == np.dtype(case["dtype"])
    assert_close_gradient(dx, arrays["dx"], case["dtype"], factor)
    assert_close_gradient(grads["kernel"], arrays["dkernel"], case["dtype"], factor)
    if "dbias" in arrays:
        assert_close_gradient(grads["bias"], arrays["dbias"], case["dtype"], factor)
    else:
        assert grads["bias"] is None


# ---------------------------------------------------------------------------- finite differences
SMOOTH = [
    "linear", "tanh", "sigmoid", "softplus", "silu", "gelu", "mish", "elu", "selu", "softsign", "squareplus",
    "softmax", "log_softmax", "log_sigmoid", "tanh_shrink", "exponential", "glu",
]  # fmt: skip
# Kinks are safe only away from exactly-zero pre-activations, i.e. with a nonzero bias.
KINKED = ["relu", "leaky_relu", "relu6", "hard_sigmoid", "hard_silu", "hard_tanh", "sparse_plus", "celu"]


@st.composite
def layer_configs(draw: st.DrawFn) -> dict[str, Any]:
    groups = draw(st.integers(1, 3))
    kernel_size = draw(st.integers(1, 4))
    strides, dilation = (draw(st.integers(1, 3)), 1) if draw(st.booleans()) else (1, draw(st.integers(1, 3)))
    padding = draw(st.sampled_from(["valid", "same", "causal"]))
    span = dilation * (kernel_size - 1) + 1
    use_bias = draw(st.booleans())
    return {
        "filters": groups * draw(st.integers(1, 2)),
        "kernel_size": kernel_size,
        "strides": strides,
        "padding": padding,
        "data_format": draw(st.sampled_from(["channels_last", "channels_first"])),
        "dilation_rate": dilation,
        "groups": groups,
        "use_bias": use_bias,
        "activation": draw(st.sampled_from(SMOOTH + (KINKED if use_bias else []))),
        "channels": groups * draw(st.integers(1, 2)),
        "steps": draw(st.integers(span if padding == "valid" else 1, span + 7)),
        "batch": draw(st.integers(1, 2)),
        "seed": draw(st.integers(0, 2**31)),
    }


def random_layer(config: dict[str, Any], rng: np.random.Generator, **extra: Any) -> tuple[conv1d_rs.Conv1D, np.ndarray]:
    kwargs = {k: v for k, v in config.items() if k not in ("channels", "steps", "batch", "seed")}
    layer = conv1d_rs.Conv1D(**kwargs, dtype="float64", **extra)
    channels_last = config["data_format"] == "channels_last"
    shape = (config["batch"], config["steps"], config["channels"])
    x = rng.normal(size=shape if channels_last else (shape[0], shape[2], shape[1]))
    layer.build(x.shape)
    kernel = rng.normal(scale=0.5, size=layer.kernel.shape)
    if layer.use_bias:
        bias = rng.uniform(0.2, 1.0, size=layer.filters) * rng.choice([-1.0, 1.0], size=layer.filters)
        layer.set_weights([kernel, bias])
    else:
        layer.set_weights([kernel])
    return layer, x


def directional_check(
    objective: Callable[[float, np.ndarray], float], gradient: np.ndarray, rng: np.random.Generator
) -> None:
    """The central difference of `objective` along a random direction equals `<gradient, direction>`."""
    direction = rng.normal(size=gradient.shape)
    h = 1e-6
    numeric = (objective(h, direction) - objective(-h, direction)) / (2 * h)
    analytic = float(np.sum(gradient * direction))
    assert abs(numeric - analytic) <= 1e-6 * (1 + abs(analytic)), (numeric, analytic)


def check_layer_gradients(layer: conv1d_rs.Conv1D, x: np.ndarray, rng: np.random.Generator, activity: bool) -> None:
    y = layer(x)
    dy = rng.normal(size=y.shape)
    dx, grads = layer.vjp(x, dy, include_activity=activity)
    kernel, bias = layer.kernel.copy(), None if layer.bias is None else layer.bias.copy()

    def objective(x_: np.ndarray, kernel_: np.ndarray, bias_: Optional[np.ndarray]) -> float:
        layer.set_weights([kernel_] + ([bias_] if bias_ is not None else []))
        value = float(np.sum(layer(x_) * dy))
        if activity:
            value += layer.losses[0]  # the activity penalty comes first in `losses`
        layer.set_weights([kernel] + ([bias] if bias is not None else []))
        return value

    directional_check(lambda h, v: objective(x + h * v, kernel, bias), dx, rng)
    directional_check(lambda h, v: objective(x, kernel + h * v, bias), grads["kernel"], rng)
    if bias is not None:
        directional_check(lambda h, v: objective(x, kernel, bias + h * v), grads["bias"], rng)
    else:
        assert grads["bias"] is None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layer_configs())
def test_vjp_matches_finite_differences(config: dict[str, Any]) -> None:
    rng = np.random.default_rng(config["seed"])
    layer, x = random_layer(config, rng)
    out_shape = layer.compute_output_shape(x.shape)
    assume(config["activation"] != "glu" or out_shape[-1] % 2 == 0)  # glu halves the last axis
    check_layer_gradients(layer, x, rng, activity=False)


@settings(max_examples=15, deadline=None)
@given(layer_configs())
def test_vjp_with_activity_regularizer_matches_finite_differences(config: dict[str, Any]) -> None:
    assume(config["activation"] != "glu")
    rng = np.random.default_rng(config["seed"])
    layer, x = random_layer(config, rng, activity_regularizer={"class_name": "L2", "config": {"l2": 0.3}})
    check_layer_gradients(layer, x, rng, activity=True)


@settings(max_examples=20, deadline=None)
@given(layer_configs())
def test_rust_backward_equals_numpy_oracle(config: dict[str, Any]) -> None:
    rng = np.random.default_rng(config["seed"])
    layer, x = random_layer(config, rng)
    dy = rng.normal(size=layer.compute_output_shape(x.shape))
    args = (config["strides"], config["padding"], config["data_format"], config["dilation_rate"], config["groups"])
    actual = conv1d_rs.conv1d_backward(x, layer.kernel, dy, *args, use_bias=config["use_bias"])
    expected = conv1d_backward_oracle(x, layer.kernel, dy, *args, use_bias=config["use_bias"])
    for got, want in zip(actual, expected):
        if want is None:
            assert got is None
        else:
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_float32_vjp_has_float32_gradients_close_to_float64() -> None:
    rng = np.random.default_rng(3)
    layer = conv1d_rs.Conv1D(6, 3, padding="causal", dilation_rate=2, groups=2, activation="tanh")
    x = rng.normal(size=(2, 17, 4)).astype(np.float32)
    layer.build(x.shape)
    dy = rng.normal(size=layer.compute_output_shape(x.shape)).astype(np.float32)
    dx, grads = layer.vjp(x, dy)
    assert dx.dtype == grads["kernel"].dtype == grads["bias"].dtype == np.float32
    double = conv1d_rs.Conv1D.from_config({**layer.get_config(), "dtype": "float64"})
    double.build(x.shape)
    double.set_weights(layer.get_weights())
    dx64, grads64 = double.vjp(x, dy)
    np.testing.assert_allclose(dx, dx64, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grads["kernel"], grads64["kernel"], rtol=1e-5, atol=1e-5)


def test_vjp_refuses_wrong_dy_shape_and_custom_activation() -> None:
    layer = conv1d_rs.Conv1D(4, 3)
    x = np.zeros((1, 8, 2), dtype=np.float32)
    with pytest.raises(ValueError, match=r"`dy` must have the layer output's shape \(1, 6, 4\)"):
        layer.vjp(x, np.zeros((1, 6, 3)))
    custom = conv1d_rs.Conv1D(4, 3, activation=lambda t: t * 2)
    with pytest.raises(TypeError, match="builtin activations"):
        custom.vjp(x, np.zeros((1, 6, 4)))


def test_regularization_gradients_match_finite_differences() -> None:
    rng = np.random.default_rng(5)
    layer = conv1d_rs.Conv1D(
        3, 2, dtype="float64", kernel_regularizer={"class_name": "L1L2", "config": {"l1": 0.01, "l2": 0.2}},
        bias_regularizer="l2",
    )
    layer.build((None, None, 2))
    layer.set_weights([rng.normal(size=(2, 2, 3)), rng.normal(size=3)])
    grads = layer.regularization_gradients()
    kernel, bias = layer.kernel.copy(), layer.bias.copy()

    def penalty(kernel_: np.ndarray, bias_: np.ndarray) -> float:
        layer.set_weights([kernel_, bias_])
        return float(sum(layer.losses))

    directional_check(lambda h, v: penalty(kernel + h * v, bias), grads["kernel"], rng)
    directional_check(lambda h, v: penalty(kernel, bias + h * v), grads["bias"], rng)
    plain = conv1d_rs.Conv1D(3, 2, use_bias=False)
    plain.build((None, None, 2))
    assert plain.regularization_gradients()["bias"] is None
    assert not plain.regularization_gradients()["kernel"].any()


def test_activity_gradient_is_regularizer_gradient_over_batch() -> None:
    layer = conv1d_rs.Conv1D(2, 1, activity_regularizer="l2")
    y = np.arange(12, dtype=np.float32).reshape(3, 2, 2)
    np.testing.assert_allclose(layer.activity_gradient(y), np.float32(0.01) * 2 * y / 3, rtol=1e-6)
    assert not conv1d_rs.Conv1D(2, 1).activity_gradient(y).any()


# ---------------------------------------------------------------------------- optimizers
W0 = np.array([0.5, -1.25, 2.0, 0.0])
# float32 values, so float32 and float64 runs (and the Keras recordings below) share gradients.
STEPS = [np.array(g, np.float32).astype(np.float64) for g in ([0.1, -0.2, 0.3, 0.0], [1.0, 0.5, -2.0, 0.25], [-0.3, 0.0, 0.7, -1.5])]


def bias_only_layer(dtype: str, **kwargs: Any) -> conv1d_rs.Conv1D:
    """A layer whose bias is W0 (the kernel gets zero gradients), to drive optimizers directly."""
    layer = conv1d_rs.Conv1D(4, 1, dtype=dtype, **kwargs)
    layer.build((None, None, 1))
    layer.set_weights([np.zeros((1, 1, 4)), W0])
    return layer


def run_steps(optimizer: optimizers.Optimizer, dtype: str, **layer_kwargs: Any) -> conv1d_rs.Conv1D:
    layer = bias_only_layer(dtype, **layer_kwargs)
    for g in STEPS:
        optimizer.apply_gradients([(g.astype(dtype), layer, "bias")])
    return layer


def f32(value: float) -> float:
    """Keras keeps the learning rate in a float32 variable and its TF backend casts Python
    floats through float32 (`ops.cast`): momentum and the betas raised to the step."""
    return float(np.float32(value))


def sgd_by_hand(lr: float, momentum: float, nesterov: bool) -> np.ndarray:
    w, m = W0.copy(), np.zeros_like(W0)
    lr, momentum = f32(lr), f32(momentum)
    for g in STEPS:
        if momentum == 0:
            w = w - lr * g
            continue
        m = momentum * m - lr * g
        w = w + (momentum * m - lr * g if nesterov else m)
    return w


def adam_by_hand(lr: float, b1: float, b2: float, eps: float, amsgrad: bool) -> np.ndarray:
    w, m, v, v_hat = W0.copy(), np.zeros_like(W0), np.zeros_like(W0), np.zeros_like(W0)
    for t, g in enumerate(STEPS, start=1):
        lr_t = f32(lr) * np.sqrt(1 - f32(b2) ** t) / (1 - f32(b1) ** t)
        m = m + (g - m) * (1 - b1)
        v = v + (g * g - v) * (1 - b2)
        v_hat = np.maximum(v_hat, v)
        w = w - lr_t * m / (np.sqrt(v_hat if amsgrad else v) + eps)
    return w


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True), (0.5, True)])
def test_sgd_follows_keras_rule(dtype: str, momentum: float, nesterov: bool) -> None:
    layer = run_steps(optimizers.SGD(0.1, momentum=momentum, nesterov=nesterov), dtype)
    rtol = 1e-6 if dtype == "float32" else 1e-14
    np.testing.assert_allclose(layer.bias, sgd_by_hand(0.1, momentum, nesterov), rtol=rtol, atol=rtol)
    assert layer.bias.dtype == np.dtype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_follows_keras_rule(dtype: str, amsgrad: bool) -> None:
    layer = run_steps(optimizers.Adam(0.05, beta_1=0.8, beta_2=0.99, epsilon=1e-3, amsgrad=amsgrad), dtype)
    rtol = 1e-5 if dtype == "float32" else 1e-13
    np.testing.assert_allclose(layer.bias, adam_by_hand(0.05, 0.8, 0.99, 1e-3, amsgrad), rtol=rtol, atol=rtol)


# Recorded from Keras 3.15.1 (TensorFlow backend) applying the same three gradients to W0.
KERAS_RESULTS = {
    ("sgd_nesterov", "float32"): ["0x1.01a60ep-2", "-0x1.51149p+0", "0x1.27256ep+1", "0x1.bced92p-3"],
    ("sgd_nesterov", "float64"): ["0x1.01a60d9fba883p-2", "-0x1.51148fd63b795p+0", "0x1.27256ff0dc1e8p+1", "0x1.bced919624dd2p-3"],
    ("adam_amsgrad", "float32"): ["0x1.e93f2p-2", "-0x1.3f725ep+0", "0x1.ffb98cp+0", "-0x1.114d1cp-9"],
    ("adam_amsgrad", "float64"): ["0x1.e93f1dd38a3f8p-2", "-0x1.3f725ede123aap+0", "0x1.ffb98d1108b3fp+0", "-0x1.114e76a9fbe5ap-9"],
    ("adam", "float32"): ["0x1.8e3b98p-2", "-0x1.3d3c6ap+0", "0x1.fe9fcp+0", "-0x1.55a06p-7"],
    ("adam", "float64"): ["0x1.8e3b94da987abp-2", "-0x1.3d3c69bd3ea1cp+0", "0x1.fe9fc1544f5cbp+0", "-0x1.55a2152a002bep-7"],
}  # fmt: skip


@pytest.mark.parametrize("key", sorted(KERAS_RESULTS))
def test_optimizers_are_bitwise_keras(key: tuple[str, str]) -> None:
    name, dtype = key
    make = {
        "sgd_nesterov": lambda: optimizers.SGD(0.1, momentum=0.9, nesterov=True),
        "adam_amsgrad": lambda: optimizers.Adam(0.01, amsgrad=True),
        "adam": lambda: optimizers.Adam(0.05),
    }[name]
    layer = run_steps(make(), dtype)
    expected = np.array([float.fromhex(h) for h in KERAS_RESULTS[key]], dtype=dtype)
    np.testing.assert_array_equal(layer.bias, expected)


def test_adam_first_step_is_learning_rate_times_sign() -> None:
    layer = bias_only_layer("float64")
    optimizers.Adam(0.01).apply_gradients([(np.array([3.0, -0.5, 2.0, 1e-3]), layer, "bias")])
    # About lr * sign(g), the classic property; float32-cast betas move it by ~1e-5 relative.
    np.testing.assert_allclose(W0 - layer.bias, [0.01, -0.01, 0.01, 0.01 * 1e-3 / (1e-3 + 1e-7 / np.sqrt(1e-3))], rtol=1e-4)


def test_one_call_is_one_step_and_config_is_keras() -> None:
    layer = conv1d_rs.Conv1D(2, 2)
    layer.build((None, None, 1))
    opt = optimizers.Adam()
    assert opt.update(layer, {"kernel": np.ones((2, 1, 2)), "bias": np.ones(2)}) == 1
    assert opt.iterations == 1
    assert opt.get_config()["learning_rate"] == float(np.float32(0.001))
    assert list(opt.get_config())[:6] == ["name", "learning_rate", "weight_decay", "clipnorm", "global_clipnorm", "clipvalue"]
    again = optimizers.Adam.from_config(opt.get_config())
    assert again.get_config() == opt.get_config()
    assert optimizers.get({"class_name": "SGD", "config": {"learning_rate": 0.5}}).learning_rate == 0.5


def test_optimizer_refusals_and_missing_gradients() -> None:
    with pytest.raises(ValueError, match=r"`momentum` must be a float between \[0, 1\]"):
        optimizers.SGD(momentum=1)  # an int, refused as Keras refuses it
    with pytest.raises(ValueError, match="should be float"):
        optimizers.SGD(learning_rate=1)
    with pytest.raises(ValueError, match="do not support"):
        optimizers.Adam(clipnorm=1.0)
    with pytest.raises(ValueError, match="not recognized"):
        optimizers.Adam(bogus=1)
    layer = bias_only_layer("float32")
    opt = optimizers.SGD(0.1)
    with pytest.raises(ValueError, match="No gradients provided"):
        opt.apply_gradients([(None, layer, "kernel")])
    with pytest.warns(UserWarning, match="Gradients do not exist"):
        opt.apply_gradients([(None, layer, "kernel"), (np.ones(4), layer, "bias")])
    with pytest.raises(ValueError, match="has shape"):
        opt.apply_gradients([(np.ones(3), layer, "bias")])


def test_learning_rate_schedule_sees_the_iteration() -> None:
    layer = bias_only_layer("float64")
    opt = optimizers.SGD(lambda step: 0.1 * (step + 1))
    for _ in range(3):
        opt.apply_gradients([(np.ones(4), layer, "bias")])
    np.testing.assert_allclose(W0 - layer.bias, np.full(4, float(np.float32(0.1)) + float(np.float32(0.2)) + float(np.float32(0.3))))


# ---------------------------------------------------------------------------- constraints
def test_constraints_apply_after_each_update() -> None:
    layer = conv1d_rs.Conv1D(4, 2, dtype="float64", kernel_constraint="non_neg", bias_constraint=constraints.MaxNorm(1.0))
    layer.build((None, None, 3))
    rng = np.random.default_rng(0)
    kernel, bias = np.abs(rng.normal(size=(2, 3, 4))), np.array([0.3, -0.2, 0.1, 0.4])
    layer.set_weights([kernel, bias])
    g_kernel, g_bias = rng.normal(size=kernel.shape), np.array([-5.0, 5.0, 1.0, 0.0])
    opt = optimizers.SGD(0.1)
    opt.apply_gradients([(g_kernel, layer, "kernel"), (g_bias, layer, "bias")])
    lr = float(np.float32(0.1))
    np.testing.assert_array_equal(layer.kernel, np.maximum(kernel - g_kernel * lr, 0))
    np.testing.assert_allclose(layer.bias, constraints.MaxNorm(1.0)(bias - g_bias * lr), rtol=1e-15)
    assert abs(np.linalg.norm(layer.bias) - 1.0) < 1e-6
    # Only the weights updated in a step are projected, as Keras does.
    negative = -np.ones_like(kernel)
    layer.set_weights([negative, layer.bias])
    opt.apply_gradients([(np.zeros(4), layer, "bias")])
    np.testing.assert_array_equal(layer.kernel, negative)
    layer.apply_constraints()
    assert not layer.kernel.any()


# ---------------------------------------------------------------------------- Sequential
def causal_stack(dtype: str = "float32", **first: Any) -> conv1d_rs.Sequential:
    return conv1d_rs.Sequential(
        [
            conv1d_rs.Conv1D(8, 2, padding="causal", activation="tanh", dtype=dtype, **first),
            conv1d_rs.Conv1D(8, 2, padding="causal", dilation_rate=2, activation="tanh", dtype=dtype),
            conv1d_rs.Conv1D(1, 1, dtype=dtype),
        ]
    )


def test_sequential_vjp_matches_finite_differences() -> None:
    rng = np.random.default_rng(11)
    model = causal_stack("float64", activity_regularizer="l2")
    x = rng.normal(size=(2, 12, 1))
    model.build(x.shape)
    dy = rng.normal(size=model.compute_output_shape(x.shape))
    dx, grads = model.vjp(x, dy, include_activity=True)
    weights = model.get_weights()

    def objective(x_: np.ndarray, index: int, delta: np.ndarray) -> float:
        changed = [w + delta if i == index else w for i, w in enumerate(weights)]
        model.set_weights(changed)
        value = float(np.sum(model(x_) * dy)) + model.layers[0].losses[0]
        model.set_weights(weights)
        return value

    directional_check(lambda h, v: objective(x + h * v, -1, np.zeros(0)), dx, rng)
    flat = [g for layer_grads in grads for g in (layer_grads["kernel"], layer_grads["bias"])]
    for index, grad in enumerate(flat):
        directional_check(lambda h, v, i=index: objective(x, i, h * v), grad, rng)


def sine_task(rng: np.random.Generator, count: int = 32, steps: int = 48) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(steps + 1)[None, :] * 0.3 + rng.uniform(0, 2 * np.pi, size=(count, 1))
    series = (np.sin(t) + 0.5 * np.sin(2.1 * t) + 0.05 * rng.normal(size=t.shape)).astype(np.float32)
    return series[:, :-1, None], series[:, 1:, None]


def test_fit_reduces_the_loss() -> None:
    rng = np.random.default_rng(0)
    x, y = sine_task(rng)
    model = causal_stack(kernel_initializer={"class_name": "GlorotUniform", "config": {"seed": 1}})
    history = model.fit(x, y, optimizer=optimizers.Adam(0.01), epochs=15, batch_size=8, seed=0)
    losses = history.history["loss"]
    assert history.epoch == list(range(15))
    assert losses[-1] < 0.5 * losses[0], losses


def test_fit_epoch_loss_is_batch_weighted_mean_of_steps() -> None:
    rng = np.random.default_rng(1)
    x, y = sine_task(rng, count=10, steps=16)
    model = causal_stack(kernel_regularizer="l2", activity_regularizer="l1")
    model.build(x.shape)
    twin = conv1d_rs.Sequential.from_config(model.get_config())
    twin.set_weights(model.get_weights())
    history = model.fit(x, y, optimizer=optimizers.SGD(0.05, momentum=0.5), epochs=1, batch_size=4, shuffle=False)
    twin_opt = optimizers.SGD(0.05, momentum=0.5)
    batch_losses = [twin.train_on_batch(x[i : i + 4], y[i : i + 4], optimizer=twin_opt) for i in (0, 4, 8)]
    expected = (4 * batch_losses[0] + 4 * batch_losses[1] + 2 * batch_losses[2]) / 10
    assert history.history["loss"][0] == pytest.approx(expected, rel=1e-12)
    for a, b in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert twin_opt.iterations == 3


def test_fit_skips_untrainable_layers() -> None:
    rng = np.random.default_rng(2)
    x, y = sine_task(rng, count=4, steps=8)
    model = causal_stack()
    model.build(x.shape)
    model.layers[1].trainable = False
    before = [layer.get_weights() for layer in model.layers]
    model.fit(x, y, optimizer="sgd", epochs=2, batch_size=2)
    for a, b in zip(model.layers[1].get_weights(), before[1]):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(model.layers[0].kernel, before[0][0])


def test_sequential_config_round_trip() -> None:
    model = causal_stack(kernel_regularizer="l2")
    model.build((None, None, 1))
    config = model.get_config()
    assert [entry["class_name"] for entry in config["layers"]] == ["InputLayer", "Conv1D", "Conv1D", "Conv1D"]
    again = conv1d_rs.Sequential.from_config(config)
    strip = lambda c: [{k: v for k, v in e["config"].items() if k != "name"} for e in c["layers"]]
    assert strip(again.get_config()) == strip(config)
    assert again.built and again.count_params() == model.count_params()
    with pytest.raises(ValueError, match="layer 'max_pooling1d' is a MaxPooling1D"):
        conv1d_rs.Sequential.from_config(
            {"layers": config["layers"] + [{"class_name": "MaxPooling1D", "config": {"name": "max_pooling1d"}}]}
        )
    with pytest.raises(TypeError, match="Conv1D layers only"):
        conv1d_rs.Sequential([object()])  # type: ignore[list-item]


def test_sequential_runs_a_keras_saved_model() -> None:
    h5py = pytest.importorskip("h5py")
    import json

    models_dir = pathlib.Path(REFERENCE_DIR) / "models"
    with h5py.File(models_dir / "seed_example.h5", "r") as f:
        config = json.loads(f.attrs["model_config"])
        model = conv1d_rs.Sequential.from_config(config)
        # Keras 3's legacy HDF5 layout: model_weights/<layer>/<model>/<layer>/{kernel,bias}.
        weights = []
        for layer in model.layers:
            variables = f["model_weights"][layer.name][config["config"]["name"]][layer.name]
            weights += [variables["kernel"][()], variables["bias"][()]]
    model.set_weights(weights)
    io = np.load(models_dir / "seed_example.io.npz")
    np.testing.assert_allclose(model(io["x"]), io["y"], rtol=1e-5, atol=1e-5)
    assert model.losses == []
    dx, grads = model.vjp(io["x"], np.ones_like(io["y"]))
    assert dx.shape == io["x"].shape and len(grads) == len(model.layers)
