"""The same Keras Conv1D computation in each framework, for the benchmark suite.

Every ``make_<framework>(case, x, kernel, bias)`` takes a suite case and numpy inputs
(``x`` in NWC, ``kernel`` in Keras layout ``(kernel_size, in_channels // groups, filters)``,
``bias`` of length ``filters``) and returns a :class:`Competitor`: a zero-argument callable
that runs one forward pass (bias included) and the output of one call in NWC for the
correctness check, or ``None`` in the callable with the reason it was skipped.

Layout changes a framework needs (NWC to NCW, the weight transpose) are done once outside
the timed call, as a model in that framework would hold its tensors in its native layout;
the Keras padding (asymmetric for ``same`` and ``causal``) is part of the timed call.

All frameworks run on ``THREADS`` (2) threads. Import this module before any framework so
the thread-count environment variables are set before the thread pools start.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

THREADS = 2

# Thread pools read these once, when they start: set them before any framework loads.
os.environ.setdefault("RAYON_NUM_THREADS", str(THREADS))
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
os.environ.setdefault("MKL_NUM_THREADS", str(THREADS))
# NumPy's own BLAS is not measured: one thread, so that no idle pool spins beside the others.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(THREADS))
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# XLA's CPU client has no thread-count option: it uses one thread per core (2 here).

import numpy as np

HERE = Path(__file__).resolve().parent
SUITE_PATH = HERE / "suite.json"

# Relative tolerance of every competitor's output against conv1d_rs, scaled by the
# output's magnitude (sums of hundreds of float32 products differ in the last bits).
RTOL = 1e-3

FRAMEWORKS = ("conv1d_rs", "conv1d_rs_plain", "torch", "jax", "ort", "tf")
COMPETITORS = ("torch", "jax", "ort", "tf")


@dataclass
class Competitor:
    name: str
    fn: Callable[[], object] | None
    output: np.ndarray | None = None
    reason: str = ""
    detail: str = ""


def settle(window_s: float = 0.005, max_s: float = 0.5) -> None:
    """Waits, untimed, until this process is idle. Worker threads spin for a while after a
    call (onnxruntime's for about 70 ms, OpenMP's for about 10 ms) and would slow down
    whichever framework runs next on the 2 cores."""
    deadline = time.perf_counter() + max_s
    while time.perf_counter() < deadline:
        cpu = time.process_time()
        time.sleep(window_s)
        if time.process_time() - cpu < 0.2 * window_s:
            return


def round_order(names, round_index: int) -> list:
    """The order of one timing round: a shuffle of its own (seeded, so runs repeat), so that no
    framework always follows the same one, whose state in the caches and cores it inherits."""
    order = list(names)
    random.Random(round_index).shuffle(order)
    return order


def load_suite(path: Path = SUITE_PATH) -> dict:
    with open(path) as f:
        return json.load(f)


def make_inputs(case: dict, seed: int = 0):
    """Random inputs for a case: x (NWC), kernel (Keras layout), bias; all float32."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(case.get("dtype", "float32"))
    k, cin, f, g = case["kernel_size"], case["in_channels"], case["filters"], case["groups"]
    x = rng.standard_normal((case["batch"], case["steps"], cin)).astype(dtype)
    # Glorot-uniform scale keeps outputs O(1) whatever the fan-in.
    limit = math.sqrt(6.0 / (k * cin // g + k * f // g))
    kernel = rng.uniform(-limit, limit, (k, cin // g, f)).astype(dtype)
    bias = rng.uniform(-0.1, 0.1, (f,)).astype(dtype)
    return x, kernel, bias


def keras_pads(case: dict) -> tuple[int, int]:
    """(left, right) zero padding of Keras' padding mode, TF's split for ``same``."""
    length, k, s, d = case["steps"], case["kernel_size"], case["strides"], case["dilation_rate"]
    pad = case["padding"]
    eff = d * (k - 1) + 1
    if pad == "valid":
        return 0, 0
    if pad == "causal":
        return d * (k - 1), 0
    if pad == "same":
        out = -(-length // s)
        total = max((out - 1) * s + eff - length, 0)
        return total // 2, total - total // 2
    raise ValueError(f"unknown padding {pad!r}")


def output_steps(case: dict) -> int:
    left, right = keras_pads(case)
    eff = case["dilation_rate"] * (case["kernel_size"] - 1) + 1
    return (case["steps"] + left + right - eff) // case["strides"] + 1


def shape_summary(case: dict) -> str:
    parts = [f"{case['batch']}x{case['steps']}x{case['in_channels']}->{case['filters']}", f"k{case['kernel_size']}"]
    if case["strides"] != 1:
        parts.append(f"s{case['strides']}")
    if case["dilation_rate"] != 1:
        parts.append(f"d{case['dilation_rate']}")
    if case["groups"] != 1:
        parts.append(f"g{case['groups']}")
    parts.append(case["padding"])
    return " ".join(parts)


def check_output(name: str, out: np.ndarray, ref: np.ndarray) -> str | None:
    """None when ``out`` matches ``ref`` within RTOL of the reference's magnitude."""
    out = np.asarray(out)
    if out.shape != ref.shape:
        return f"{name}: shape {out.shape} != {ref.shape}"
    scale = max(float(np.max(np.abs(ref))), 1e-30)
    err = float(np.max(np.abs(out.astype(np.float64) - ref.astype(np.float64)))) / scale
    if not err <= RTOL:
        return f"{name}: max error {err:.2e} of max |y| > {RTOL:g}"
    return None


# --------------------------------------------------------------------------- conv1d_rs


def make_conv1d_rs(case, x, kernel, bias) -> Competitor:
    """The prepared kernel: weights packed once, as the layer holds them between calls."""
    try:
        from conv1d_rs._core import PreparedKernel
    except ImportError as e:
        return Competitor("conv1d_rs", None, reason=f"conv1d_rs not importable: {e}")
    prepared = PreparedKernel(kernel, case["groups"])
    x = _in_layout(case, x)
    args = (x, bias, case["strides"], case["padding"], case["data_format"], case["dilation_rate"], case["groups"])

    def run():
        return prepared.forward(*args)

    out = np.asarray(run())
    return Competitor("conv1d_rs", run, _as_nwc(case, out), detail=_path_taken(prepared, kernel, case, args, out))


def _in_layout(case, x):
    """The NWC input in the case's `data_format` (transposed once, outside the timing)."""
    return np.ascontiguousarray(x.transpose(0, 2, 1)) if case["data_format"] == "channels_first" else x


def _as_nwc(case, out):
    """An output in the case's `data_format` as NWC, the layout outputs are compared in."""
    return out.transpose(0, 2, 1) if case["data_format"] == "channels_first" else out


def _path_taken(prepared, kernel, case, args, out) -> str:
    """The algorithm a call took. ``.algorithm`` names the packed (direct) path; long kernels
    may go through FFT per call instead, which a forced direct call tells apart: its sums
    are not bitwise those of the FFT."""
    from conv1d_rs._core import PreparedKernel

    direct = prepared.algorithm
    if case["kernel_size"] < 16 or direct == "reference":  # conv1d_rs considers FFT from 16 taps
        return direct
    forced = PreparedKernel(kernel, case["groups"], algorithm=direct)
    return direct if np.array_equal(np.asarray(forced.forward(*args)), out) else "fft"


def make_conv1d_rs_plain(case, x, kernel, bias) -> Competitor:
    """The one-shot function: packs the weights on every call."""
    try:
        import conv1d_rs
    except ImportError as e:
        return Competitor("conv1d_rs_plain", None, reason=f"conv1d_rs not importable: {e}")
    kw = {key: case[key] for key in ("strides", "padding", "data_format", "dilation_rate", "groups")}
    x = _in_layout(case, x)

    def run():
        return conv1d_rs.conv1d(x, kernel, bias, **kw)

    return Competitor("conv1d_rs_plain", run, _as_nwc(case, np.asarray(run())))


# --------------------------------------------------------------------------- PyTorch


def make_torch(case, x, kernel, bias) -> Competitor:
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as e:
        return Competitor("torch", None, reason=f"torch not installed: {e}")
    torch.set_num_threads(THREADS)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 2, 1)))
    wt = torch.from_numpy(np.ascontiguousarray(kernel.transpose(2, 1, 0)))
    bt = torch.from_numpy(bias.copy())
    left, right = keras_pads(case)
    s, d, g = case["strides"], case["dilation_rate"], case["groups"]

    if left == right:

        def run():
            with torch.no_grad():
                return F.conv1d(xt, wt, bt, stride=s, padding=left, dilation=d, groups=g)

    else:

        def run():
            with torch.no_grad():
                return F.conv1d(F.pad(xt, (left, right)), wt, bt, stride=s, dilation=d, groups=g)

    out = run().numpy().transpose(0, 2, 1)
    return Competitor("torch", run, out)


# --------------------------------------------------------------------------- JAX


def make_jax(case, x, kernel, bias) -> Competitor:
    try:
        import jax
        import jax.numpy as jnp
    except ImportError as e:
        return Competitor("jax", None, reason=f"jax not installed: {e}")
    s, d, g = case["strides"], case["dilation_rate"], case["groups"]
    pads = [keras_pads(case)]

    @jax.jit
    def conv(xj, kj, bj):
        y = jax.lax.conv_general_dilated(
            xj,
            kj,
            window_strides=(s,),
            padding=pads,
            rhs_dilation=(d,),
            dimension_numbers=("NWC", "WIO", "NWC"),
            feature_group_count=g,
        )
        return y + bj

    cpu = jax.devices("cpu")[0]
    xj, kj, bj = (jax.device_put(jnp.asarray(a), cpu) for a in (x, kernel, bias))

    def run():
        return conv(xj, kj, bj).block_until_ready()

    return Competitor("jax", run, np.asarray(run()))


# --------------------------------------------------------------------------- ONNX Runtime


def make_ort(case, x, kernel, bias) -> Competitor:
    try:
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as e:
        return Competitor("ort", None, reason=f"onnx/onnxruntime not installed: {e}")
    left, right = keras_pads(case)
    k, f = case["kernel_size"], case["filters"]
    node = helper.make_node(
        "Conv",
        ["X", "W", "B"],
        ["Y"],
        kernel_shape=[k],
        pads=[left, right],
        strides=[case["strides"]],
        dilations=[case["dilation_rate"]],
        group=case["groups"],
    )
    graph = helper.make_graph(
        [node],
        "conv1d",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [case["batch"], case["in_channels"], case["steps"]])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [case["batch"], f, output_steps(case)])],
        initializer=[
            numpy_helper.from_array(np.ascontiguousarray(kernel.transpose(2, 1, 0)), "W"),
            numpy_helper.from_array(bias, "B"),
        ],
    )
    # An opset and IR version every onnxruntime of the last years loads.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = THREADS
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feed = {"X": np.ascontiguousarray(x.transpose(0, 2, 1))}

    def run():
        return sess.run(None, feed)[0]

    return Competitor("ort", run, run().transpose(0, 2, 1))


