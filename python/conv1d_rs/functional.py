"""`conv1d`: the convolution alone, with Keras's argument names and padding rules."""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Iterator, NamedTuple, Optional, Sequence, Union

import numpy as np

from . import _core

__all__ = ["conv1d", "conv1d_backward", "compute_options", "ComputeOptions", "as_float_array", "normalize_int", "normalize_padding"]

IntLike = Union[int, Sequence[int]]

_PADDINGS = ("valid", "same", "causal")
_DATA_FORMATS = ("channels_last", "channels_first")


class ComputeOptions(NamedTuple):
    """How the core computes: `algorithm` ("auto", "gemm", "depthwise", "fft", "reference"),
    `simd` ("auto"; "avx2" to leave AVX-512 unused; "portable") and `parallel` (use the thread pool)."""

    algorithm: str = "auto"
    simd: str = "auto"
    parallel: bool = True


_ALGORITHMS = ("auto", "gemm", "depthwise", "fft", "reference")
_SIMD = ("auto", "avx2", "portable")
_OPTIONS: contextvars.ContextVar[ComputeOptions] = contextvars.ContextVar("conv1d_rs_options", default=ComputeOptions())


@contextlib.contextmanager
def compute_options(algorithm: str = "auto", simd: str = "auto", parallel: bool = True) -> Iterator[ComputeOptions]:
    """Within the block, force a kernel path, the portable (non-SIMD) code, or one thread.

    Results are bitwise the same whatever `parallel` is; the other settings exist for
    testing and benchmarking.
    """
    if algorithm not in _ALGORITHMS:
        raise ValueError(f"algorithm must be one of {_ALGORITHMS}; received {algorithm!r}")
    if simd not in _SIMD:
        raise ValueError(f"simd must be one of {_SIMD}; received {simd!r}")
    options = ComputeOptions(algorithm, simd, bool(parallel))
    token = _OPTIONS.set(options)
    try:
        yield options
    finally:
        _OPTIONS.reset(token)


def current_options() -> ComputeOptions:
    return _OPTIONS.get()


def prepare_kernel(kernel: np.ndarray, groups: int, one_call: bool = False) -> "_core.PreparedKernel":
    """Packs `kernel` for the core under the current compute options, to be kept for many
    calls or, with `one_call`, for a single one."""
    return _core.PreparedKernel(kernel, groups, *current_options(), one_call=one_call)


def normalize_int(value: Any, name: str) -> int:
    """An int or a 1-element sequence of ints, strictly positive (Keras `standardize_tuple`)."""
    if isinstance(value, (bool, np.bool_)):
        value = int(value)
    if isinstance(value, (int, np.integer)):
        items = (int(value),)
    else:
        try:
            items = tuple(value)
        except TypeError:
            raise TypeError(f"`{name}` must be an integer or a tuple of 1 integer. Received {name}={value!r}") from None
        if len(items) != 1:
            raise ValueError(f"The `{name}` argument must be a tuple of 1 integers. Received {name}={value!r}")
        if not isinstance(items[0], (int, np.integer)) or isinstance(items[0], (bool, np.bool_)):
            raise TypeError(f"The `{name}` argument must be a tuple of 1 integers. Received {name}={value!r}")
        items = (int(items[0]),)
    if items[0] <= 0:
        raise ValueError(
            f"The `{name}` argument must be a tuple of 1 integers. Received {name}={value!r}, "
            f"including values {{{items[0]}}} that do not satisfy `value > 0`"
        )
    return items[0]


def normalize_padding(padding: Any) -> str:
    if not isinstance(padding, str) or padding.lower() not in _PADDINGS:
        raise ValueError(
            "The `padding` argument must be one of {'valid', 'same', 'causal'}. " f"Received: {padding}"
        )
    return padding.lower()


def normalize_data_format(data_format: Any) -> str:
    value = str(data_format).lower()
    if value not in _DATA_FORMATS:
        raise ValueError(
            "The `data_format` argument must be one of {'channels_first', 'channels_last'}. "
            f"Received: data_format={value}"
        )
    return value


