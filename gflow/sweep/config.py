"""What a sweep runs: :class:`SweepConfig` (validated; read from TOML)."""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from collections.abc import Callable

import jax

from ..data import DATASETS
from ..discrete import OPTIMIZERS
from ..flow.events import ON_EVENT, parse_events
from ..flow.problem import KINKS, SOLVERS
from .user import callable_name, is_reference, load_npz, npz_digest, resolve

__all__ = ["SweepConfig", "METHODS", "MODELS"]


METHODS = ("flow", *OPTIMIZERS)
MODELS = ("shallow", "mlp")


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """What a sweep runs. Every field has a default; ``SweepConfig.from_toml(path)`` reads one.

    - model: ``shallow`` | ``mlp``; ``width`` (shallow), ``hidden`` (mlp), ``bias``; or your own
      network: ``"package.module:factory"`` (Python API: the callable itself), a callable
      ``key -> eqx.Module`` called with initialization ``i``'s key (the key the built-in
      networks are drawn with, :func:`gflow.sweep.problems.make_init`)
    - data: ``toy`` | ``breast_cancer`` | ``teacher_student``, or your own: ``"file.npz"``
      (arrays ``x``, ``y``, optional ``x_test``, ``y_test``; a path relative to the working
      directory) or ``"package.module:factory"`` (a callable ``() -> gflow.Dataset`` or
      ``(x, y)``); ``n_data`` (toy/teacher size),
      ``teacher_width``/``teacher_seed``/``noise`` (teacher-student, shallow teacher),
      ``recover_tol`` (tolerance of the ``recovered`` column: :func:`gflow.recovered`, default 1e-3)
    - loss: ``mse`` | ``bce`` | ``cross_entropy`` (default: bce for breast_cancer, else mse)
    - method: ``flow`` (``solver``, ``rtol``, ``atol``, ``max_steps``, ``project``, ``kinks`` as in
      :func:`gflow.flow.gradient_flow`: ``auto`` pins collapsed neurons and slides on
      attractive kinks for shallow nets), ``events`` (e.g. ``["loss_below=1e-3", "neuron_dies"]``,
      see :mod:`gflow.events`) and ``on_event`` (``stop`` | ``record``), or an optimizer
      ``gd`` | ``sgd`` | ``momentum`` | ``adam`` (``lr``, ``steps`` = t1/lr if 0, ``batch_size``)
    - t1, n_inits, init (``kaiming`` | ``xavier``), ``delta`` (relocate every unit to it; a number,
      a list, or none), ``delta_signs`` (``random``: each unit's delta gets a random sign, so
      ``|delta_k| = delta``; or none), ``signs`` (output-weight signs: ``random`` | a list of +-1 |
      none), seed, precision (64 | 32)
    - engine: ``slots`` (parallel trajectories), ``steps_per_call``, ``chunk_size`` (rows per file),
      ``n_save`` (saved times at which drift and labels are checked)
    - ``save_trajectories``: also keep every network's parameters at the ``n_save`` saved times
      (``trajectories/chunk-NNNNNN.npz`` next to each chunk's rows; :func:`load_trajectory`)
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

    def __post_init__(self):
        def bad(field, allowed):
            raise ValueError(f"config field {field!r} must be {allowed}; got {getattr(self, field)!r}.")

        if callable(self.model) or is_reference(self.model):
            resolve("model", self.model, (os.getcwd(),))
        elif self.model not in MODELS:
            bad("model", "one of " + ", ".join(MODELS) + " or 'package.module:factory' (a callable key -> eqx.Module)")
        if callable(self.data) or is_reference(self.data):
            resolve("data", self.data, (os.getcwd(),))
        elif isinstance(self.data, str) and self.data.endswith(".npz"):
            load_npz(self.data)
        elif self.data not in (*DATASETS, "teacher_student"):
            bad(
                "data",
                "one of " + ", ".join((*DATASETS, "teacher_student")) + ", a file.npz or 'package.module:factory'",
            )
        for field, allowed in (
            ("method", METHODS),
            ("solver", tuple(SOLVERS)),
            ("init", ("kaiming", "xavier")),
            ("kinks", KINKS),
        ):
            if getattr(self, field) not in allowed:
                bad(field, "one of " + ", ".join(allowed))
        if self.loss not in ("", "mse", "bce", "cross_entropy"):
            bad("loss", "one of mse, bce, cross_entropy")
        for field in (
            "width",
            "n_data",
            "n_inits",
            "max_steps",
            "slots",
            "steps_per_call",
            "chunk_size",
            "teacher_width",
        ):
            if not isinstance(getattr(self, field), int) or getattr(self, field) < 1:
                bad(field, "a positive integer")
        for field in ("steps", "batch_size"):
            if not isinstance(getattr(self, field), int) or getattr(self, field) < 0:
                bad(field, "a non-negative integer (0: default)")
        if not isinstance(self.n_save, int) or self.n_save < 2:
            bad("n_save", "an integer >= 2")
        for field in ("t1", "rtol", "atol", "lr", "recover_tol"):
            value = getattr(self, field)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                bad(field, "a positive number")
        if self.precision not in (32, 64):
            bad("precision", "32 or 64")
        if not isinstance(self.save_trajectories, bool):
            bad("save_trajectories", "true or false")
        if self.method == "flow" and self.solver == "euler":
            bad("solver", "an adaptive solver for sweeps (heun, tsit5, dopri5, dopri8, kvaerno5)")
        if isinstance(self.signs, str) and self.signs != "random":
            bad("signs", "'random', a list of +1/-1, or absent")
        if self.signs is not None and self.delta is None:
            bad("signs", "absent unless delta is set (signs are forced after relocating)")
        if self.delta_signs not in (None, "random"):
            bad("delta_signs", "'random' or absent")
        if self.delta_signs is not None and self.delta is None:
            bad("delta_signs", "absent unless delta is set")
        if self.on_event not in ON_EVENT:
            bad("on_event", "one of " + ", ".join(ON_EVENT))
        if isinstance(self.events, str) or not all(isinstance(e, str) for e in self.events):
            bad("events", 'a list of event names, e.g. ["loss_below=1e-3", "neuron_dies"]')
        try:
            parse_events(list(self.events))
        except ValueError as err:
            raise ValueError(f"config field 'events': {err}") from None
        if self.events and self.method != "flow":
            bad("events", "empty unless method is flow")
        object.__setattr__(self, "events", tuple(self.events))
        object.__setattr__(self, "hidden", tuple(self.hidden))
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
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "SweepConfig":
        """A config from a dict: a TOML table, or a manifest's config (its ``data_sha256``, the
        data file's digest, is recomputed by :meth:`to_dict` and checked with the config hash)."""
        d = {k: v for k, v in d.items() if k != "data_sha256"}
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - fields)
        if unknown:
            raise ValueError(f"unknown config field {unknown[0]!r}; allowed fields: {', '.join(sorted(fields))}.")
        return cls(**d)

    @classmethod
    def from_toml(cls, path: str) -> "SweepConfig":
        with open(path, "rb") as f:
            try:
                d = tomllib.load(f)
            except tomllib.TOMLDecodeError as err:
                raise ValueError(f"{path} is not valid TOML: {err}.") from None
        d = d.get("sweep", d)
        search = (os.path.dirname(os.path.abspath(path)), os.getcwd())
        for field in ("model", "data"):  # factories next to the TOML or in the working directory import too
            if is_reference(d.get(field)):
                resolve(field, d[field], search)
        return cls.from_dict(d)


_OMIT_AT_DEFAULT = {"recover_tol": 1e-3, "delta_signs": None, "save_trajectories": False}
