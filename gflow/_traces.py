"""Compiled programs kept across runs without tracing them again: the engine's jitted
functions (the single solve, the sweep's start, step loop and row function) load a saved
executable when an earlier process built one for the same problem.

JAX's persistent compilation cache (:mod:`gflow._cache`) keeps compiled programs, but a new
process still traces and lowers each one before it can look it up: about 1.5 s of Python for
the sweep's step loop and row function on a CPU, most of a warm 128-initialization sweep. Here
the compiled executable itself is saved (:mod:`jax.experimental.serialize_executable`) to
``<cache folder>/traces/`` under a key of everything that shaped it, and a later process with
the same key loads it: no tracing, no lowering, no compilation.

The key: the source of gflow; the versions of JAX, jaxlib, Equinox, Diffrax, Optax, Optimistix,
Lineax and NumPy; the JAX settings that change tracing; the devices, compiler, ``XLA_FLAGS`` and
CPU; the shapes, dtypes and shardings of the array arguments; and the non-array parts of the
arguments (solver, kink mode, tolerances, network classes, loss function, widths), compared by
value. An argument that cannot be compared by value -- a lambda or closure, or a class or
function from outside gflow and those libraries (a user's own network or loss) -- turns this
off for the call, which is traced as usual. The program that runs is the one tracing would
build, so results are identical with these files cold, warm or off.

On wherever the compilation cache is on (:func:`gflow._cache.enable_compilation_cache` calls
:func:`enable`); ``GFLOW_TRACE_CACHE=0`` turns off only this part. ``gflow cache clear``
deletes these files with the compiled programs.
"""

from __future__ import annotations

import collections
import enum
import functools
import hashlib
import importlib.metadata
import math
import os
import pickle
import platform
import sys
import threading
import types
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
from jax._src import config as jax_config  # a thread's own compile-time threshold: no public equivalent
from jax.core import Tracer
from jax.experimental.serialize_executable import deserialize_and_load, serialize

from ._jit import compiler_options

__all__ = ["cached_trace", "enable", "trace_dir"]

_FOLDER: list[str | None] = [None]
_LIBRARIES = ("jax", "jaxlib", "equinox", "diffrax", "optax", "optimistix", "lineax", "numpy")
# modules whose classes and functions may appear in a cached program's arguments
_KNOWN = ("gflow", "jax", "jaxlib", "equinox", "diffrax", "optax", "optimistix", "lineax", "numpy", "builtins")
_FLAGS = (
    "jax_enable_x64",
    "jax_default_matmul_precision",
    "jax_numpy_rank_promotion",
    "jax_numpy_dtype_promotion",
    "jax_default_prng_impl",
    "jax_threefry_partitionable",
)


def enable(folder: str | None) -> str | None:
    """Save executables in ``folder/traces`` (``None``: do not). Returns the folder used."""
    off = os.environ.get("GFLOW_TRACE_CACHE", "1").strip().lower() in ("0", "false", "no", "off")
    _FOLDER[0] = None if (folder is None or off) else os.path.join(folder, "traces")
    return _FOLDER[0]


def trace_dir() -> str | None:
    """The folder of saved executables, or ``None`` when off (also whenever JAX's compilation
    cache is turned off, as ``gflow bench`` does to measure cold compiles)."""
    if not jax.config.jax_enable_compilation_cache:  # pyright: ignore[reportAttributeAccessIssue]
        return None
    if jax.default_backend() != "cpu":  # where tracing is a large part of a run; checked there only
        return None
    return _FOLDER[0]


class _Opaque(Exception):
    """An argument that cannot be described by value: do not cache this call."""


def _named(obj) -> str:
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not (module and qualname) or "<" in qualname or module.split(".")[0] not in _KNOWN:
        raise _Opaque(repr(obj))
    found = sys.modules.get(module)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    if found is not obj:
        raise _Opaque(repr(obj))
    return f"{module}.{qualname}"


def _describe(obj) -> str:
    """A string that determines ``obj`` (a non-array part of a program's arguments)."""
    if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes)):
        return f"{type(obj).__name__}:{obj!r}"
    if isinstance(obj, (tuple, list)):
        return f"{type(obj).__name__}(" + ",".join(map(_describe, obj)) + ")"
    if isinstance(obj, dict):
        return "dict(" + ",".join(f"{_describe(k)}:{_describe(v)}" for k, v in obj.items()) + ")"
    if isinstance(obj, (frozenset, set)):
        return f"{type(obj).__name__}(" + ",".join(sorted(map(_describe, obj))) + ")"
    if isinstance(obj, enum.Enum):
        return f"{_named(type(obj))}.{obj.name}"
    if isinstance(obj, np.dtype):
        return f"dtype:{obj}"
    if isinstance(obj, np.generic):
        return f"{obj.dtype}:{obj!r}"
    if isinstance(obj, functools.partial):
        return f"partial({_describe(obj.func)},{_describe(obj.args)},{_describe(obj.keywords)})"
    if isinstance(obj, jax.sharding.Mesh):
        return f"mesh({obj.axis_names},{obj.devices.shape},{obj.devices.flat[0].platform})"
    if isinstance(obj, jtu.PyTreeDef):
        return _describe_treedef(obj)
    leaves, treedef = jtu.tree_flatten(obj)
    if not (treedef.num_nodes == 1 and treedef.num_leaves == 1):  # a pytree: an Equinox module
        return f"tree({_describe_treedef(treedef)},{_describe(leaves)})"
    if isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType)) or callable(obj):
        return _named(obj)
    text = repr(obj)  # a marker such as Equinox's Missing: a known class, a complete repr
    if " at 0x" in text or "..." in text:
        raise _Opaque(text)
    return f"{_named(type(obj))}:{text}"


