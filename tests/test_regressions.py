"""Regression tests for three bugs the suite once missed (issue 23, must-show 4).

1. the momentum coefficient ignored (earlier tests used only the default 0.9);
2. ``canonical_form`` returning its hyperplanes unsorted (earlier tests compared only counts
   and ``equivalent()``, which ignores order);
3. ``config_hash`` ignoring ``seed``, which would let a resumed sweep mix the rows of two
   seeds in one folder.
"""

import dataclasses
import json
import math
import os
import tempfile

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from topo_nets import shallow

import gflow as gf
from gflow.sweep import store
from gflow.sweep.config import SweepConfig
from gflow.sweep.run import run_sweep

# ------------------------------------------------------------- 1. momentum coefficient


def _mse(W, V, x, y):
    """``1/(2n) sum_i (V relu(W x_i) - y_i)^2``, written out (not the model's ``__call__``)."""
    return 0.5 * jnp.mean(jnp.sum((jnp.maximum(x @ W.T, 0.0) @ V.T - y) ** 2, axis=1))


_mse_grad = jax.jit(jax.grad(_mse, argnums=(0, 1)))


def heavy_ball(W, V, data, lr, mu, steps):
    """Polyak's heavy ball ``theta_{k+1} = theta_k - lr g(theta_k) + mu (theta_k - theta_{k-1})``
    (``theta_{-1} = theta_0``), written in this difference form rather than Optax's
    velocity form ``b = g + mu b, theta -= lr b``; the two are equal in exact arithmetic."""
    out, prev = [(W, V)], (W, V)
    for _ in range(steps):
        gW, gV = _mse_grad(W, V, data.x_train, data.y_train)
        (W, V), prev = (W - lr * gW + mu * (W - prev[0]), V - lr * gV + mu * (V - prev[1])), (W, V)
        out.append((W, V))
    return out


