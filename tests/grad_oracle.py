"""An independent plain-NumPy backward pass for Conv1D, the transpose of `oracle.conv1d_oracle`."""

from __future__ import annotations

from typing import Optional

import numpy as np
from oracle import padding_amounts


def conv1d_backward_oracle(
    x: np.ndarray,
    kernel: np.ndarray,
    dy: np.ndarray,
    strides: int = 1,
    padding: str = "valid",
    data_format: str = "channels_last",
    dilation_rate: int = 1,
    groups: int = 1,
    use_bias: bool = True,
) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """Float64 gradients of `sum(conv1d(x, kernel, bias) * dy)`: `(dx, dkernel, dbias)`."""
    x = np.asarray(x, dtype=np.float64)
    kernel = np.asarray(kernel, dtype=np.float64)
    dy = np.asarray(dy, dtype=np.float64)
    if data_format == "channels_first":
        x, dy = x.transpose(0, 2, 1), dy.transpose(0, 2, 1)
    batch, steps, channels = x.shape
    taps, cg, filters = kernel.shape
    fg = filters // groups
    out, left, right = padding_amounts(steps, taps, strides, dilation_rate, padding)
    assert dy.shape == (batch, out, filters)
    padded = np.zeros((batch, left + steps + right + dilation_rate * taps + strides * out, channels))
    padded[:, left : left + steps] = x
    d_padded = np.zeros_like(padded)
    d_kernel = np.zeros_like(kernel)
    for g in range(groups):
        channel_slice, filter_slice = slice(g * cg, (g + 1) * cg), slice(g * fg, (g + 1) * fg)
        dy_g = dy[:, :, filter_slice]
        for j in range(taps):
            # Within one tap the rows read are distinct, so a fancy-indexed += does not lose updates.
            rows = np.arange(out) * strides + j * dilation_rate
            d_kernel[j, :, filter_slice] += np.einsum("boc,bof->cf", padded[:, rows, channel_slice], dy_g)
            d_padded[:, rows, channel_slice] += dy_g @ kernel[j, :, filter_slice].T
    dx = d_padded[:, left : left + steps]
    if data_format == "channels_first":
        dx = dx.transpose(0, 2, 1)
    d_bias = dy.sum(axis=(0, 1)) if use_bias else None
    return dx, d_kernel, d_bias
