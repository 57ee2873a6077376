"""No input crashes the package, nothing the caller owns is changed, and every failure is one
of the documented exceptions. Cases that could take the interpreter down run in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import conv1d_rs
from conv1d_rs import _core
from grad_oracle import conv1d_backward_oracle
from oracle import conv1d_oracle

DOCUMENTED = (TypeError, ValueError, MemoryError, OverflowError)


def run_isolated(code: str, timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh interpreter; a crash shows as a signal exit code, a hang as a timeout."""
    prelude = "import numpy as np, conv1d_rs\nfrom conv1d_rs import _core\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


# Each case must raise one of the named exceptions (or return), in a process that survives.
ISOLATED_CASES = {
    # sizes and parameters far outside anything sensible
    "strides 2**63": ("conv1d_rs.conv1d(np.ones((1, 8, 1)), np.ones((2, 1, 1)), strides=2**63)", ()),
    "strides 2**64": ("conv1d_rs.conv1d(np.ones((1, 8, 1)), np.ones((2, 1, 1)), strides=2**64)", (OverflowError,)),
    "dilation 2**62": (
        "conv1d_rs.conv1d(np.ones((1, 8, 1)), np.ones((2, 1, 1)), dilation_rate=2**62, padding='same')",
        (OverflowError,),
    ),
    "dilation 2**63 causal": (
        "conv1d_rs.conv1d(np.ones((1, 8, 1)), np.ones((3, 1, 1)), dilation_rate=2**63, padding='causal')",
        (OverflowError,),
    ),
    "dilation 2**64": ("conv1d_rs.conv1d(np.ones((1, 8, 1)), np.ones((2, 1, 1)), dilation_rate=2**64)", (OverflowError,)),
    "dilation 2**40 same": (
        "conv1d_rs.conv1d(np.ones((1, 8, 1)), np.ones((2, 1, 1)), dilation_rate=2**40, padding='same')",
        (),
    ),
    "groups 2**64": ("conv1d_rs.conv1d(np.ones((1, 8, 1)), np.ones((2, 1, 1)), groups=2**64)", (OverflowError, ValueError)),
    "layer strides 2**64": ("conv1d_rs.Conv1D(2, 2, strides=2**64)(np.ones((1, 8, 1)))", (OverflowError,)),
    "layer dilation 2**62": (
        "conv1d_rs.Conv1D(2, 2, dilation_rate=2**62, padding='causal')(np.ones((1, 8, 1)))",
        (OverflowError,),
    ),
    "layer kernel_size 2**62": ("conv1d_rs.Conv1D(2, 2**62)(np.ones((1, 8, 1)))", (ValueError, MemoryError)),
    "layer filters 2**40": ("conv1d_rs.Conv1D(2**40, 2)(np.ones((1, 8, 1), 'float32'))", (ValueError, MemoryError)),
    # broadcast (zero-stride) arrays whose size is only virtual
    "broadcast input, huge output": (
        "x = np.broadcast_to(np.ones((1, 1, 1), 'float32'), (2**20, 2**20, 1))\n"
        "conv1d_rs.conv1d(x, np.ones((1, 1, 2**10), 'float32'))",
        (MemoryError,),
    ),
    "broadcast input, unaddressable output": (
        "x = np.broadcast_to(np.ones((1, 1, 1), 'float32'), (2**30, 2**30, 1))\n"
        "conv1d_rs.conv1d(x, np.ones((1, 1, 16), 'float32'))",
        (MemoryError, ValueError),
    ),
    "broadcast input to the layer": (
        "x = np.broadcast_to(np.ones((1, 1, 1), 'float32'), (2**20, 2**20, 1))\n"
        "conv1d_rs.Conv1D(2**10, 1)(x)",
        (MemoryError,),
    ),
    "broadcast kernel, huge packing": (
        "k = np.broadcast_to(np.ones((1, 1, 1), 'float32'), (1, 1, 2**42))\n"
        "conv1d_rs.conv1d(np.ones((1, 8, 1), 'float32'), k)",
        (MemoryError,),
    ),
    "broadcast kernel, huge gemm packing": (
        "k = np.broadcast_to(np.ones((1, 1, 1), 'float32'), (2**21, 1, 2**21))\n"
        "conv1d_rs.conv1d(np.ones((1, 8, 1), 'float32'), k, padding='same')",
        (MemoryError,),
    ),
    "broadcast kernel to PreparedKernel": (
        "_core.PreparedKernel(np.broadcast_to(np.ones((1, 1, 1)), (2**20, 2**10, 2**14)), 1, 'gemm')",
        (MemoryError,),
    ),
    # the core called directly with bad arguments
    "prepared: kernel is a list": ("_core.PreparedKernel([[[1.0]]])", (TypeError,)),
    "prepared: kernel is a string": ("_core.PreparedKernel('kernel')", (TypeError,)),
    "prepared: kernel is None": ("_core.PreparedKernel(None)", (TypeError,)),
    "prepared: 0-d kernel": ("_core.PreparedKernel(np.array(1.0))", (ValueError,)),
    "prepared: 2-d kernel": ("_core.PreparedKernel(np.ones((2, 2)))", (ValueError,)),
    "prepared: object kernel": ("_core.PreparedKernel(np.array([[[object()]]]))", (TypeError,)),
    "prepared: complex kernel": ("_core.PreparedKernel(np.ones((1, 1, 1), complex))", (TypeError,)),
    "prepared: big-endian kernel": ("_core.PreparedKernel(np.ones((1, 1, 1), '>f8'))", (TypeError,)),
    "prepared: negative groups": ("_core.PreparedKernel(np.ones((2, 1, 1)), -1)", (OverflowError,)),
    "prepared: zero groups": ("_core.PreparedKernel(np.ones((2, 1, 1)), 0)", (ValueError,)),
    "prepared: bad algorithm": ("_core.PreparedKernel(np.ones((2, 1, 1)), 1, 'fast')", (ValueError,)),
    "prepared: depthwise on a dense kernel": ("_core.PreparedKernel(np.ones((2, 3, 4)), 1, 'depthwise')", (ValueError,)),
    "prepared: empty kernel": ("_core.PreparedKernel(np.ones((0, 1, 1))).forward(np.ones((1, 4, 1)))", (ValueError,)),
    "prepared: no filters": ("_core.PreparedKernel(np.ones((1, 1, 0))).forward(np.ones((1, 4, 1)))", (ValueError,)),
    "forward: x is a list": ("_core.PreparedKernel(np.ones((1, 1, 1))).forward([[[1.0]]])", (TypeError,)),
    "forward: x is None": ("_core.PreparedKernel(np.ones((1, 1, 1))).forward(None)", (TypeError,)),
    "forward: x of another dtype": (
        "_core.PreparedKernel(np.ones((1, 1, 1))).forward(np.ones((1, 3, 1), 'float32'))",
        (TypeError,),
    ),
    "forward: 2-d x": ("_core.PreparedKernel(np.ones((1, 1, 1))).forward(np.ones((3, 1)))", (TypeError,)),
    "forward: 4-d x": ("_core.PreparedKernel(np.ones((1, 1, 1))).forward(np.ones((1, 3, 1, 1)))", (TypeError,)),
    "forward: 2-d bias": (
        "_core.PreparedKernel(np.ones((1, 1, 1))).forward(np.ones((1, 3, 1)), np.ones((1, 1)))",
        (TypeError,),
    ),
    "forward: wrong bias length": (
        "_core.PreparedKernel(np.ones((1, 1, 1))).forward(np.ones((1, 3, 1)), np.ones(2))",
        (ValueError,),
    ),
    "forward: negative strides": (
        "_core.PreparedKernel(np.ones((1, 1, 1))).forward(np.ones((1, 3, 1)), None, -1)",
        (OverflowError,),
    ),
    "forward: zero strides": (
        "_core.PreparedKernel(np.ones((1, 1, 1))).forward(np.ones((1, 3, 1)), None, 0)",
        (ValueError,),
    ),
    "forward: huge dilation": (
        "_core.PreparedKernel(np.ones((2, 1, 1))).forward(np.ones((1, 3, 1)), None, 1, 'same', 'channels_last', 2**63)",
        (OverflowError,),
    ),
    "forward: padding None": (
        "_core.PreparedKernel(np.ones((1, 1, 1))).forward(np.ones((1, 3, 1)), None, 1, None)",
        (TypeError,),
    ),
    "forward: unknown padding": (
        "_core.PreparedKernel(np.ones((1, 1, 1))).forward(np.ones((1, 3, 1)), None, 1, 'full')",
        (ValueError,),
    ),
    "forward: other groups": (
        "_core.PreparedKernel(np.ones((1, 1, 2)), 2).forward(np.ones((1, 3, 2)), None, 1, 'valid', 'channels_last', 1, 1)",
        (ValueError,),
    ),
    "forward: wrong channels": ("_core.PreparedKernel(np.ones((1, 2, 1))).forward(np.ones((1, 3, 3)))", (ValueError,)),
    "forward: broadcast huge input": (
        "x = np.broadcast_to(np.ones((1, 1, 1)), (2**20, 2**20, 1))\n"
        "_core.PreparedKernel(np.ones((1, 1, 2**10))).forward(x)",
        (MemoryError,),
    ),
}


