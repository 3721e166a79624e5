"""The problem factory shared by sweeps, the CLI, figures and benchmarks: a sweep's data,
its initializations (init ``i`` from ``fold_in(PRNGKey(seed), i)``), its flow problem and
saved times."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._jit import jit
from .._traces import cached_trace
from .._validate import InputError, per_unit
from ..data import breast_cancer, teacher_student, toy
from ..discrete import _save_slots
from ..flow.problem import FlowProblem, make_problem, save_times
from ..flow.steady import default_gtol, is_inf, steady_events, steady_times
from ..invariants import conserved, relocate
from ..nets.base import AbstractReLUNet
from ..nets.mlp import MLP
from ..nets.shallow import ShallowReLU
from ..population import gaussian_population, toy_population, toy_teacher
from ..topology.symmetry import teacher_geometry
from .config import SweepConfig
from .user import as_dataset, callable_name, check_model, load_npz

__all__ = ["dataset", "make_init", "flow_problem", "saved_times", "check_config"]


def dataset(cfg: SweepConfig):
    """The sweep's data set, and the teacher for teacher-student data (else ``None``)."""

    factory = cfg.data_factory
    if factory is not None:
        name = callable_name(factory)
        try:
            value = factory()
        except Exception as err:  # noqa: BLE001 -- the user's factory
            raise ValueError(f"config field 'data': factory {name} raised {type(err).__name__}: {err}") from None
        return as_dataset(value, f"the value of {name}"), None
    if isinstance(cfg.data, str) and cfg.data.endswith(".npz"):
        return load_npz(cfg.data), None
    if cfg.data == "toy":
        return toy(n=cfg.n_data, key=jr.PRNGKey(cfg.seed)), None
    if cfg.data == "toy_population":  # its target is a teacher: rows get reachable / recovered
        return toy_population(), toy_teacher()
    if cfg.data == "breast_cancer":
        return breast_cancer(seed=cfg.seed), None
    seed = teacher_seed(cfg)
    teacher = _teacher(cfg, seed)
    if cfg.data == "teacher_student_population":
        return gaussian_population(teacher, noise=cfg.noise), teacher
    return teacher_student(teacher, cfg.n_data, jr.PRNGKey(seed + 1), noise=cfg.noise), teacher


def _teacher(cfg: SweepConfig, seed: int) -> ShallowReLU:
    return ShallowReLU(2, cfg.teacher_width, key=jr.PRNGKey(seed))


_TEACHER_SEARCH = 1000


def teacher_seed(cfg: SweepConfig) -> int:
    """The seed of a teacher-student sweep's teacher: ``teacher_seed``, or with
    ``teacher_min_strength``/``teacher_min_angle`` the first seed from it on whose teacher
    meets both (:func:`gflow.teacher_geometry`; ``ValueError`` if none of the next 1000 does)."""
    if not (cfg.teacher_min_strength or cfg.teacher_min_angle):
        return cfg.teacher_seed
    for seed in range(cfg.teacher_seed, cfg.teacher_seed + _TEACHER_SEARCH):
        g = teacher_geometry(_teacher(cfg, seed))
        if g["min_strength"] >= cfg.teacher_min_strength and g["min_angle"] >= cfg.teacher_min_angle:
            return seed
    raise ValueError(
        f"no teacher of width {cfg.teacher_width} with seed in [{cfg.teacher_seed}, "
        f"{cfg.teacher_seed + _TEACHER_SEARCH}) has every |a_j| ||u_j|| >= {cfg.teacher_min_strength} and kink "
        f"lines >= {cfg.teacher_min_angle} degrees apart: relax config fields 'teacher_min_strength' and "
        "'teacher_min_angle'."
    )


def make_init(cfg: SweepConfig, data, i):
    """Initialization ``i`` (traced index ok): drawn, relocated, signs forced — as a model."""

    key = jr.fold_in(jr.PRNGKey(cfg.seed), i)
    k_model, k_signs = jr.split(key)
    factory = cfg.model_factory
    if factory is not None:
        model = factory(k_model)  # relocation (delta) needs an AbstractReLUNet; no signs (check_config)
        n_out_weights = ()
    elif cfg.model == "shallow":
        model = ShallowReLU(data.in_size, cfg.width, data.out_size, bias=cfg.bias, init=cfg.init, key=k_model)
        n_out_weights = (data.out_size, cfg.width)
    else:
        model = MLP(data.in_size, cfg.hidden, data.out_size, bias=cfg.bias, init=cfg.init, key=k_model)
        n_out_weights = (data.out_size, cfg.hidden[-1])
    if cfg.delta is None:
        return model
    delta = jnp.asarray(cfg.delta, float)
    if cfg.delta_signs == "random":
        shape = jnp.broadcast_shapes(delta.shape, conserved(model).shape)
        delta = jnp.abs(delta) * jnp.where(jr.bernoulli(jr.fold_in(k_signs, 1), 0.5, shape), 1.0, -1.0)
    signs = None
    if cfg.signs == "random":
        signs = jnp.where(jr.bernoulli(k_signs, 0.5, n_out_weights), 1.0, -1.0)
    elif cfg.signs is not None:
        signs = jnp.asarray(cfg.signs, float)
    return relocate(model, delta, signs)