def _describe_treedef(treedef) -> str:
    if treedef.num_nodes == 1 and treedef.num_leaves == 1:
        return "*"
    node_type, node_data = treedef.node_data()
    if node_type is type(None):
        return "None"
    return f"{_named(node_type)}[{_describe(node_data)}](" + ",".join(map(_describe_treedef, treedef.children())) + ")"


@functools.cache
def _environment() -> str:
    """gflow's source and the versions of the libraries that trace its programs."""
    digest = hashlib.sha256()
    root = os.path.dirname(os.path.abspath(__file__))
    for folder, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(folder, name)
            digest.update(os.path.relpath(path, root).encode())
            with open(path, "rb") as file:
                digest.update(file.read())
    for lib in _LIBRARIES:
        digest.update(f"{lib}={importlib.metadata.version(lib)}".encode())
    return digest.hexdigest()


@functools.cache
def _machine() -> str:
    """The devices and compiler an executable was built for and runs on."""
    device = jax.devices()[0]
    cpu = ""
    if os.path.exists("/proc/cpuinfo"):  # an executable uses the instruction set it was built on
        with open("/proc/cpuinfo") as file:
            cpu = next((line for line in file if line.startswith("flags")), "")
    return "|".join(
        [
            device.platform,
            device.device_kind,
            device.client.platform_version,
            str(jax.device_count()),
            os.environ.get("XLA_FLAGS", ""),
            platform.machine(),
            platform.processor(),
            cpu,
        ]
    )


def _key(name, static, treedef, leaves) -> str:
    static_leaves, static_treedef = jtu.tree_flatten(static)
    parts = [
        _environment(),
        name,
        _describe_treedef(static_treedef),
        _describe(static_leaves),
        _describe_treedef(treedef),
        ";".join(f"{leaf.shape}:{leaf.dtype}:{leaf.weak_type}:{_spread(leaf)}" for leaf in leaves),
        ";".join(f"{flag}={getattr(jax.config, flag)}" for flag in _FLAGS),
        _machine(),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


class _Program:
    """A loaded executable, called with the array leaves of the arguments."""

    def __init__(self, compiled, out_treedef, out_static, path: str | None = None):
        self.compiled = compiled
        self.out_treedef = out_treedef
        self.out_static = out_static
        self.path = path  # the file it was loaded from, until its first call succeeded

    def __call__(self, leaves):
        out = self.compiled(*leaves)
        return eqx.combine(jtu.tree_unflatten(self.out_treedef, out), self.out_static)


_PROGRAMS: collections.OrderedDict[str, _Program | None] = collections.OrderedDict()  # None: not kept
_IN_MEMORY = 32  # programs held by this process, most recently used


# see _compile; with the options of every gflow program (gflow._jit), so a saved executable
# runs the arithmetic that the same function compiled by ``jit`` runs
_OPTIONS: dict[str, str | bool] = {"xla_cpu_generate_unique_c_style_kernel_entry_points": True}


def _spread(leaf):
    """The sharding of an array spread over several devices; ``None`` for one on a single device."""
    return leaf.sharding if len(leaf.sharding.device_set) > 1 else None


def _compile(name, fn, static, treedef, leaves) -> _Program:
    outs = []

    def flat(*leaves):
        out = fn(*eqx.combine(jtu.tree_unflatten(treedef, leaves), static))
        dynamic, out_static = eqx.partition(out, eqx.is_array)
        out_leaves, out_treedef = jtu.tree_flatten(dynamic)
        outs.append((out_treedef, out_static))
        return out_leaves

    flat.__name__ = flat.__qualname__ = name.rsplit(".", 1)[-1]  # the program's name in JAX's logs and cache

    specs = [
        jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, weak_type=leaf.weak_type, sharding=_spread(leaf))
        for leaf in leaves
    ]
    lowered = jax.jit(flat).lower(*specs)
    # Compiled afresh: an executable that JAX read back from its own cache serializes without
    # its CPU code ("Function ... not found" when loaded again). The compiler option below is
    # gflow's alone, so JAX's cache never holds this key, and JAX does not write it either
    # (the programs would be kept twice; the threshold is set for this thread only).
    with jax_config.persistent_cache_min_compile_time_secs(math.inf):
        compiled = lowered.compile(compiler_options={**compiler_options(), **_OPTIONS})
    return _Program(compiled, *outs[0])


