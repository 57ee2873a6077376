"""Shared fixtures: the real-Keras reference cases in tests/data/keras_reference."""

from __future__ import annotations

import json
import pathlib
from functools import lru_cache
from typing import Any

import numpy as np
import pytest

REFERENCE_DIR = pathlib.Path(__file__).parent / "data" / "keras_reference"


@lru_cache(maxsize=None)
def reference_cases() -> list[dict[str, Any]]:
    return json.loads((REFERENCE_DIR / "cases.json").read_text())["cases"]


@lru_cache(maxsize=None)
def reference_arrays() -> dict[str, np.ndarray]:
    with np.load(REFERENCE_DIR / "cases.npz") as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(autouse=True)
def _keras_default_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start from Keras's default backend whatever the shell set: float64 gelu
    follows KERAS_BACKEND, as Keras's does."""
    monkeypatch.delenv("KERAS_BACKEND", raising=False)


def as_computed(case: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Selects the Keras backend that computed `case`."""
    monkeypatch.setenv("KERAS_BACKEND", case["backend"])


def case_arrays(case_id: str) -> dict[str, np.ndarray]:
    prefix = case_id + "/"
    return {k[len(prefix):]: v for k, v in reference_arrays().items() if k.startswith(prefix)}


def forward_cases() -> list[dict[str, Any]]:
    return [c for c in reference_cases() if c["kind"] == "forward"]


def error_cases() -> list[dict[str, Any]]:
    return [c for c in reference_cases() if c["kind"] == "error"]


def tolerance(dtype: str) -> float:
    """The README's tolerances: atol = rtol = 1e-5 (float32) or 1e-8 (float64)."""
    return 1e-5 if dtype == "float32" else 1e-8


def assert_close_keras(actual: np.ndarray, expected: np.ndarray, dtype: str, activation: Any = None) -> None:
    """`|a - e| <= tol * (1 + |e|)`; `exponential` amplifies the convolution's rounding, so it is relative."""
    assert actual.shape == expected.shape
    tol = tolerance(dtype)
    if activation == "exponential":
        tol *= 10
    err = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    bound = tol * (1 + np.abs(expected.astype(np.float64)))
    finite = np.isfinite(expected)
    assert np.array_equal(np.isfinite(actual), finite), "non-finite values differ"
    worst = np.max((err / bound)[finite], initial=0.0)
    assert worst <= 1.0, f"max error {worst:.3g} x tolerance"
