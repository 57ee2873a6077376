"""Train a small causal dilated Conv1D stack (a WaveNet/TCN-style forecaster) with conv1d_rs.

Task: from a noisy sum of two sines with random phases and frequencies, predict the next
value at every step. Causal padding means step t only sees inputs up to t, so the whole
sequence trains in one pass. Prints the loss per epoch and the held-out error against the
naive "repeat the last value" forecast, and writes examples/loss_curve.png when matplotlib
is installed.

    python examples/train_causal_stack.py
"""

from __future__ import annotations

import pathlib
import time

import numpy as np

import conv1d_rs
from conv1d_rs import optimizers

HERE = pathlib.Path(__file__).resolve().parent


def make_series(rng: np.random.Generator, count: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs `(count, steps, 1)` and next-step targets of the same shape."""
    t = np.arange(steps + 1)[None, :]
    f1 = rng.uniform(0.05, 0.15, size=(count, 1))
    f2 = rng.uniform(0.2, 0.35, size=(count, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(count, 2))
    series = np.sin(2 * np.pi * f1 * t + phase[:, :1]) + 0.5 * np.sin(2 * np.pi * f2 * t + phase[:, 1:])
    series += 0.05 * rng.normal(size=series.shape)
    series = series.astype(np.float32)[..., None]
    return series[:, :-1], series[:, 1:]


def build_model() -> conv1d_rs.Sequential:
    seeded = lambda seed: {"class_name": "GlorotUniform", "config": {"seed": seed}}
    # Receptive field 1 + 2 * (1 + 2 + 4 + 8) = 31 steps.
    layers = [
        conv1d_rs.Conv1D(16, 3, padding="causal", dilation_rate=d, activation="tanh", kernel_initializer=seeded(i))
        for i, d in enumerate((1, 2, 4, 8))
    ]
    layers.append(conv1d_rs.Conv1D(1, 1, kernel_initializer=seeded(9)))
    return conv1d_rs.Sequential(layers)


def main() -> None:
    rng = np.random.default_rng(0)
    x_train, y_train = make_series(rng, 256, 128)
    x_test, y_test = make_series(rng, 64, 128)
    model = build_model()
    model.build(x_train.shape)
    print(f"{len(model.layers)} causal Conv1D layers, {model.count_params()} parameters")

    start = time.perf_counter()
    history = model.fit(
        x_train, y_train, loss="mse", optimizer=optimizers.Adam(0.005), epochs=60, batch_size=16, seed=0, verbose=1
    )
    seconds = time.perf_counter() - start
    losses = history.history["loss"]

    # Skip the first steps, where the receptive field still reaches before the sequence.
    warm = 31
    test_mse = float(np.mean((model(x_test)[:, warm:] - y_test[:, warm:]) ** 2))
    naive_mse = float(np.mean((x_test[:, warm:] - y_test[:, warm:]) ** 2))
    print(f"trained in {seconds:.1f} s: loss {losses[0]:.4f} -> {losses[-1]:.4f}")
    print(f"held-out MSE {test_mse:.4f} (repeat-last-value baseline {naive_mse:.4f})")

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed; skipping loss_curve.png")
        return
    fig, (ax_loss, ax_series) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax_loss.plot(range(1, len(losses) + 1), losses, marker="o")
    ax_loss.axhline(naive_mse, color="grey", linestyle="--", label="repeat last value (held out)")
    ax_loss.set(xlabel="epoch", ylabel="training MSE", yscale="log", title="Causal dilated Conv1D stack")
    ax_loss.legend()
    prediction = model(x_test[:1])[0, :, 0]
    ax_series.plot(y_test[0, :, 0], label="next value", color="black", linewidth=1)
    ax_series.plot(prediction, label="prediction", color="tab:orange", linewidth=1)
    ax_series.axvspan(0, warm, color="grey", alpha=0.15, label="receptive-field warm-up")
    ax_series.set(xlabel="step", title="Held-out sequence")
    ax_series.legend(loc="lower left", fontsize="small")
    fig.tight_layout()
    out = HERE / "loss_curve.png"
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
