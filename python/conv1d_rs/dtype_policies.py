"""Keras dtype policies: the dtype of the weights and the dtype the layer computes in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["DTypePolicy", "get"]

# (variable dtype, compute dtype) per policy name; bfloat16 has no NumPy dtype.
_POLICIES = {
    "float32": ("float32", "float32"),
    "float64": ("float64", "float64"),
    "float16": ("float16", "float16"),
    "mixed_float16": ("float32", "float16"),
}


@dataclass(frozen=True)
class DTypePolicy:
    """A named policy such as "float32" or "mixed_float16"."""

    name: str

    @property
    def variable_dtype(self) -> np.dtype:
        return np.dtype(_POLICIES[self.name][0])

    @property
    def compute_dtype(self) -> np.dtype:
        return np.dtype(_POLICIES[self.name][1])

    @property
    def kernel_dtype(self) -> np.dtype:
        """The dtype the Rust core computes in: float16 work runs in float32 and is rounded after."""
        return np.dtype("float64") if self.compute_dtype == np.float64 else np.dtype("float32")

    def get_config(self) -> dict[str, Any]:
        return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": self.name}, "registered_name": None}


def get(identifier: Any) -> DTypePolicy:
    """A policy from None (float32), a name, a NumPy dtype, a policy, or a Keras config dict."""
    if identifier is None:
        return DTypePolicy("float32")
    if isinstance(identifier, DTypePolicy):
        return identifier
    if isinstance(identifier, dict):
        config = identifier.get("config", identifier)
        name = config.get("name") if isinstance(config, dict) else None
        if name is None:
            raise ValueError(f"Cannot interpret dtype policy config: {identifier!r}; expected {{'config': {{'name': 'float32'}}}}")
        return get(name)
    if isinstance(identifier, (np.dtype, type)):
        try:
            identifier = np.dtype(identifier).name
        except TypeError:
            pass
    if isinstance(identifier, str) and identifier in _POLICIES:
        return DTypePolicy(identifier)
    raise ValueError(
        f"Cannot convert '{identifier}' to a supported dtype policy. "
        f"Supported: {', '.join(_POLICIES)} (bfloat16 has no NumPy dtype)."
    )
