"""`Sequential`: a stack of Conv1D layers with backpropagation and a Keras-style `fit`."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Optional, Union

import numpy as np

from . import dtype_policies, optimizers
from .layers import Conv1D, _unique_name

__all__ = ["History", "Sequential"]

Grads = dict[str, Optional[np.ndarray]]
# A loss maps (y_true, y_pred) to (value, d value / d y_pred).
LossFn = Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray]]


def _mean_squared_error(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, np.ndarray]:
    """Keras "mse" with its default reduction: the mean over every element."""
    diff = y_pred - y_true
    size = max(diff.size, 1)
    return float(np.mean(np.square(diff))), diff * y_pred.dtype.type(2 / size)


def _mean_absolute_error(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, np.ndarray]:
    """Keras "mae": the mean of |y_pred - y_true| (gradient 0 where they are equal)."""
    diff = y_pred - y_true
    size = max(diff.size, 1)
    return float(np.mean(np.abs(diff))), np.sign(diff) * y_pred.dtype.type(1 / size)


_LOSSES: dict[str, LossFn] = {
    "mse": _mean_squared_error,
    "mean_squared_error": _mean_squared_error,
    "mae": _mean_absolute_error,
    "mean_absolute_error": _mean_absolute_error,
}


def _get_loss(loss: Union[str, LossFn]) -> LossFn:
    if callable(loss):
        return loss
    if isinstance(loss, str) and loss.lower() in _LOSSES:
        return _LOSSES[loss.lower()]
    raise ValueError(
        f"Unknown loss {loss!r}: use 'mse' or 'mae', or a callable (y_true, y_pred) -> (value, d value / d y_pred)."
    )


class History:
    """What `fit` returns, as Keras's `History`: `history["loss"]` per epoch, and `epoch`."""

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {"loss": []}
        self.epoch: list[int] = []

    def __repr__(self) -> str:
        return f"History(epochs={len(self.epoch)}, loss={self.history['loss']})"


