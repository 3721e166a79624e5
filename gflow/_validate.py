"""Input validation at the edge: one rule per kind of value, shared by the command line,
:class:`gflow.sweep.SweepConfig` and the library.

A rule checks one value and names it: ``"--width"`` on the command line, ``"config field
'width'"`` in a sweep config, ``"width"`` in the library. Whatever the name, the sentence
is the same, ``"<name> must be <allowed>; got <value>."``, raised as :class:`InputError`
(a ``ValueError``) or, for a value of the wrong type, :class:`InputTypeError` (a
``ValueError`` and a ``TypeError``). Types are strict: a boolean is not an integer, a
string is not a boolean, and every number must be finite (NaN and infinities are refused).

``FIELDS`` holds the rule of every field a sweep config and ``gflow run`` share; the
command line parses its strings with the same rules (:meth:`Rule.parse`).
"""

from __future__ import annotations

import abc
import json
import math
import numbers
import os
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

__all__ = ["InputError", "InputTypeError", "Rule", "FIELDS", "fail", "per_unit", "finite_array"]


class InputError(ValueError):
    """Bad input: one sentence naming the option or field and what is allowed."""


class InputTypeError(InputError, TypeError):
    """Bad input of the wrong type (a ``ValueError`` and a ``TypeError``)."""


def fail(name: str, allowed: str, value: Any, *, wrong_type: bool = False):
    """Raise ``"<name> must be <allowed>; got <value>."``."""
    raise (InputTypeError if wrong_type else InputError)(f"{name} must be {allowed}; got {_show(value)}.")


