"""PyTorch bindings: a differentiable Conv1D over the Rust core, with Keras's layout and padding.

`conv1d_rs.torch.Conv1d` is a `torch.nn.Module` whose `kernel` parameter has Keras's layout
`(kernel_size, in_channels // groups, filters)`; `conv1d_rs.torch.conv1d` is the function.
The forward pass runs `conv1d_rs.conv1d`, the backward pass `conv1d_rs.conv1d_backward`,
on CPU float32/float64 tensors (copied to NumPy and back; no double backward). Importing
`conv1d_rs` does not import torch; this module does.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Union

import numpy as np
import torch
from torch.autograd.function import FunctionCtx, once_differentiable

from . import functional

__all__ = ["Conv1d", "conv1d"]

IntLike = Union[int, tuple[int]]
_FLOAT_DTYPES = (torch.float32, torch.float64)


def _to_numpy(t: torch.Tensor, what: str) -> np.ndarray:
    if t.device.type != "cpu":
        raise ValueError(f"conv1d_rs computes on the CPU; `{what}` is on {t.device}. Move it with `.cpu()` first.")
    if t.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"conv1d_rs.torch needs float32 or float64 tensors; `{what}` is {t.dtype}.")
    return t.detach().numpy()


def _to_tensor(a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    # torch.from_numpy refuses read-only arrays' memory as writable; copy those.
    arr = a if a.flags.writeable else a.copy()
    return torch.from_numpy(arr).to(dtype)


class _Conv1dFunction(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: FunctionCtx,
        x: torch.Tensor,
        kernel: torch.Tensor,
        bias: Optional[torch.Tensor],
        strides: int,
        padding: str,
        data_format: str,
        dilation_rate: int,
        groups: int,
    ) -> torch.Tensor:
        x_np, kernel_np = _to_numpy(x, "x"), _to_numpy(kernel, "kernel")
        bias_np = None if bias is None else _to_numpy(bias, "bias")
        y = functional.conv1d(x_np, kernel_np, bias_np, strides, padding, data_format, dilation_rate, groups)
        ctx.save_for_backward(x, kernel, bias)  # type: ignore[arg-type]  # None is allowed
        ctx.conv_args = (strides, padding, data_format, dilation_rate, groups)  # type: ignore[attr-defined]
        return _to_tensor(y, torch.float64 if y.dtype == np.float64 else torch.float32)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[Optional[torch.Tensor], ...]:
        from . import conv1d_backward

        x, kernel, bias = ctx.saved_tensors
        strides, padding, data_format, dilation_rate, groups = ctx.conv_args
        dx, d_kernel, d_bias = conv1d_backward(
            x.detach().numpy(),
            kernel.detach().numpy(),
            _to_numpy(dy, "dy"),
            strides=strides,
            padding=padding,
            data_format=data_format,
            dilation_rate=dilation_rate,
            groups=groups,
            use_bias=bias is not None,
        )
        needs = ctx.needs_input_grad
        return (
            _to_tensor(dx, x.dtype) if needs[0] else None,
            _to_tensor(d_kernel, kernel.dtype) if needs[1] else None,
            _to_tensor(d_bias, bias.dtype) if bias is not None and d_bias is not None and needs[2] else None,
            None,
            None,
            None,
            None,
            None,
        )


def conv1d(
    x: torch.Tensor,
    kernel: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    strides: IntLike = 1,
    padding: str = "valid",
    data_format: str = "channels_last",
    dilation_rate: IntLike = 1,
    groups: int = 1,
) -> torch.Tensor:
    """`conv1d_rs.conv1d` on tensors, differentiable w.r.t. `x`, `kernel` and `bias`.

    `x` is `(batch, steps, channels)` (channels_last) or `(batch, channels, steps)`, `kernel`
    `(kernel_size, channels // groups, filters)`. The result is float64 when `x` or `kernel`
    is, else float32.
    """
    return _Conv1dFunction.apply(
        x,
        kernel,
        bias,
        functional.normalize_int(strides, "strides"),
        functional.normalize_padding(padding),
        functional.normalize_data_format(data_format),
        functional.normalize_int(dilation_rate, "dilation_rate"),
        functional.normalize_int(groups, "groups"),
    )


class Conv1d(torch.nn.Module):
    """A Keras-style Conv1D as a `torch.nn.Module` (no activation), computed by conv1d_rs.

    Parameters: `kernel` `(kernel_size, in_channels // groups, filters)`, initialised like
    Keras's glorot_uniform from torch's generator, and `bias` `(filters,)` of zeros (None
    when `use_bias=False`). Unlike `conv1d_rs.Conv1D`, strides > 1 with dilation > 1 is allowed.
    """

    def __init__(
        self,
        in_channels: int,
        filters: int,
        kernel_size: IntLike,
        strides: IntLike = 1,
        padding: str = "valid",
        data_format: str = "channels_last",
        dilation_rate: IntLike = 1,
        groups: int = 1,
        use_bias: bool = True,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.in_channels = functional.normalize_int(in_channels, "in_channels")
        self.filters = functional.normalize_int(filters, "filters")
        self.kernel_size = functional.normalize_int(kernel_size, "kernel_size")
        self.strides = functional.normalize_int(strides, "strides")
        self.padding = functional.normalize_padding(padding)
        self.data_format = functional.normalize_data_format(data_format)
        self.dilation_rate = functional.normalize_int(dilation_rate, "dilation_rate")
        self.groups = functional.normalize_int(groups, "groups")
        if dtype not in _FLOAT_DTYPES:
            raise TypeError(f"dtype must be torch.float32 or torch.float64; received {dtype}.")
        if self.in_channels % self.groups or self.filters % self.groups:
            raise ValueError(
                f"in_channels ({self.in_channels}) and filters ({self.filters}) must both be divisible by "
                f"groups ({self.groups})."
            )
        shape = (self.kernel_size, self.in_channels // self.groups, self.filters)
        self.kernel = torch.nn.Parameter(torch.empty(shape, dtype=dtype))
        self.bias: Optional[torch.nn.Parameter] = (
            torch.nn.Parameter(torch.empty(self.filters, dtype=dtype)) if use_bias else None
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Keras's defaults: glorot_uniform kernel (fans of the Keras layout), zero bias."""
        receptive_field = self.kernel.shape[0]
        fan_in = receptive_field * self.kernel.shape[1]
        fan_out = receptive_field * self.kernel.shape[2]
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        with torch.no_grad():
            self.kernel.uniform_(-limit, limit)
            if self.bias is not None:
                self.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv1d(
            x, self.kernel, self.bias, self.strides, self.padding, self.data_format, self.dilation_rate, self.groups
        )

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.filters}, kernel_size={self.kernel_size}, strides={self.strides}, "
            f"padding={self.padding!r}, data_format={self.data_format!r}, dilation_rate={self.dilation_rate}, "
            f"groups={self.groups}, use_bias={self.bias is not None}"
        )
