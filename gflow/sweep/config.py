"""What a sweep runs: :class:`SweepConfig` (validated; read from TOML)."""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from collections.abc import Callable

import jax
import numpy as np

from .._validate import FIELDS, InputError, fail, in_file, per_unit
from ..data import DATASETS
from ..discrete import OPTIMIZERS
from ..flow.events import parse_events
from .user import callable_name, is_reference, load_npz, npz_digest, resolve

__all__ = ["SweepConfig", "METHODS", "MODELS"]


METHODS = ("flow", *OPTIMIZERS)
SWEEP_DATA = (*DATASETS, "teacher_student", "toy_population", "teacher_student_population")
MODELS = ("shallow", "mlp")


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """What a sweep runs. Every field has a default; ``SweepConfig.from_toml(path)`` reads one.

    - model: ``shallow`` | ``mlp``; ``width`` (shallow), ``hidden`` (mlp), ``bias``; or your own
      network: ``"package.module:factory"`` (Python API: the callable itself), a callable
      ``key -> eqx.Module`` called with initialization ``i``'s key (the key the built-in
      networks are drawn with, :func:`gflow.sweep.problems.make_init`)
    - data: ``toy`` | ``breast_cancer`` | ``teacher_student``, their Gaussian populations
      ``toy_population`` | ``teacher_student_population`` (closed-form expectations,
      :mod:`gflow.population`; ``n_data`` unused, no kink handling), or your own: ``"file.npz"``
      (arrays ``x``, ``y``, optional ``x_test``, ``y_test``; a path relative to the working
      directory) or ``"package.module:factory"`` (a callable ``() -> gflow.Dataset`` or
      ``(x, y)``); ``n_data`` (toy/teacher size),
      ``teacher_width``/``teacher_seed``/``noise`` (teacher-student, shallow teacher;
      ``teacher_min_strength``/``teacher_min_angle``: use the first seed from ``teacher_seed``
      on whose teacher has every ``|a_j| ||u_j||`` and every angle between kink lines, in
      degrees, at least these, :func:`gflow.teacher_geometry`),
      ``recover_tol`` (tolerance of the ``recovered`` column: :func:`gflow.recovered`, default 1e-3)
    - loss: ``mse`` | ``bce`` | ``cross_entropy`` (default: bce for breast_cancer, else mse)
    - method: ``flow`` (``solver``, ``rtol``, ``atol``, ``max_steps``, ``project``, ``kinks`` as in
      :func:`gflow.flow.gradient_flow`: ``auto`` pins collapsed neurons and slides on
      attractive kinks for shallow nets), ``events`` (e.g. ``["loss_below=1e-3", "neuron_dies"]``,
      see :mod:`gflow.events`) and ``on_event`` (``stop`` | ``record``), or an optimizer
      ``gd`` | ``sgd`` | ``momentum`` | ``adam`` (``lr``, ``steps`` = t1/lr if 0, ``batch_size``)
    - t1 (``inf``, method flow: run each flow to convergence, ``||grad L|| <= gtol`` (default
      ``max(1e-6, 100 max(rtol, atol))``) or ``t = t_max`` (default 1e5), then polish and
      classify its end point: columns ``endpoint``, ``endpoint_loss``, ``grad_norm_final``,
      ``hess_min``, ``n_negative``, ``n_zero``, ``critical``, ``converged``, ... as
      :func:`gflow.gradient_flow` with ``t1=inf``),
      n_inits, init (``kaiming`` | ``xavier``), ``delta`` (relocate every unit to it; a number,
      a list, or none), ``delta_signs`` (``random``: each unit's delta gets a random sign, so
      ``|delta_k| = delta``; or none), ``signs`` (output-weight signs: ``random`` | a list of +-1 |
      none), seed, precision (64 | 32)
    - engine: ``slots`` (parallel trajectories), ``steps_per_call``, ``chunk_size`` (rows per file),
      ``n_save`` (saved times at which drift and labels are checked)
    - ``save_trajectories``: also keep every network's parameters at the ``n_save`` saved times
      (``trajectories/chunk-NNNNNN.npz`` next to each chunk's rows; :func:`load_trajectory`)
    - ``save_times``: where the ``n_save`` saved times lie on [0, t1] (flows): ``"linear"``
      (default), ``"log"`` (0, then log-spaced from t1/1000) or a list from 0 to t1;
      ``curves``: also store, per row, the train (test) loss and gradient norm at those times
      (list columns ``curve_t``, ``curve_loss``, ``curve_test_loss``, ``curve_grad_norm``)
    - ``methods``: several methods from the same initializations, instead of ``method``: a list
      of names (``["flow", "gd", "adam"]``) or, in TOML, one table per method with its own
      options (``[methods.adam]`` then ``lr = 1e-2``; options: :data:`METHOD_OPTIONS`). Each
      method runs as its own sweep in ``<out>/<method>/``; the rows of all of them form one
      table with a ``method`` column (:func:`gflow.sweep.store.read_runs`)
    """

    name: str = "sweep"
    model: str | Callable = "shallow"
    width: int = 2
    hidden: tuple[int, ...] = (8, 8)
    bias: bool = False
    data: str | Callable = "toy"
    n_data: int = 1000
    teacher_width: int = 2
    teacher_seed: int = 1234
    teacher_min_strength: float = 0.0
    teacher_min_angle: float = 0.0
    noise: float = 0.0
    loss: str = ""
    method: str = "flow"
    solver: str = "tsit5"
    rtol: float = 1e-6
    atol: float = 1e-6
    max_steps: int = 100_000
    project: bool = False
    kinks: str = "auto"
    events: tuple[str, ...] = ()
    on_event: str = "stop"
    lr: float = 1e-2
    steps: int = 0
    batch_size: int = 0
    t1: float = 10.0
    gtol: float | None = None
    t_max: float = 1e5
    n_inits: int = 64
    init: str = "kaiming"
    delta: float | tuple[float, ...] | None = None
    delta_signs: str | None = None
    signs: str | tuple[float, ...] | None = None
    seed: int = 0
    precision: int = 64
    slots: int = 32
    steps_per_call: int = 32
    chunk_size: int = 256
    n_save: int = 11
    recover_tol: float = 1e-3
    save_trajectories: bool = False
    methods: tuple[tuple[str, tuple[tuple[str, object], ...]], ...] | None = None
    save_times: str | tuple[float, ...] = "linear"
    curves: bool = False

    def __post_init__(self):
        def bad(field, allowed, wrong_type=False):
            fail(f"config field {field!r}", allowed, getattr(self, field), wrong_type=wrong_type)

        if callable(self.model) or is_reference(self.model):
            resolve("model", self.model, (os.getcwd(),))
        elif self.model not in MODELS:
            allowed = "one of " + ", ".join(MODELS) + " or 'package.module:factory' (a callable key -> eqx.Module)"
            bad("model", allowed, wrong_type=not isinstance(self.model, str))
        if callable(self.data) or is_reference(self.data):
            resolve("data", self.data, (os.getcwd(),))
        elif isinstance(self.data, str) and self.data.endswith(".npz"):
            load_npz(self.data)
        elif self.data not in SWEEP_DATA:
            allowed = "one of " + ", ".join(SWEEP_DATA) + ", a file.npz or 'package.module:factory'"
            bad("data", allowed, wrong_type=not isinstance(self.data, str))
        # every other field by its rule (gflow._validate.FIELDS, shared with the command line);
        # the values are kept as given (normalizing them would change the config hash of old stores)
        optional = dict(loss="", delta=None, delta_signs=None, signs=None, gtol=None)
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("model", "data", "methods", "save_times") or (
                f.name in optional and value == optional[f.name]
            ):
                continue
            if f.name == "signs" and isinstance(value, str):
                if value == "random":
                    continue
                bad("signs", "'random' or a non-empty list of +1/-1 values")
            FIELDS[f.name](value, f"config field {f.name!r}")
        if self.t1 == math.inf:  # run to convergence (gflow.flow.steady)
            if self.method != "flow":
                bad("t1", "a positive finite number for a discrete optimizer (inf: method flow only)")
            if self.on_event != "stop":
                bad("on_event", "stop when t1 = inf (the run ends at the steady-state event)")
        if self.method == "flow" and self.solver in ("euler", "kvaerno5"):
            # euler: fixed steps; kvaerno5: its linear solves fail inside the engine's shard_map
            # (lineax issue 185)
            bad(
                "solver",
                "an adaptive explicit solver for sweeps (heun, tsit5, dopri5, dopri8; euler and kvaerno5 "
                "run in gflow run and gradient_flow)",
            )
        if self.signs is not None and self.delta is None:
            bad("signs", "absent unless delta is set (signs are forced after relocating)")
        if self.delta_signs is not None and self.delta is None:
            bad("delta_signs", "absent unless delta is set")
        if isinstance(self.model, str) and self.model in MODELS:  # lengths the built-in networks need
            hidden = (self.width,) if self.model == "shallow" else tuple(self.hidden)
            if self.delta is not None:
                per_unit(self.delta, "config field 'delta'", sum(hidden))
            if self.signs is not None and self.signs != "random":
                per_unit(self.signs, "config field 'signs'", hidden[-1], "output weight of a hidden unit")
        try:
            parse_events(list(self.events))
        except ValueError as err:
            raise InputError(f"config field 'events': {err}") from None
        if self.events and self.method != "flow":
            bad("events", "empty unless method is flow")
        object.__setattr__(self, "events", tuple(self.events))
        object.__setattr__(self, "hidden", tuple(self.hidden))
        object.__setattr__(self, "save_times", _save_times(self.save_times, self))
        if self.methods is not None:
            if self.method != "flow":
                bad("method", "left out when methods is set (give each method in methods)")
            object.__setattr__(self, "methods", _methods(self.methods, self))
        for field in ("delta", "signs"):
            if isinstance(getattr(self, field), list):
                object.__setattr__(self, field, tuple(getattr(self, field)))

    def check_precision(self) -> None:
        """Raise ``ValueError`` unless JAX's float width matches ``precision``: the caller sets
        it (``jax.config.update("jax_enable_x64", True)`` for 64, before building anything;
        the ``gflow`` CLI does it from the config)."""
        # jax.config's options are dynamic attributes, unknown to type checkers
        x64 = bool(jax.config.jax_enable_x64)  # pyright: ignore[reportAttributeAccessIssue]
        if x64 != (self.precision == 64):
            now = 64 if x64 else 32
            raise ValueError(
                f"config field 'precision' is {self.precision} but JAX runs in float{now}: call "
                f"jax.config.update('jax_enable_x64', {self.precision == 64}) before running the sweep."
            )

    @property
    def model_factory(self) -> Callable | None:
        """The user's network factory ``key -> eqx.Module``, or ``None`` for a built-in model."""
        return resolve("model", self.model) if callable(self.model) or is_reference(self.model) else None

    @property
    def data_factory(self) -> Callable | None:
        """The user's data factory ``() -> Dataset | (x, y)``, or ``None``."""
        return resolve("data", self.data) if callable(self.data) or is_reference(self.data) else None

    @property
    def factory_name(self) -> str | None:
        """``"module:name"`` of the model factory (recorded in every row), or ``None``."""
        return None if self.model_factory is None else callable_name(self.model_factory)

    def per_method(self) -> list[tuple[str, "SweepConfig"]]:
        """``(name, config)`` of each method of ``methods``: this config with ``method`` and
        that method's options set (``[(method, self)]`` without ``methods``)."""
        if self.methods is None:
            return [(self.method, self)]
        return [
            (name, dataclasses.replace(self, methods=None, method=name, **dict(options)))
            for name, options in self.methods
        ]

    @property
    def loss_name(self) -> str:
        return self.loss or ("bce" if self.data == "breast_cancer" else "mse")

    @property
    def n_steps(self) -> int:
        return self.steps or max(1, round(self.t1 / self.lr))

    def to_dict(self) -> dict:
        """All fields, except those in ``_OMIT_AT_DEFAULT`` when at their default: fields added
        after stores were written, left out so those stores keep their config hash."""
        d = dataclasses.asdict(self)
        d = {k: v for k, v in d.items() if not (k in _OMIT_AT_DEFAULT and v == _OMIT_AT_DEFAULT[k])}
        for field in ("model", "data"):  # the factory's name; a data file's content too
            if callable(d[field]):
                d[field] = callable_name(d[field])
        if isinstance(self.data, str) and self.data.endswith(".npz"):
            d["data_sha256"] = npz_digest(self.data)
        if self.methods is not None:
            d["methods"] = {
                name: {k: list(v) if isinstance(v, tuple) else v for k, v in opts} for name, opts in self.methods
            }
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "SweepConfig":
        """A config from a dict: a TOML table, or a manifest's config (its ``data_sha256``, the
        data file's digest, is recomputed by :meth:`to_dict` and checked with the config hash)."""
        if not isinstance(d, dict):
            fail("config", "a table of config fields", d, wrong_type=True)
        d = {k: v for k, v in d.items() if k != "data_sha256"}
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - fields)
        if unknown:
            raise ValueError(f"unknown config field {unknown[0]!r}; allowed fields: {', '.join(sorted(fields))}.")
        return cls(**d)

    @classmethod
    def from_toml(cls, path: str) -> "SweepConfig":
        """The config in a TOML file: its top-level keys, or those of its ``[sweep]`` table."""
        with open(in_file(path, "CONFIG"), "rb") as f:
            raw = f.read()
        try:
            d = tomllib.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise InputError(f"CONFIG must be a TOML file (UTF-8 text); {path} is binary.") from None
        except tomllib.TOMLDecodeError as err:
            raise InputError(f"{path} is not valid TOML: {err}.") from None
        if "sweep" in d:
            if not isinstance(d["sweep"], dict):
                fail("config field 'sweep'", "a table ([sweep]) holding the config fields", d["sweep"], wrong_type=True)
            d = d["sweep"]
        search = (os.path.dirname(os.path.abspath(path)), os.getcwd())
        for field in ("model", "data"):  # factories next to the TOML or in the working directory import too
            if is_reference(d.get(field)):
                resolve(field, d[field], search)
        return cls.from_dict(d)


