"""Running a sweep: exact flows by continuous batching, discrete optimizers by vmap.

``run_sweep(config, out_dir)`` draws ``n_inits`` initializations (init ``i`` from
``fold_in(PRNGKey(seed), i)``: the same rows however the sweep is batched, split or
resumed), runs each, reduces it to one row of metrics (docs/theory.md §4, see
:mod:`gflow.metrics`) and streams rows to ``out_dir`` chunk by chunk (:mod:`gflow.sweep.store`).
"""

from __future__ import annotations

import math
import os
import time
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from tqdm.auto import tqdm

from .. import metrics
from .._jit import jit
from ..conservation import conservation_of, warn_if_absent
from ..discrete import _save_slots, run_optimizer
from ..flow.batched import _AXIS, FlowStepper, finalize, run_chunk, start_chunk
from ..flow.solve import solve_flow
from ..flow.steady import classify_end, endpoint_stats, is_inf
from ..losses import get_loss
from ..topology.symmetry import teacher_geometry
from ..trajectory import Status, at_time
from . import store
from .config import SweepConfig
from .curves import curve_columns
from .problems import _params_fn, check_config, dataset, flow_problem, make_init, saved_times, teacher_seed
from .rows import _rows_from

__all__ = ["run_sweep"]


def _progress(total: int, initial: int, desc: str):

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
    if config.methods is not None:
        return _run_methods(config, out_dir, resume, part, progress)
    config.check_precision()
    data, teacher = dataset(config)
    check_config(config, data)  # the user's network and data: checked before anything is written
    if config.model_factory is not None:
        model0 = make_init(config, data, 0)
        warn_if_absent(conservation_of(model0), model0, stacklevel=2)
    store.open_store(out_dir, config.to_dict(), resume, _teacher_entry(config, teacher))
    n_chunks = math.ceil(config.n_inits / config.chunk_size)
    done = store.done_chunks(out_dir)
    todo = [c for c in range(n_chunks) if c % n_parts == i_part and c not in done]
    mine = sum(
        min(config.chunk_size, config.n_inits - c * config.chunk_size) for c in range(n_chunks) if c % n_parts == i_part
    )
    queue = [i for c in todo for i in range(c * config.chunk_size, min((c + 1) * config.chunk_size, config.n_inits))]
    bar = _progress(mine, mine - len(queue), config.name) if progress else None
    start = time.perf_counter()
    counters = dict(executed=0, useful=0, failures=0)
    pending: dict[int, list[dict]] = {c: [] for c in todo}
    ts_saved = saved_times(config) if config.save_trajectories or config.curves else None

    def emit(rows, ticks=None):
        """Rows of finished trajectories; ``ticks``: trajectories to add to the progress bar
        (default: one per row)."""
        for row in rows:
            c = row["index"] // config.chunk_size
            pending[c].append(row)
            # a stopping event (t1 = inf: the steady state) ends a run as asked, not a failure
            counters["failures"] += row["status"] not in ("successful", "event_occurred")
            expected = min(config.chunk_size, config.n_inits - c * config.chunk_size)
            if len(pending[c]) == expected:
                rows_c = sorted(pending.pop(c), key=lambda r: r["index"])
                index = [r["index"] for r in rows_c]
                if config.curves:
                    curves = curve_columns(config, data, ts_saved, [r["_states"] for r in rows_c])
                    for r, cols in zip(rows_c, curves, strict=True):
                        r.update(cols)
                # written first: a chunk's rows exist only with its networks (and trajectories)
                networks = [r.pop("_networks") for r in rows_c]
                store.write_networks(out_dir, c, index, [n[0] for n in networks], [n[1] for n in networks])
                states = [r.pop("_states") for r in rows_c] if "_states" in rows_c[0] else None
                if config.save_trajectories and states is not None:
                    store.write_trajectories(out_dir, c, index, ts_saved, states)
                store.write_chunk(out_dir, c, rows_c)
        if bar is not None:
            bar.update(len(rows) if ticks is None else ticks)
            bar.set_postfix(failures=counters["failures"])

    # Each chunk runs on its own from fresh slots: its rows are then bitwise the same whether
    # the sweep runs whole, resumed or split into parts (a batch's round-off depends on which
    # slots run side by side, so sharing slots across chunks would break this).
    if config.method != "flow":
        run = _run_discrete
    elif is_inf(config.t1):
        run = _run_flow_steady
    else:
        run = _run_flow_events if config.events else _run_flow
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


