"""Every public case that real Keras computed or refused (tests/data/keras_reference)."""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pytest

import conv1d_rs
from conftest import as_computed, assert_close_keras, case_arrays, error_cases, forward_cases, tolerance

FORWARD = forward_cases()
ERRORS = error_cases()


def make_layer(case: dict[str, Any]) -> conv1d_rs.Conv1D:
    return conv1d_rs.Conv1D(**case["kwargs"], dtype=case["dtype"])


def loaded_layer(case: dict[str, Any], layer: conv1d_rs.Conv1D) -> conv1d_rs.Conv1D:
    arrays = case_arrays(case["id"])
    layer.build(case["input_shape"])
    layer.set_weights([arrays["kernel"]] + ([arrays["bias"]] if "bias" in arrays else []))
    return layer


def json_normal(value: Any) -> Any:
    """As JSON stores it, floats at float32 precision: Keras keeps `L1.l1` as a backend tensor,
    written as 0.009999999776482582 by TensorFlow and as 0.01 by JAX with x64 enabled."""

    def round_floats(v: Any) -> Any:
        if isinstance(v, float):
            return float(np.float32(v))
        if isinstance(v, dict):
            return {k: round_floats(x) for k, x in v.items()}
        if isinstance(v, list):
            return [round_floats(x) for x in v]
        return v

    return round_floats(json.loads(json.dumps(value)))


@pytest.mark.parametrize("case", FORWARD, ids=[c["id"] for c in FORWARD])
def test_forward_output_equals_keras(case: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    as_computed(case, monkeypatch)
    arrays = case_arrays(case["id"])
    layer = loaded_layer(case, make_layer(case))
    y = layer(arrays["x"])
    assert y.dtype == np.dtype(case["dtype"])
    assert list(y.shape) == case["output_shape"]
    assert_close_keras(y, arrays["y"], case["dtype"], case["kwargs"]["activation"])


@pytest.mark.parametrize("case", FORWARD, ids=[c["id"] for c in FORWARD])
def test_losses_equal_keras(case: dict[str, Any]) -> None:
    layer = loaded_layer(case, make_layer(case))
    layer(case_arrays(case["id"])["x"])
    assert len(layer.losses) == len(case["losses"])
    # Penalties sum many squares; float32 accumulation order differs from TensorFlow's.
    rtol = 1e-4 if case["dtype"] == "float32" else 1e-7
    np.testing.assert_allclose(layer.losses, case["losses"], rtol=rtol, atol=tolerance(case["dtype"]))


@pytest.mark.parametrize("case", FORWARD, ids=[c["id"] for c in FORWARD])
def test_config_matches_keras_and_round_trips(case: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    as_computed(case, monkeypatch)
    expected = json_normal(case["config"])
    ours = json_normal(make_layer(case).get_config())
    assert {k: v for k, v in ours.items() if k != "name"} == {k: v for k, v in expected.items() if k != "name"}
    assert list(ours) == list(expected), "key order differs from Keras"
    restored = conv1d_rs.Conv1D.from_config(case["config"])
    assert json_normal(restored.get_config()) == json_normal(expected)
    arrays = case_arrays(case["id"])
    y = loaded_layer(case, restored)(arrays["x"])
    assert_close_keras(y, arrays["y"], case["dtype"], case["kwargs"]["activation"])


def normalise_message(message: str) -> str:
    """Keras's wording without what varies between runs: layer names, ANSI codes, set order."""
    message = re.sub(r"\x1b\[[0-9;]*m|\[[0-9;]*m", "", message)
    message = re.sub(r"^Exception encountered when calling Conv1D\.call\(\)\.\s*", "", message)
    message = re.sub(r"\s*Arguments received by Conv1D\.call\(\).*$", "", message)
    message = re.sub(r"Input 0 with name 'None' of layer '[^']*' is incompatible with the layer: ", "", message)
    message = re.sub(r"\{('[a-z_]+'(, )?)+\}", lambda m: str(sorted(re.findall(r"'[a-z_]+'", m.group(0)))), message)
    return " ".join(message.split())


@pytest.mark.parametrize("case", ERRORS, ids=[c["id"] for c in ERRORS])
def test_refusals_match_keras(case: dict[str, Any]) -> None:
    assert case["raises"] == "ValueError"
    with pytest.raises(ValueError) as info:
        layer = make_layer(case)
        layer(np.zeros(case["input_shape"], dtype=case["dtype"]))
    keras_message = normalise_message(case["message"])
    ours = normalise_message(str(info.value))
    # Keras truncated long messages at the generator; compare the informative part.
    keras_core = keras_message.split(" Received: x.shape")[0] if "divisible by 2" in keras_message else keras_message
    assert keras_core in ours


def test_classic_rank_mistake_says_how_to_fix_it() -> None:
    layer = conv1d_rs.Conv1D(16, 3)
    with pytest.raises(ValueError, match=re.escape("use x.reshape(1, 56, 1)")):
        layer(np.zeros((1, 56), dtype="float32"))


def test_wrong_channel_count_after_build_names_both() -> None:
    layer = conv1d_rs.Conv1D(3, 3)
    layer(np.zeros((1, 5, 4), dtype="float32"))
    with pytest.raises(ValueError, match="to have value 4, but received input with shape \\(1, 5, 3\\)"):
        layer(np.zeros((1, 5, 3), dtype="float32"))


def kernel_paths(case: dict[str, Any]) -> list[dict[str, Any]]:
    kw = case["kwargs"]
    channels = case["input_shape"][-1 if kw["data_format"] == "channels_last" else 1]
    paths = [dict(algorithm="gemm"), dict(algorithm="gemm", simd="avx2"), dict(algorithm="gemm", simd="portable"), dict(algorithm="reference"),
             dict(algorithm="fft"), dict(algorithm="auto", parallel=False)]
    if kw["groups"] == channels == kw["filters"]:
        paths += [dict(algorithm="depthwise"), dict(algorithm="depthwise", simd="avx2"), dict(algorithm="depthwise", simd="portable")]
    return paths


@pytest.mark.parametrize("case", FORWARD, ids=[c["id"] for c in FORWARD])
def test_every_kernel_path_equals_keras(case: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    as_computed(case, monkeypatch)
    arrays = case_arrays(case["id"])
    layer = loaded_layer(case, make_layer(case))
    for path in kernel_paths(case):
        with conv1d_rs.compute_options(**path):
            y = layer(arrays["x"])
        assert_close_keras(y, arrays["y"], case["dtype"], case["kwargs"]["activation"])
