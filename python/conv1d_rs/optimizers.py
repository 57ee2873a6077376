"""Keras 3 optimizers (`SGD`, `Adam`) that update conv1d_rs layers' weights.

Weights are named by `(layer, "kernel" | "bias")`; an update is

>>> opt = Adam(learning_rate=0.01)                                   # doctest: +SKIP
>>> dx, grads = layer.vjp(x, dy)                                     # doctest: +SKIP
>>> opt.apply_gradients([(grads["kernel"], layer, "kernel"), (grads["bias"], layer, "bias")])  # doctest: +SKIP

or `opt.update(layer, grads)` for one layer's gradient dict. As in Keras 3, one call is one
step: the iteration counter (Adam's `t`) advances once per call, whatever the number of
weights, and each updated weight's constraint is applied after all updates of the call.

Arithmetic follows Keras's `update_step` in the weight's dtype: the learning rate is held
as a float32 variable (so float64 weights see it rounded to float32), and hyperparameters
that Keras passes through `ops.cast` (`momentum`, Adam's betas in `beta ** t`) are rounded
through float32 for float64 weights, as the TensorFlow backend does; the JAX backend with
x64 enabled keeps them exact (Adam's first steps then differ by up to ~1e-5 relative). Both
agree bitwise with Keras for float32 weights. Not supported:
`weight_decay`, gradient clipping, EMA, loss scaling and gradient accumulation.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Optional, Union

import numpy as np

__all__ = ["SGD", "Adam", "Optimizer", "get"]

LearningRate = Union[float, Callable[[int], float]]

# Keras base-optimizer arguments conv1d_rs does not implement, with their inert defaults.
_UNSUPPORTED_DEFAULTS: dict[str, Any] = {
    "weight_decay": None,
    "clipnorm": None,
    "global_clipnorm": None,
    "clipvalue": None,
    "use_ema": False,
    "ema_momentum": 0.99,
    "ema_overwrite_frequency": None,
    "loss_scale_factor": None,
    "gradient_accumulation_steps": None,
}


def _tf_cast(value: float, dtype: np.dtype) -> np.generic:
    """`ops.cast(python_float, dtype)` on the TensorFlow backend: through a float32 tensor."""
    return dtype.type(np.float32(value))


class Optimizer:
    """Base class: slot state per weight, the step counter, constraints after updates.

    `learning_rate` is a float, or a callable `f(iterations) -> float` (like a Keras
    `LearningRateSchedule`, evaluated at the step about to be taken).
    """

    def __init__(self, learning_rate: LearningRate, name: Optional[str] = None, **kwargs: Any) -> None:
        if kwargs.pop("decay", None) is not None:
            warnings.warn("Argument `decay` is no longer supported and will be ignored.", stacklevel=3)
        unsupported = {
            key: kwargs.pop(key) for key in list(kwargs) if key in _UNSUPPORTED_DEFAULTS
        }
        unsupported = {k: v for k, v in unsupported.items() if v != _UNSUPPORTED_DEFAULTS[k]}
        if unsupported:
            raise ValueError(f"conv1d_rs optimizers do not support {unsupported}; leave these at their defaults.")
        if kwargs:
            raise ValueError(f"Argument(s) not recognized: {kwargs}")
        if not callable(learning_rate) and not isinstance(learning_rate, float):
            raise ValueError(
                "Argument `learning_rate` should be float, or an instance of LearningRateSchedule, or a "
                "callable (that takes in the current iteration value and returns the corresponding learning "
                f"rate value). Received instead: learning_rate={learning_rate}"
            )
        self.name = name if name is not None else type(self).__name__.lower()
        self._learning_rate: LearningRate = learning_rate
        self.iterations = 0
        # Keyed by (id(layer), weight name); the layer is kept so its id cannot be reused.
        self._slots: dict[tuple[int, str], tuple[Any, dict[str, np.ndarray]]] = {}

    @property
    def learning_rate(self) -> float:
        """The learning rate for the next step, as the float32 value Keras stores."""
        value = self._learning_rate(self.iterations) if callable(self._learning_rate) else self._learning_rate
        return float(np.float32(value))

    @learning_rate.setter
    def learning_rate(self, value: LearningRate) -> None:
        self._learning_rate = value

    def _slot(self, layer: Any, name: str, weight: np.ndarray) -> dict[str, np.ndarray]:
        key = (id(layer), name)
        if key not in self._slots:
            self._slots[key] = (layer, self._new_slot(weight))
        return self._slots[key][1]

    def _new_slot(self, weight: np.ndarray) -> dict[str, np.ndarray]:
        return {}

    def _update(self, gradient: np.ndarray, weight: np.ndarray, slot: dict[str, np.ndarray], lr: np.generic) -> np.ndarray:
        raise NotImplementedError

    def apply_gradients(self, grads_and_weights: Iterable[tuple[Optional[Any], Any, str]]) -> int:
        """One step: updates each `(gradient, layer, "kernel" | "bias")`, then applies constraints.

        Entries whose gradient is None are skipped with a warning, as Keras does. Returns the
        iteration count after the step.
        """
        items = list(grads_and_weights)
        if not items:
            return self.iterations
        missing = [f"{layer.name}/{name}" for grad, layer, name in items if grad is None]
        items = [item for item in items if item[0] is not None]
        if not items:
            raise ValueError("No gradients provided for any variable.")
        if missing:
            warnings.warn(f"Gradients do not exist for variables {missing} when minimizing the loss.", stacklevel=2)
        updates = []
        for grad, layer, name in items:
            if name not in ("kernel", "bias"):
                raise ValueError(f"A weight name must be 'kernel' or 'bias'; received {name!r}.")
            weight = getattr(layer, name)
            if weight is None:
                raise ValueError(f"Layer '{layer.name}' has no {name} (unbuilt, or use_bias=False).")
            grad_arr = np.asarray(grad)
            if grad_arr.shape != weight.shape:
                raise ValueError(
                    f"The gradient for {layer.name}/{name} has shape {grad_arr.shape}; the weight has {weight.shape}."
                )
            updates.append((grad_arr, layer, name, weight))
        lr = self.learning_rate
        for grad_arr, layer, name, weight in updates:
            dtype = weight.dtype
            new = self._update(grad_arr.astype(dtype, copy=False), weight, self._slot(layer, name, weight), dtype.type(lr))
            setattr(layer, name, new.astype(dtype, copy=False))
        self.iterations += 1
        # Keras assigns `constraint(w)` to every updated variable after the whole step.
        for _, layer, name, _ in updates:
            layer.apply_constraints((name,))
        return self.iterations

    def update(self, layer: Any, grads: Mapping[str, Optional[Any]]) -> int:
        """One step for one layer from a `{"kernel": ..., "bias": ...}` dict, as `Conv1D.vjp` returns.

        A missing or None bias gradient is fine for a layer without a bias.
        """
        names = [name for name in ("kernel", "bias") if getattr(layer, name) is not None]
        return self.apply_gradients([(grads.get(name), layer, name) for name in names])

    def get_config(self) -> dict[str, Any]:
        if callable(self._learning_rate):
            raise ValueError("An optimizer with a callable learning rate cannot be serialized.")
        return {"name": self.name, "learning_rate": float(np.float32(self._learning_rate)), **_UNSUPPORTED_DEFAULTS}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Optimizer:
        return cls(**dict(config))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} iterations={self.iterations}>"


class SGD(Optimizer):
    """Gradient descent with optional (Nesterov) momentum, Keras 3's rule.

    Without momentum `w -= lr * g`; with it `m = momentum * m - lr * g`, then `w += m`
    (Nesterov: `w += momentum * m - lr * g`).
    """

    def __init__(
        self,
        learning_rate: LearningRate = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        name: Optional[str] = "sgd",
        **kwargs: Any,
    ) -> None:
        super().__init__(learning_rate, name=name, **kwargs)
        if not isinstance(momentum, float) or momentum < 0 or momentum > 1:
            raise ValueError("`momentum` must be a float between [0, 1].")
        self.momentum = momentum
        self.nesterov = nesterov

    def _new_slot(self, weight: np.ndarray) -> dict[str, np.ndarray]:
        return {"momentum": np.zeros_like(weight)} if self.momentum != 0 else {}

    def _update(self, gradient: np.ndarray, weight: np.ndarray, slot: dict[str, np.ndarray], lr: np.generic) -> np.ndarray:
        if self.momentum == 0:
            return weight - gradient * lr
        momentum = _tf_cast(self.momentum, weight.dtype)
        m = slot["momentum"] * momentum - gradient * lr
        slot["momentum"] = m
        if self.nesterov:
            return weight + (m * momentum - gradient * lr)
        return weight + m

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam, Keras 3's rule (`epsilon` is "epsilon hat", added to `sqrt(v)`).

    With `t` the step number from 1: `alpha = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)`,
    `m += (g - m) * (1 - beta_1)`, `v += (g**2 - v) * (1 - beta_2)` and
    `w -= m * alpha / (sqrt(v) + epsilon)`; AMSGrad uses the running maximum of `v`.
    """

    def __init__(
        self,
        learning_rate: LearningRate = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        amsgrad: bool = False,
        name: Optional[str] = "adam",
        **kwargs: Any,
    ) -> None:
        super().__init__(learning_rate, name=name, **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.amsgrad = amsgrad

    def _new_slot(self, weight: np.ndarray) -> dict[str, np.ndarray]:
        slot = {"momentum": np.zeros_like(weight), "velocity": np.zeros_like(weight)}
        if self.amsgrad:
            slot["velocity_hat"] = np.zeros_like(weight)
        return slot

    def _update(self, gradient: np.ndarray, weight: np.ndarray, slot: dict[str, np.ndarray], lr: np.generic) -> np.ndarray:
        dtype = weight.dtype
        step = dtype.type(self.iterations + 1)
        one = dtype.type(1)
        beta_1_power = np.power(_tf_cast(self.beta_1, dtype), step)
        beta_2_power = np.power(_tf_cast(self.beta_2, dtype), step)
        alpha = lr * np.sqrt(one - beta_2_power) / (one - beta_1_power)
        m = slot["momentum"] + (gradient - slot["momentum"]) * dtype.type(1 - self.beta_1)
        v = slot["velocity"] + (np.square(gradient) - slot["velocity"]) * dtype.type(1 - self.beta_2)
        slot["momentum"], slot["velocity"] = m, v
        if self.amsgrad:
            v = np.maximum(slot["velocity_hat"], v)
            slot["velocity_hat"] = v
        return weight - (m * alpha) / (np.sqrt(v) + dtype.type(self.epsilon))

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "epsilon": self.epsilon,
            "amsgrad": self.amsgrad,
        }


_BUILTINS: dict[str, type[SGD | Adam]] = {"sgd": SGD, "adam": Adam}


def get(identifier: Any) -> Optimizer:
    """An optimizer from an instance, a name ("sgd", "adam") or a Keras config dict."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _BUILTINS:
        return _BUILTINS[identifier.lower()]()
    if isinstance(identifier, Mapping) and str(identifier.get("class_name", "")).lower() in _BUILTINS:
        cls = _BUILTINS[str(identifier["class_name"]).lower()]
        return cls.from_config(identifier.get("config", {}))
    raise ValueError(f"Could not interpret optimizer identifier: {identifier!r}; conv1d_rs has 'sgd' and 'adam'.")