class WeakTeacher(UserWarning):
    """A teacher-student sweep's teacher has a kink the data barely show."""


# below these, a drawn teacher is flagged (the gallery's reachability figure selects teachers
# with every |a_j| ||u_j|| >= 0.3 and kink lines >= 30 degrees apart)
_WEAK_STRENGTH, _CLOSE_ANGLE = 0.3, 30.0


def _teacher_entry(config: SweepConfig, teacher) -> dict | None:
    """The manifest's ``teacher``: seed, weights and :func:`gflow.teacher_geometry`; warns
    (:class:`WeakTeacher`) about a weak or crowded teacher unless the config chose it by
    ``teacher_min_strength``/``teacher_min_angle``."""
    if teacher is None:
        return None
    geometry = teacher_geometry(teacher)
    chosen = config.teacher_min_strength or config.teacher_min_angle
    if not chosen and (geometry["min_strength"] < _WEAK_STRENGTH or geometry["min_angle"] < _CLOSE_ANGLE):
        warnings.warn(
            f"gflow: the teacher (teacher_seed {config.teacher_seed}) has its weakest kink at |a_j| ||u_j|| = "
            f"{geometry['min_strength']:.3g} and kink lines {geometry['min_angle']:.3g} degrees apart; the data "
            f"barely show such a kink, yet reachable counts it. Set teacher_min_strength = {_WEAK_STRENGTH} and "
            f"teacher_min_angle = {_CLOSE_ANGLE:g} to draw one that meets both.",
            WeakTeacher,
            stacklevel=3,
        )
    W, V = (np.asarray(x, dtype=float).tolist() for x in (teacher.W, teacher.V))
    return dict(teacher=dict(seed=teacher_seed(config), W=W, V=V, **geometry))


def _run_methods(config: SweepConfig, out_dir: str, resume: bool, part: tuple[int, int], progress: bool) -> dict:
    """Each method of ``config.methods`` as its own sweep in ``out_dir/<method>`` (the same
    initializations: they depend only on the shared fields); once all are complete, their
    rows form ``out_dir/runs.parquet`` with a ``method`` column (:func:`store.merge_methods`)."""
    subs = config.per_method()
    for _, sub in subs:  # every method's network and data checked before anything is written
        sub.check_precision()
        check_config(sub, dataset(sub)[0])
    store.open_store(out_dir, config.to_dict(), resume)
    results = [run_sweep(sub, os.path.join(out_dir, name), resume, part=part, progress=progress) for name, sub in subs]
    complete = all(r["complete"] for r in results)
    if complete:
        store.merge_methods(out_dir, [name for name, _ in subs])
    total = {k: sum(r[k] for r in results) for k in ("ran", "seconds", "executed", "useful", "failures")}
    rate = total["ran"] / total["seconds"] if total["seconds"] > 0 else float("nan")
    return dict(out_dir=out_dir, complete=complete, rate=rate, **total)


def _mesh_put(tree, n_dev: int):
    """Spread the leading (slot) axis over all devices; no-op on one device."""
    if n_dev == 1:
        return tree
    mesh = jax.make_mesh((n_dev,), ("slots",), axis_types=(jax.sharding.AxisType.Auto,))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("slots"))
    return jax.tree_util.tree_map(lambda x: jax.device_put(x, sharding) if getattr(x, "ndim", 0) else x, tree)