class Sequential:
    """Conv1D layers applied in order; NumPy in and out.

    `vjp` backpropagates through the stack, `fit` trains it with a Keras loss and optimizer
    (the loss of a step is the data loss plus `sum(losses)`, as in Keras), and
    `get_config`/`from_config` read and write Keras 3's Sequential config (layers other than
    Conv1D and InputLayer are refused).
    """

    def __init__(self, layers: Optional[Sequence[Conv1D]] = None, name: Optional[str] = None) -> None:
        self.name = name if name is not None else _unique_name("sequential")
        self.layers: list[Conv1D] = []
        self.optimizer: Optional[optimizers.Optimizer] = None
        self._build_input_shape: Optional[tuple[Optional[int], ...]] = None
        for layer in layers or []:
            self.add(layer)

    def add(self, layer: Conv1D) -> None:
        if not isinstance(layer, Conv1D):
            raise TypeError(f"conv1d_rs.Sequential holds Conv1D layers only; received {layer!r}.")
        self.layers.append(layer)

    @property
    def built(self) -> bool:
        return bool(self.layers) and all(layer.built for layer in self.layers)

    def build(self, input_shape: Sequence[Optional[int]]) -> None:
        """Builds every layer for inputs of `input_shape` (batch and steps may be None)."""
        shape: tuple[Optional[int], ...] = tuple(input_shape)
        self._build_input_shape = shape
        for layer in self.layers:
            if not layer.built:
                layer.build(shape)
            shape = layer.compute_output_shape(shape)

    def compute_output_shape(self, input_shape: Sequence[Optional[int]]) -> tuple[Optional[int], ...]:
        shape: tuple[Optional[int], ...] = tuple(input_shape)
        for layer in self.layers:
            shape = layer.compute_output_shape(shape)
        return shape

    # ------------------------------------------------------------------ compute
    def _forward(self, x: Any) -> tuple[list[Any], np.ndarray]:
        """The output and every layer's input (kept for the backward pass)."""
        if not self.layers:
            raise ValueError("This Sequential model has no layers; add Conv1D layers first.")
        inputs: list[Any] = []
        h = x
        for layer in self.layers:
            inputs.append(h)
            h = layer(h)
        return inputs, h

    def __call__(self, x: Any) -> np.ndarray:
        return self._forward(x)[1]

    def _backward(self, inputs: list[Any], dy: Any, include_activity: bool) -> tuple[np.ndarray, list[Grads]]:
        grads: list[Grads] = [{} for _ in self.layers]
        for i in reversed(range(len(self.layers))):
            dy, grads[i] = self.layers[i].vjp(inputs[i], dy, include_activity=include_activity)
        return np.asarray(dy), grads

    def vjp(self, x: Any, dy: Any, include_activity: bool = False) -> tuple[np.ndarray, list[Grads]]:
        """Gradients of `sum(model(x) * dy)`: `(dx, [{"kernel": ..., "bias": ...} per layer])`.

        As `Conv1D.vjp`: activations included, weight regularizers not; `include_activity=True`
        adds every layer's activity-regularizer term.
        """
        inputs, _ = self._forward(x)
        return self._backward(inputs, dy, include_activity)

    @property
    def losses(self) -> list[float]:
        """Every layer's `losses` in layer order (activity penalties are those of the last call)."""
        return [value for layer in self.layers for value in layer.losses]

    # ------------------------------------------------------------------ training
    def _resolve_optimizer(self, optimizer: Any) -> optimizers.Optimizer:
        if optimizer is not None:
            self.optimizer = optimizers.get(optimizer)
        elif self.optimizer is None:
            self.optimizer = optimizers.Adam()
        return self.optimizer

    def _train_step(self, x: np.ndarray, y: np.ndarray, loss_fn: LossFn, optimizer: optimizers.Optimizer) -> float:
        inputs, y_pred = self._forward(x)
        y_true = np.asarray(y).astype(y_pred.dtype, copy=False)
        if y_true.shape != y_pred.shape:
            raise ValueError(f"Targets have shape {y_true.shape}; the model's output has shape {y_pred.shape}.")
        value, d_pred = loss_fn(y_true, y_pred)
        total = float(value) + float(sum(self.losses))
        _, grads = self._backward(inputs, d_pred, include_activity=True)
        updates: list[tuple[Optional[np.ndarray], Conv1D, str]] = []
        for layer, layer_grads in zip(self.layers, grads):
            if not layer.trainable:
                continue
            penalties = layer.regularization_gradients()
            for name in ("kernel", "bias"):
                grad, penalty = layer_grads[name], penalties[name]
                if grad is not None and penalty is not None:
                    updates.append((grad + penalty, layer, name))
        if updates:
            optimizer.apply_gradients(updates)
        return total

    def train_on_batch(self, x: Any, y: Any, loss: Union[str, LossFn] = "mse", optimizer: Any = None) -> float:
        """One optimizer step on one batch; returns the batch's loss before the step."""
        return self._train_step(np.asarray(x), np.asarray(y), _get_loss(loss), self._resolve_optimizer(optimizer))

    def fit(
        self,
        x: Any,
        y: Any,
        loss: Union[str, LossFn] = "mse",
        optimizer: Any = None,
        epochs: int = 1,
        batch_size: int = 32,
        shuffle: bool = True,
        seed: Optional[int] = None,
        verbose: int = 0,
    ) -> History:
        """Trains for `epochs` passes over `(x, y)` in mini-batches; returns the `History`.

        `loss` is "mse", "mae" or a callable `(y_true, y_pred) -> (value, d value / d y_pred)`;
        `optimizer` an `optimizers.Optimizer`, "sgd", "adam" or a Keras config (default: the
        model's previous optimizer, else `Adam()`; it is kept in `self.optimizer`, state
        included, for later calls). An epoch's loss is the batch-size-weighted mean of the
        batch losses, each computed before its update, as Keras reports it. `seed` fixes the
        shuffling; `verbose=1` prints one line per epoch.
        """
        x_arr, y_arr = np.asarray(x), np.asarray(y)
        if x_arr.shape[0] != y_arr.shape[0]:
            raise ValueError(f"x and y must have the same number of samples; got {x_arr.shape[0]} and {y_arr.shape[0]}.")
        if not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer; received {batch_size!r}.")
        loss_fn = _get_loss(loss)
        opt = self._resolve_optimizer(optimizer)
        rng = np.random.default_rng(seed)
        history = History()
        count = x_arr.shape[0]
        for epoch in range(epochs):
            order = rng.permutation(count) if shuffle else np.arange(count)
            weighted_sum = 0.0
            for start in range(0, count, batch_size):
                batch = order[start : start + batch_size]
                weighted_sum += self._train_step(x_arr[batch], y_arr[batch], loss_fn, opt) * len(batch)
            epoch_loss = weighted_sum / max(count, 1)
            history.epoch.append(epoch)
            history.history["loss"].append(epoch_loss)
            if verbose:
                print(f"Epoch {epoch + 1}/{epochs} - loss: {epoch_loss:.6g}")
        return history

    # ------------------------------------------------------------------ weights
    def get_weights(self) -> list[np.ndarray]:
        return [w for layer in self.layers for w in layer.get_weights()]

    def set_weights(self, weights: Sequence[Any]) -> None:
        weights = list(weights)
        expected = sum(len(layer.get_weights()) for layer in self.layers)
        if len(weights) != expected:
            raise ValueError(f"Expected {expected} weight arrays for the model's built layers; received {len(weights)}.")
        start = 0
        for layer in self.layers:
            n = len(layer.get_weights())
            if n:
                layer.set_weights(weights[start : start + n])
            start += n

    def count_params(self) -> int:
        return sum(layer.count_params() for layer in self.layers)

    # ------------------------------------------------------------------ config
    def get_config(self) -> dict[str, Any]:
        """Keras 3's Sequential config: name, trainable, dtype, layers (InputLayer first when built)."""
        entries: list[dict[str, Any]] = []
        if self._build_input_shape is not None:
            entries.append(
                {
                    "module": "keras.layers",
                    "class_name": "InputLayer",
                    "config": {
                        "batch_shape": list(self._build_input_shape),
                        "dtype": self.layers[0].dtype if self.layers else "float32",
                        "sparse": False,
                        "ragged": False,
                        "name": "input_layer",
                        "optional": False,
                    },
                    "registered_name": None,
                }
            )
        for layer in self.layers:
            entry: dict[str, Any] = {
                "module": "keras.layers",
                "class_name": "Conv1D",
                "config": layer.get_config(),
                "registered_name": None,
            }
            if layer.built:
                channels = layer._input_channels
                shape = [None, None, channels] if layer.data_format == "channels_last" else [None, channels, None]
                entry["build_config"] = {"input_shape": shape}
            entries.append(entry)
        config: dict[str, Any] = {
            "name": self.name,
            "trainable": True,
            "dtype": dtype_policies.get(None).get_config(),
            "layers": copy.deepcopy(entries),
        }
        if self._build_input_shape is not None:
            config["build_input_shape"] = list(self._build_input_shape)
        return config

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Sequential:
        """A model from `get_config()` output or a Keras 3 / tf-keras Sequential config.

        Also accepts the whole `{"class_name": "Sequential", "config": {...}}` entry of a
        `.keras` file's config.json. Weights are not part of a config.
        """
        if "class_name" in config and "config" in config:
            if config["class_name"] != "Sequential":
                raise ValueError(f"Expected a Sequential config; received class_name={config['class_name']!r}.")
            config = config["config"]
        model = cls(name=config.get("name"))
        input_shape: Optional[Sequence[Optional[int]]] = config.get("build_input_shape")
        for entry in config.get("layers", []):
            class_name = entry.get("class_name")
            layer_config = entry.get("config", {})
            if class_name == "InputLayer":
                shape = layer_config.get("batch_shape", layer_config.get("batch_input_shape"))
                input_shape = shape if input_shape is None else input_shape
                continue
            if class_name not in ("Conv1D", "Convolution1D"):
                raise ValueError(
                    f"conv1d_rs.Sequential can only run Conv1D layers; layer "
                    f"{layer_config.get('name', '?')!r} is a {class_name}."
                )
            layer = Conv1D.from_config(layer_config)
            build_shape = (entry.get("build_config") or {}).get("input_shape")
            if build_shape is not None:
                layer.build(build_shape)
            model.add(layer)
        if input_shape is not None:
            model.build(input_shape)
        return model

    def __repr__(self) -> str:
        return f"<Sequential name={self.name!r} layers={[layer.name for layer in self.layers]}>"
