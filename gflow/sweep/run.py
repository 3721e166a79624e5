"""Sweeps over initializations: exact flows by continuous batching, discrete optimizers by vmap.

``run_sweep(config, out_dir)`` draws ``n_inits`` initializations (init ``i`` from
``fold_in(PRNGKey(seed), i)``: the same rows however the sweep is batched, split or
resumed), runs each, reduces it to one row of metrics (THEORY.md §4, see
:mod:`gflow.metrics`) and streams rows to ``out_dir`` chunk by chunk (:mod:`gflow.store`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import tomllib

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from . import store
from ..data import DATASETS
from ..discrete import OPTIMIZERS
from ..flow.events import ON_EVENT, parse_events
from ..flow.solve import KINKS, SOLVERS
from ..metrics import label_string
from ..trajectory import Status, status_name

METHODS = ("flow", *OPTIMIZERS)
MODELS = ("shallow", "mlp")


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """What a sweep runs. Every field has a default; ``SweepConfig.from_toml(path)`` reads one.

    - model: ``shallow`` | ``mlp``; ``width`` (shallow), ``hidden`` (mlp), ``bias``
    - data: ``toy`` | ``breast_cancer`` | ``teacher_student``; ``n_data`` (toy/teacher size),
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
    model: str = "shallow"
    width: int = 2
    hidden: tuple[int, ...] = (8, 8)
    bias: bool = False
    data: str = "toy"
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

        for field, allowed in (
            ("model", MODELS),
            ("data", (*DATASETS, "teacher_student")),
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
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "SweepConfig":
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
        return cls.from_dict(d.get("sweep", d))


def dataset(cfg: SweepConfig):
    """The sweep's data set, and the teacher for teacher-student data (else ``None``)."""
    from ..data import breast_cancer, teacher_student, toy
    from ..nets.models import ShallowReLU

    if cfg.data == "toy":
        return toy(n=cfg.n_data, key=jr.PRNGKey(cfg.seed)), None
    if cfg.data == "breast_cancer":
        return breast_cancer(seed=cfg.seed), None
    in_size = 2
    teacher = ShallowReLU(in_size, cfg.teacher_width, key=jr.PRNGKey(cfg.teacher_seed))
    return teacher_student(teacher, cfg.n_data, jr.PRNGKey(cfg.teacher_seed + 1), noise=cfg.noise), teacher


def make_init(cfg: SweepConfig, data, i):
    """Initialization ``i`` (traced index ok): drawn, relocated, signs forced — as a model."""
    from ..nets.relocate import relocate
    from ..nets.models import MLP, ShallowReLU

    key = jr.fold_in(jr.PRNGKey(cfg.seed), i)
    k_model, k_signs = jr.split(key)
    if cfg.model == "shallow":
        model = ShallowReLU(data.in_size, cfg.width, data.out_size, bias=cfg.bias, init=cfg.init, key=k_model)
        n_out_weights = (data.out_size, cfg.width)
    else:
        model = MLP(data.in_size, cfg.hidden, data.out_size, bias=cfg.bias, init=cfg.init, key=k_model)
        n_out_weights = (data.out_size, cfg.hidden[-1])
    if cfg.delta is None:
        return model
    delta = jnp.asarray(cfg.delta, float)
    if cfg.delta_signs == "random":
        from ..invariants import conserved

        shape = jnp.broadcast_shapes(delta.shape, conserved(model).shape)
        delta = jnp.abs(delta) * jnp.where(jr.bernoulli(jr.fold_in(k_signs, 1), 0.5, shape), 1.0, -1.0)
    signs = None
    if cfg.signs == "random":
        signs = jnp.where(jr.bernoulli(k_signs, 0.5, n_out_weights), 1.0, -1.0)
    elif cfg.signs is not None:
        signs = jnp.asarray(cfg.signs, float)
    return relocate(model, delta, signs)


_OMIT_AT_DEFAULT = {"recover_tol": 1e-3, "delta_signs": None, "save_trajectories": False}


def _row(values: dict, j: int, cfg: SweepConfig, teacher, static) -> dict:
    row = dict(index=int(values["index"][j]), seed=cfg.seed)
    for key in (
        "initial_loss",
        "final_loss",
        "initial_test_loss",
        "final_test_loss",
        "drift",
        "relative_drift",
        "t_reached",
    ):
        if key in values:
            row[key] = float(values[key][j])
    path = np.asarray(values["pathological"][j])
    row["label_start"] = label_string(np.asarray(values["label_start"][j]), path)
    row["label_end"] = label_string(np.asarray(values["label_end"][j]), path)
    for key in (
        "n_pathological",
        "effective_label_start",
        "effective_label_end",
        "label_changes",
        "steps",
        "accepted",
        "rejected",
        "grad_evals",
        "dtmin_steps",
        "pins",
        "unpins",
        "pinned",
    ):
        if key in values:
            row[key] = int(values[key][j])
    for key in values:
        if key == "event_time" or key.startswith("t_") and key != "t_reached":
            row[key] = float(values[key][j])
    if "event" in values:
        row["event"] = int(values["event"][j])
    row["status"] = status_name(values["status"][j])
    if teacher is not None and cfg.model == "shallow" and not cfg.bias:
        row.update(_teacher_flags(values, j, teacher, static, cfg.recover_tol))
    return row


def _teacher_flags(values, j, teacher, static, tol: float) -> dict:
    """``reachable``: THEORY.md §1's predicate for the initial student's component;
    ``recovered``: the final student realizes the teacher's function (canonical forms within
    ``tol``, §3)."""
    from ..topology.symmetry import reachable, recovered

    def model(key):
        return eqx.combine(jax.tree_util.tree_map(lambda x: x[j], values[key]), static)

    student0, student1 = model("initial_params"), model("final_params")
    ok = np.isfinite(values["final_loss"][j])
    return dict(reachable=bool(reachable(teacher, student0)), recovered=bool(ok and recovered(student1, teacher, tol)))


def _progress(total: int, initial: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="traj", dynamic_ncols=True, mininterval=0.5)


def run_sweep(
    config: SweepConfig, out_dir: str, resume: bool = True, *, part: tuple[int, int] = (0, 1), progress: bool = True
) -> dict:
    """Run (or continue) a sweep into ``out_dir``; returns a summary dict.

    Chunks of ``chunk_size`` initializations are the unit of work and of resumption (each
    runs from fresh slots, so its rows do not depend on what ran before it);
    ``part=(i, N)`` runs chunks ``c`` with ``c % N == i`` only (for job arrays); the rows of
    all parts together equal one run's. After the last chunk, ``runs.parquet`` is merged.
    """
    i_part, n_parts = part
    if not (0 <= i_part < n_parts):
        raise ValueError(f"part must be i/N with 0 <= i < N, got {i_part}/{n_parts}.")
    jax.config.update("jax_enable_x64", config.precision == 64)
    store.open_store(out_dir, config.to_dict(), resume)
    n_chunks = math.ceil(config.n_inits / config.chunk_size)
    done = store.done_chunks(out_dir)
    todo = [c for c in range(n_chunks) if c % n_parts == i_part and c not in done]
    mine = sum(
        min(config.chunk_size, config.n_inits - c * config.chunk_size) for c in range(n_chunks) if c % n_parts == i_part
    )
    queue = [i for c in todo for i in range(c * config.chunk_size, min((c + 1) * config.chunk_size, config.n_inits))]
    data, teacher = dataset(config)
    bar = _progress(mine, mine - len(queue), config.name) if progress else None
    start = time.perf_counter()
    counters = dict(executed=0, useful=0, failures=0)
    pending: dict[int, list[dict]] = {c: [] for c in todo}
    ts_saved = saved_times(config) if config.save_trajectories else None

    def emit(rows, ticks=None):
        """Rows of finished trajectories; ``ticks``: trajectories to add to the progress bar
        (default: one per row)."""
        for row in rows:
            c = row["index"] // config.chunk_size
            pending[c].append(row)
            counters["failures"] += row["status"] != "successful"
            expected = min(config.chunk_size, config.n_inits - c * config.chunk_size)
            if len(pending[c]) == expected:
                rows_c = sorted(pending.pop(c), key=lambda r: r["index"])
                if config.save_trajectories:  # written first: a chunk's rows exist only with its trajectories
                    store.write_trajectories(
                        out_dir, c, [r["index"] for r in rows_c], ts_saved, [r.pop("_states") for r in rows_c]
                    )
                store.write_chunk(out_dir, c, rows_c)
        if bar is not None:
            bar.update(len(rows) if ticks is None else ticks)
            bar.set_postfix(failures=counters["failures"])

    # Each chunk runs on its own from fresh slots: its rows are then bitwise the same whether
    # the sweep runs whole, resumed or split into parts (a batch's round-off depends on which
    # slots run side by side, so sharing slots across chunks would break this).
    run = _run_discrete if config.method != "flow" else _run_flow_events if config.events else _run_flow
    chunks = [list(range(c * config.chunk_size, min((c + 1) * config.chunk_size, config.n_inits))) for c in todo]
    if chunks:
        run(config, data, teacher, chunks, emit, counters)
    if bar is not None:
        bar.close()
    elapsed = time.perf_counter() - start
    complete = len(store.done_chunks(out_dir)) == n_chunks
    if complete:
        store.merge(out_dir, n_chunks)
    return dict(
        out_dir=out_dir,
        ran=len(queue),
        seconds=elapsed,
        complete=complete,
        rate=len(queue) / elapsed if elapsed > 0 else float("nan"),
        **counters,
    )


def saved_times(cfg: SweepConfig) -> np.ndarray:
    """The times at which a sweep checks drift and labels (and saves trajectories): ``n_save``
    times on [0, t1] for flows; for discrete optimizers ``lr * step`` at the saved steps."""
    if cfg.method == "flow":
        from ..flow.solve import save_times

        return np.asarray(save_times(cfg.t1, cfg.n_save, None))
    from ..discrete import _save_slots

    return np.asarray(_save_slots(cfg.n_steps, cfg.n_save)[0]) * cfg.lr


def load_trajectory(out_dir: str, index: int):
    """``(ts, models)`` of initialization ``index`` of a sweep run with ``save_trajectories``:
    ``models`` is the network with a leading time axis (as ``Trajectory.models``), the saved
    state at each ``ts``; times a failed run did not reach are NaN."""
    import json

    with open(os.path.join(out_dir, store.MANIFEST)) as f:
        cfg = SweepConfig.from_dict(json.load(f)["config"])
    jax.config.update("jax_enable_x64", cfg.precision == 64)
    if not 0 <= index < cfg.n_inits:
        raise ValueError(f"index must be in [0, {cfg.n_inits}) for this sweep, got {index}.")
    arrays = store.read_trajectories(out_dir, index // cfg.chunk_size)
    row = int(np.nonzero(arrays["index"] == index)[0][0])
    treedef, static = _init_structure(cfg, dataset(cfg)[0])
    leaves = [jnp.asarray(arrays[f"leaf_{k}"][row]) for k in range(treedef.num_leaves)]
    return arrays["ts"], eqx.combine(jax.tree_util.tree_unflatten(treedef, leaves), static)


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


@eqx.filter_jit
def _batch_params(init_cfg: SweepConfig, data, indices):
    return jax.vmap(lambda i: eqx.filter(make_init(init_cfg, data, i), eqx.is_inexact_array))(indices)


def _mesh_put(tree, n_dev: int):
    """Spread the leading (slot) axis over all devices; no-op on one device."""
    if n_dev == 1:
        return tree
    mesh = jax.make_mesh((n_dev,), ("slots",), axis_types=(jax.sharding.AxisType.Auto,))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("slots"))
    return jax.tree_util.tree_map(lambda x: jax.device_put(x, sharding) if getattr(x, "ndim", 0) else x, tree)


def _rows_from(values: dict, which: np.ndarray, cfg, teacher, static, extra: dict) -> list[dict]:
    values = jax.tree_util.tree_map(np.asarray, values)
    states = jax.tree_util.tree_leaves(values["states"]) if "states" in values else None
    rows = []
    for j in which:
        row = _row(values, int(j), cfg, teacher, static)
        row["wall_time"] = float(extra["wall"][j])
        if states is not None:
            row["_states"] = [leaf[j] for leaf in states]  # split off into the chunk's trajectory file
        rows.append(row)
    return rows


def _run_flow(cfg: SweepConfig, data, teacher, chunks: list[list[int]], emit, counters: dict) -> None:
    """Exact flows by continuous batching (:mod:`gflow._engine`), one chunk at a time from
    fresh slots; the stepper, kink set-up and compiled functions are shared by all chunks.

    Per chunk: its initializations are dealt round-robin into one queue per device; each
    device refills its slots from its queue inside the jitted loop; once the queues are
    empty and the live slots fit a narrower compiled width (:func:`_ladder`), they are
    compacted into it, so the slowest trajectories end at the cost of a narrow batch."""
    from ..flow.batched import _AXIS, FlowStepper, finalize, run_chunk, start_chunk
    from ..flow.solve import evals_per_step, save_times
    from ..losses import get_loss

    params_of, static = _params_fn(cfg, data)
    dtype = jnp.result_type(float)
    loss_fn = get_loss(cfg.loss_name)
    pinning, slide = _kink_parts(cfg, data, loss_fn)
    stepper = FlowStepper(
        static=static,
        data=data,
        loss_fn=loss_fn,
        solver_name=cfg.solver,
        ts=save_times(cfg.t1, cfg.n_save, None),
        rtol=jnp.asarray(cfg.rtol, dtype),
        atol=jnp.asarray(cfg.atol, dtype),
        max_steps=cfg.max_steps,
        project=cfg.project,
        pinning=pinning,
        slide_tol=slide,
        save_states=cfg.save_trajectories,
    )
    per_step, once = evals_per_step(SOLVERS[cfg.solver](), cfg.project)
    n_dev = jax.device_count()
    mesh = jax.make_mesh((n_dev,), (_AXIS,), axis_types=(jax.sharding.AxisType.Auto,))
    n_out = cfg.chunk_size  # result buffer per device, by chunk-local index
    q_dev = -(-cfg.chunk_size // n_dev)  # queue entries per device (fixed: one compilation)
    # queue position of chunk-local index l: device l % n_dev, entry l // n_dev
    local = np.arange(q_dev * n_dev)
    order = local.reshape(q_dev, n_dev).T.ravel()
    queue_pos = (local % n_dev) * q_dev + local // n_dev

    def run_one(indices: list[int]) -> None:
        n = len(indices)
        t = time.perf_counter()
        queue = params_of(jnp.asarray(np.asarray(indices)[np.minimum(order, n - 1)]))
        qindex = np.where(order < n, order, -1)
        width = _width_for(min(cfg.slots, n), n_dev)
        chunk = start_chunk(stepper, mesh, width // n_dev, n_out, *_mesh_put((queue, jnp.asarray(qindex)), n_dev))
        n_written, n_steps = 0, cfg.steps_per_call
        while n_written < n:
            group = max(1, width // n_dev // _GROUP)
            t_call = time.perf_counter()
            chunk = run_chunk(stepper, mesh, group, chunk, jnp.asarray(n_steps), jnp.asarray(_narrower(width, n_dev)))
            written = int(chunk.written.sum())
            # return to the host (progress bar) about every 0.2 s: rows do not depend on it
            n_steps *= 2 if time.perf_counter() - t_call < _CALL_SECONDS else 1
            emit((), ticks=written - n_written)
            n_written = written
            index = np.asarray(chunk.slots.index)
            n_live = int(np.sum(index >= 0))
            queued = int(np.sum(qindex >= 0)) - int(np.sum(chunk.next))
            target = _width_for(max(1, n_live), n_dev)
            if n_live and not queued and target < width:
                keep = np.concatenate([np.nonzero(index >= 0)[0], np.nonzero(index < 0)[0]])[:target]
                slots = _mesh_put(jax.tree_util.tree_map(lambda x: x[keep], chunk.slots), n_dev)
                chunk, width = eqx.tree_at(lambda c: c.slots, chunk, slots), target
        # each result sits in the buffer of the device its slot ended on
        device = np.argmax(np.asarray(chunk.written).reshape(n_dev, n_out), axis=0)
        final = jax.tree_util.tree_map(lambda x: x[device * n_out + np.arange(n_out)], chunk.out)
        p0 = jax.tree_util.tree_map(lambda x: x[queue_pos[:n_out]], queue)
        values = jax.tree_util.tree_map(np.asarray, finalize(stepper, final, p0, jnp.arange(n_out)))
        values.update(
            grad_evals=_grad_evals(values, per_step, once, cfg.project),
            index=np.asarray(indices + [indices[-1]] * (n_out - n)),
        )
        counters["executed"] += int(np.sum(chunk.executed))
        counters["useful"] += int(np.sum(chunk.useful))
        steps = np.asarray(values["steps"][:n], float)
        wall = (time.perf_counter() - t) * steps / max(1.0, steps.sum())
        emit(_rows_from(values, np.arange(n), cfg, teacher, static, dict(wall=wall)), ticks=0)

    for indices in chunks:
        run_one(indices)


_GROUP = 16  # a device refills its slots once 1/_GROUP of them are free
_CALL_SECONDS = 0.2  # calls shorter than this double their step budget


def _ladder(m: int) -> int:
    """The smallest compiled width per device >= ``m``: 1, 2, 3, 4, 6, 8, 12, 16, 24, ...
    (powers of two and three times them: at most 1/3 of a narrow batch idles, with about two
    compilations per doubling)."""
    p = 1 << (m - 1).bit_length()
    return 3 * p // 4 if p >= 4 and 3 * p // 4 >= m else p


def _width_for(n_live: int, n_dev: int) -> int:
    """The compiled width (all devices) for ``n_live`` slots: a ladder width per device."""
    return _ladder(-(-n_live // n_dev)) * n_dev


def _narrower(width: int, n_dev: int) -> int:
    """The next ladder width below ``width`` (0 below one slot per device)."""
    per_device = width // n_dev
    return max((v for v in map(_ladder, range(1, per_device)) if v < per_device), default=0) * n_dev


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _grad_evals(values: dict, per_step: int, once: int, project: bool) -> np.ndarray:
    """Gradient evaluations as :func:`gflow.flow.solve_flow` counts them (a pin or unpin makes
    the first-same-as-last stage stale unless projecting: one more evaluation)."""
    evals = np.asarray(values["steps"]) * per_step + once
    if "pins" in values and not project:
        evals = evals + (np.asarray(values["pins"]) + np.asarray(values["unpins"])) * min(once, 1)
    return evals


def _run_discrete(cfg: SweepConfig, data, teacher, chunks: list[list[int]], emit, counters: dict) -> None:
    """Discrete optimizers: fixed step counts, so groups of ``slots`` inits vmap directly."""
    from ..discrete import _save_slots, run_optimizer

    saved, slot = _save_slots(cfg.n_steps, cfg.n_save)
    batch = cfg.batch_size or (min(32, data.x_train.shape[0]) if cfg.method == "sgd" else None)
    dtype = jnp.result_type(float)
    n = cfg.n_steps

    def solve_one(model0, loss_fn):
        models = run_optimizer(
            model0,
            data,
            loss_fn,
            cfg.method,
            jnp.asarray(cfg.lr, dtype),
            jnp.asarray(slot),
            jr.PRNGKey(cfg.seed),
            batch_size=batch,
            n_saved=len(saved),
        )
        stats = dict(steps=n, accepted=n, rejected=0, grad_evals=n)
        return models, Status.successful._value, jnp.asarray(n * cfg.lr, dtype), stats

    _run_batched(cfg, data, teacher, chunks, emit, counters, solve_one, slot_steps=lambda values: n)


def _run_flow_events(cfg: SweepConfig, data, teacher, chunks: list[list[int]], emit, counters: dict) -> None:
    """Exact flows with events: groups of ``slots`` inits through ``vmap`` of the same jitted
    solve as :func:`gflow.flow.gradient_flow` (the continuous-batching engine does not locate
    events, so a group runs until its slowest member ends)."""
    from ..flow.solve import save_times, solve_flow
    from ..invariants import conserved
    from ..losses import get_loss

    dtype = jnp.result_type(float)
    events = parse_events(list(cfg.events))
    ts = save_times(cfg.t1, cfg.n_save, None)
    pinning, slide = _kink_parts(cfg, data, get_loss(cfg.loss_name))

    def solve_one(model0, loss_fn):
        pin = None if pinning is None else pinning.with_delta(conserved(model0))
        traj = solve_flow(
            model0,
            data,
            loss_fn,
            ts,
            jnp.asarray(cfg.rtol, dtype),
            jnp.asarray(cfg.atol, dtype),
            jnp.asarray(0.0, dtype),
            solver=cfg.solver,
            max_steps=cfg.max_steps,
            project=cfg.project,
            adaptive=True,
            pinning=pin,
            slide_tol=slide,
            events=events,
            on_event=cfg.on_event,
        )
        keep = ("steps", "accepted", "rejected", "grad_evals", "dtmin_steps", "event", "event_time")
        stats = {k: v for k, v in traj.stats.items() if k in keep or k.startswith("t_")}
        if pinning is not None:
            stats.update({k: traj.stats[k] for k in ("pins", "unpins", "pinned")})
        return traj.models, traj.status._value, traj.ts[-1], stats

    _run_batched(cfg, data, teacher, chunks, emit, counters, solve_one, slot_steps=lambda values: values["steps"])


def _kink_parts(cfg: SweepConfig, data, loss_fn):
    """``(pinning, slide_tol)`` of the sweep's kink mode (pinning's delta: initialization 0's)."""
    from ..flow.solve import resolve_kinks

    return resolve_kinks(cfg.kinks, make_init(cfg, data, 0), data, loss_fn, cfg.rtol, cfg.atol)


def _run_batched(
    cfg: SweepConfig, data, teacher, chunks: list[list[int]], emit, counters: dict, solve_one, slot_steps
) -> None:
    """Groups of ``slots`` initializations of each chunk through ``vmap(solve_one)`` (compiled
    once for all chunks); each run is reduced to a row by folding :mod:`gflow.metrics` over
    its saved models.

    ``solve_one(model0, loss_fn) -> (saved models, status value, t_reached, stats)``;
    ``slot_steps(values)`` gives the steps each member took (for the useful-work counters)."""
    from .. import metrics
    from ..losses import get_loss

    params_of, static = _params_fn(cfg, data)
    loss_fn = get_loss(cfg.loss_name)

    @eqx.filter_jit
    def run_batch(params):
        def one(p):
            model0 = eqx.combine(p, static)
            models, status, t_reached, stats = solve_one(model0, loss_fn)
            n_saved = jax.tree_util.tree_leaves(models)[0].shape[0]
            acc = metrics.start(model0)
            acc = jax.lax.fori_loop(
                1, n_saved, lambda i, a: metrics.observe(a, jax.tree_util.tree_map(lambda x: x[i], models)), acc
            )
            final = jax.tree_util.tree_map(lambda x: x[-1], models)
            row = metrics.loss_columns(model0, final, data, loss_fn)
            row.update(metrics.summarize(acc))
            ok = jnp.isfinite(row["final_loss"])
            row.update(
                stats,
                label_start=acc["label0"],
                label_end=acc["label"],
                pathological=acc["pathological"],
                initial_params=p,
                final_params=eqx.filter(final, eqx.is_inexact_array),
                status=jnp.where(ok, status, Status.nonfinite._value),
                t_reached=t_reached,
            )
            if cfg.save_trajectories:
                row["states"] = eqx.filter(models, eqx.is_inexact_array)
            return row

        return jax.vmap(one)(params)

    width = cfg.slots
    for chunk in chunks:
        queue = list(chunk)
        while queue:
            idx = np.asarray(queue[:width])
            del queue[:width]
            padded = np.concatenate([idx, np.full(width - len(idx), idx[-1])])
            t = time.perf_counter()
            values = jax.tree_util.tree_map(np.asarray, run_batch(params_of(jnp.asarray(padded))))
            wall = np.full(width, (time.perf_counter() - t) / len(idx))
            values = {
                k: np.broadcast_to(v, (width,)) if isinstance(v, np.ndarray) and v.ndim == 0 else v
                for k, v in values.items()
            }  # per-run scalars (a model's batch stays as it is)
            values["index"] = padded
            steps = np.broadcast_to(slot_steps(values), (width,))
            counters["executed"] += int(steps.max()) * width
            counters["useful"] += int(steps[: len(idx)].sum())
            emit(_rows_from(values, np.arange(len(idx)), cfg, teacher, static, dict(wall=wall)))
