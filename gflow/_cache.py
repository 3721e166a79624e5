"""Persistent XLA compilation cache: compiling a Diffrax solve takes seconds on a CPU, so gflow
reuses compiled programs across runs.

On by default in the command line (every ``gflow`` command but ``gflow bench``, which measures
cold compiles), the figure scripts and Slurm array tasks; from Python, call
:func:`enable_compilation_cache` once, before anything is compiled (JAX reads the setting at
its first compilation). The library does not turn it on by itself at import: the cache folder
is a process-wide JAX setting that the calling program may own.

The folder: ``$GFLOW_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/gflow/jax``, else
``~/.cache/gflow/jax``. ``GFLOW_CACHE=0`` (or ``GFLOW_CACHE_DIR=""``, or ``gflow --no-cache``)
turns it off; ``gflow cache info`` shows the folder and its size, ``gflow cache clear`` empties
it. Every program is kept, the small ones too (``min_compile_time=0``): a fresh process
otherwise recompiles a hundred small eager operations, 0.05 s each on a CPU. On a CPU, gflow's
own solves are also saved fully built in ``<folder>/traces`` (:mod:`gflow._traces`), so a later
run skips tracing them as well; ``GFLOW_TRACE_CACHE=0`` turns that part off alone.
"""

from __future__ import annotations

import os
import re
import shutil

import jax

__all__ = ["cache_dir", "cache_info", "clear_cache", "enable_compilation_cache"]

_OFF = ("0", "false", "no", "off")
# what JAX writes there: "<program>-<sha256>-cache" (and "-atime") files, the GPU autotuning folder
_ENTRY = re.compile(r".+-[0-9a-f]{64}(-[a-z]+)?$")
_TRACE = re.compile(r"[0-9a-f]{64}\.trace(\.[0-9]+\.tmp)?$")  # gflow's saved executables (traces/)
_AUTOTUNE = "xla_gpu_per_fusion_autotune_cache_dir"


def cache_dir() -> str | None:
    """The cache folder that :func:`enable_compilation_cache` uses, or ``None`` when turned off
    (``GFLOW_CACHE=0`` or ``GFLOW_CACHE_DIR=""``)."""
    if os.environ.get("GFLOW_CACHE", "1").strip().lower() in _OFF:
        return None
    if "GFLOW_CACHE_DIR" in os.environ:
        return os.environ["GFLOW_CACHE_DIR"] or None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "gflow", "jax")


def enable_compilation_cache(path: str | None = None, *, min_compile_time: float = 0.0) -> str | None:
    """Turn on JAX's persistent compilation cache, so compiled solves are reused by later
    processes (a second run of the same problem skips compiling).

    Call it once, before anything is compiled: JAX reads the setting at its first compilation.
    gflow's command line does this itself; the library does not, as the cache folder is a
    process-wide JAX setting that the calling program may own.

    **Arguments:**
    - ``path``: the cache folder. Default: ``$GFLOW_CACHE_DIR`` if set, else
      ``$XDG_CACHE_HOME/gflow/jax``, else ``~/.cache/gflow/jax``; ``GFLOW_CACHE=0`` or
      ``GFLOW_CACHE_DIR=""`` turns the cache off.
    - ``min_compile_time``: keep programs that took at least this many seconds to compile
      (default 0: all of them).

    **Returns:** the folder, or ``None`` when the cache is turned off.
    """
    if path is None:
        path = cache_dir()
    if not path:
        return None
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_time)
    from . import _traces

    _traces.enable(path)
    return path


def cache_info(path: str | None = None) -> dict:
    """``{"path", "entries", "bytes"}``: the compiled programs in the cache folder (default:
    :func:`cache_dir`)."""
    path = path or cache_dir()
    entries = size = 0
    for file in _entries(path):
        entries += 1
        size += os.path.getsize(file)
    return dict(path=path, entries=entries, bytes=size)


def clear_cache(path: str | None = None) -> dict:
    """Delete the compiled programs in the cache folder (default: :func:`cache_dir`) and the
    executables saved in its ``traces`` folder, and nothing else, whatever the folder is; returns
    what it held (:func:`cache_info`)."""
    info = cache_info(path)
    for file in _entries(info["path"]):
        os.remove(file)
    if info["path"] and os.path.isdir(os.path.join(info["path"], _AUTOTUNE)):
        shutil.rmtree(os.path.join(info["path"], _AUTOTUNE))
    return info


def _entries(path: str | None) -> list[str]:
    """JAX's entries in ``path`` and gflow's saved executables in ``path/traces`` (:mod:`gflow._traces`)."""
    return _matching(path, _ENTRY) + _matching(path and os.path.join(path, "traces"), _TRACE)


def _matching(path: str | None, pattern: re.Pattern) -> list[str]:
    if not path or not os.path.isdir(path):
        return []
    return [e.path for e in os.scandir(path) if e.is_file(follow_symlinks=False) and pattern.match(e.name)]