BATCH_RUNNER = """
import json, sys
for name, code in json.loads(sys.stdin.read()):
    try:
        exec(code)
        outcome = "returned"
    except BaseException as e:
        outcome = type(e).__name__
    print(json.dumps([name, outcome]), flush=True)
"""


@pytest.fixture(scope="module")
def isolated_outcomes() -> dict[str, str]:
    """Runs the cases in as few interpreters as possible: after a crash, a fresh one goes on
    from the next case, and the crashed case's outcome is the exit code and error output."""
    pending = list(ISOLATED_CASES.items())
    outcomes: dict[str, str] = {}
    while pending:
        result = subprocess.run(
            [sys.executable, "-c", "import numpy as np, conv1d_rs\nfrom conv1d_rs import _core\n" + BATCH_RUNNER],
            input=json.dumps([(name, code) for name, (code, _) in pending]),
            capture_output=True, text=True, timeout=300,
        )
        for line in result.stdout.splitlines():
            name, outcome = json.loads(line)
            outcomes[name] = outcome
        pending = [case for case in pending if case[0] not in outcomes]
        if pending and result.returncode != 0:
            outcomes[pending.pop(0)[0]] = f"crashed with exit code {result.returncode}: {result.stderr[-2000:]}"
        elif pending:
            raise AssertionError(f"the runner stopped early: {result.stderr[-2000:]}")
    return outcomes


