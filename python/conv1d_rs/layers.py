"""`Conv1D`: the Keras layer, argument for argument, computing with the Rust core."""

from __future__ import annotations

import itertools
import warnings
from typing import Any, Callable, Optional, Sequence

import numpy as np

from . import _core, activations, constraints, dtype_policies, initializers, regularizers
from .functional import as_float_array, check_input_rank, current_options, prepare_kernel

__all__ = ["Conv1D", "Convolution1D"]

_LAYER_KWARGS = {"name", "dtype", "trainable", "autocast", "input_shape", "input_dim", "batch_input_shape", "batch_size"}
_name_counter = itertools.count()
_used_names: set[str] = set()


def _unique_name(base: str) -> str:
    """Keras's automatic names: conv1d, conv1d_1, conv1d_2, ..."""
    while True:
        index = next(_name_counter)
        name = base if index == 0 else f"{base}_{index}"
        if name not in _used_names:
            _used_names.add(name)
            return name


def _standardize_tuple(value: Any, name: str) -> tuple[int]:
    """Keras `standardize_tuple(value, 1, name)`: an int or a 1-element iterable of ints, > 0."""
    shown = tuple(value) if isinstance(value, list) else value
    error = f"The `{name}` argument must be a tuple of 1 integers. Received {name}={shown}"
    if isinstance(value, int):
        items: tuple[Any, ...] = (value,)
    else:
        try:
            items = tuple(value)
        except TypeError:
            raise ValueError(error) from None
        if len(items) != 1:
            raise ValueError(error)
        for item in items:
            try:
                int(item)
            except (ValueError, TypeError):
                raise ValueError(f"{error}including element {item} of type {type(item)}") from None
    bad = {v for v in items if v <= 0}
    if bad:
        raise ValueError(f"{error}, including values {bad} that do not satisfy `value > 0`")
    return (int(items[0]),)


def _standardize_padding(padding: Any) -> Any:
    if isinstance(padding, (list, tuple)):
        return padding  # Keras defers this refusal to build()
    value = str(padding).lower()
    if value not in ("valid", "same", "causal"):
        raise ValueError(
            "The `padding` argument must be a list/tuple or one of {'valid', 'same', 'causal'}. " f"Received: {padding}"
        )
    return value


def _standardize_data_format(data_format: Any) -> str:
    if data_format is None:
        return "channels_last"
    value = str(data_format).lower()
    if value not in ("channels_first", "channels_last"):
        raise ValueError(
            "The `data_format` argument must be one of {'channels_first', 'channels_last'}. "
            f"Received: data_format={value}"
        )
    return value