def _show(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _kind(value) -> str:
    return "int" if _is_int(value) else type(value).__name__


class Rule(abc.ABC):
    """A value's rule: ``rule(value, name)`` checks a Python value (config, library) and
    returns it normalized; ``rule.parse(text, name)`` reads a command-line string first."""

    allowed: str = ""

    @abc.abstractmethod
    def __call__(self, value: Any, name: str) -> Any: ...

    def parse(self, text: str, name: str) -> Any:
        return self(text, name)


class Int(Rule):
    """An integer (not a boolean) ``>= low``."""

    def __init__(self, low: int = 1):
        self.low = low
        self.allowed = {1: "a positive integer", 0: "a non-negative integer"}.get(low, f"an integer >= {low}")

    def __call__(self, value, name):
        if not _is_int(value):
            fail(name, self.allowed, value, wrong_type=True)
        if value < self.low:
            fail(name, self.allowed, value)
        return int(value)

    def parse(self, text, name):
        try:
            value = int(text.strip())
        except ValueError:
            fail(name, self.allowed, text)
        return self(value, name)


class Real(Rule):
    """A finite real number (not a boolean), ``> 0`` (``low="positive"``), ``>= 0``
    (``"non-negative"``) or any (``None``); ``inf=True`` also accepts ``+inf``."""

    def __init__(self, low: str | None = "positive", inf: bool = False):
        self.low, self.inf = low, inf
        self.allowed = {"positive": "a positive finite number", "non-negative": "a finite number >= 0"}.get(
            low or "", "a finite number"
        ) + (" or inf" if inf else "")

    def __call__(self, value, name):
        if not _is_real(value):
            fail(name, self.allowed, value, wrong_type=True)
        value = float(value)
        finite = math.isfinite(value) or (self.inf and value == math.inf)
        if not finite or (self.low == "positive" and value <= 0) or (self.low and value < 0):
            fail(name, self.allowed, value)
        return value

    def parse(self, text, name):
        return self(_float(text, name, self.allowed), name)


def _float(text: str, name: str, allowed: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        fail(name, allowed, text)
    raise AssertionError  # unreachable: fail raises


class Bool(Rule):
    allowed = "true or false"

    def __call__(self, value, name):
        if not isinstance(value, (bool, np.bool_)):
            fail(name, self.allowed, value, wrong_type=True)
        return bool(value)


class Text(Rule):
    """A non-empty string."""

    allowed = "a non-empty string"

    def __call__(self, value, name):
        if not isinstance(value, str):
            fail(name, self.allowed, value, wrong_type=True)
        if not value.strip():
            fail(name, self.allowed, value)
        return value


class Choice(Rule):
    """One of a fixed set (``options``: the values, or a callable giving them lazily, for
    sets defined in modules the command line imports only when it runs)."""

    def __init__(self, options: Iterable | Callable[[], Iterable]):
        self._options = options

    @property
    def options(self) -> tuple:
        return tuple(self._options() if callable(self._options) else self._options)

    @property
    def allowed(self) -> str:  # pyright: ignore[reportIncompatibleVariableOverride]
        return "one of " + ", ".join(map(str, self.options))

    def __call__(self, value, name):
        options = self.options
        if not any(_kind(value) == _kind(o) and value == o for o in options):
            fail(name, self.allowed, value, wrong_type=not any(_kind(value) == _kind(o) for o in options))
        return value

    def parse(self, text, name):
        if all(_is_int(o) for o in self.options):
            try:
                return self(int(text.strip()), name)
            except ValueError:
                fail(name, self.allowed, text)
        return self(text, name)


class Reals(Rule):
    """A finite number or a non-empty list of finite numbers (a scalar, or one per unit);
    a number comes back as a float, a list as a tuple of floats."""

    allowed = "a finite number or a non-empty list of finite numbers"

    def __call__(self, value, name):
        if _is_real(value):
            if not math.isfinite(value):
                fail(name, self.allowed, value)
            return float(value)
        if not isinstance(value, (list, tuple)) or not value:
            fail(name, self.allowed, value, wrong_type=not isinstance(value, (list, tuple)))
        if not all(_is_real(v) for v in value):
            fail(name, self.allowed, value, wrong_type=True)
        if not all(math.isfinite(v) for v in value):
            fail(name, self.allowed, value)
        return tuple(float(v) for v in value)

    def parse(self, text, name):
        values = tuple(_float(v, name, self.allowed) for v in text.split(","))
        return self(values[0] if len(values) == 1 else values, name)


class Signs(Rule):
    """A non-empty list of +1/-1 (integers or floats, not booleans)."""

    allowed = "a non-empty list of +1/-1 values"

    def __call__(self, value, name):
        if not isinstance(value, (list, tuple)) or not value or not all(_is_real(v) for v in value):
            fail(name, self.allowed, value, wrong_type=True)
        if not all(v in (1, -1) for v in value):
            fail(name, self.allowed, value)
        return tuple(float(v) for v in value)

    def parse(self, text, name):
        return self(tuple(_float(v, name, self.allowed) for v in text.split(",")), name)


class Ints(Rule):
    """A non-empty list of positive integers (hidden widths)."""

    allowed = "a non-empty list of positive integers"

    def __call__(self, value, name):
        if not isinstance(value, (list, tuple)) or not value or not all(_is_int(v) for v in value):
            fail(name, self.allowed, value, wrong_type=True)
        if not all(v >= 1 for v in value):
            fail(name, self.allowed, value)
        return tuple(int(v) for v in value)

    def parse(self, text, name):
        try:
            values = tuple(int(v.strip()) for v in text.split(","))
        except ValueError:
            fail(name, self.allowed, text)
        return self(values, name)


class Strings(Rule):
    """A list of strings (event names)."""

    allowed = 'a list of strings, e.g. ["loss_below=1e-3", "neuron_dies"]'

    def __call__(self, value, name):
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            fail(name, self.allowed, value, wrong_type=True)
        return tuple(value)


def _lazy(module: str, attr: str, extra: tuple = ()) -> Callable[[], tuple]:
    def options():
        import importlib

        return (*extra, *getattr(importlib.import_module(module), attr))

    return options


FIELDS: dict[str, Rule] = dict(
    name=Text(),
    width=Int(1),
    hidden=Ints(),
    bias=Bool(),
    n_data=Int(1),
    teacher_width=Int(1),
    teacher_seed=Int(0),
    teacher_min_strength=Real("non-negative"),
    teacher_min_angle=Real("non-negative"),
    noise=Real("non-negative"),
    loss=Choice(("mse", "bce", "cross_entropy")),
    method=Choice(_lazy("gflow.discrete", "OPTIMIZERS", ("flow",))),
    solver=Choice(_lazy("gflow.flow.problem", "SOLVERS")),
    rtol=Real(),
    atol=Real(),
    max_steps=Int(1),
    project=Bool(),
    kinks=Choice(_lazy("gflow.flow.problem", "KINKS")),
    events=Strings(),
    on_event=Choice(_lazy("gflow.flow.events", "ON_EVENT")),
    lr=Real(),
    steps=Int(0),
    batch_size=Int(0),
    t1=Real(inf=True),  # inf: run the flow to convergence (gflow.flow.steady)
    gtol=Real(),
    t_max=Real(),
    n_inits=Int(1),
    init=Choice(("kaiming", "xavier")),
    delta=Reals(),
    delta_signs=Choice(("random",)),
    signs=Signs(),
    seed=Int(0),
    precision=Choice((64, 32)),
    slots=Int(1),
    steps_per_call=Int(1),
    chunk_size=Int(1),
    n_save=Int(2),
    recover_tol=Real(),
    save_trajectories=Bool(),
    curves=Bool(),
    dtmin=Real("non-negative"),
    tol=Real("non-negative"),
)
"""The rule of every field of a sweep config, and of the ``gflow run`` options of the same name."""


def per_unit(values, name: str, n: int, what: str = "hidden unit") -> None:
    """``values`` (a number or a sequence) holds 1 or ``n`` entries."""
    k = len(values) if isinstance(values, (list, tuple)) else 1
    if k not in (1, n):
        raise InputError(f"{name} must hold 1 value or {n} (one per {what}); got {k}.")


def finite_array(value, name: str, allowed: str = Reals.allowed):
    """``value`` as a NumPy array if every entry is a finite real number (a JAX tracer, whose
    values are unknown at trace time, is returned as it is); else the sentence of
    :class:`Reals` (or ``allowed``), as for the command line and sweep configs."""
    import jax.core

    if isinstance(value, jax.core.Tracer):
        return value
    try:
        arr = np.asarray(value)
    except Exception:  # noqa: BLE001 -- ragged lists, objects
        arr = np.asarray(None)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        fail(name, allowed, value, wrong_type=True)
    if not np.all(np.isfinite(arr)):
        shown = arr.tolist() if arr.size <= 8 else f"an array with {int(np.sum(~np.isfinite(arr)))} NaN or inf"
        fail(name, allowed, shown if arr.size <= 8 else _Raw(shown))
    return arr


class _Raw(str):
    def __repr__(self):
        return str(self)


# ---------------------------------------------------------------- paths and files


def out_file(path: str, name: str, suffix: str = "") -> str:
    """A file to write: ends with ``suffix``, is not a folder, its parent folder exists and
    both are writable."""
    if not isinstance(path, str) or not path or (suffix and not path.endswith(suffix)):
        fail(name, f"a path ending in {suffix}" if suffix else "a file path", path)
    if os.path.isdir(path):
        raise InputError(f"{name} must be a file path, not a folder; got {path!r}.")
    parent = os.path.dirname(path) or "."
    if not os.path.isdir(parent):
        raise InputError(f"{name} must be in an existing folder; {parent!r} is not a folder.")
    if not os.access(parent, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise InputError(f"{name} must be writable; got {path!r}.")
    return path


def out_folder(path: str, name: str) -> str:
    """A folder to write into (created if missing): not a file, and the nearest existing
    folder on its path is writable."""
    if not isinstance(path, str) or not path:
        fail(name, "a folder path", path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise InputError(f"{name} must be a folder, not a file; got {path!r}.")
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise InputError(f"{name} must be a folder path; {existing!r} on it is a file.")
    if not os.access(existing, os.W_OK):
        raise InputError(f"{name} must be writable; {existing!r} is not.")
    return path


def in_file(path: str, name: str, *, folder: bool = False) -> str:
    """A file (or, with ``folder=True``, a folder) to read: exists, is of that kind and is readable."""
    kind, other = ("folder", "file") if folder else ("file", "folder")
    if not os.path.exists(path):
        raise InputError(f"{name}: file not found: {path}." if not folder else f"{name}: {path} does not exist.")
    if os.path.isdir(path) != folder:
        raise InputError(f"{name} must be a {kind}, not a {other}; got {path!r}.")
    if not os.access(path, os.R_OK):
        raise InputError(f"{name} must be a readable {kind}; got {path!r}.")
    return path


def in_folder(path: str, name: str) -> str:
    """A folder to read (:func:`in_file` with ``folder=True``)."""
    return in_file(path, name, folder=True)


class OutFile(Rule):
    """A file to write (:func:`out_file`)."""

    def __init__(self, suffix: str = ""):
        self.suffix = suffix

    def __call__(self, value, name):
        return out_file(value, name, self.suffix)


class OutFolder(Rule):
    """A folder to write into (:func:`out_folder`)."""

    def __call__(self, value, name):
        return out_folder(value, name)


class InFile(Rule):
    """A file to read (:func:`in_file`)."""

    def __call__(self, value, name):
        return in_file(value, name)


def read_text(path: str, name: str, what: str) -> str:
    """The text of a UTF-8 file (``what``: the kind of file expected, for the message)."""
    with open(in_file(path, name), "rb") as f:
        raw = f.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{name} must be {what} (UTF-8 text); {path} is binary.") from None


def read_json(path: str, name: str) -> Any:
    """The value of a JSON file."""
    text = read_text(path, name, "a JSON file")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(
            f"{name} must be a JSON file; {path} is not valid JSON ({err.msg} at line {err.lineno})."
        ) from None
