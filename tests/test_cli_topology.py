"""``gflow topology``: text and JSON output, model / DAG files, and one-sentence errors."""

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from topo_nets import mlp, shallow_batch

import gflow as gf
from gflow.cli import main
from gflow.cli import topology as cli_topology
from gflow.trajectory import Status, Trajectory


def run(argv, capsys):
    parser = argparse.ArgumentParser(prog="gflow")
    sub = parser.add_subparsers(dest="command", required=True)
    cli_topology.add_parser(sub)
    args = parser.parse_args(["topology", *argv])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    return json.loads(out) if "--json" in argv else out


def test_shallow_from_delta(capsys):
    out = run(["--in-size", "2", "--delta=-1,2,0.5,0"], capsys)
    assert "Betti numbers: 2, 4, 2" in out and "Poincaré polynomial: 2 + 4t + 2t^2" in out
    assert "effective components: 2" in out
    res = run(["--in-size", "1", "--out-size", "1", "--delta=-1,2,0.5", "--json"], capsys)
    assert res["betti_numbers"] == [8] and res["n_components"] == res["dag_n_components"] == 8
    assert res["n_effective_components"] is None  # d = 1: Corollary 3 does not apply
    res = run(["--in-size", "1", "--delta=-1,2,0.5", "--bias", "--json"], capsys)
    assert res["betti_numbers"] == [2, 4, 2] and res["n_components"] == res["dag_n_components"] == 2


def test_probability(capsys):
    res = run(
        ["probability", "--scheme", "kaiming", "--in-size", "2", "--width", "16", "--samples", "20000", "--json"],
        capsys,
    )
    assert res["exact"] == pytest.approx(gf.obstruction_probability(2, 16, "kaiming"))
    assert abs(res["monte_carlo"] - res["exact"]) <= 4 * res["standard_error"]
    out = run(["probability", "--scheme", "0.5,0.5", "--in-size", "1", "--width", "1", "--samples", "1000"], capsys)
    assert "P(obstructed), exact: 0.5" in out


def _save_trajectory(path, model):
    """A two-point trajectory of ``model`` (stacked twice), written with Trajectory.save."""
    models = jax.tree_util.tree_map(lambda x: jnp.stack([x, x]), model)
    c = gf.conserved(model)
    traj = Trajectory(
        ts=jnp.array([0.0, 1.0]),
        models=models,
        loss=jnp.zeros(2),
        test_loss=None,
        conserved=jnp.stack([c, c]),
        stats=dict(
            steps=jnp.array(1),
            accepted=jnp.array(1),
            rejected=jnp.array(0),
            grad_evals=jnp.array(1),
            wall_time=jnp.array(0.0),
        ),
        status=Status.successful,
    )
    traj.save(str(path))


def test_model_file(tmp_path, capsys):
    W = np.array([[[0.1, 0.0], [0.0, 0.1], [1.0, 1.0], [0.0, 0.0]]])
    V = np.array([[[1.0, -2.0, 0.5, 0.0]]])
    model = jax.tree_util.tree_map(lambda x: x[0], shallow_batch(W, None, V))
    _save_trajectory(tmp_path / "shallow.npz", model)
    res = run(["--model", str(tmp_path / "shallow.npz"), "--json"], capsys)
    assert res["type"] == "ShallowReLU" and res["n_negative"] == 2 and res["n_zero"] == 1
    assert res["betti_numbers"] == [4, 4] and res["n_components"] == res["dag_n_components"] == 4
    assert res["label"] == [1, -1] and res["effective_label"] == 1 and res["n_effective_components"] == 3
    assert res["singular_subnetworks"] == [["h3"]]  # the neuron at the cone point w = v = 0
    out = run(["--model", str(tmp_path / "shallow.npz")], capsys)
    assert "singular sub-networks: {h3}" in out and "label: 1, -1" in out

    rng = np.random.default_rng(0)
    net = mlp([rng.normal(size=(3, 2)), rng.normal(size=(2, 3)), rng.normal(size=(1, 2))], [None, None])
    _save_trajectory(tmp_path / "mlp.npz", net)
    res = run(["--model", str(tmp_path / "mlp.npz"), "--json"], capsys)
    assert res["type"] == "MLP" and res["betti_numbers"] is None and res["singular_subnetworks"] == []
    assert res["dag_n_components"] == gf.dag_components(net)[0]


def test_dag_file(tmp_path, capsys):
    graph = {
        "inputs": 2,
        "hidden": 3,
        "outputs": 1,
        "edges": [["x0", "h0"], ["x1", "h1"], ["h0", "h2"], ["h1", "h2"], ["h2", "y0"], ["x0", "y0"]],
    }
    (tmp_path / "c.json").write_text(json.dumps({**graph, "c": [-1, 0, 2]}))
    res = run(["--dag", str(tmp_path / "c.json"), "--json"], capsys)
    assert res["n_components"] == 2 and res["rigid_edges"] == [["h0", "h2"]] and res["label"] is None
    (tmp_path / "w.json").write_text(json.dumps({**graph, "weights": [0, 0.5, 0, 1, 2, 0.3]}))
    res = run(["--dag", str(tmp_path / "w.json"), "--json"], capsys)
    assert res["n_components"] == 4 and res["label"] == [1, 1] and res["singular_subnetworks"] == [["h0"]]
    out = run(["--dag", str(tmp_path / "w.json")], capsys)
    assert "rigid edges: h1->h2, h2->y0" in out


@pytest.mark.parametrize(
    "argv,match",
    [
        ([], "exactly one of --delta"),
        (["--delta=1", "--dag", "{tmp}/c.json"], "exactly one of --delta"),
        (["--delta=1,a", "--in-size", "2"], "--delta must be a finite number or a non-empty list"),
        (["--delta=1"], "--in-size is required"),
        (["--delta=1", "--in-size", "0"], "--in-size must be a positive integer"),
        (["probability", "--scheme", "he", "--in-size", "2", "--width", "2"], "--scheme must be kaiming, xavier"),
        (["probability", "--in-size", "2"], "--width is required"),
    ],
)
def test_errors(argv, match, tmp_path, capsys):
    (tmp_path / "c.json").write_text("{}")
    assert main(["topology", *(a.replace("{tmp}", str(tmp_path)) for a in argv)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("gflow topology: error: ") and match in err[0], err


def test_file_errors(tmp_path, capsys):
    def error(*argv):
        assert main(["topology", *argv]) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1, err
        return err[0]

    (tmp_path / "bad.json").write_text(json.dumps({"inputs": 1, "hidden": 1, "outputs": 1, "edges": [["x0", "h0"]]}))
    assert 'exactly one of "c"' in error("--dag", str(tmp_path / "bad.json"))
    np.savez(tmp_path / "junk.npz", a=np.zeros(3))
    assert "--model must be a trajectory" in error("--model", str(tmp_path / "junk.npz"))
    assert "--model: file not found" in error("--model", str(tmp_path / "missing.npz"))