@pytest.mark.parametrize("case", list(ISOLATED_CASES), ids=list(ISOLATED_CASES))
def test_hostile_calls_raise_documented_exceptions(case: str, isolated_outcomes: dict[str, str]) -> None:
    allowed = [e.__name__ for e in ISOLATED_CASES[case][1]] or ["returned"]
    assert isolated_outcomes[case] in allowed


# ---------------------------------------------------------------------- inputs of every kind
@pytest.mark.parametrize("api", ["function", "layer"])
@pytest.mark.parametrize("shape", [(56,), (1, 56), (4, 56), (1, 2, 56, 1), ()])
def test_wrong_rank_is_a_value_error_with_a_hint(api: str, shape: tuple) -> None:
    x = np.ones(shape, dtype="float32")
    with pytest.raises(ValueError, match="3-D input") as info:
        if api == "function":
            conv1d_rs.conv1d(x, np.ones((3, 1, 2), "float32"))
        else:
            conv1d_rs.Conv1D(2, 3)(x)
    if len(shape) in (1, 2):
        steps = shape[-1]
        assert f"reshape({shape[0] if len(shape) == 2 else 1}, {steps}, 1)" in str(info.value)


def test_wrong_channels_kernel_and_bias_shapes() -> None:
    x = np.ones((2, 10, 4), "float32")
    with pytest.raises(ValueError, match="channels"):
        conv1d_rs.conv1d(x, np.ones((3, 5, 2), "float32"))
    with pytest.raises(ValueError, match="3-D"):
        conv1d_rs.conv1d(x, np.ones((3, 4), "float32"))
    with pytest.raises(ValueError, match="1-D"):
        conv1d_rs.conv1d(x, np.ones((3, 4, 2), "float32"), np.ones((2, 1), "float32"))
    with pytest.raises(ValueError, match="bias"):
        conv1d_rs.conv1d(x, np.ones((3, 4, 2), "float32"), np.ones(3, "float32"))
    layer = conv1d_rs.Conv1D(2, 3)
    layer(x)
    with pytest.raises(ValueError, match="channels"):
        layer(np.ones((2, 10, 5), "float32"))
    with pytest.raises(ValueError):
        layer.set_weights([np.ones((3, 5, 2)), np.ones(2)])
    with pytest.raises(ValueError):
        layer.set_weights([np.ones((3, 4, 2)), np.ones(3)])