@functools.cache
def _singletons() -> dict[str, object]:
    """Markers that pytree definitions compare by identity: pickled by name, not by value."""
    from equinox._module import _flatten

    return {"equinox.MISSING": _flatten.MISSING}


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        return next((name for name, marker in _singletons().items() if obj is marker), None)


class _Unpickler(pickle.Unpickler):
    def persistent_load(self, pid):
        return _singletons()[pid]


def _load(path: str) -> _Program | None:
    try:
        with open(path, "rb") as file:
            blob, in_tree, out_tree, device_ids, out_treedef, out_static = _Unpickler(file).load()
        devices = {device.id: device for device in jax.devices()}
        compiled = deserialize_and_load(blob, in_tree, out_tree, execution_devices=[devices[i] for i in device_ids])
        return _Program(compiled, out_treedef, out_static, path)
    except Exception:  # a damaged or outdated entry is compiled again and overwritten
        return None


def _save(path: str, program: _Program) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as file:
        devices = [device.id for device in program.compiled.runtime_executable().local_devices()]
        _Pickler(file).dump((*serialize(program.compiled), devices, program.out_treedef, program.out_static))
    os.replace(tmp, path)


_LOCKS: collections.defaultdict[str, threading.Lock] = collections.defaultdict(threading.Lock)
_LOCKS_LOCK = threading.Lock()


def _program(name, fn, static, treedef, leaves) -> _Program | None:
    try:
        key = _key(name, static, treedef, leaves)
    except _Opaque:
        return None
    with _LOCKS_LOCK:
        lock = _LOCKS[key]
    with lock:  # one thread builds a program; another that asks for it meanwhile waits for it
        return _held_or_built(key, name, fn, static, treedef, leaves)


def _held_or_built(key, name, fn, static, treedef, leaves) -> _Program | None:
    if key in _PROGRAMS:
        _PROGRAMS.move_to_end(key)
        return _PROGRAMS[key]
    path = os.path.join(str(trace_dir()), f"{key}.trace")
    program = _load(path) if os.path.exists(path) else None
    if program is None:
        try:
            program = _compile(name, fn, static, treedef, leaves)
        except Exception:  # tracing failed: the caller traces ``fn`` again and sees the error
            program = None
        else:
            try:
                _save(path, program)
                program = _load(path) or program  # run what later processes will load
            except Exception:  # not serializable (e.g. constants in the program): kept in memory only
                pass
    _PROGRAMS[key] = program
    if len(_PROGRAMS) > _IN_MEMORY:
        _PROGRAMS.popitem(last=False)
    return program


def _forget(program: _Program) -> None:
    for key, held in list(_PROGRAMS.items()):
        if held is program:
            _PROGRAMS[key] = None
    if program.path is not None and os.path.exists(program.path):
        os.remove(program.path)


def cached_trace(fn: Callable) -> Callable:
    """``fn`` (an ``eqx.filter_jit`` function of pytrees) whose traced program is kept across
    processes when the trace cache is on; otherwise, or for arguments it cannot describe by
    value, ``fn`` itself."""

    name = f"{fn.__module__}.{fn.__qualname__}"

    def split(args):
        dynamic, static = eqx.partition(args, eqx.is_array)
        leaves, treedef = jtu.tree_flatten(dynamic)
        if any(isinstance(leaf, np.ndarray) for leaf in leaves):
            leaves = [jnp.asarray(leaf) for leaf in leaves]
        return static, treedef, leaves

    @functools.wraps(fn)
    def call(*args):
        if trace_dir() is None:
            return fn(*args)
        static, treedef, leaves = split(args)
        if any(isinstance(leaf, Tracer) for leaf in leaves):  # inside a trace: inline
            return fn(*args)
        program = _program(name, fn, static, treedef, leaves)
        if program is None:
            return fn(*args)
        if program.path is None:
            return program(leaves)
        try:  # the first call of a program read from a file
            out = program(leaves)
        except jax.errors.JaxRuntimeError:  # an executable that does not run here: compiled as usual
            _forget(program)
            return fn(*args)
        program.path = None
        return out

    def prepare(*args) -> threading.Thread | None:
        """Build (or load) the program for arguments shaped like ``args`` in a background
        thread, so that a later ``call`` with such arguments finds it ready (or waits for
        it): its compilation overlaps whatever the caller runs meanwhile. ``None`` where
        nothing is kept (trace cache off)."""
        if trace_dir() is None:
            return None
        static, treedef, leaves = split(args)

        def build():
            try:
                _program(name, fn, static, treedef, leaves)
            except Exception:  # the call builds it again, and raises there if it must
                pass

        thread = threading.Thread(target=build, daemon=True)
        thread.start()
        return thread

    call.prepare = prepare  # pyright: ignore[reportAttributeAccessIssue]
    return call