_OMIT_AT_DEFAULT = {
    "recover_tol": 1e-3,
    "delta_signs": None,
    "save_trajectories": False,
    "methods": None,
    "teacher_min_strength": 0.0,
    "teacher_min_angle": 0.0,
    "gtol": None,
    "t_max": 1e5,
    "save_times": "linear",
    "curves": False,
}


def _save_times(value, cfg: SweepConfig):
    """``save_times``: ``"linear"``, ``"log"`` (flows, finite ``t1``) or a strictly increasing
    list of ``n_save`` times from 0 to ``t1`` (flows)."""
    name = "config field 'save_times'"
    flows = cfg.method == "flow" or cfg.methods is not None
    if isinstance(value, str) and value in ("linear", "log"):
        if value == "log" and not (flows and math.isfinite(cfg.t1)):
            fail(name, "linear for discrete optimizers and t1 = inf", value)
        return value
    allowed = f'"linear", "log" or a strictly increasing list of n_save = {cfg.n_save} times from 0 to t1 = {cfg.t1}'
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    ):
        fail(name, allowed, value, wrong_type=True)
    ts = np.asarray(value, dtype=float)
    ok = len(ts) == cfg.n_save and np.all(np.isfinite(ts)) and np.all(np.diff(ts) > 0)
    if not (ok and ts[0] == 0.0 and ts[-1] == cfg.t1 and flows):
        fail(name, allowed + " (flows only)", list(value))
    return tuple(float(v) for v in value)


