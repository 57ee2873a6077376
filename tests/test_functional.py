"""`conv1d_rs.conv1d` against the plain-NumPy oracle, over random shapes and every option."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import conv1d_rs
from oracle import conv1d_oracle, padding_amounts


@st.composite
def conv_cases(draw: st.DrawFn) -> dict:
    groups = draw(st.integers(1, 4))
    cg = draw(st.integers(1, 5))
    fg = draw(st.integers(1, 20))
    k = draw(st.integers(1, 7))
    s = draw(st.integers(1, 4))
    d = draw(st.integers(1, 4))
    padding = draw(st.sampled_from(["valid", "same", "causal"]))
    span = d * (k - 1) + 1
    steps = draw(st.integers(span if padding == "valid" else 0, span + 40))
    return dict(
        batch=draw(st.integers(0, 3)),
        steps=steps,
        channels=groups * cg,
        filters=groups * fg,
        kernel_size=k,
        strides=s,
        dilation_rate=d,
        groups=groups,
        padding=padding,
        data_format=draw(st.sampled_from(["channels_last", "channels_first"])),
        dtype=draw(st.sampled_from(["float32", "float64"])),
        use_bias=draw(st.booleans()),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def arrays(case: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    rng = np.random.default_rng(case["seed"])
    shape = (
        (case["batch"], case["steps"], case["channels"])
        if case["data_format"] == "channels_last"
        else (case["batch"], case["channels"], case["steps"])
    )
    x = rng.standard_normal(shape).astype(case["dtype"])
    kernel = rng.standard_normal((case["kernel_size"], case["channels"] // case["groups"], case["filters"]))
    kernel = kernel.astype(case["dtype"])
    bias = rng.standard_normal(case["filters"]).astype(case["dtype"]) if case["use_bias"] else None
    return x, kernel, bias


def options(case: dict) -> dict:
    return {k: case[k] for k in ("strides", "padding", "data_format", "dilation_rate", "groups")}


def assert_matches_oracle(y: np.ndarray, x: np.ndarray, kernel: np.ndarray, bias, case: dict) -> None:
    expected = conv1d_oracle(x, kernel, bias, **options(case))
    # Rounding grows with the magnitude of the summed terms, not of the result.
    magnitude = conv1d_oracle(np.abs(x), np.abs(kernel), None if bias is None else np.abs(bias), **options(case))
    tol = 2e-6 if case["dtype"] == "float32" else 1e-14
    assert y.shape == expected.shape
    assert y.dtype == np.dtype(case["dtype"])
    assert np.all(np.abs(y - expected) <= tol * (magnitude + 1))


@settings(max_examples=300, deadline=None)
@given(conv_cases())
def test_conv1d_matches_numpy_oracle(case: dict) -> None:
    x, kernel, bias = arrays(case)
    y = conv1d_rs.conv1d(x, kernel, bias, **options(case))
    assert_matches_oracle(y, x, kernel, bias, case)


@settings(max_examples=60, deadline=None)
@given(conv_cases(), st.sampled_from(["gemm", "fft", "reference"]), st.sampled_from(["auto", "avx2", "portable"]), st.booleans())
def test_every_kernel_path_matches_oracle(case: dict, algorithm: str, simd: str, parallel: bool) -> None:
    x, kernel, bias = arrays(case)
    with conv1d_rs.compute_options(algorithm=algorithm, simd=simd, parallel=parallel):
        y = conv1d_rs.conv1d(x, kernel, bias, **options(case))
    assert_matches_oracle(y, x, kernel, bias, case)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(1, 9), st.integers(1, 3), st.integers(1, 3), st.sampled_from(["valid", "same", "causal"]),
       st.sampled_from(["channels_last", "channels_first"]), st.sampled_from(["float32", "float64"]), st.integers(0, 2**32 - 1))
def test_depthwise_path_matches_oracle(channels, k, s, d, padding, data_format, dtype, seed) -> None:
    case = dict(batch=2, steps=d * (k - 1) + 1 + 17, channels=channels, filters=channels, kernel_size=k, strides=s,
                dilation_rate=d, groups=channels, padding=padding, data_format=data_format, dtype=dtype,
                use_bias=True, seed=seed)
    x, kernel, bias = arrays(case)
    for simd in ("auto", "avx2", "portable"):
        with conv1d_rs.compute_options(algorithm="depthwise", simd=simd):
            y = conv1d_rs.conv1d(x, kernel, bias, **options(case))
        assert_matches_oracle(y, x, kernel, bias, case)


def test_strides_with_dilation_allowed_in_functional_api() -> None:
    case = dict(batch=2, steps=30, channels=3, filters=4, kernel_size=3, strides=2, dilation_rate=3, groups=1,
                padding="same", data_format="channels_last", dtype="float64", use_bias=True, seed=1)
    x, kernel, bias = arrays(case)
    assert_matches_oracle(conv1d_rs.conv1d(x, kernel, bias, **options(case)), x, kernel, bias, case)


def test_same_padding_puts_the_odd_element_right() -> None:
    assert padding_amounts(10, 4, 1, 1, "same") == (10, 1, 2)
    x = np.arange(10, dtype=np.float64).reshape(1, 10, 1)
    kernel = np.zeros((4, 1, 1))
    kernel[0, 0, 0] = 1.0  # picks x[t - left]
    y = conv1d_rs.conv1d(x, kernel, padding="same")
    np.testing.assert_array_equal(y[0, :, 0], np.r_[0.0, np.arange(9.0)])


@pytest.mark.parametrize("dtype", ["float16", "int32", "int64", "bool", "uint8"])
def test_numeric_inputs_are_converted(dtype: str) -> None:
    x = (np.arange(24).reshape(2, 4, 3) % 3).astype(dtype)
    kernel = np.ones((2, 3, 2), dtype="float32")
    y = conv1d_rs.conv1d(x, kernel)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, conv1d_oracle(x.astype(np.float64), kernel), rtol=1e-6)


def test_float64_anywhere_computes_in_float64() -> None:
    x = np.ones((1, 5, 2), dtype="float32")
    assert conv1d_rs.conv1d(x, np.ones((2, 2, 1), dtype="float64")).dtype == np.float64


@pytest.mark.parametrize(
    "make",
    [
        lambda a: np.asfortranarray(a),
        lambda a: a[:, ::-1, :],
        lambda a: a[::-1, :, ::-1],
        lambda a: np.repeat(a, 2, axis=1)[:, ::2, :],
        lambda a: np.broadcast_to(a[:, :1, :], a.shape),
        lambda a: a.transpose(0, 2, 1).copy().transpose(0, 2, 1),
    ],
    ids=["fortran", "negative-steps", "negative-batch-channels", "strided", "broadcast", "transposed"],
)
def test_any_memory_layout_gives_the_same_answer(make) -> None:
    rng = np.random.default_rng(3)
    base = rng.standard_normal((3, 12, 4)).astype("float32")
    x = make(base)
    kernel = rng.standard_normal((3, 4, 5)).astype("float32")
    before = x.copy()
    y = conv1d_rs.conv1d(x, kernel, padding="same")
    np.testing.assert_allclose(y, conv1d_oracle(np.ascontiguousarray(x), kernel, padding="same"), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(x, before)


def test_read_only_inputs_work_and_are_not_written() -> None:
    x = np.ones((1, 6, 2), dtype="float32")
    kernel = np.ones((2, 2, 3), dtype="float32")
    bias = np.zeros(3, dtype="float32")
    for a in (x, kernel, bias):
        a.flags.writeable = False
    y = conv1d_rs.conv1d(x, kernel, bias)
    assert np.all(y == 4.0)
    y[...] = 0  # the result is the caller's own array
    assert np.all(x == 1.0)


@pytest.mark.parametrize("bad", [np.array([["a"]]), np.ones((1, 3, 1), dtype=complex), np.array([[[object()]]])])
def test_non_numbers_raise_type_error(bad) -> None:
    with pytest.raises(TypeError):
        conv1d_rs.conv1d(bad, np.ones((1, 1, 1)))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(strides=0), "strides"),
        (dict(dilation_rate=0), "dilation_rate"),
        (dict(groups=0), "groups"),
        (dict(padding="full"), "padding"),
        (dict(data_format="nwc"), "data_format"),
        (dict(groups=3), "groups"),
    ],
)
def test_bad_options_raise_value_error(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        conv1d_rs.conv1d(np.ones((1, 8, 4)), np.ones((3, 4, 6)), **kwargs)


def test_shape_mismatches_name_expected_and_received() -> None:
    x = np.ones((1, 8, 4), dtype="float32")
    with pytest.raises(ValueError, match=r"Expected kernel shape \(3, 4, 2\)"):
        conv1d_rs.conv1d(x, np.ones((3, 5, 2), dtype="float32"))
    with pytest.raises(ValueError, match=r"expected bias shape \(2,\)"):
        conv1d_rs.conv1d(x, np.ones((3, 4, 2), dtype="float32"), np.ones(3, dtype="float32"))
    with pytest.raises(ValueError, match="use x.reshape\\(1, 56, 1\\)"):
        conv1d_rs.conv1d(np.ones((1, 56)), np.ones((3, 1, 2)))
    with pytest.raises(ValueError, match="zero or negative"):
        conv1d_rs.conv1d(np.ones((1, 2, 1)), np.ones((3, 1, 2)))


def test_results_do_not_depend_on_threading() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 700, 33)).astype("float32")
    kernel = rng.standard_normal((5, 33, 40)).astype("float32")
    with conv1d_rs.compute_options(parallel=False):
        sequential = conv1d_rs.conv1d(x, kernel, padding="causal", dilation_rate=2)
    parallel = conv1d_rs.conv1d(x, kernel, padding="causal", dilation_rate=2)
    np.testing.assert_array_equal(sequential, parallel)
