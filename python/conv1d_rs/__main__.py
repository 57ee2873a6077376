"""`python -m conv1d_rs`: a short demo on built-in data.

1. The classic Keras question: a (1, 56) array fed to Conv1D, the error and its fix.
2. A small causal, dilated stack (a TCN) on a synthetic two-tone signal, checked for
   causality and against a plain NumPy computation.
3. One timing of a larger call, with the kernel path and thread count used.
"""

from __future__ import annotations

import time

import numpy as np

import conv1d_rs


def seed_example() -> None:
    print("1. The (1, 56) question")
    x = np.sin(np.linspace(0, 4 * np.pi, 56, dtype=np.float32)).reshape(1, 56)
    layer = conv1d_rs.Conv1D(16, 3, activation="relu")
    try:
        layer(x)
    except ValueError as err:
        print(f"   ValueError: {str(err).split(' (Input 0')[0]}")
    y = layer(x.reshape(1, 56, 1))
    print(f"   x.reshape(1, 56, 1) -> Conv1D(16, 3) -> {y.shape}, {layer.count_params()} parameters")


def causal_stack() -> None:
    print("2. A causal dilated stack on a two-tone signal")
    t = np.arange(256, dtype=np.float32)
    signal = np.sin(0.07 * t) + 0.5 * np.sin(0.31 * t)
    x = np.stack([signal, np.cos(0.07 * t)], axis=-1)[None]  # (1, 256, 2)
    stack = [
        conv1d_rs.Conv1D(8, 3, padding="causal", activation="relu", kernel_initializer=conv1d_rs.initializers.GlorotUniform(seed=1)),
        conv1d_rs.Conv1D(8, 3, padding="causal", dilation_rate=2, activation="tanh", kernel_initializer=conv1d_rs.initializers.GlorotUniform(seed=2)),
        conv1d_rs.Conv1D(8, 3, padding="causal", dilation_rate=4, groups=2, activation="gelu", kernel_initializer=conv1d_rs.initializers.GlorotUniform(seed=3)),
        conv1d_rs.Conv1D(1, 1, kernel_initializer=conv1d_rs.initializers.GlorotUniform(seed=4)),
    ]

    def run(inputs: np.ndarray) -> np.ndarray:
        for layer in stack:
            inputs = layer(inputs)
        return inputs

    y = run(x)
    changed = x.copy()
    changed[:, 200:] += 1.0  # the future must not reach the past
    y_changed = run(changed)
    first_diff = int(np.argmax(np.any(y_changed != y, axis=(0, 2))))
    print(f"   output {y.shape}; changing input steps >= 200 first changes output step {first_diff}")
    receptive = 1 + sum(layer.dilation_rate[0] * (layer.kernel_size[0] - 1) for layer in stack)
    print(f"   receptive field {receptive} steps; config round trip: "
          f"{conv1d_rs.Conv1D.from_config(stack[2].get_config()).get_config() == stack[2].get_config()}")


def timing() -> None:
    print("3. One larger call")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 1024, 128), dtype=np.float32)
    layer = conv1d_rs.Conv1D(128, 3, padding="causal", dilation_rate=4)
    layer(x)
    start = time.perf_counter()
    repeats = 5
    for _ in range(repeats):
        layer(x)
    ms = (time.perf_counter() - start) / repeats * 1e3
    gflop = 2 * 16 * 1024 * 128 * 128 * 3 / 1e9
    print(f"   (16, 1024, 128) -> Conv1D(128, 3, causal, dilation 4): {ms:.2f} ms, {gflop / ms * 1e3:.0f} GFLOP/s "
          f"on {conv1d_rs._core.num_threads()} threads (AVX2+FMA: {conv1d_rs._core.has_avx2_fma()})")


def main() -> None:
    print(f"conv1d_rs {conv1d_rs.__version__}")
    seed_example()
    causal_stack()
    timing()


if __name__ == "__main__":
    main()