NON_NUMBERS = {
    "object": lambda shape: np.full(shape, object()),
    "complex": lambda shape: np.ones(shape, complex),
    "str": lambda shape: np.full(shape, "a"),
    "bytes": lambda shape: np.full(shape, b"a"),
    "datetime": lambda shape: np.zeros(shape, "datetime64[s]"),
    "record": lambda shape: np.zeros(shape, [("a", "f4"), ("b", "f4")]),
    "void": lambda shape: np.zeros(shape, "V4"),
}


@pytest.mark.parametrize("kind", list(NON_NUMBERS))
@pytest.mark.parametrize("which", ["x", "kernel", "bias", "layer input", "layer weights"])
def test_non_numbers_are_type_errors(kind: str, which: str) -> None:
    make = NON_NUMBERS[kind]
    x, kernel, bias = np.ones((1, 5, 2)), np.ones((2, 2, 3)), np.ones(3)
    with pytest.raises(TypeError):
        if which == "x":
            conv1d_rs.conv1d(make(x.shape), kernel, bias)
        elif which == "kernel":
            conv1d_rs.conv1d(x, make(kernel.shape), bias)
        elif which == "bias":
            conv1d_rs.conv1d(x, kernel, make(bias.shape))
        elif which == "layer input":
            conv1d_rs.Conv1D(3, 2)(make(x.shape))
        else:
            layer = conv1d_rs.Conv1D(3, 2)
            layer.build(x.shape)
            layer.set_weights([make(kernel.shape), bias])
    with pytest.raises(TypeError):
        _core.PreparedKernel(make(kernel.shape))
    with pytest.raises(TypeError):
        _core.PreparedKernel(kernel).forward(make(x.shape))


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 9), st.integers(1, 3), st.integers(1, 3), st.sampled_from(["valid", "same", "causal"]),
    st.sampled_from(["channels_last", "channels_first"]), st.sampled_from(["float32", "float64"]),
    st.sampled_from(["auto", "gemm", "depthwise", "reference"]), st.sampled_from([np.nan, np.inf, -np.inf]),
    st.integers(0, 2**32 - 1),
)
def test_nan_and_inf_reach_exactly_the_outputs_whose_window_holds_them(k, s, d, padding, data_format, dtype, algorithm, special, seed):
    rng = np.random.default_rng(seed)
    channels = 3
    depthwise = algorithm == "depthwise"
    steps = d * (k - 1) + 1 + int(rng.integers(0, 30))
    # Small integers: every finite sum is exact, so finite outputs must match to the bit.
    x = rng.integers(-3, 4, (2, steps, channels)).astype(dtype)
    kernel = rng.integers(-3, 4, (k, 1 if depthwise else channels, channels if depthwise else 4)).astype(dtype)
    groups = channels if depthwise else 1
    for _ in range(int(rng.integers(1, 4))):
        x[rng.integers(2), rng.integers(steps), rng.integers(channels)] = special
    if data_format == "channels_first":
        x = np.ascontiguousarray(x.transpose(0, 2, 1))
    with np.errstate(invalid="ignore"):
        expected = conv1d_oracle(x, kernel, None, s, padding, data_format, d, groups).astype(dtype)
    with conv1d_rs.compute_options(algorithm=algorithm):
        y = conv1d_rs.conv1d(x, kernel, None, s, padding, data_format, d, groups)
    np.testing.assert_array_equal(y, expected)  # NaN where NaN, inf of the same sign where inf


def test_a_nan_at_one_step_touches_only_the_windows_that_read_it() -> None:
    x = np.zeros((1, 40, 2), "float32")
    x[0, 17, 1] = np.nan
    kernel = np.ones((3, 2, 2), "float32")
    y = conv1d_rs.conv1d(x, kernel, padding="same", dilation_rate=2)
    # Output t reads steps t - 2, t, t + 2.
    assert sorted(np.flatnonzero(np.isnan(y[0, :, 0]))) == [15, 17, 19]
    assert np.array_equal(np.isnan(y[0, :, 0]), np.isnan(y[0, :, 1]))