METHOD_OPTIONS = ("solver", "rtol", "atol", "max_steps", "kinks", "lr", "steps", "batch_size")
"""The fields a method of ``methods`` may set for itself (the others are shared by all)."""


def _methods(value, cfg: SweepConfig) -> tuple:
    """``methods`` as ``((name, ((option, value), ...)), ...)``, checked: a non-empty list of
    distinct method names, or a table ``name -> {option: value}``."""
    name = "config field 'methods'"
    allowed = 'a non-empty list of distinct methods, e.g. ["flow", "gd", "adam"], or one table per method'
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        items = [(v, {}) for v in value]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, tuple) and len(v) == 2 for v in value):
        items = [(k, dict(v)) for k, v in value]  # the normalized form itself
    else:
        fail(name, allowed, value, wrong_type=True)
    names = [k for k, _ in items]
    if not items or len(set(names)) != len(names):
        fail(name, allowed, names)
    out = []
    for method, options in items:
        FIELDS["method"](method, f"{name} entry")
        if not isinstance(options, dict):
            fail(f"config field 'methods.{method}'", "a table of options", options, wrong_type=True)
        for key, v in options.items():
            if key not in METHOD_OPTIONS:
                fail(
                    f"config field 'methods.{method}'", "a table whose keys are among " + ", ".join(METHOD_OPTIONS), key
                )
            FIELDS[key](v, f"config field 'methods.{method}.{key}'")
        if method == "flow" and options.get("solver", cfg.solver) == "euler":
            fail(f"config field 'methods.{method}.solver'", "an adaptive solver", "euler")
        if method != "flow" and cfg.events:
            fail("config field 'events'", "empty unless every method is flow", list(cfg.events))
        out.append((method, tuple(sorted(options.items()))))
    return tuple(out)
