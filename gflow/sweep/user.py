"""A sweep's own network and data: ``model = "package.module:factory"`` (a callable
``key -> eqx.Module``), ``data = "file.npz"`` (arrays ``x``, ``y``; optional ``x_test``,
``y_test``) or ``data = "package.module:factory"`` (a callable ``() -> gflow.Dataset`` or
``(x, y)``). The Python API takes the callables themselves.

Every failure is a ``ValueError`` of one sentence naming the config field (the CLI exits
with code 2 and writes nothing).
"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
from collections.abc import Callable
from typing import cast

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..data import Dataset

__all__ = ["is_reference", "resolve", "callable_name", "load_npz", "npz_digest", "check_model"]


def is_reference(value) -> bool:
    """Whether ``value`` looks like ``"package.module:name"``."""
    if not isinstance(value, str) or value.count(":") != 1:
        return False
    module, name = value.split(":")
    return bool(module) and bool(name) and all(p.isidentifier() for p in module.split(".") + name.split("."))


def resolve(field: str, value, search: tuple[str, ...] = ()) -> Callable:
    """The callable ``value`` names (``"package.module:name"``), or ``value`` if it is one.

    ``search``: folders tried after ``sys.path`` (the TOML's folder and the working
    directory, for the CLI)."""
    if callable(value):
        return value
    module_name, attr = value.split(":")
    try:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if not search or (err.name and not module_name.startswith(err.name)):
                raise
            old = list(sys.path)
            sys.path[:0] = [os.path.abspath(p) for p in search if os.path.abspath(p) not in sys.path]
            try:
                module = importlib.import_module(module_name)
            finally:
                sys.path[:] = old
    except Exception as err:  # noqa: BLE001 -- any import failure is the user's module
        raise ValueError(
            f"config field {field!r}: cannot import module {module_name!r} ({type(err).__name__}: {err})."
        ) from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"config field {field!r}: module {module_name!r} has no attribute {attr!r}.")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"config field {field!r}: {value!r} is a {type(obj).__name__}, not a callable.")
    return obj


def callable_name(fn) -> str:
    """``"module:qualname"`` of a callable: what rows and the config hash record."""
    module = getattr(fn, "__module__", None) or "?"
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__
    return f"{module}:{name}"


def load_npz(path: str) -> Dataset:
    """A :class:`gflow.Dataset` from an ``.npz`` file with arrays ``x`` (n, ...) and ``y``
    (n,) or (n, e), and optionally ``x_test``, ``y_test``."""
    if not os.path.isfile(path):
        raise ValueError(f"config field 'data': file not found: {path}.")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as err:  # noqa: BLE001 -- a corrupt or non-npz file
        raise ValueError(f"config field 'data': {path} is not a readable .npz file ({type(err).__name__}).") from None
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise ValueError(
            f"config field 'data': {path} has no array {missing[0]!r} (it needs x and y; has {sorted(arrays)})."
        )
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise ValueError(f"config field 'data': {path} must hold x_test and y_test together.")
    return as_dataset(
        (arrays["x"], arrays["y"], arrays.get("x_test"), arrays.get("y_test")), f"{path}'s arrays", field="data"
    )


def as_dataset(value, what: str, field: str = "data") -> Dataset:
    """``value`` (a Dataset, ``(x, y)`` or ``(x, y, x_test, y_test)``) as a Dataset, or one
    ``ValueError`` naming the field."""
    if isinstance(value, Dataset):
        return value
    if not (isinstance(value, (tuple, list)) and len(value) in (2, 4)):
        raise ValueError(
            f"config field {field!r}: {what} must be a gflow.Dataset or (x, y), got {type(value).__name__}."
        )
    x, y, *test = value
    x_test, y_test = test if test else (None, None)
    for name, arr in (("x", x), ("y", y), ("x_test", x_test), ("y_test", y_test)):
        if arr is not None and not np.issubdtype(np.asarray(arr).dtype, np.number):
            raise ValueError(f"config field {field!r}: {what}: {name} must be numeric, got {np.asarray(arr).dtype}.")
        if arr is not None and not np.all(np.isfinite(np.asarray(arr))):
            raise ValueError(f"config field {field!r}: {what}: {name} must hold finite numbers only, not NaN or inf.")
    try:
        return Dataset(x, y, x_test, y_test)
    except ValueError as err:
        raise ValueError(f"config field {field!r}: {what}: {err}") from None


def npz_digest(path: str) -> str:
    """SHA-256 (16 hex digits) of a data file: the config hash covers the data."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def check_model(factory: Callable, key, data: Dataset) -> eqx.Module:
    """Call the model factory once and check what it returns: an ``eqx.Module`` with
    parameters, applicable to one input, with outputs shaped like one target."""
    name = callable_name(factory)
    try:
        model = factory(key)
    except Exception as err:  # noqa: BLE001 -- the user's factory
        raise ValueError(f"config field 'model': factory {name} raised {type(err).__name__}: {err}") from None
    if not isinstance(model, eqx.Module):
        raise ValueError(f"config field 'model': factory {name} returned a {type(model).__name__}, not an eqx.Module.")
    if not jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array)):
        raise ValueError(f"config field 'model': factory {name} returned a network with no parameters.")
    population = data.is_population  # no points: one input and target shape from the sizes
    x0 = jnp.zeros(data.in_size, jnp.result_type(float)) if population else data.x_train[0]
    try:
        out = eqx.filter_eval_shape(cast(Callable, model), x0)
    except Exception as err:  # noqa: BLE001 -- the user's network
        raise ValueError(
            f"config field 'model': the network of {name} cannot be applied to one input of shape {x0.shape} "
            f"({type(err).__name__})."
        ) from None
    want = (data.out_size,) if population else data.y_train.shape[1:]
    if getattr(out, "shape", None) != want:
        raise ValueError(
            f"config field 'model': the network of {name} returns shape {getattr(out, 'shape', None)} for one input, "
            f"the data's targets have shape {want}."
        )
    return model