def as_float_array(x: Any, dtype: np.dtype, name: str) -> np.ndarray:
    """`x` as an array of `dtype` (a copy only when the dtype differs); refuses non-numbers."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"`{name}` must hold real numbers (bool, int or float); got dtype {arr.dtype}. "
            f"Convert it first, e.g. np.asarray({name}, dtype='float32')."
        )
    return arr.astype(dtype, copy=False)


def _result_dtype(x: np.ndarray, kernel: np.ndarray) -> np.dtype:
    # By kind and size, not equality: a big-endian float64 is not equal to np.float64.
    if any(a.dtype.kind == "f" and a.dtype.itemsize >= 8 for a in (x, kernel)):
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def conv1d(
    x: Any,
    kernel: Any,
    bias: Optional[Any] = None,
    strides: IntLike = 1,
    padding: str = "valid",
    data_format: str = "channels_last",
    dilation_rate: IntLike = 1,
    groups: int = 1,
) -> np.ndarray:
    """1-D convolution as Keras computes it, returning a new array.

    `x` is `(batch, steps, channels)` (or `(batch, channels, steps)` for channels_first),
    `kernel` is `(kernel_size, channels // groups, filters)`, `bias` is `(filters,)`.
    Computes in float64 when `x` or `kernel` is float64, else float32. Unlike the Keras
    layer, strides > 1 together with dilation_rate > 1 is allowed.
    """
    strides = normalize_int(strides, "strides")
    dilation_rate = normalize_int(dilation_rate, "dilation_rate")
    groups = normalize_int(groups, "groups")
    padding = normalize_padding(padding)
    data_format = normalize_data_format(data_format)
    x_arr, kernel_arr = np.asarray(x), np.asarray(kernel)
    for name, arr in (("x", x_arr), ("kernel", kernel_arr)):
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"`{name}` must hold real numbers; got dtype {arr.dtype}.")
    dtype = _result_dtype(x_arr, kernel_arr)
    x_arr = as_float_array(x_arr, dtype, "x")
    kernel_arr = as_float_array(kernel_arr, dtype, "kernel")
    check_input_rank(x_arr.shape, data_format)
    if kernel_arr.ndim != 3:
        raise ValueError(
            f"`kernel` must be 3-D (kernel_size, in_channels // groups, filters); got shape {kernel_arr.shape}."
        )
    bias_arr = None
    if bias is not None:
        bias_arr = as_float_array(bias, dtype, "bias")
        if bias_arr.ndim != 1:
            raise ValueError(f"`bias` must be 1-D (filters,); got shape {bias_arr.shape}.")
    prepared = prepare_kernel(kernel_arr, groups, one_call=True)
    return prepared.forward(x_arr, bias_arr, strides, padding, data_format, dilation_rate, groups)


def conv1d_backward(
    x: Any,
    kernel: Any,
    dy: Any,
    strides: IntLike = 1,
    padding: str = "valid",
    data_format: str = "channels_last",
    dilation_rate: IntLike = 1,
    groups: int = 1,
    use_bias: bool = True,
) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """Gradients of `sum(conv1d(x, kernel, bias) * dy)`: `(dx, dkernel, dbias)`.

    `dy` has the output's shape; `dbias` is None when `use_bias=False`. The dtype rules
    are those of `conv1d` (float64 if any operand is float64, else float32).
    """
    strides = normalize_int(strides, "strides")
    dilation_rate = normalize_int(dilation_rate, "dilation_rate")
    groups = normalize_int(groups, "groups")
    padding = normalize_padding(padding)
    data_format = normalize_data_format(data_format)
    arrays = [np.asarray(a) for a in (x, kernel, dy)]
    for name, arr in zip(("x", "kernel", "dy"), arrays):
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"`{name}` must hold real numbers; got dtype {arr.dtype}.")
    dtype = np.dtype(np.float64) if any(a.dtype == np.float64 for a in arrays) else np.dtype(np.float32)
    x_arr, kernel_arr, dy_arr = (as_float_array(a, dtype, n) for a, n in zip(arrays, ("x", "kernel", "dy")))
    check_input_rank(x_arr.shape, data_format, who="conv1d_backward")
    for name, arr in (("kernel", kernel_arr), ("dy", dy_arr)):
        if arr.ndim != 3:
            raise ValueError(f"`{name}` must be 3-D; got shape {arr.shape}.")
    options = current_options()
    return _core.conv1d_backward(
        x_arr, kernel_arr, dy_arr, strides, padding, data_format, dilation_rate, groups, bool(use_bias),
        "auto" if options.algorithm == "fft" else options.algorithm, options.simd, options.parallel,
    )


def check_input_rank(shape: Sequence[int], data_format: str, who: str = "conv1d") -> None:
    """Refuses anything but 3-D input, with the reshape that fixes the common 2-D mistake."""
    if len(shape) == 3:
        return
    layout = "(batch, steps, channels)" if data_format == "channels_last" else "(batch, channels, steps)"
    message = f"{who} expects a 3-D input {layout}; got shape {tuple(shape)}."
    if len(shape) == 2:
        batch, steps = shape
        fix = f"({batch}, {steps}, 1)" if data_format == "channels_last" else f"({batch}, 1, {steps})"
        message += (
            f" For {'one sequence' if batch == 1 else f'{batch} sequences'} of {steps} steps with one feature,"
            f" use x.reshape{fix}."
        )
    elif len(shape) == 1:
        fix = f"(1, {shape[0]}, 1)" if data_format == "channels_last" else f"(1, 1, {shape[0]})"
        message += f" For one sequence of {shape[0]} steps with one feature, use x.reshape{fix}."
    raise ValueError(message)