def _run_flow(cfg: SweepConfig, data, teacher, chunks: list[list[int]], emit, counters: dict) -> None:
    """Exact flows by continuous batching (:mod:`gflow._engine`), one chunk at a time from
    fresh slots; the stepper, kink set-up and compiled functions are shared by all chunks.

    Per chunk: its initializations are dealt round-robin into one queue per device; each
    device refills its slots from its queue inside the jitted loop, and the last trajectories
    of the chunk end at the same width. Compacting them into narrower compiled widths (a
    ladder 1, 2, 3, 4, 6, 8, ... per device, as before) cost more than it saved on CPU:
    every narrower width is one more program to trace (about 1.2 s each, even with a warm
    compilation cache) and compile, against about 10% of slot-steps idle at the tail without
    it (results/benchmarks/time_to_result.md)."""
    params_of, static = _params_fn(cfg, data)
    n_dev = jax.device_count()
    mesh = jax.make_mesh((n_dev,), (_AXIS,), axis_types=(jax.sharding.AxisType.Auto,))
    n_out = cfg.chunk_size  # result buffer per device, by chunk-local index
    q_dev = -(-cfg.chunk_size // n_dev)  # queue entries per device (fixed: one compilation)
    # queue position of chunk-local index l: device l % n_dev, entry l // n_dev
    local = np.arange(q_dev * n_dev)
    order = local.reshape(q_dev, n_dev).T.ravel()
    queue_pos = (local % n_dev) * q_dev + local // n_dev

    def queue_of(indices: list[int]):
        """The initializations of a chunk's queue, in queue order (padded with the last)."""
        return params_of(jnp.asarray(np.asarray(indices)[np.minimum(order, len(indices) - 1)]))

    problem = flow_problem(cfg, data, _model0(static, queue_of))
    stepper = FlowStepper(problem=problem, save_states=cfg.save_trajectories or cfg.curves)

    def rows_at(written):
        """Where ``finalize`` reads each row: the result buffer of the device its slot ended
        on, and its queue position."""
        device = np.argmax(np.asarray(written).reshape(n_dev, n_out), axis=0)
        return jnp.asarray(device * n_out + np.arange(n_out)), jnp.asarray(queue_pos[:n_out])

    prepared: list = []  # the background build of the row function (first chunk only)

    def run_one(indices: list[int]) -> None:
        n = len(indices)
        t = time.perf_counter()
        queue = queue_of(indices)
        qindex = np.where(order < n, order, -1)
        width = _width_for(min(cfg.slots, n), n_dev)
        chunk = start_chunk(stepper, mesh, width // n_dev, n_out, *_mesh_put((queue, jnp.asarray(qindex)), n_dev))
        n_written, n_steps = 0, cfg.steps_per_call
        while n_written < n:
            group = max(1, width // n_dev // _GROUP)
            t_call = time.perf_counter()
            chunk = run_chunk(stepper, mesh, group, chunk, jnp.asarray(n_steps))
            if not prepared:  # the row function compiles while the step loop runs (shapes only)
                at = rows_at(np.zeros(chunk.written.shape, bool))
                prepared.append(finalize.prepare(stepper, chunk.out, queue, *at))
            written = int(np.asarray(chunk.written).sum())
            # return to the host (progress bar) about every 0.2 s: rows do not depend on it
            n_steps *= 2 if time.perf_counter() - t_call < _CALL_SECONDS else 1
            emit((), ticks=written - n_written)
            n_written = written
        values = jax.tree_util.tree_map(np.asarray, finalize(stepper, chunk.out, queue, *rows_at(chunk.written)))
        values.update(
            grad_evals=problem.grad_evals(
                values["steps"], 1, values.get("pins"), values.get("unpins"), values.get("jumps")
            ),
            index=np.asarray(indices + [indices[-1]] * (n_out - n)),
        )
        counters["executed"] += int(np.sum(chunk.executed))
        counters["useful"] += int(np.sum(chunk.useful))
        steps = np.asarray(values["steps"][:n], float)
        wall = (time.perf_counter() - t) * steps / max(1.0, steps.sum())
        emit(_rows_from(values, np.arange(n), cfg, teacher, static, dict(wall=wall)), ticks=0)

    try:
        for indices in chunks:
            run_one(indices)
    finally:  # a background build ends before the sweep returns (or raises)
        for thread in prepared:
            if thread is not None:
                thread.join()


def _model0(static, queue_of):
    """Initialization 0, first of the queue ``queue_of([0])`` (the chunks' own compiled program,
    not :func:`make_init` again); ``None`` (make it afresh) when the models' static part holds
    arrays that the batch does not carry."""
    if any(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in jax.tree_util.tree_leaves(static)):
        return None
    return eqx.combine(jax.tree_util.tree_map(lambda x: jnp.asarray(np.asarray(x)[0]), queue_of([0])), static)


_GROUP = 16  # a device refills its slots once 1/_GROUP of them are free
_CALL_SECONDS = 0.2  # calls shorter than this double their step budget


def _ladder(m: int) -> int:
    """The smallest compiled width per device >= ``m``: 1, 2, 3, 4, 6, 8, 12, 16, 24, ...
    (powers of two and three times them), for a chunk with fewer initializations than
    ``slots``: at most 1/3 of its slots idle, and chunks of nearby sizes share a program."""
    p = 1 << (m - 1).bit_length()
    return 3 * p // 4 if p >= 4 and 3 * p // 4 >= m else p


def _width_for(n_live: int, n_dev: int) -> int:
    """The compiled width (all devices) for ``n_live`` slots: a ladder width per device."""
    return _ladder(-(-n_live // n_dev)) * n_dev


def _run_discrete(cfg: SweepConfig, data, teacher, chunks: list[list[int]], emit, counters: dict) -> None:
    """Discrete optimizers: fixed step counts, so groups of ``slots`` inits vmap directly."""

    saved, slot = _save_slots(cfg.n_steps, cfg.n_save)
    n_data = 32 if data.is_population else data.x_train.shape[0]
    batch = cfg.batch_size or (min(32, n_data) if cfg.method == "sgd" else None)
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
    solve_one = _single_solve(flow_problem(cfg, data))
    _run_batched(cfg, data, teacher, chunks, emit, counters, solve_one, slot_steps=lambda values: values["steps"])


def _single_solve(problem):
    """``solve_one`` of :func:`_run_batched` for exact flows: the jitted single solve of
    :func:`gflow.flow.gradient_flow` from ``model0``'s own conserved values."""

    def solve_one(model0, loss_fn):
        traj = solve_flow(problem.with_delta(problem.conserved(model0)), model0)
        keep = ("steps", "accepted", "rejected", "grad_evals", "dtmin_steps", "event", "event_time")
        stats = {k: v for k, v in traj.stats.items() if k in keep or k.startswith("t_")}
        if problem.pinning is not None:
            stats.update({k: traj.stats[k] for k in ("pins", "unpins", "pinned")})
        return traj.models, traj.status._value, traj.ts[-1], stats

    return solve_one


def _run_flow_steady(cfg: SweepConfig, data, teacher, chunks: list[list[int]], emit, counters: dict) -> None:
    """Exact flows to convergence (``t1 = inf``): the event path with the steady-state event
    first, then each row's end point polished and classified on the host
    (:func:`gflow.flow.steady.classify_end`), as :func:`gflow.gradient_flow` does."""
    problem = flow_problem(cfg, data)
    params_static = _params_fn(cfg, data)[1]
    solve_one = _single_solve(problem)

    def endpoint_columns(values, j) -> dict:
        final = eqx.combine(jax.tree_util.tree_map(lambda x: jnp.asarray(x[j]), values["final_params"]), params_static)
        cols = endpoint_stats(classify_end(final, data, cfg.loss_name))
        return dict(cols, converged=bool(values["event"][j] == 0))

    _run_batched(
        cfg, data, teacher, chunks, emit, counters, solve_one, slot_steps=lambda v: v["steps"], extra=endpoint_columns
    )


def _run_batched(
    cfg: SweepConfig, data, teacher, chunks: list[list[int]], emit, counters: dict, solve_one, slot_steps, extra=None
) -> None:
    """Groups of ``slots`` initializations of each chunk through ``vmap(solve_one)`` (compiled
    once for all chunks); each run is reduced to a row by folding :mod:`gflow.metrics` over
    its saved models.

    ``solve_one(model0, loss_fn) -> (saved models, status value, t_reached, stats)``;
    ``slot_steps(values)`` gives the steps each member took (for the useful-work counters);
    ``extra(values, j)``: more columns for row ``j`` (computed on the host)."""

    params_of, static = _params_fn(cfg, data)
    loss_fn = get_loss(cfg.loss_name)

    @jit
    def run_batch(params):
        def one(p):
            model0 = eqx.combine(p, static)
            models, status, t_reached, stats = solve_one(model0, loss_fn)
            n_saved = jax.tree_util.tree_leaves(models)[0].shape[0]
            acc = metrics.start(model0)
            acc = jax.lax.fori_loop(1, n_saved, lambda i, a: metrics.observe(a, at_time(models, i)), acc)
            final = at_time(models, -1)
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
            if cfg.save_trajectories or cfg.curves:
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
            rows = _rows_from(values, np.arange(len(idx)), cfg, teacher, static, dict(wall=wall))
            if extra is not None:
                for j, row in enumerate(rows):
                    row.update(extra(values, j))
            emit(rows)