# --------------------------------------------------------------------------- TensorFlow


_tf_threads_set = False


def make_tf(case, x, kernel, bias) -> Competitor:
    try:
        import tensorflow as tf
    except ImportError as e:
        return Competitor("tf", None, reason=f"tensorflow not installed: {e}")
    global _tf_threads_set
    if not _tf_threads_set:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(THREADS)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            pass  # already initialised: the environment variables above hold
        _tf_threads_set = True
    left, right = keras_pads(case)
    s, d, g = case["strides"], case["dilation_rate"], case["groups"]
    xt, kt, bt = tf.constant(x), tf.constant(kernel), tf.constant(bias)

    def conv(xv, kv, bv):
        if left or right:
            xv = tf.pad(xv, [[0, 0], [left, right], [0, 0]])
        y = tf.nn.convolution(xv, kv, strides=s, padding="VALID", dilations=d, data_format="NWC")
        return tf.nn.bias_add(y, bv)

    # TF's CPU kernels have no grouped convolution; Keras compiles those with XLA.
    fn = tf.function(conv, jit_compile=g > 1)

    def run():
        return fn(xt, kt, bt)

    try:
        out = run().numpy()
    except Exception as e:  # noqa: BLE001  (an op this TensorFlow build cannot run)
        return Competitor("tf", None, reason=f"tensorflow failed: {type(e).__name__}: {e}"[:200])
    return Competitor("tf", run, out)


MAKERS = {
    "conv1d_rs": make_conv1d_rs,
    "conv1d_rs_plain": make_conv1d_rs_plain,
    "torch": make_torch,
    "jax": make_jax,
    "ort": make_ort,
    "tf": make_tf,
}

# The module each framework needs, for pytest.importorskip.
MODULES = {
    "conv1d_rs": "conv1d_rs",
    "conv1d_rs_plain": "conv1d_rs",
    "torch": "torch",
    "jax": "jax",
    "ort": "onnxruntime",
    "tf": "tensorflow",
}


def make(framework: str, case: dict, x, kernel, bias) -> Competitor:
    return MAKERS[framework](case, x, kernel, bias)


def versions() -> dict:
    """Versions of the packages that take part, for the report."""
    import importlib.metadata as md

    out = {}
    for dist in ("conv1d_rs", "numpy", "torch", "jax", "jaxlib", "onnxruntime", "onnx", "tensorflow", "tensorflow-cpu"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out
