"""Sweeps as job arrays with `submitit <https://github.com/facebookincubator/submitit>`_:
one array task per part ``i/N`` of a sweep, all writing into one shared folder, then a merge.

Part ``i`` of ``N`` owns the chunks ``c`` with ``c % N == i`` (as ``gflow sweep --part i/N``),
so the rows do not depend on how the sweep is split. Submitting again submits only the parts
that still own a missing chunk: a task that died leaves its finished chunks on disk, and its
re-run skips them. ``executor="slurm"`` submits an ``sbatch`` array and a merge job that
depends on it (``afterok``); ``executor="local"`` runs the same tasks as local processes
(submitit's local executor) and merges once they end.

submitit is the optional extra ``cluster``: ``pip install "gflow[cluster]"``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import sys
import time

from . import store

__all__ = ["ClusterOptions", "EXECUTORS", "parts_to_run", "sbatch_script", "submit", "run_part", "merge_part"]

EXECUTORS = ("slurm", "local")
INSTALL = 'pip install "gflow[cluster]"'
LOGS = "slurm"  # submitit's folder inside the sweep folder: pickled tasks, logs, results
_NAMED = {"array", "partition", "time", "mem", "gpus-per-task", "job-name", "output", "error", "dependency"}
_KEY = re.compile(r"^[a-z][a-z0-9_-]*$")


@dataclasses.dataclass(frozen=True)
class ClusterOptions:
    """How to submit a sweep; validated on construction (``ValueError`` naming the option).

    - ``array``: number of parts ``N`` (``None``: one part per chunk)
    - ``max_concurrent``: tasks running at once (SLURM's ``--array=...%K``; ``None``: no cap)
    - ``partition``, ``time`` (minutes per task), ``mem`` (GB per task), ``gpus_per_task``
    - ``sbatch``: more ``#SBATCH`` options as ``("KEY=VALUE", "FLAG", ...)``, e.g. ``account=abc``
    - ``executor``: ``slurm`` | ``local``
    - ``devices``: JAX CPU devices per task (``None``: one per core the task may use)
    """

    array: int | None = None
    max_concurrent: int | None = None
    partition: str | None = None
    time: int = 60
    mem: float | None = None
    gpus_per_task: int = 0
    sbatch: tuple[str, ...] = ()
    executor: str = "slurm"
    devices: int | None = None

    def __post_init__(self):
        for name in ("array", "max_concurrent", "devices"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {value}.")
        if not isinstance(self.time, int) or self.time < 1:
            raise ValueError(f"--time must be a positive number of minutes, got {self.time}.")
        if self.mem is not None and not (isinstance(self.mem, (int, float)) and 0 < self.mem < float("inf")):
            raise ValueError(f"--mem must be a positive number of GB, got {self.mem}.")
        if not isinstance(self.gpus_per_task, int) or self.gpus_per_task < 0:
            raise ValueError(f"--gpus-per-task must be a non-negative integer, got {self.gpus_per_task}.")
        if self.partition is not None and not re.fullmatch(r"[\w.,-]+", self.partition):
            raise ValueError(
                f"--partition must be a partition name (letters, digits, - _ . ,), got {self.partition!r}."
            )
        if self.executor not in EXECUTORS:
            raise ValueError(f"--executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}.")
        self.extra()  # checks --sbatch

    def extra(self) -> dict:
        """``--sbatch`` options as submitit's ``additional_parameters`` (``KEY`` alone: a flag)."""
        out = {}
        for item in self.sbatch:
            key, eq, value = item.partition("=")
            key = key.strip().lstrip("-")
            if not _KEY.match(key) or (eq and not value):
                raise ValueError(f"--sbatch takes KEY=VALUE or FLAG (e.g. account=abc, exclusive), got {item!r}.")
            if key.replace("_", "-") in _NAMED:
                raise ValueError(f"--sbatch {key}=... is set by gflow or by its own option (--{key}); use that.")
            out[key] = value if eq else True
        return out

    def slurm_parameters(self, name: str) -> dict:
        """submitit ``SlurmExecutor`` parameters of the array."""
        params: dict = dict(job_name=f"gflow-{name}", time=self.time)
        if self.partition:
            params["partition"] = self.partition
        if self.mem is not None:
            params["mem"] = f"{int(self.mem)}G" if float(self.mem).is_integer() else f"{round(self.mem * 1024)}M"
        if self.gpus_per_task:
            params["gpus_per_task"] = self.gpus_per_task
        if self.max_concurrent is not None:
            params["array_parallelism"] = self.max_concurrent
        extra = self.extra()
        if extra:
            params["additional_parameters"] = extra
        return params


def parts_to_run(n_chunks: int, n_parts: int, done: set[int]) -> list[int]:
    """The parts ``i`` of ``n_parts`` that own a chunk (``c % n_parts == i``) not in ``done``."""
    return sorted({c % n_parts for c in range(n_chunks) if c not in done})


def _import_submitit():
    try:
        import submitit  # noqa: PLC0415  # pyright: ignore[reportMissingImports] - optional extra (cluster)
    except ImportError:
        raise ValueError(f"--slurm and --executor need submitit, the optional extra 'cluster': {INSTALL}.") from None
    return submitit


def _submit_command(folder: str) -> str:
    return f"{shlex.quote(sys.executable)} -u -m submitit.core._submit {shlex.quote(folder)}"


def sbatch_script(name: str, out_dir: str, n_tasks: int, options: ClusterOptions) -> str:
    """The ``sbatch`` script submitit submits for an array of ``n_tasks`` tasks (task ``a``
    runs the ``a``-th part to run; the merge job's script has the same options, no array,
    and ``--dependency=afterok:<array id>``)."""
    _import_submitit()
    from submitit.slurm.slurm import _make_sbatch_string  # pyright: ignore[reportMissingImports]

    folder = os.path.join(os.path.abspath(out_dir), LOGS)
    params = options.slurm_parameters(name)
    if n_tasks > 1:
        params["map_count"] = n_tasks
    return _make_sbatch_string(command=_submit_command(folder), folder=folder, **params)


def run_part(config: dict, out_dir: str, part: tuple[int, int], devices: int | None = None) -> dict:
    """One array task: part ``i/N`` of the sweep of ``config`` (a manifest's config) into
    ``out_dir``. Runs in a fresh process: it splits the CPU into ``devices`` JAX devices
    (default: one per core this task may use) before JAX starts."""
    from .._cache import enable_compilation_cache
    from .._devices import cpu_cores, host_devices_flag

    os.environ["XLA_FLAGS"] = host_devices_flag(os.environ.get("XLA_FLAGS"), devices or cpu_cores())
    import jax

    from .config import SweepConfig
    from .run import run_sweep

    cfg = SweepConfig.from_dict(config)
    jax.config.update("jax_enable_x64", cfg.precision == 64)
    enable_compilation_cache()
    summary = run_sweep(cfg, out_dir, resume=True, part=part, progress=False)
    return {k: summary[k] for k in ("ran", "seconds", "failures", "complete")}


def merge_part(out_dir: str) -> int:
    """The merge job: ``runs.parquet`` from all chunks (``ValueError`` if one is missing)."""
    config = store.read_manifest(out_dir)["config"]
    return store.merge(out_dir, store.n_chunks_of(config)).num_rows


def submit(config, out_dir: str, options: ClusterOptions, *, log=print) -> dict:
    """Submit the parts of the sweep ``config`` (a :class:`~gflow.sweep.SweepConfig`) that
    still own a missing chunk, as one array, then the merge.

    The store is opened first (a different config in ``out_dir`` is refused). Returns
    ``dict(parts=[...], n_parts=N, jobs=[ids], merge=id or None, failed=[parts])``; with the
    local executor it waits for the tasks and merges, with SLURM it returns once submitted.
    """
    submitit = _import_submitit()
    cfg = config.to_dict()
    n_chunks = store.n_chunks_of(cfg)
    n_parts = options.array or n_chunks
    store.open_store(out_dir, cfg, resume=True)
    parts = parts_to_run(n_chunks, n_parts, store.done_chunks(out_dir))
    result: dict = dict(parts=parts, n_parts=n_parts, jobs=[], merge=None, failed=[])
    if not parts:
        if not os.path.exists(os.path.join(out_dir, store.RUNS)):
            merge_part(out_dir)
        log(f"{out_dir}: all {n_chunks} chunks are done; rows in {os.path.join(out_dir, store.RUNS)}")
        return result
    folder = os.path.join(os.path.abspath(out_dir), LOGS)
    args = [(cfg, out_dir, (i, n_parts), options.devices) for i in parts]
    if options.executor == "local":
        return _run_local(submitit, folder, args, options, result, log)
    executor = submitit.SlurmExecutor(folder=folder)
    executor.update_parameters(**options.slurm_parameters(config.name))
    jobs = executor.map_array(run_part, *zip(*args, strict=True))
    array_id = jobs[0].job_id.split("_")[0]
    merger = submitit.SlurmExecutor(folder=folder)
    merge_params: dict = dict(
        job_name=f"gflow-{config.name}-merge", time=min(options.time, 30), dependency=f"afterok:{array_id}"
    )
    if options.partition:
        merge_params["partition"] = options.partition
    merge_params["additional_parameters"] = {**options.extra(), "kill-on-invalid-dep": "yes"}
    merger.update_parameters(**merge_params)
    merge_job = merger.submit(merge_part, out_dir)
    result.update(jobs=[j.job_id for j in jobs], merge=merge_job.job_id)
    log(
        f"submitted array {array_id}: parts {_ranges(parts)} of {n_parts}, then merge job {merge_job.job_id} "
        f"(after the array succeeds); logs in {os.path.join(out_dir, LOGS)}. If a task fails, run the same "
        "command again: it submits only the parts with missing chunks."
    )
    return result


def _run_local(submitit, folder: str, args: list, options: ClusterOptions, result: dict, log) -> dict:
    """submitit's local executor: each part a process, at most ``max_concurrent`` at once;
    then the merge, if every part succeeded."""
    executor = submitit.LocalExecutor(folder=folder)
    executor.update_parameters(timeout_min=options.time, gpus_per_node=options.gpus_per_task)
    cap = options.max_concurrent or len(args)
    waiting, running, failed = list(args), [], []
    while waiting or running:
        while waiting and len(running) < cap:
            a = waiting.pop(0)
            running.append((a[2][0], executor.submit(run_part, *a)))
            result["jobs"].append(running[-1][1].job_id)
        still = []
        for part, job in running:
            if not job.done():
                still.append((part, job))
            elif job.exception() is not None:
                failed.append(part)
        running = still
        if running:
            time.sleep(0.2)
    result["failed"] = sorted(failed)
    log(f"ran parts {_ranges(result['parts'])} of {result['n_parts']} as local processes")
    if failed:
        log(
            f"parts {_ranges(result['failed'])} failed (logs in {folder}); run the same command again to "
            "run only the parts with missing chunks"
        )
        return result
    out_dir = args[0][1]
    result["merge"] = "local"
    log(f"merged {merge_part(out_dir)} rows into {os.path.join(out_dir, store.RUNS)}")
    return result


def _ranges(values: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2,5"``."""
    out, start = [], None
    for k, v in enumerate(values):
        start = v if start is None else start
        if k + 1 == len(values) or values[k + 1] != v + 1:
            out.append(f"{start}" if start == v else f"{start}-{v}")
            start = None
    return ",".join(out)
