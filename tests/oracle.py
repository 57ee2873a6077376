"""An independent plain-NumPy Conv1D, written from the Keras formulas (SPEC section 3)."""

from __future__ import annotations

from typing import Optional

import numpy as np


def padding_amounts(steps: int, kernel_size: int, strides: int, dilation: int, padding: str) -> tuple[int, int, int]:
    """(output steps, left pad, right pad)."""
    span = dilation * (kernel_size - 1) + 1
    if padding == "valid":
        return (steps - span) // strides + 1, 0, 0
    out = -(-steps // strides)
    if padding == "causal":
        return out, span - 1, 0
    total = max((out - 1) * strides + span - steps, 0)
    return out, total // 2, total - total // 2


def conv1d_oracle(
    x: np.ndarray,
    kernel: np.ndarray,
    bias: Optional[np.ndarray] = None,
    strides: int = 1,
    padding: str = "valid",
    data_format: str = "channels_last",
    dilation_rate: int = 1,
    groups: int = 1,
) -> np.ndarray:
    """Float64 result of the convolution, one tap at a time."""
    x = np.asarray(x, dtype=np.float64)
    kernel = np.asarray(kernel, dtype=np.float64)
    if data_format == "channels_first":
        x = x.transpose(0, 2, 1)
    batch, steps, channels = x.shape
    taps, cg, filters = kernel.shape
    fg = filters // groups
    out, left, right = padding_amounts(steps, taps, strides, dilation_rate, padding)
    padded = np.zeros((batch, left + steps + right + dilation_rate * taps + strides * out, channels))
    padded[:, left : left + steps] = x
    y = np.zeros((batch, out, filters))
    for g in range(groups):
        for j in range(taps):
            rows = padded[:, np.arange(out) * strides + j * dilation_rate, g * cg : (g + 1) * cg]
            y[:, :, g * fg : (g + 1) * fg] += rows @ kernel[j, :, g * fg : (g + 1) * fg]
    if bias is not None:
        y += np.asarray(bias, dtype=np.float64)
    return y.transpose(0, 2, 1) if data_format == "channels_first" else y