@pytest.mark.parametrize("mu", [0.5, 0.0])
def test_momentum_coefficient_is_used(mu):
    """``gf.train(..., "momentum", momentum=mu)`` follows the heavy ball with that ``mu``, to
    1e-12 over 8 steps (weights of order one; the two forms of the recursion differ only by
    round-off, ~1e-16 per step). The same recursion with the default 0.9 is at least 1e-4
    away, so a coefficient stuck at 0.9 fails this test; ``mu = 0`` is also plain GD."""
    model, data = gf.ShallowReLU(2, 4, key=jr.PRNGKey(1)), gf.toy(n=32, key=jr.PRNGKey(2))
    lr, steps = 0.05, 8
    traj = gf.train(model, data, "mse", "momentum", lr, steps=steps, n_save=steps + 1, momentum=mu)
    ref = heavy_ball(model.W, model.V, data, lr, mu, steps)
    for i, (W, V) in enumerate(ref):
        np.testing.assert_allclose(traj.model_at(i).W, W, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(traj.model_at(i).V, V, rtol=1e-12, atol=1e-12)
    W09, V09 = heavy_ball(model.W, model.V, data, lr, 0.9, steps)[-1]
    assert max(float(jnp.max(jnp.abs(W09 - ref[-1][0]))), float(jnp.max(jnp.abs(V09 - ref[-1][1])))) > 1e-4
    if mu == 0.0:
        gd = gf.train(model, data, "mse", "gd", lr, steps=steps, n_save=steps + 1)
        np.testing.assert_allclose(traj.final.W, gd.final.W, rtol=1e-13, atol=1e-14)


# ------------------------------------------------ 2. canonical forms, element-wise, sorted


def expected_form(W, b, V):
    """The canonical form of a net with distinct hyperplanes and no dead neuron, computed
    here from its definition (the theory page, §3): ``h = z/||z||``, ``c = ||z|| v``; if the
    first entry of ``w`` is negative, ``c relu(h.x) = c relu(-h.x) + c h.x`` flips ``h``
    and adds ``c h`` to the affine part; rows sorted lexicographically by ``h``."""
    Z = np.concatenate([W, np.zeros((len(W), 1)) if b is None else b[:, None]], axis=1)
    affine = np.zeros((V.shape[0], Z.shape[1]))
    rows = []
    for z, v in zip(Z, V.T, strict=True):
        h, c = z / np.linalg.norm(z), v * np.linalg.norm(z)
        if h[0] < 0:  # Gaussian weights: the first entry of w is non-zero
            affine += np.outer(c, h)
            h = -h
        rows.append((tuple(h), c))
    rows.sort(key=lambda r: r[0])
    return np.array([r[0] for r in rows]), np.array([r[1] for r in rows]), affine


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    d=st.integers(1, 4),
    e=st.integers(1, 2),
    width=st.integers(2, 6),
    bias=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_canonical_form_sorted_and_identical_under_symmetries(d, e, width, bias, seed):
    """A permuted and rescaled copy has the same canonical form array for array (not only
    the same count or ``equivalent()``), its rows are sorted lexicographically as documented
    (compared at the 8 decimals ``canonical_form`` sorts on, its default ``tol`` 1e-8), and
    both equal the form computed here from the definition. Tolerance 1e-12: normalizing
    ``s z`` instead of ``z`` and flipping orientations changes entries of order one by a few
    ulps. ``d = 1`` without bias is left out: all its neurons lie on one hyperplane and merge."""
    if d == 1 and not bias:
        d = 2
    rng = np.random.default_rng(seed)
    W, V = rng.normal(size=(width, d)), rng.normal(size=(e, width))
    b = rng.normal(size=width) if bias else None
    perm = rng.permutation(width)
    if np.array_equal(perm, np.arange(width)):
        perm = perm[::-1]
    s = rng.uniform(0.2, 5.0, width)
    W2, V2 = (W * s[:, None])[perm], (V / s)[:, perm]
    b2 = None if b is None else (b * s)[perm]
    ca, cb = gf.canonical_form(shallow(W, b, V)), gf.canonical_form(shallow(W2, b2, V2))
    H, C, A = expected_form(W, b, V)
    for form in (ca, cb):
        rounded = [tuple(r) for r in np.round(form.hyperplanes, 8)]
        assert rounded == sorted(rounded)
        np.testing.assert_allclose(form.hyperplanes, H, rtol=0, atol=1e-12)
        np.testing.assert_allclose(form.coefficients, C, rtol=0, atol=1e-12)
        np.testing.assert_allclose(form.affine, A, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ca.hyperplanes, cb.hyperplanes, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ca.coefficients, cb.coefficients, rtol=0, atol=1e-12)


def test_canonical_form_order_by_hand():
    """A hand-made case: hyperplanes given in reverse order come out sorted, first column
    first (with ``relu(-x_1)`` flipped to ``relu(x_1) - x_1``)."""
    W = np.array([[1.0, 1.0], [1.0, -1.0], [0.0, 2.0], [-3.0, 0.0]])
    V = np.array([[1.0, 2.0, 3.0, 4.0]])
    cf = gf.canonical_form(shallow(W, None, V))
    r = 1 / math.sqrt(2)
    np.testing.assert_allclose(cf.hyperplanes, [[0, 1, 0], [r, -r, 0], [r, r, 0], [1, 0, 0]], atol=1e-15)
    np.testing.assert_allclose(cf.coefficients, [[6.0], [2 * math.sqrt(2)], [math.sqrt(2)], [12.0]], atol=1e-14)
    np.testing.assert_allclose(cf.affine, [[-12.0, 0.0, 0.0]], atol=1e-14)


# ------------------------------------------------------------------ 3. the config hash

# Fields that do not decide a sweep's rows: ``name`` labels the progress bar (and names the
# CLI's default folder); ``steps_per_call`` only sets how often the engine returns to the
# host (rows bitwise equal: tests/test_sweep.py::test_rows_independent_of_call_budget).
NOT_ROW_DECIDING = {"name": st.text(max_size=12).filter(str.strip), "steps_per_call": st.integers(1, 10_000)}

# Every other field can decide the rows (or, for ``chunk_size``, ``n_inits`` and
# ``save_trajectories``, the chunk files a resume continues), so a change must change the
# hash. ``slots`` is among them: a batch's round-off depends on its width, and rows of a
# flow sweep with slots 1 and 4 differ (final loss by ~3e-10 relative, measured), so a
# resume with other slots would not give the rows of a fresh run. Fields such as ``lr``
# decide rows only for some methods; the hash conservatively covers them all.
FLOAT = dict(allow_nan=False, allow_infinity=False)
ROW_DECIDING = {
    "model": st.just("mlp"),
    "width": st.integers(1, 64),
    "hidden": st.lists(st.integers(1, 32), min_size=1, max_size=3).map(tuple),
    "bias": st.just(True),
    "data": st.sampled_from(["toy", "breast_cancer"]),
    "n_data": st.integers(1, 100_000),
    "teacher_width": st.integers(1, 16),
    "teacher_seed": st.integers(0, 2**31),
    "noise": st.floats(0.0, 10.0, **FLOAT),
    "loss": st.sampled_from(["mse", "bce", "cross_entropy"]),
    "method": st.sampled_from(["gd", "sgd", "momentum", "adam"]),
    "solver": st.sampled_from(["heun", "dopri5", "dopri8"]),  # sweeps: adaptive explicit solvers
    "rtol": st.floats(1e-12, 1e-2, **FLOAT),
    "atol": st.floats(1e-12, 1e-2, **FLOAT),
    "max_steps": st.integers(1, 10**7),
    "project": st.just(True),
    "kinks": st.sampled_from(["none", "auto"]),
    "events": st.lists(st.sampled_from(["neuron_dies", "loss_below=1e-3"]), min_size=1, max_size=2, unique=True).map(
        tuple
    ),
    "on_event": st.just("record"),
    "lr": st.floats(1e-6, 10.0, **FLOAT),
    "steps": st.integers(1, 10**6),
    "batch_size": st.integers(1, 10_000),
    "t1": st.floats(1e-3, 1e3, **FLOAT),
    "n_inits": st.integers(1, 10**6),
    "init": st.just("xavier"),
    # lists of one value or one per hidden unit of BASE (width 2): other lengths are refused
    "delta": st.one_of(
        st.floats(-5.0, 5.0, **FLOAT), st.lists(st.floats(-5.0, 5.0, **FLOAT), min_size=1, max_size=2).map(tuple)
    ),
    "delta_signs": st.just(None),
    "signs": st.one_of(st.none(), st.lists(st.sampled_from([1.0, -1.0]), min_size=1, max_size=2).map(tuple)),
    "seed": st.integers(0, 2**31),
    "precision": st.just(32),
    "slots": st.integers(1, 1024),
    "chunk_size": st.integers(1, 100_000),
    "n_save": st.integers(2, 1000),
    "recover_tol": st.floats(1e-12, 1.0, **FLOAT),
    "save_trajectories": st.just(True),
    "methods": st.lists(st.sampled_from(["flow", "gd", "adam"]), min_size=1, max_size=3, unique=True).map(tuple),
    "teacher_min_strength": st.floats(0.01, 1.0, **FLOAT),
    "teacher_min_angle": st.floats(1.0, 60.0, **FLOAT),
    "save_times": st.just("log"),
    "curves": st.just(True),
    "gtol": st.floats(1e-12, 1e-2, **FLOAT),
    "t_max": st.floats(1.0, 1e6, **FLOAT),
}

# A valid config in which every alternative above is valid too (teacher data, flow,
# relocation with random signs, no events).
BASE = SweepConfig(
    data="teacher_student", n_inits=8, chunk_size=4, delta=0.5, delta_signs="random", signs="random", seed=3
)


def test_every_field_classified():
    """A new ``SweepConfig`` field must be put in one of the two lists above."""
    fields = {f.name for f in dataclasses.fields(SweepConfig)}
    assert fields == set(ROW_DECIDING) | set(NOT_ROW_DECIDING)
    assert not set(ROW_DECIDING) & set(NOT_ROW_DECIDING)


@pytest.fixture(scope="module")
def base_store():
    with tempfile.TemporaryDirectory() as out:
        store.open_store(out, BASE.to_dict(), resume=True)
        yield out


def _changed(data, fields):
    field = data.draw(st.sampled_from(sorted(fields)), label="field")
    value = data.draw(fields[field].filter(lambda v: v != getattr(BASE, field)), label="value")
    return field, dataclasses.replace(BASE, **{field: value})


@settings(max_examples=60, deadline=None, derandomize=True)
@given(data=st.data())
def test_row_deciding_change_changes_hash_and_is_refused(base_store, data):
    """Changing any row-deciding field changes the config hash, and resuming the base
    sweep's folder with the changed config is refused."""
    field, cfg = _changed(data, ROW_DECIDING)
    assert store.config_hash(cfg.to_dict()) != store.config_hash(BASE.to_dict()), field
    with pytest.raises(ValueError, match="different config"):
        store.open_store(base_store, cfg.to_dict(), resume=True)


# One other value of every row-deciding field, for a check that does not depend on sampling.
ALTERNATIVE = dict(
    model="mlp", width=3, hidden=(4,), bias=True, data="toy", n_data=999, teacher_width=3, teacher_seed=1235,
    noise=0.1, loss="mse", method="gd", solver="dopri5", rtol=1.1e-6, atol=1e-7, max_steps=99_999, project=True,
    kinks="none", events=("neuron_dies",), on_event="record", lr=2e-2, steps=5, batch_size=8, t1=10.5, n_inits=9,
    init="xavier", delta=(0.5, -0.5), delta_signs=None, signs=(1.0, -1.0), seed=4, precision=32, slots=31,
    chunk_size=5, n_save=12, recover_tol=1e-4, save_trajectories=True, methods=("flow", "gd"),
    teacher_min_strength=0.3, teacher_min_angle=30.0, save_times="log", curves=True,
    gtol=1e-7, t_max=1e4,
)  # fmt: skip


@pytest.mark.parametrize("field", sorted(ROW_DECIDING))
def test_each_row_deciding_field_is_in_the_hash(base_store, field):
    """The same, once for every field (the property test samples fields at random)."""
    assert ALTERNATIVE.keys() == ROW_DECIDING.keys()
    cfg = dataclasses.replace(BASE, **{field: ALTERNATIVE[field]})
    assert getattr(cfg, field) != getattr(BASE, field)
    assert store.config_hash(cfg.to_dict()) != store.config_hash(BASE.to_dict())
    with pytest.raises(ValueError, match="different config"):
        store.open_store(base_store, cfg.to_dict(), resume=True)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(data=st.data())
def test_other_fields_keep_the_hash_and_resume(base_store, data):
    """Fields that do not decide rows (``name``, ``steps_per_call``) leave the hash alone,
    so a sweep can be resumed with them changed."""
    field, cfg = _changed(data, NOT_ROW_DECIDING)
    assert store.config_hash(cfg.to_dict()) == store.config_hash(BASE.to_dict()), field
    store.open_store(base_store, cfg.to_dict(), resume=True)


def test_resume_with_another_seed_refused(tmp_path):
    """End to end: a finished sweep's folder refuses a run with another seed (which would
    mix rows of two seeds), and accepts a resume of the same config, with or without a
    progress bar (``progress`` is an argument of ``run_sweep``, not a config field)."""
    cfg = SweepConfig(method="gd", steps=5, n_data=16, width=2, n_inits=2, chunk_size=2, seed=0)
    run_sweep(cfg, str(tmp_path), progress=False)
    with pytest.raises(ValueError, match="different config \\(seed: 0 in the folder, 1 in the config\\)"):
        run_sweep(dataclasses.replace(cfg, seed=1), str(tmp_path), progress=False)
    assert run_sweep(cfg, str(tmp_path), progress=True)["ran"] == 0
    assert os.path.exists(os.path.join(tmp_path, store.RUNS))


def test_refusal_names_every_differing_field(base_store):
    """The refusal lists each differing row-deciding field with both values, sorted, and
    leaves out the fields that decide no row (here ``name``)."""
    cfg = dataclasses.replace(BASE, seed=BASE.seed + 1, rtol=2e-6, name="renamed")
    with pytest.raises(ValueError) as err:
        store.open_store(base_store, cfg.to_dict(), resume=True)
    message = str(err.value)
    assert f"rtol: {BASE.rtol} in the folder, 2e-06 in the config; seed: {BASE.seed} in the folder, " in message
    assert "name" not in message.split("(", 1)[1]
    assert set(store.ROW_NEUTRAL) == set(NOT_ROW_DECIDING)


def test_manifest_of_an_older_version_resumes(base_store):
    """Manifests written before ``name`` left the hash store a hash over every field; the
    folder's hash is recomputed from its config, so they resume as before."""
    path = os.path.join(base_store, store.MANIFEST)
    with open(path) as f:
        manifest = json.load(f)
    manifest["config_hash"] = "0123456789abcdef"  # what an older version may have written
    with open(path, "w") as f:
        json.dump(manifest, f)
    store.open_store(base_store, BASE.to_dict(), resume=True)
