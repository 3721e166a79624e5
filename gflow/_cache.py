"""Persistent XLA compilation cache: compiling a Diffrax solve takes seconds on a CPU, so the
CLI reuses compiled programs across runs (``~/.cache/gflow/jax``; set ``GFLOW_CACHE_DIR`` to
move it, or to an empty string to turn it off)."""

from __future__ import annotations

import os

import jax


def enable_compilation_cache(path: str | None = None) -> str | None:
    """Turn on JAX's persistent compilation cache at ``path`` (default: see module doc)."""
    if path is None:
        path = os.environ.get("GFLOW_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "gflow", "jax"))
    if not path:
        return None
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return path
