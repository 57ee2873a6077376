"""conv1d_rs.torch: autograd through the Rust core, checked against torch itself."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import conv1d_rs
import conv1d_rs.torch as ct

# (strides, dilation_rate, groups, kernel_size, steps) over every padding and layout.
GEOMETRIES = [(1, 1, 1, 3, 7), (2, 1, 2, 3, 9), (1, 3, 1, 2, 8), (3, 2, 4, 2, 10), (1, 1, 2, 1, 4), (2, 2, 1, 4, 9)]
PADDINGS = ["valid", "same", "causal"]
FORMATS = ["channels_last", "channels_first"]


def reference(x: Any, kernel: Any, bias: Any, strides: int, padding: str, data_format: str, dilation: int, groups: int) -> Any:
    """The same convolution with torch.nn.functional.conv1d and Keras's padding amounts."""
    ncw = x if data_format == "channels_first" else x.permute(0, 2, 1)
    span = dilation * (kernel.shape[0] - 1) + 1
    steps = ncw.shape[-1]
    if padding == "causal":
        ncw = torch.nn.functional.pad(ncw, (span - 1, 0))
    elif padding == "same":
        out = -(-steps // strides)
        total = max((out - 1) * strides + span - steps, 0)
        ncw = torch.nn.functional.pad(ncw, (total // 2, total - total // 2))
    weight = kernel.permute(2, 1, 0)  # (filters, in_channels // groups, kernel_size)
    y = torch.nn.functional.conv1d(ncw, weight, bias, stride=strides, dilation=dilation, groups=groups)
    return y if data_format == "channels_first" else y.permute(0, 2, 1)


def make_inputs(geometry: tuple[int, ...], data_format: str, dtype: Any, seed: int) -> tuple[Any, ...]:
    _, _, groups, kernel_size, steps = geometry
    gen = torch.Generator().manual_seed(seed)
    channels, filters = 2 * groups, 2 * groups
    shape = (2, steps, channels) if data_format == "channels_last" else (2, channels, steps)
    x = torch.randn(shape, generator=gen, dtype=dtype, requires_grad=True)
    kernel = torch.randn((kernel_size, channels // groups, filters), generator=gen, dtype=dtype, requires_grad=True)
    bias = torch.randn(filters, generator=gen, dtype=dtype, requires_grad=True)
    return x, kernel, bias


# Each padding with each layout, over varied geometries.
GRADCHECK_CASES = [
    (GEOMETRIES[0], "valid", "channels_last"),
    (GEOMETRIES[1], "same", "channels_first"),
    (GEOMETRIES[2], "causal", "channels_last"),
    (GEOMETRIES[3], "same", "channels_last"),
    (GEOMETRIES[5], "causal", "channels_first"),
    (GEOMETRIES[2], "valid", "channels_first"),
]


@pytest.mark.parametrize("geometry,padding,data_format", GRADCHECK_CASES)
def test_gradcheck_float64(geometry: tuple[int, ...], padding: str, data_format: str) -> None:
    strides, dilation, groups, _, _ = geometry
    x, kernel, bias = make_inputs(geometry, data_format, torch.float64, seed=1)
    fn = lambda x_, k_, b_: ct.conv1d(x_, k_, b_, strides, padding, data_format, dilation, groups)
    assert torch.autograd.gradcheck(fn, (x, kernel, bias))
    assert torch.autograd.gradcheck(lambda x_, k_: ct.conv1d(x_, k_, None, strides, padding, data_format, dilation, groups), (x, kernel))


# Every geometry, padding and layout in float64; float32 on the gradcheck subset.
AGREEMENT_CASES = [(g, p, f, torch.float64) for g in GEOMETRIES for p in PADDINGS for f in FORMATS] + [
    (g, p, f, torch.float32) for g, p, f in GRADCHECK_CASES
]


@pytest.mark.parametrize("geometry,padding,data_format,dtype", AGREEMENT_CASES)
def test_forward_and_gradients_equal_torch_conv1d(geometry: tuple[int, ...], padding: str, data_format: str, dtype: Any) -> None:
    strides, dilation, groups, _, _ = geometry
    x, kernel, bias = make_inputs(geometry, data_format, dtype, seed=2)
    y = ct.conv1d(x, kernel, bias, strides, padding, data_format, dilation, groups)
    y_ref = reference(x, kernel, bias, strides, padding, data_format, dilation, groups)
    assert y.dtype == dtype and y.shape == y_ref.shape
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(y, y_ref, rtol=tol, atol=tol)
    dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(3), dtype=dtype)
    grads = torch.autograd.grad((y * dy).sum(), (x, kernel, bias))
    grads_ref = torch.autograd.grad((y_ref * dy).sum(), (x, kernel, bias))
    for got, want in zip(grads, grads_ref):
        assert got.dtype == dtype
        torch.testing.assert_close(got, want, rtol=tol, atol=tol)


def test_module_trains_and_has_keras_layout() -> None:
    torch.manual_seed(0)
    layer = ct.Conv1d(3, 8, 3, padding="causal")  # sees steps t-2..t, so a one-step delay is learnable
    assert tuple(layer.kernel.shape) == (3, 3, 8) and tuple(layer.bias.shape) == (8,)
    assert not layer.bias.detach().any()
    limit = np.sqrt(6 / (3 * 3 + 3 * 8))
    assert float(layer.kernel.detach().abs().max()) <= limit
    head = torch.nn.Linear(8, 1)
    x = torch.randn(4, 20, 3)
    target = x[:, :, :1].roll(1, dims=1)
    params = list(layer.parameters()) + list(head.parameters())
    losses = []
    # Plain gradient descent by hand: torch.optim's first step imports torch._dynamo (seconds).
    for _ in range(60):
        loss = torch.nn.functional.mse_loss(head(torch.tanh(layer(x))), target)
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p -= 0.3 * g
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert "padding='causal'" in repr(layer)


def test_partial_gradients_no_bias_and_refusals() -> None:
    layer = ct.Conv1d(2, 4, 2, use_bias=False, dtype=torch.float64)
    assert layer.bias is None
    x = torch.randn(1, 5, 2, dtype=torch.float64)  # no gradient wanted for x
    layer(x).sum().backward()
    assert layer.kernel.grad is not None and layer.kernel.grad.shape == (2, 2, 4)
    with pytest.raises(TypeError, match="float32 or float64"):
        layer(x.to(torch.float16))
    with pytest.raises(ValueError, match="divisible by groups"):
        ct.Conv1d(3, 4, 2, groups=2)
    mixed = ct.conv1d(torch.randn(1, 5, 2, requires_grad=True), layer.kernel)  # float32 x, float64 kernel
    assert mixed.dtype == torch.float64


def test_importing_conv1d_rs_does_not_import_torch() -> None:
    code = "import sys, conv1d_rs; assert 'torch' not in sys.modules, 'conv1d_rs imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert conv1d_rs.torch is ct  # attribute access loads the submodule on demand