def saved_times(cfg: SweepConfig) -> np.ndarray:
    """The times at which a sweep checks drift and labels (and saves trajectories and curves):
    for flows ``n_save`` times on [0, t1], evenly spaced (``save_times = "linear"``), 0 then
    log-spaced from ``t1/1000`` (``"log"``), or the config's list; for discrete optimizers
    ``lr * step`` at the saved steps."""
    if cfg.method == "flow":
        if is_inf(cfg.t1):
            return steady_times(cfg.t_max, cfg.n_save)
        if cfg.save_times == "log":  # 0, then n_save - 1 times log-spaced over [t1 / 1000, t1]
            return np.concatenate([[0.0], np.geomspace(cfg.t1 / 1000, cfg.t1, cfg.n_save - 1)])
        if cfg.save_times != "linear":
            return np.asarray(cfg.save_times, dtype=float)
        return np.asarray(save_times(cfg.t1, cfg.n_save, None))

    return np.asarray(_save_slots(cfg.n_steps, cfg.n_save)[0]) * cfg.lr


def check_config(cfg: SweepConfig, data) -> None:
    """Checks of a sweep with the user's network that need the data: the factory returns an
    ``eqx.Module`` that maps one input to one target's shape, and relocation (``delta``)
    is asked only of a network implementing :class:`gflow.AbstractReLUNet`. One-sentence
    ``ValueError`` naming the config field otherwise."""
    n_train = math.inf if data.is_population else int(data.x_train.shape[0])  # a population: fresh draws
    if cfg.method != "flow" and cfg.batch_size > n_train:
        raise InputError(
            f"config field 'batch_size' must be at most the training set size ({n_train}); got {cfg.batch_size}."
        )
    factory = cfg.model_factory
    if factory is None:
        if data.is_population and (cfg.model != "shallow" or cfg.bias):
            raise ValueError(
                f"config field 'data': {cfg.data} has a closed-form loss for model = shallow without bias only."
            )
        return
    model = check_model(factory, jr.split(jr.PRNGKey(cfg.seed))[0], data)
    if cfg.delta is not None and isinstance(model, AbstractReLUNet):
        per_unit(cfg.delta, "config field 'delta'", int(conserved(model).shape[-1]))
    if cfg.signs is not None:
        raise ValueError("config field 'signs' must be absent for a model factory (only delta can relocate it).")
    name = type(model).__name__
    if data.is_population and not (isinstance(model, ShallowReLU) and model.b is None):
        raise ValueError(
            f"config field 'model': a Gaussian population's loss has a closed form for a bias-free ShallowReLU only; "
            f"the factory returns {name}{' with biases' if isinstance(model, ShallowReLU) else ''}."
        )
    if cfg.delta is not None and not isinstance(model, AbstractReLUNet):
        raise ValueError(
            f"config field 'delta' needs a network implementing gflow.AbstractReLUNet; the factory returns {name}."
        )
    if cfg.method != "flow":
        return
    if cfg.kinks not in ("auto", "none") and not getattr(model, "kink_handling", False):
        raise ValueError(f"config field 'kinks' must be auto or none for {name} (kink handling: ShallowReLU).")
    if cfg.project and not isinstance(model, AbstractReLUNet):
        raise ValueError(f"config field 'project' needs a network implementing gflow.AbstractReLUNet, not {name}.")
    hidden = [e for e in cfg.events if e.split("=")[0].strip() in ("output_sign_change", "neuron_dies")]
    if hidden and not isinstance(model, AbstractReLUNet):
        raise ValueError(
            f"config field 'events': {hidden[0]} needs a network implementing gflow.AbstractReLUNet, not {name}."
        )


_INIT_FIELDS = ("model", "width", "hidden", "bias", "init", "delta", "delta_signs", "signs", "seed")


def _params_fn(cfg: SweepConfig, data):
    """``indices -> batched params`` of initializations, and the models' static part.

    The compiled function depends only on the fields that decide an initialization, so
    sweeps that differ elsewhere (n_inits, tolerances, ...) reuse it."""
    init_cfg = SweepConfig(**{f: getattr(cfg, f) for f in _INIT_FIELDS})
    static = _init_structure(init_cfg, data)[1]
    return (lambda indices: _batch_params(init_cfg, data, indices)), static


def _init_structure(cfg: SweepConfig, data):
    """The tree structure of an initialization's parameters and the models' static part,
    from shapes only (nothing is computed)."""
    shape = eqx.filter_eval_shape(make_init, cfg, data, jnp.asarray(0))
    params, static = eqx.partition(
        shape, lambda x: isinstance(x, jax.ShapeDtypeStruct) and jnp.issubdtype(x.dtype, jnp.inexact)
    )
    return jax.tree_util.tree_structure(params), static


@cached_trace
@jit
def _batch_params(init_cfg: SweepConfig, data, indices):
    return jax.vmap(lambda i: eqx.filter(make_init(init_cfg, data, i), eqx.is_inexact_array))(indices)


def flow_problem(cfg: SweepConfig, data, model0=None) -> FlowProblem:
    """The sweep's :class:`gflow.flow.FlowProblem` (kink set-up from initialization 0; the
    engine and the event path replace the conserved values per initialization).

    ``model0``: initialization 0 when the caller already has it (default
    ``make_init(cfg, data, 0)``, which a fresh process runs as some 25 small programs)."""
    t1, ts, events = cfg.t1, None, list(cfg.events)
    if cfg.save_times != "linear":
        ts = saved_times(cfg)
    if is_inf(t1):  # to convergence: as gradient_flow(t1=inf)
        gtol = default_gtol(cfg.rtol, cfg.atol) if cfg.gtol is None else cfg.gtol
        t1, ts, events = None, steady_times(cfg.t_max, cfg.n_save), steady_events(gtol, events)
    model0 = make_init(cfg, data, 0) if model0 is None else model0
    return make_problem(
        model0, data, cfg.loss_name, t1, solver=cfg.solver, rtol=cfg.rtol, atol=cfg.atol,
        n_save=cfg.n_save, ts=ts, max_steps=cfg.max_steps, project=cfg.project, kinks=cfg.kinks, events=events,
        on_event=cfg.on_event,
    )  # fmt: skip
