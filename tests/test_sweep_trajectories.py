"""Sweeps that keep their trajectories (``save_trajectories = true``): the saved states are
those of a single ``gradient_flow`` / ``train`` of the same initialization at the same times."""

import numpy as np
import pytest

import gflow as gf
from gflow.sweep import store
from gflow.sweep.config import SweepConfig
from gflow.sweep.problems import dataset, make_init, saved_times
from gflow.sweep.run import run_sweep
from gflow.sweep.trajectories import load_trajectory

FLOW = dict(
    data="toy",
    n_data=64,
    width=3,
    delta=0.5,
    signs="random",
    t1=4.0,
    rtol=1e-7,
    atol=1e-7,
    n_inits=5,
    slots=2,
    chunk_size=3,
    n_save=5,
    kinks="none",
    save_trajectories=True,
)


def _leaves(model):
    import jax

    return [np.asarray(x) for x in jax.tree_util.tree_leaves(model)]


def test_flow_sweep_saves_the_single_solve_states(tmp_path):
    """Each saved state equals ``gradient_flow``'s at the same saved time (same steps, same
    dense output): only the batched gradient's summation order differs (~1e-16 per
    evaluation); carried through the adaptive steps it reaches 1.0e-10 by t1 here (measured),
    so the bound is 1e-9, 100x below the solver tolerance 1e-7. One file per chunk; state 0
    is the initialization itself."""
    cfg = SweepConfig(**FLOW)
    run_sweep(cfg, str(tmp_path), progress=False)
    assert sorted(p.name for p in (tmp_path / store.TRAJECTORIES).iterdir()) == ["chunk-000000.npz", "chunk-000001.npz"]
    data, _ = dataset(cfg)
    for i in (0, 4):  # one init of each chunk
        ts, models = load_trajectory(str(tmp_path), i)
        traj = gf.gradient_flow(
            make_init(cfg, data, i), data, "mse", cfg.t1, rtol=cfg.rtol, atol=cfg.atol, n_save=cfg.n_save, kinks="none"
        )
        np.testing.assert_allclose(ts, np.asarray(traj.ts), rtol=0, atol=1e-15)
        for ours, theirs in zip(_leaves(models), _leaves(traj.models), strict=True):
            assert ours.shape == theirs.shape == (cfg.n_save,) + ours.shape[1:]
            np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-9)
        for ours, init in zip(_leaves(models), _leaves(make_init(cfg, data, i)), strict=True):
            np.testing.assert_allclose(ours[0], init, rtol=0, atol=1e-14)
    with pytest.raises(ValueError, match="index"):
        load_trajectory(str(tmp_path), cfg.n_inits)


def test_gd_sweep_saves_train_states_and_teacher_flags(tmp_path):
    """A GD sweep on teacher-student data: saved states equal ``train``'s (same saved steps,
    t = lr * step), and the ``reachable`` column is THEORY.md's predicate of the init."""
    cfg = SweepConfig(
        data="teacher_student",
        n_data=32,
        width=3,
        method="gd",
        lr=0.05,
        steps=40,
        n_inits=3,
        slots=2,
        chunk_size=3,
        n_save=5,
        save_trajectories=True,
    )
    run_sweep(cfg, str(tmp_path), progress=False)
    data, teacher = dataset(cfg)
    rows = store.read_runs(str(tmp_path)).to_pylist()
    for i in range(cfg.n_inits):
        model0 = make_init(cfg, data, i)
        ts, models = load_trajectory(str(tmp_path), i)
        traj = gf.train(model0, data, "mse", "gd", lr=cfg.lr, steps=cfg.steps, n_save=cfg.n_save)
        np.testing.assert_allclose(ts, np.asarray(traj.ts), rtol=1e-15, atol=0)
        np.testing.assert_allclose(ts, saved_times(cfg), rtol=0, atol=0)
        for ours, theirs in zip(_leaves(models), _leaves(traj.models), strict=True):
            np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-14)
        assert rows[i]["reachable"] == bool(gf.reachable(teacher, model0))


def test_trajectories_off_by_default(tmp_path):
    """Without ``save_trajectories`` nothing but the rows is written, and the config hash of
    existing stores is unchanged (the field is left out at its default)."""
    cfg = SweepConfig(**dict(FLOW, method="gd", steps=5, n_inits=2, save_trajectories=False))
    run_sweep(cfg, str(tmp_path), progress=False)
    assert not (tmp_path / store.TRAJECTORIES).exists()
    assert "save_trajectories" not in cfg.to_dict()
    with pytest.raises(ValueError, match="save_trajectories"):
        load_trajectory(str(tmp_path), 0)
    with pytest.raises(ValueError, match="'save_trajectories'"):
        SweepConfig(save_trajectories="yes")
