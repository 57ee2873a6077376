"""Keras-style lookup and serialization shared by the activation,
initializer, regularizer and constraint modules."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "function_config",
    "object_config",
    "resolve",
    "serialize_object",
]


def function_config(fn: Callable[..., Any]) -> dict[str, Any]:
    """Keras's serialized form of a plain user function.

    Keras writes the function's own name as `registered_name` when the
    function was not registered under another name.
    """
    name = getattr(fn, "__name__", type(fn).__name__)
    return {
        "module": getattr(fn, "__module__", None),
        "class_name": "function",
        "config": name,
        "registered_name": name,
    }


def object_config(
    obj: Any, module: str, builtins: Mapping[str, Any]
) -> dict[str, Any]:
    """Keras's 4-key serialized form of an object with `get_config()`."""
    cls = type(obj)
    config = dict(obj.get_config())
    if builtins.get(cls.__name__) is cls:
        return {
            "module": module,
            "class_name": cls.__name__,
            "config": config,
            "registered_name": None,
        }
    # Unregistered user classes are written with their own module and name.
    return {
        "module": cls.__module__,
        "class_name": cls.__name__,
        "config": config,
        "registered_name": cls.__name__,
    }


def serialize_object(
    obj: Any, module: str, builtins: Mapping[str, Any]
) -> dict[str, Any] | None:
    """Serialize an instance, a user function, or `None` (kept as `None`)."""
    if obj is None:
        return None
    if hasattr(obj, "get_config") and not inspect.isclass(obj):
        return object_config(obj, module, builtins)
    if callable(obj):
        return function_config(obj)
    raise ValueError(f"Cannot serialize {obj!r}: it has no `get_config()`.")


def _from_config_dict(
    identifier: Mapping[str, Any], registry: Mapping[str, Any]
) -> Any:
    """Build a registered class from `{"class_name": ..., "config": {...}}`.

    Returns `None` when the dict does not name a registered class.
    """
    class_name = identifier.get("class_name")
    config = identifier.get("config", {})
    cls: Any = registry.get(class_name) if isinstance(class_name, str) else None
    if cls is None or not inspect.isclass(cls):
        return None
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        return None
    return cls.from_config(dict(config))


def resolve(
    identifier: Any,
    registry: Mapping[str, Any],
    kind: str,
    instantiate_classes: bool = True,
) -> Any:
    """Keras's `get` for a non-`None` identifier.

    Strings are looked up exactly (case-sensitive), dicts are built with the
    class's `from_config`, classes are instantiated without arguments and
    any other callable is returned unchanged.
    """
    if isinstance(identifier, dict):
        obj = _from_config_dict(identifier, registry)
    elif isinstance(identifier, str):
        obj = registry.get(identifier)
    else:
        obj = identifier
    if instantiate_classes and inspect.isclass(obj):
        obj = obj()
    if obj is None or not callable(obj):
        raise ValueError(f"Could not interpret {kind} identifier: {identifier}")
    return obj