class Conv1D:
    """1-D convolution layer (temporal convolution), the Keras `Conv1D`.

    Input `(batch, steps, channels)` (or `(batch, channels, steps)` with
    `data_format="channels_first"`); output `(batch, new_steps, filters)`.
    Weights: `kernel` `(kernel_size, channels // groups, filters)` and `bias` `(filters,)`.
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] = 1,
        padding: str = "valid",
        data_format: Optional[str] = None,
        dilation_rate: int | Sequence[int] = 1,
        groups: int = 1,
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        **kwargs: Any,
    ) -> None:
        lora_rank = kwargs.pop("lora_rank", None)
        kwargs.pop("lora_alpha", None)
        unknown = {k: v for k, v in kwargs.items() if k not in _LAYER_KWARGS}
        if unknown:
            raise ValueError(f"Unrecognized keyword arguments passed to {type(self).__name__}: {unknown}")
        if lora_rank is not None:
            raise ValueError(f"LoRA is not supported by conv1d_rs. Received: lora_rank={lora_rank}; pass lora_rank=None.")
        trainable = kwargs.get("trainable", True)
        if not isinstance(trainable, bool):
            raise ValueError(f"Expected `trainable` to be a boolean. Received: trainable={trainable} (of type {type(trainable)})")
        self.trainable = trainable
        self.dtype_policy = dtype_policies.get(kwargs.get("dtype"))
        self.activity_regularizer = regularizers.get(activity_regularizer)
        name = kwargs.get("name")
        self.name = name if name is not None else _unique_name("conv1d")
        for shape_key in ("input_shape", "input_dim", "batch_input_shape"):
            if kwargs.get(shape_key) is not None:
                warnings.warn(
                    f"Do not pass an `{shape_key}` argument to a layer. When using Sequential models, "
                    "prefer using an `Input(shape)` object as the first layer in the model instead.",
                    UserWarning,
                    stacklevel=2,
                )

        self.rank = 1
        self.filters = filters
        self.groups = groups
        self.kernel_size = _standardize_tuple(kernel_size, "kernel_size")
        self.strides = _standardize_tuple(strides, "strides")
        self.dilation_rate = _standardize_tuple(dilation_rate, "dilation_rate")
        self.padding = _standardize_padding(padding)
        self.data_format = _standardize_data_format(data_format)
        self.activation = activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)

        if self.filters is not None and self.filters <= 0:
            raise ValueError(
                "Invalid value for argument `filters`. Expected a strictly positive value. " f"Received filters={self.filters}."
            )
        if self.groups <= 0:
            raise ValueError(f"The number of groups must be a positive integer. Received: groups={self.groups}.")
        if self.filters is not None and self.filters % self.groups != 0:
            raise ValueError(
                "The number of filters must be evenly divisible by the number of groups. "
                f"Received: groups={self.groups}, filters={self.filters}."
            )
        if self.strides[0] > 1 and self.dilation_rate[0] > 1:
            raise ValueError(
                "`strides > 1` not supported in conjunction with `dilation_rate > 1`. "
                f"Received: strides={self.strides} and dilation_rate={self.dilation_rate}"
            )

        self.built = False
        self._kernel: Optional[np.ndarray] = None
        self._bias: Optional[np.ndarray] = None
        self._prepared: Optional[tuple[Any, _core.PreparedKernel]] = None
        self._activity_loss: Optional[float] = None
        self._input_channels: Optional[int] = None

        channels = self._channels_from_kwargs(kwargs)
        if channels is not None:
            self.build((None, None, channels) if self.data_format == "channels_last" else (None, channels, None))

    def _channels_from_kwargs(self, kwargs: dict[str, Any]) -> Optional[int]:
        if kwargs.get("input_dim") is not None:
            return int(kwargs["input_dim"])
        shape = kwargs.get("batch_input_shape") or kwargs.get("input_shape")
        if shape is None:
            return None
        shape = tuple(shape)
        if kwargs.get("batch_input_shape") is None:
            shape = (None,) + shape
        if len(shape) != 3:
            return None
        return shape[-1] if self.data_format == "channels_last" else shape[1]

    # ------------------------------------------------------------------ weights
    @property
    def dtype(self) -> str:
        return self.dtype_policy.variable_dtype.name

    @property
    def compute_dtype(self) -> str:
        return self.dtype_policy.compute_dtype.name

    @property
    def _channel_axis(self) -> int:
        return -1 if self.data_format == "channels_last" else 1

    def build(self, input_shape: Sequence[Optional[int]]) -> None:
        """Creates `kernel` and `bias` for inputs of `input_shape` (batch and steps may be None)."""
        input_shape = tuple(input_shape)
        if isinstance(self.padding, (list, tuple)):
            raise ValueError(f"`padding` must be either `'valid'` or `'same'`. Received {self.padding}.")
        if len(input_shape) < 3:
            check_input_rank(input_shape, self.data_format, who="Conv1D")
        input_channel = input_shape[self._channel_axis]
        if input_channel is None:
            raise ValueError(
                f"The channel dimension of the inputs should be defined. Received input shape {input_shape} "
                f"(channel axis {self._channel_axis} for data_format={self.data_format})."
            )
        input_channel = int(input_channel)
        if input_channel % self.groups != 0:
            raise ValueError(
                "The number of input channels must be evenly divisible by the number of groups. "
                f"Received groups={self.groups}, but the input has {input_channel} channels "
                f"(full input shape is {input_shape})."
            )
        kernel_shape = self.kernel_size + (input_channel // self.groups, self.filters)
        self.compute_output_shape(input_shape)
        variable_dtype = self.dtype_policy.variable_dtype
        self._input_channels = input_channel
        kernel = np.asarray(self.kernel_initializer(kernel_shape, dtype=variable_dtype.name), dtype=variable_dtype)
        bias = None
        if self.use_bias:
            bias = np.asarray(self.bias_initializer((self.filters,), dtype=variable_dtype.name), dtype=variable_dtype)
        self._assign(kernel, bias)
        self.built = True

    def _assign(self, kernel: np.ndarray, bias: Optional[np.ndarray]) -> None:
        """Stores private read-only copies and drops the packed kernel, so nothing stale is used."""
        kernel = np.array(kernel, dtype=self.dtype_policy.variable_dtype, copy=True)
        kernel.flags.writeable = False
        self._kernel = kernel
        if bias is not None:
            bias = np.array(bias, dtype=self.dtype_policy.variable_dtype, copy=True)
            bias.flags.writeable = False
        self._bias = bias
        self._prepared = None

    @property
    def kernel(self) -> Optional[np.ndarray]:
        """The kernel, read-only; assign a new array (or use `set_weights`) to change it."""
        return self._kernel

    @kernel.setter
    def kernel(self, value: Any) -> None:
        self._require_built("set the kernel")
        self._assign(self._checked_weight(value, self._kernel.shape, "kernel"), self._bias)

    @property
    def bias(self) -> Optional[np.ndarray]:
        """The bias (None when `use_bias=False`), read-only."""
        return self._bias

    @bias.setter
    def bias(self, value: Any) -> None:
        self._require_built("set the bias")
        if not self.use_bias:
            raise ValueError(f"Layer '{self.name}' has no bias (use_bias=False).")
        self._assign(self._kernel, self._checked_weight(value, self._bias.shape, "bias"))

    @property
    def weights(self) -> list[np.ndarray]:
        return self.get_weights()

    def _checked_weight(self, value: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
        arr = as_float_array(value, self.dtype_policy.variable_dtype, what)
        if arr.shape != shape:
            raise ValueError(
                f"Layer {self.name} weight shape {shape} is not compatible with provided weight shape {arr.shape}."
            )
        return arr

    def _require_built(self, action: str) -> None:
        if not self.built:
            raise ValueError(
                f"You tried to {action} on layer '{self.name}', but the layer isn't built. "
                "You can build it manually via: `layer.build(batch_input_shape)`."
            )

    def get_weights(self) -> list[np.ndarray]:
        """Copies of `[kernel, bias]` (`[kernel]` without bias); empty before build."""
        if not self.built:
            return []
        weights = [self._kernel.copy()]
        if self._bias is not None:
            weights.append(self._bias.copy())
        return weights

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Sets `[kernel, bias]` from arrays of the same shapes."""
        self._require_built("call `set_weights`")
        expected = [self._kernel] + ([self._bias] if self._bias is not None else [])
        weights = list(weights)
        if len(weights) != len(expected):
            raise ValueError(
                f"You called `set_weights(weights)` on layer '{self.name}' with a weight list of length "
                f"{len(weights)}, but the layer was expecting {len(expected)} weights."
            )
        checked = [self._checked_weight(w, e.shape, "weight") for w, e in zip(weights, expected)]
        self._assign(checked[0], checked[1] if len(checked) > 1 else None)

    def count_params(self) -> int:
        self._require_built("call `count_params`")
        return int(sum(w.size for w in self.get_weights()))

    # ------------------------------------------------------------------ shapes
    def compute_output_shape(self, input_shape: Sequence[Optional[int]]) -> tuple[Optional[int], ...]:
        """Output shape for `input_shape`; unknown (None) batch or steps stay None."""
        input_shape = tuple(input_shape)
        if len(input_shape) != 3:
            kernel_shape = self.kernel_size + (input_shape[self._channel_axis] if input_shape else None, self.filters)
            raise ValueError(
                "Kernel shape must have the same length as input, but received kernel of shape "
                f"{kernel_shape} and input of shape {input_shape}. Conv1D expects a 3-D input "
                f"{'(batch, steps, channels)' if self.data_format == 'channels_last' else '(batch, channels, steps)'}."
            )
        steps = input_shape[1] if self.data_format == "channels_last" else input_shape[2]
        out_steps = None if steps is None else self._output_steps(int(steps), input_shape)
        if self.data_format == "channels_last":
            return (input_shape[0], out_steps, self.filters)
        return (input_shape[0], self.filters, out_steps)

    def _output_steps(self, steps: int, input_shape: tuple[Any, ...]) -> int:
        k, s, d = self.kernel_size[0], self.strides[0], self.dilation_rate[0]
        if self.padding == "valid":
            out = (steps - (d * (k - 1) + 1)) // s + 1
            if out <= 0:
                channels = input_shape[self._channel_axis]
                kernel_shape = self.kernel_size + (None if channels is None else channels // self.groups, self.filters)
                raise ValueError(
                    "Computed output size would be zero or negative. Received "
                    f"`inputs shape={input_shape}`, `kernel shape={kernel_shape}`, "
                    f"`dilation_rate={list(self.dilation_rate)}`, `strides={self.strides}`, `padding={self.padding}`."
                )
            return out
        return -(-steps // s)

    # ------------------------------------------------------------------ call
    def _input_array(self, inputs: Any) -> np.ndarray:
        x = np.asarray(inputs)
        if x.dtype.kind not in "biuf":
            raise TypeError(
                f"Conv1D input must hold real numbers (bool, int or float); got dtype {x.dtype}. "
                f"Convert it first, e.g. np.asarray(x, dtype='{self.compute_dtype}')."
            )
        if x.ndim < 3:
            layout = "(batch, steps, channels)" if self.data_format == "channels_last" else "(batch, channels, steps)"
            hint = ""
            if x.ndim == 2:
                batch, steps = x.shape
                fix = f"({batch}, {steps}, 1)" if self.data_format == "channels_last" else f"({batch}, 1, {steps})"
                seqs = "one sequence" if batch == 1 else f"{batch} sequences"
                hint = f" For {seqs} of {steps} steps with one feature, use x.reshape{fix}."
            elif x.ndim == 1:
                fix = f"(1, {x.shape[0]}, 1)" if self.data_format == "channels_last" else f"(1, 1, {x.shape[0]})"
                hint = f" For one sequence of {x.shape[0]} steps with one feature, use x.reshape{fix}."
            raise ValueError(
                f"Conv1D expects a 3-D input {layout}; got shape {x.shape}.{hint} "
                f"(Input 0 of layer '{self.name}' is incompatible with the layer: expected min_ndim=3, "
                f"found ndim={x.ndim}. Full shape received: {x.shape})"
            )
        return x

    def __call__(self, inputs: Any) -> np.ndarray:
        """Convolves, adds the bias, applies the activation; builds on the first call."""
        pre_activation = self._convolve(self._checked_input(inputs))
        y = self.activation(pre_activation)
        y = np.asarray(y).astype(self.dtype_policy.compute_dtype, copy=False)
        if self.activity_regularizer is not None:
            batch = y.shape[0]
            penalty = float(self.activity_regularizer(y))
            self._activity_loss = penalty / batch if batch else 0.0
        return y

    def _convolve(self, x: np.ndarray) -> np.ndarray:
        """The convolution plus bias, in the core's dtype, reusing the packed kernel."""
        kernel_dtype = self.dtype_policy.kernel_dtype
        options = current_options()
        if self._prepared is None or self._prepared[0] != options:
            self._prepared = (options, prepare_kernel(self._kernel.astype(kernel_dtype, copy=False), self.groups))
        bias = None if self._bias is None else self._bias.astype(kernel_dtype, copy=False)
        return self._prepared[1].forward(
            x, bias, self.strides[0], self.padding, self.data_format, self.dilation_rate[0], self.groups
        )

    @property
    def losses(self) -> list[float]:
        """Penalties as Keras reports them: activity (after a call, divided by batch size), kernel, bias."""
        losses = []
        if self._activity_loss is not None:
            losses.append(self._activity_loss)
        if self.built and self.kernel_regularizer is not None:
            losses.append(float(self.kernel_regularizer(self._kernel)))
        if self.built and self._bias is not None and self.bias_regularizer is not None:
            losses.append(float(self.bias_regularizer(self._bias)))
        return losses

    def _checked_input(self, inputs: Any) -> np.ndarray:
        """`inputs` checked as Keras checks a call's (building the layer if needed): rank, then
        channels, then length; in the core's dtype."""
        x = self._input_array(inputs)
        if not self.built:
            self.build(x.shape)
        if x.ndim != 3:
            self.compute_output_shape(x.shape)
        channels = x.shape[self._channel_axis]
        if channels != self._input_channels:
            raise ValueError(
                f"Input 0 of layer '{self.name}' is incompatible with the layer: expected axis "
                f"{self._channel_axis} of input shape to have value {self._input_channels}, but received input "
                f"with shape {x.shape}. Expected {self._input_channels} channels, received {channels}."
            )
        self.compute_output_shape(x.shape)
        return as_float_array(x, self.dtype_policy.kernel_dtype, "inputs")

    # ------------------------------------------------------------------ training
    def vjp(
        self, inputs: Any, dy: Any, include_activity: bool = False
    ) -> tuple[np.ndarray, dict[str, Optional[np.ndarray]]]:
        """Gradients of `sum(layer(inputs) * dy)`: `(dx, {"kernel": dkernel, "bias": dbias})`.

        The activation is included (builtin activations only; axis-based ones such as softmax
        act on the last axis, the steps axis for channels_first, as in Keras). Weight
        regularizers are not: add `regularization_gradients()`. With `include_activity=True`
        the activity regularizer's term `activity_gradient(layer(inputs))` is added to `dy`, so
        the result is the gradient of `sum(layer(inputs) * dy)` plus the activity loss that
        `losses` reports after the call. `dx` has the compute dtype, `dkernel` and `dbias` the
        weights' dtype; `dbias` is None when `use_bias=False`. Builds the layer like a call.
        """
        # The package imports this module, so the backward is looked up when first needed.
        from . import conv1d_backward

        x = self._checked_input(inputs)
        kernel_dtype = self.dtype_policy.kernel_dtype
        pre_activation = self._convolve(x)
        upstream = as_float_array(dy, kernel_dtype, "dy")
        output_shape = pre_activation.shape
        if self.activation is activations.glu:
            # glu keeps half of the last axis.
            output_shape = output_shape[:-1] + (output_shape[-1] // 2,)
        if upstream.shape != output_shape:
            raise ValueError(f"`dy` must have the layer output's shape {output_shape}; got {upstream.shape}.")
        if include_activity and self.activity_regularizer is not None:
            y = np.asarray(self.activation(pre_activation)).astype(self.dtype_policy.compute_dtype, copy=False)
            upstream = upstream + self.activity_gradient(y).astype(kernel_dtype, copy=False)
        d_pre = activations.activation_vjp(self.activation, pre_activation, upstream, axis=-1)
        assert self._kernel is not None  # built by _checked_input
        dx, d_kernel, d_bias = conv1d_backward(
            x,
            self._kernel.astype(kernel_dtype, copy=False),
            d_pre,
            strides=self.strides[0],
            padding=self.padding,
            data_format=self.data_format,
            dilation_rate=self.dilation_rate[0],
            groups=self.groups,
            use_bias=self.use_bias,
        )
        variable_dtype = self.dtype_policy.variable_dtype
        grads: dict[str, Optional[np.ndarray]] = {
            "kernel": np.asarray(d_kernel).astype(variable_dtype, copy=False),
            "bias": None if d_bias is None else np.asarray(d_bias).astype(variable_dtype, copy=False),
        }
        return np.asarray(dx).astype(self.dtype_policy.compute_dtype, copy=False), grads

    def activity_gradient(self, y: Any) -> np.ndarray:
        """Gradient of the activity penalty in `losses` w.r.t. the layer output `y`.

        `activity_regularizer.gradient(y) / batch`, as Keras divides the penalty by the batch
        size; zeros when there is no activity regularizer.
        """
        y_arr = np.asarray(y)
        if not np.issubdtype(y_arr.dtype, np.floating):
            y_arr = y_arr.astype(self.dtype_policy.compute_dtype)
        batch = y_arr.shape[0] if y_arr.ndim else 0
        if self.activity_regularizer is None or batch == 0:
            return np.zeros_like(y_arr)
        grad = self._regularizer_gradient(self.activity_regularizer, y_arr, "activity_regularizer")
        return (grad / y_arr.dtype.type(batch)).astype(y_arr.dtype, copy=False)

    def _regularizer_gradient(self, regularizer: Any, value: np.ndarray, what: str) -> np.ndarray:
        gradient = getattr(regularizer, "gradient", None)
        if gradient is None:
            raise TypeError(
                f"The {what} of layer '{self.name}' ({regularizer!r}) has no `gradient(x)` method, so it "
                "cannot be differentiated; the builtin regularizers (conv1d_rs.regularizers) have one."
            )
        return np.asarray(gradient(value)).astype(value.dtype, copy=False)

    def regularization_gradients(self) -> dict[str, Optional[np.ndarray]]:
        """Gradients of the weight penalties in `losses` w.r.t. `{"kernel": ..., "bias": ...}`.

        Zeros for a weight without a regularizer; `"bias"` is None when `use_bias=False`. The
        activity penalty depends on the weights only through the output: its gradient enters
        through `vjp(..., include_activity=True)` (or `activity_gradient`).
        """
        self._require_built("compute regularization gradients")
        kernel = self._kernel
        assert kernel is not None  # built
        kernel_grad = np.zeros_like(kernel)
        if self.kernel_regularizer is not None:
            kernel_grad = self._regularizer_gradient(self.kernel_regularizer, kernel, "kernel_regularizer")
        bias_grad: Optional[np.ndarray] = None
        if self._bias is not None:
            bias_grad = np.zeros_like(self._bias)
            if self.bias_regularizer is not None:
                bias_grad = self._regularizer_gradient(self.bias_regularizer, self._bias, "bias_regularizer")
        return {"kernel": kernel_grad, "bias": bias_grad}

    def apply_constraints(self, names: Sequence[str] = ("kernel", "bias")) -> None:
        """Projects the named weights as a Keras optimizer does after each update: `w = constraint(w)`."""
        self._require_built("apply constraints")
        kernel, bias = self._kernel, self._bias
        assert kernel is not None  # built
        changed = False
        if "kernel" in names and self.kernel_constraint is not None:
            kernel = self._checked_weight(self.kernel_constraint(kernel), kernel.shape, "kernel")
            changed = True
        if "bias" in names and bias is not None and self.bias_constraint is not None:
            bias = self._checked_weight(self.bias_constraint(bias), bias.shape, "bias")
            changed = True
        if changed:
            self._assign(kernel, bias)

    # ------------------------------------------------------------------ config
    def get_config(self) -> dict[str, Any]:
        """The constructor arguments, serialised exactly as Keras 3 writes them."""
        config: dict[str, Any] = {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": self.dtype_policy.get_config(),
        }
        if self.activity_regularizer is not None:
            config["activity_regularizer"] = regularizers.serialize(self.activity_regularizer)
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "padding": self.padding,
                "data_format": self.data_format,
                "dilation_rate": self.dilation_rate,
                "groups": self.groups,
                "activation": activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": regularizers.serialize(self.bias_regularizer),
                "activity_regularizer": regularizers.serialize(self.activity_regularizer),
                "kernel_constraint": constraints.serialize(self.kernel_constraint),
                "bias_constraint": constraints.serialize(self.bias_constraint),
            }
        )
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Conv1D":
        """A layer from `get_config()` output, including configs written by Keras 3 and tf-keras."""
        return cls(**dict(config))

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} name={self.name!r} filters={self.filters} kernel_size={self.kernel_size[0]} "
            f"padding={self.padding!r} built={self.built}>"
        )


Convolution1D = Conv1D