def test_empty_batches_and_steps() -> None:
    kernel = np.ones((3, 2, 4), "float32")
    assert conv1d_rs.conv1d(np.ones((0, 5, 2), "float32"), kernel).shape == (0, 3, 4)
    assert conv1d_rs.conv1d(np.ones((2, 0, 2), "float32"), kernel, padding="same").shape == (2, 0, 4)
    assert conv1d_rs.conv1d(np.ones((2, 2, 0), "float32"), kernel, padding="causal", data_format="channels_first").shape == (2, 4, 0)
    assert conv1d_rs.Conv1D(4, 3, padding="causal")(np.ones((0, 7, 2))).shape == (0, 7, 4)
    with pytest.raises(ValueError, match="zero or negative"):
        conv1d_rs.conv1d(np.ones((2, 0, 2), "float32"), kernel)


def _unaligned(a: np.ndarray) -> np.ndarray:
    buffer = np.zeros(a.nbytes + 1, np.uint8)
    view = np.frombuffer(buffer.data, a.dtype, a.size, offset=1).reshape(a.shape)
    view[...] = a
    return view


def _record_field(a: np.ndarray) -> np.ndarray:
    records = np.zeros(a.shape, [("v", a.dtype), ("pad", "u1")])
    records["v"] = a
    return records["v"]  # strides are not multiples of the element size


def _read_only(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.flags.writeable = False
    return a


LAYOUTS = {
    "fortran": np.asfortranarray,
    "negative strides": lambda a: a[::-1, ::-1, ::-1].copy()[::-1, ::-1, ::-1],
    "every other step": lambda a: np.repeat(a, 2, axis=1)[:, ::2],
    "zero stride": lambda a: np.broadcast_to(a[:1, :1], a.shape),
    "read-only": _read_only,
    "unaligned": _unaligned,
    "record field": _record_field,
    "big-endian": lambda a: a.astype(a.dtype.newbyteorder(">")),
    "empty, negative strides": lambda a: a[:, :0][:, ::-1],
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_memory_layout_gives_the_same_answer_and_is_left_alone(layout: str, dtype: str) -> None:
    rng = np.random.default_rng(5)
    make = LAYOUTS[layout]
    x = make(rng.standard_normal((3, 11, 4)).astype(dtype))
    kernel = make(rng.standard_normal((3, 4, 5)).astype(dtype))
    bias = rng.standard_normal(5).astype(dtype)
    bias = make(bias[None, None, :])[0, 0] if layout not in ("zero stride", "empty, negative strides") else bias
    if layout == "empty, negative strides":
        kernel = rng.standard_normal((3, 4, 5)).astype(dtype)
    before = [a.copy() for a in (x, kernel, bias)]
    padding = "same"
    expected = conv1d_oracle(np.array(x), np.array(kernel), np.array(bias), padding=padding)
    tol = 1e-5 if dtype == "float32" else 1e-12
    y = conv1d_rs.conv1d(x, kernel, bias, padding=padding)
    np.testing.assert_allclose(y, expected, rtol=tol, atol=tol)
    native = np.dtype(dtype)
    if x.dtype == native and kernel.dtype == native and bias.dtype == native:
        y = _core.PreparedKernel(kernel).forward(x, bias, 1, padding)
        np.testing.assert_allclose(y, expected, rtol=tol, atol=tol)
    layer = conv1d_rs.Conv1D(5, 3, padding=padding, dtype=dtype)
    layer.build(x.shape)
    layer.set_weights([kernel, bias])
    np.testing.assert_allclose(layer(x), expected, rtol=tol, atol=tol)
    for original, after in zip(before, (x, kernel, bias)):
        np.testing.assert_array_equal(original, after)


def test_results_are_the_callers_own_arrays() -> None:
    x = np.ones((1, 4 << 20, 1), "float32")  # large enough for recycled output buffers
    kernel = np.ones((1, 1, 1), "float32")
    dropped = conv1d_rs.conv1d(x, kernel)
    del dropped
    first = conv1d_rs.conv1d(x, kernel)  # in the dropped array's memory
    second = conv1d_rs.conv1d(x, kernel)
    assert first.flags.writeable and not np.shares_memory(first, second)
    first[...] = 7
    assert np.all(second == 1) and np.all(x == 1)


@pytest.mark.parametrize(
    "channels, kwargs",
    [
        (8, {}),  # dx on the forward kernels: every element written
        (8, {"strides": 4, "padding": "same"}),  # summed into zeros; some inputs never read
        (8, {"strides": 2, "data_format": "channels_first"}),
        (1, {"strides": 2}),  # gathered from one GEMM over the kernel's columns
    ],
)
def test_gradients_in_recycled_memory_match_the_oracle(channels: int, kwargs: dict) -> None:
    # A dropped output full of other values goes back to the pool, and dx is then written in
    # its memory: none of those values may show through.
    rng = np.random.default_rng(3)
    first = kwargs.get("data_format") == "channels_first"
    steps = (1 << 20) // (4 * channels)  # dx of 1M elements, large enough to be pooled
    x = rng.standard_normal((4, channels, steps) if first else (4, steps, channels)).astype("float32")
    kernel = rng.standard_normal((3, channels, 6)).astype("float32")
    dy = rng.standard_normal(conv1d_rs.conv1d(x, kernel, **kwargs).shape).astype("float32")
    stale = conv1d_rs.conv1d(np.full((1, x.size, 1), 5.0, "float32"), np.ones((1, 1, 1), "float32"))
    del stale
    dx, dkernel, dbias = conv1d_rs.conv1d_backward(x, kernel, dy, **kwargs)
    expected = conv1d_backward_oracle(x, kernel, dy, **kwargs)
    for got, want in zip((dx, dkernel, dbias), expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3 * np.abs(want).max())
    again = conv1d_rs.conv1d_backward(x, kernel, dy, **kwargs)[0]
    assert not np.shares_memory(dx, again)
    np.testing.assert_array_equal(dx, again)


def test_ten_million_steps() -> None:
    steps = 10**7
    x = (np.arange(steps, dtype=np.float32) % 7).reshape(1, steps, 1)
    y = conv1d_rs.conv1d(x, np.ones((3, 1, 1), "float32"), padding="causal")
    assert y.shape == (1, steps, 1)
    expected = np.convolve(x[0, :, 0].astype(np.float64), np.ones(3))[:steps]
    np.testing.assert_array_equal(y[0, :, 0], expected.astype(np.float32))


# ---------------------------------------------------------------------- concurrency
def test_many_python_threads_at_once_get_right_answers() -> None:
    rng = np.random.default_rng(11)
    cases = []
    for i in range(16):
        x = rng.standard_normal((2, 300 + 37 * i, 8)).astype("float32")
        kernel = rng.standard_normal((1 + i % 5, 8, 12)).astype("float32")
        with conv1d_rs.compute_options(parallel=False):
            expected = conv1d_rs.conv1d(x, kernel, padding="same", dilation_rate=1 + i % 3)
        cases.append((x, kernel, 1 + i % 3, expected))
    errors: list[str] = []

    def worker(offset: int) -> None:
        for j in range(12):
            x, kernel, d, expected = cases[(offset + j) % len(cases)]
            y = conv1d_rs.conv1d(x, kernel, padding="same", dilation_rate=d)
            if not np.array_equal(y, expected):
                errors.append(f"thread {offset} case {(offset + j) % len(cases)}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors


def test_the_gil_is_released_while_computing() -> None:
    x = np.random.default_rng(2).standard_normal((1, 60_000, 64))
    kernel = np.random.default_rng(3).standard_normal((32, 64, 64))
    entered = threading.Event()

    def convolve() -> None:
        with conv1d_rs.compute_options(algorithm="gemm"):
            entered.set()
            conv1d_rs.conv1d(x, kernel, padding="same")  # about a second

    thread = threading.Thread(target=convolve)
    thread.start()
    entered.wait()
    # Twenty GIL hand-overs: none could happen while a call held the GIL to its end.
    for _ in range(20):
        time.sleep(0.001)
    assert thread.is_alive()
    thread.join()


DETERMINISM = """
import hashlib
rng = np.random.default_rng(0)
digest = hashlib.sha256()
for dtype in ("float32", "float64"):
    for algorithm in ("auto", "gemm", "depthwise"):
        for k, groups in ((3, 1), (7, 4), (20, 4), (5, 16)):
            x = rng.standard_normal((3, 4000, 16)).astype(dtype)
            kernel = rng.standard_normal((k, 16 // groups, 16)).astype(dtype)
            if algorithm == "depthwise" and groups != 16:
                continue
            with conv1d_rs.compute_options(algorithm=algorithm):
                y = conv1d_rs.conv1d(x, kernel, padding="same", groups=groups)
            digest.update(y.tobytes())
    # FFT blocks go two to a work item on one thread, one on two threads.
    x = rng.standard_normal((1, 1900, 16)).astype(dtype)
    kernel = rng.standard_normal((20, 16, 16)).astype(dtype)
    with conv1d_rs.compute_options(algorithm="fft"):
        digest.update(conv1d_rs.conv1d(x, kernel, padding="same").tobytes())
print(_core.num_threads(), digest.hexdigest())
"""


def test_results_are_bitwise_the_same_with_one_or_two_threads() -> None:
    outputs = {}
    for threads in ("1", "2"):
        result = run_isolated(DETERMINISM, timeout=120, env={"RAYON_NUM_THREADS": threads})
        assert result.returncode == 0, result.stderr[-2000:]
        count, digest = result.stdout.split()
        assert count == threads
        outputs[threads] = digest
    assert outputs["1"] == outputs["2"]


FORK = """
import multiprocessing as mp

def child(queue):
    x = np.ones((4, 20_000, 32), np.float32)
    queue.put(float(conv1d_rs.conv1d(x, np.ones((5, 32, 32), np.float32)).sum()))

if __name__ == "__main__":
    x = np.ones((4, 20_000, 32), np.float32)
    parent = float(conv1d_rs.conv1d(x, np.ones((5, 32, 32), np.float32)).sum())  # starts the pool
    context = mp.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=child, args=(queue,))
    process.start()
    result = queue.get(timeout=60)
    process.join(timeout=60)
    print(process.exitcode, result == parent)
"""


def test_a_forked_child_does_not_deadlock(tmp_path) -> None:
    script = tmp_path / "fork_after_call.py"
    script.write_text("import numpy as np, conv1d_rs\n" + FORK)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["0", "True"]


INTERRUPT = """
import os, signal, threading, time
rng = np.random.default_rng(0)
x = rng.standard_normal((1, 300_000, 64))
kernel = rng.standard_normal((64, 64, 64))
expected = None
start = time.perf_counter()
threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
try:
    with conv1d_rs.compute_options(algorithm="gemm"):
        conv1d_rs.conv1d(x, kernel, padding="same")  # several seconds
    print("finished", time.perf_counter() - start)
except KeyboardInterrupt:
    print("interrupted", time.perf_counter() - start)
# The process, the pool and the module still work.
small = x[:, :500]
with conv1d_rs.compute_options(algorithm="gemm"):
    y = conv1d_rs.conv1d(small, kernel, padding="same")
with conv1d_rs.compute_options(algorithm="reference"):
    print(np.allclose(y, conv1d_rs.conv1d(small, kernel, padding="same"), rtol=1e-9, atol=1e-9))
"""


def test_ctrl_c_interrupts_a_long_call_and_leaves_the_process_usable() -> None:
    full = run_isolated(
        "import time\n"
        "x = np.random.default_rng(0).standard_normal((1, 300_000, 64))\n"
        "kernel = np.random.default_rng(0).standard_normal((64, 64, 64))\n"
        "start = time.perf_counter()\n"
        "with conv1d_rs.compute_options(algorithm='gemm'):\n"
        "    conv1d_rs.conv1d(x[:, :30_000], kernel, padding='same')\n"
        "print(time.perf_counter() - start)\n",
    )
    tenth = float(full.stdout)  # a tenth of the interrupted call
    result = run_isolated(INTERRUPT, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    outcome, elapsed, *rest = result.stdout.split()
    assert outcome == "interrupted"
    # Well under the ~10 tenths the whole call takes: the signal arrived at 0.5 s.
    assert float(elapsed) < 0.5 + 5 * tenth + 1.0
    assert rest == ["True"]


# ---------------------------------------------------------------------- the Python API, fuzzed
_DTYPES = ["float16", "float32", "float64", "int8", "int64", "uint16", "bool", "complex64", "object", "U1", "datetime64[s]"]
_PARAMS = st.one_of(
    st.integers(1, 4), st.integers(-3, 0), st.sampled_from([2**31, 2**63, 2**64, 2**100]), st.just(1.5),
    st.just("2"), st.just(None), st.tuples(st.integers(1, 3)), st.just((1, 2)), st.just(True),
)


@st.composite
def api_calls(draw: st.DrawFn) -> dict:
    rank = draw(st.sampled_from([3, 3, 3, 3, 2, 1, 4, 0]))
    shape = tuple(draw(st.integers(0, 9)) for _ in range(rank))
    kernel_shape = tuple(draw(st.integers(0, 5)) for _ in range(draw(st.sampled_from([3, 3, 3, 2]))))
    return dict(
        shape=shape,
        kernel_shape=kernel_shape,
        bias=draw(st.sampled_from([None, "match", 0, 3, "2d"])),
        x_dtype=draw(st.sampled_from(_DTYPES)),
        k_dtype=draw(st.sampled_from(_DTYPES[:3] + ["int32", "object"])),
        layout=draw(st.sampled_from(["c", "fortran", "reversed", "broadcast", "strided", "read-only", "unaligned"])),
        strides=draw(_PARAMS),
        dilation_rate=draw(_PARAMS),
        groups=draw(st.one_of(st.integers(1, 3), _PARAMS)),
        padding=draw(st.sampled_from(["valid", "same", "causal", "SAME", "full", 3, None])),
        data_format=draw(st.sampled_from(["channels_last", "channels_first", "NWC", None])),
        api=draw(st.sampled_from(["function", "layer", "core"])),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def _make(shape: tuple, dtype: str, layout: str, rng: np.random.Generator) -> np.ndarray:
    a = rng.integers(-3, 4, shape).astype(dtype) if dtype not in ("U1", "datetime64[s]") else np.zeros(shape, dtype)
    if layout == "fortran":
        return np.asfortranarray(a)
    if layout == "reversed" and a.ndim:
        return a[::-1].copy()[::-1]
    if layout == "broadcast" and a.ndim:
        return np.broadcast_to(a[:1], a.shape)
    if layout == "strided" and a.ndim:
        return np.repeat(a, 2, axis=0)[::2]
    if layout == "read-only":
        a.flags.writeable = False
    if layout == "unaligned" and a.dtype.kind in "fiu" and a.itemsize > 1:
        return _unaligned(a)
    return a


@settings(
    max_examples=int(os.environ.get("CONV1D_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(api_calls())
def test_python_api_fuzz_only_documented_exceptions(call: dict) -> None:
    rng = np.random.default_rng(call["seed"])
    x = _make(call["shape"], call["x_dtype"], call["layout"], rng)
    kernel = _make(call["kernel_shape"], call["k_dtype"], "c", rng)
    filters = kernel.shape[-1] if kernel.ndim else 1
    bias = {None: None, "match": np.ones(filters), 0: np.ones(0), 3: np.ones(3), "2d": np.ones((1, filters))}[call["bias"]]
    before = [None if a is None else a.copy() for a in (x, kernel, bias)]
    options = {k: call[k] for k in ("strides", "padding", "data_format", "dilation_rate", "groups")}
    try:
        if call["api"] == "function":
            y = conv1d_rs.conv1d(x, kernel, bias, **options)
        elif call["api"] == "layer":
            layer = conv1d_rs.Conv1D(filters, kernel.shape[0] if kernel.ndim else 1, use_bias=bias is not None, **options)
            y = layer(x)
        else:
            y = _core.PreparedKernel(kernel, call["groups"]).forward(x, bias, *(options[k] for k in ("strides", "padding", "data_format", "dilation_rate", "groups")))
    except DOCUMENTED:
        y = None
    for original, after in zip(before, (x, kernel, bias)):
        if original is not None and original.dtype.kind != "O":
            np.testing.assert_array_equal(original, after)
    if y is not None and call["api"] == "function":
        as_int = lambda v: int(v[0] if isinstance(v, tuple) else v)  # noqa: E731
        expected = conv1d_oracle(
            np.asarray(x, np.float64), np.asarray(kernel, np.float64), bias, as_int(options["strides"]),
            str(options["padding"]).lower(), str(options["data_format"]).lower(),
            as_int(options["dilation_rate"]), as_int(options["groups"]),
        )
        np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-4)

