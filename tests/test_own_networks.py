"""Your own Equinox network (issue 15): any ``eqx.Module`` runs in flows, optimizers and
sweeps; conserved quantities are found for ReLU structure written with Equinox's layers
(module inspection), come from the interface, or are absent with one notice."""

import os
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pyarrow.parquet as pq
import pytest
from own_nets import Quadratic, SkipNet, cnn, eqx_mlp, sequential

import gflow as gf
from gflow.cli import main as cli_main
from gflow.sweep import store
from gflow.sweep.config import SweepConfig
from gflow.sweep.run import run_sweep

TOL = 1e-10  # rtol = atol of the exact flows


def _data(shape=(3,), n=8, seed=0):
    kx, ky = jr.split(jr.PRNGKey(seed))
    x = jr.normal(kx, (n, *shape))
    y = jnp.sin(jnp.sum(x.reshape(n, -1), axis=1)) + 0.1 * jr.normal(ky, (n,))
    return gf.Dataset(x, y)


# Hand-written (w_in, w_out) squares per hidden unit, independent of gflow's recognizer.
def _linear_chain_squares(linears):
    ins, outs = [], []
    for a, b in zip(linears[:-1], linears[1:], strict=True):
        w_in = np.sum(np.asarray(a.weight) ** 2, axis=1)
        if a.bias is not None:
            w_in = w_in + np.asarray(a.bias) ** 2
        ins.append(w_in)
        outs.append(np.sum(np.asarray(b.weight) ** 2, axis=0))
    return np.concatenate(ins), np.concatenate(outs)


def _cnn_squares(net):
    c1, _, c2, _, _, head = net.layers
    k1, b1, k2, b2 = (np.asarray(a) for a in (c1.weight, c1.bias, c2.weight, c2.bias))
    n1, n2 = k1.shape[0], k2.shape[0]
    in1 = np.array([np.sum(k1[c] ** 2) + np.sum(b1[c] ** 2) for c in range(n1)])
    out1 = np.array([np.sum(k2[:, c] ** 2) for c in range(n1)])
    in2 = np.array([np.sum(k2[c] ** 2) + np.sum(b2[c] ** 2) for c in range(n2)])
    h = np.asarray(head.weight)  # (1, n2 * 64): channel c reads columns 64 c .. 64 c + 63
    out2 = np.array([np.sum(h[:, 64 * c : 64 * (c + 1)] ** 2) for c in range(n2)])
    return np.concatenate([in1, in2]), np.concatenate([out1, out2])


def _skip_squares(net):
    w_in = np.sum(np.asarray(net.W) ** 2, axis=1) + np.asarray(net.b) ** 2
    return w_in, np.sum(np.asarray(net.V) ** 2, axis=0)


CASES = {
    "mlp-depth2-nobias": (
        lambda k: eqx_mlp(3, 4, 2, bias=False, key=k),
        lambda m: _linear_chain_squares(m.layers),
        (3,),
    ),
    "mlp-depth2-bias": (lambda k: eqx_mlp(3, 4, 2, bias=True, key=k), lambda m: _linear_chain_squares(m.layers), (3,)),
    "mlp-depth3-nobias": (
        lambda k: eqx_mlp(3, 3, 3, bias=False, key=k),
        lambda m: _linear_chain_squares(m.layers),
        (3,),
    ),
    "mlp-depth3-bias-finalbias": (
        lambda k: eqx_mlp(3, 3, 3, bias=True, final_bias=True, key=k),
        lambda m: _linear_chain_squares(m.layers),
        (3,),
    ),
    "sequential": (lambda k: sequential(3, k), lambda m: _linear_chain_squares(m.layers[::2]), (3,)),
    "cnn": (cnn, _cnn_squares, (1, 8, 8)),
    "interface-skip": (lambda k: SkipNet(3, 4, key=k), _skip_squares, (3,)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_found_quantities_match_hand_formula(name):
    make, squares, _ = CASES[name]
    net = make(jr.PRNGKey(1))
    w_in, w_out = squares(net)
    laws = gf.conservation_of(net)
    assert laws.source == ("interface" if name.startswith("interface") else "equinox")
    np.testing.assert_allclose(gf.conserved(net), w_in - w_out, rtol=1e-14, atol=1e-14)


_FLOWS = {}


def _t1(name):
    # The CNN's flow crosses many kinks (~1500 steps to t = 0.5); the Sequential's reaches a
    # sliding mode after t = 0.5 where, without kink handling (interface only), steps chatter.
    return 0.5 if name in ("cnn", "sequential") else 3.0


def _flow(name):
    """The exact flow of case ``name`` from its network at key 2 (computed once per session:
    the conservation and the gf.MLP comparison read the same trajectory)."""
    if name not in _FLOWS:
        make, _, shape = CASES[name]
        net = make(jr.PRNGKey(2))
        with warnings.catch_warnings():
            warnings.simplefilter("error", gf.NoConservedQuantities)
            traj = gf.gradient_flow(net, _data(shape), "mse", t1=_t1(name), rtol=TOL, atol=TOL, n_save=6)
        _FLOWS[name] = net, traj
    return _FLOWS[name]


# One flow per kind of structure by default (each compiles its own solve, ~5-10 s); the rest
# with -m slow.
_FAST_FLOWS = ("mlp-depth3-bias-finalbias", "cnn", "interface-skip")


@pytest.mark.parametrize("name", [n if n in _FAST_FLOWS else pytest.param(n, marks=pytest.mark.slow) for n in CASES])
def test_exact_flow_keeps_found_quantities(name):
    """rtol = atol = 1e-10: every found quantity is kept to < 1e-8 relative."""
    _, squares, _ = CASES[name]
    net, traj = _flow(name)
    assert traj.status_name == "successful"
    assert traj.loss[-1] < traj.loss[0]
    c = np.asarray(traj.conserved)
    w_in, w_out = squares(net)
    rel = np.max(np.abs(c - c[0])) / np.max(w_in + w_out)
    print(f"{name}: relative drift {rel:.2e}, steps {int(traj.stats['steps'])}")
    assert rel < 1e-8
    np.testing.assert_allclose(traj.drift[1], rel, rtol=1e-12)


@pytest.mark.parametrize("name", list(CASES))
def test_gd_step_changes_each_by_eta_squared(name):
    """One GD step: c_h changes by exactly eta^2 (||g_in||^2 - ||g_out||^2), with g_in, g_out
    read off the gradient by hand."""
    make, squares, shape = CASES[name]
    net = make(jr.PRNGKey(3))
    data = _data(shape)
    eta = 2.0  # the identity is exact for any step; a large one keeps c(theta') - c(theta) above round-off
    grad = eqx.filter_grad(lambda m: gf.losses.full_batch_loss(m, data.x_train, data.y_train, gf.mse))(net)
    stepped = eqx.apply_updates(net, jax.tree_util.tree_map(lambda g: -eta * g, grad))
    g_in, g_out = squares(grad)
    predicted = eta**2 * (g_in - g_out)
    change = np.asarray(gf.conserved(stepped)) - np.asarray(gf.conserved(net))
    rel = np.max(np.abs(change - predicted)) / np.max(np.abs(predicted))
    print(f"{name}: GD identity relative error {rel:.1e}")
    assert rel < 1e-12
    # gf.train's first GD step records the same change
    traj = gf.train(net, data, "mse", "gd", lr=eta, steps=1, n_save=2)
    np.testing.assert_allclose(np.asarray(traj.conserved[1] - traj.conserved[0]), predicted, rtol=1e-10, atol=1e-14)


def _as_gflow_mlp(net):
    """gflow's own MLP with the weights of an eqx.nn.MLP (no final bias)."""
    depth = len(net.layers) - 1
    own = gf.MLP(net.in_size, [net.width_size] * depth, 1, bias=net.use_bias, key=jr.PRNGKey(0))
    weights = tuple(layer.weight for layer in net.layers)
    biases = tuple(layer.bias for layer in net.layers[:-1])
    return eqx.tree_at(lambda m: (m.weights, m.biases), own, (weights, biases), is_leaf=lambda x: x is None)


@pytest.mark.parametrize(
    "name",
    [
        n if n == "mlp-depth2-nobias" else pytest.param(n, marks=pytest.mark.slow)
        for n in CASES
        if n.startswith("mlp") and "finalbias" not in n
    ],
)
def test_eqx_mlp_flow_equals_gflow_mlp(name):
    _, _, shape = CASES[name]
    net, a = _flow(name)
    # the same kink mode on both sides: an equinox MLP is recognized as a ReLU net (conserved
    # quantities) but has no masked_forward, so "auto" does not locate its crossings, while it
    # does for gf.MLP (issue 16; recognized nets are left for later)
    b = gf.gradient_flow(
        _as_gflow_mlp(net), _data(shape), "mse", t1=_t1(name), rtol=TOL, atol=TOL, n_save=6, kinks="none"
    )
    assert int(a.stats["steps"]) == int(b.stats["steps"])
    np.testing.assert_allclose(a.loss, b.loss, rtol=0, atol=1e-10)
    np.testing.assert_allclose(a.conserved, b.conserved, rtol=0, atol=1e-10)
    for la, lb in zip(a.models.layers, b.models.weights, strict=True):
        np.testing.assert_allclose(la.weight, lb, rtol=0, atol=1e-10)


def test_recognition_reports_why_not():
    key = jr.PRNGKey(0)
    tanh = eqx_mlp(3, 4, 2, bias=True, key=key, activation=jnp.tanh)
    assert gf.conservation_of(tanh).source == "none"
    assert "activation=jax.nn.relu" in gf.conservation_of(tanh).detail
    two_relus = eqx.nn.Sequential(
        [
            eqx.nn.Linear(3, 4, key=key),
            eqx.nn.Lambda(jax.nn.relu),
            eqx.nn.Lambda(jax.nn.relu),
            eqx.nn.Linear(4, 1, key=key),
        ]
    )
    assert "2 relu" in gf.conservation_of(two_relus).detail
    no_flatten = eqx.nn.Sequential(
        [eqx.nn.Conv1d(1, 2, 3, key=key), eqx.nn.Lambda(jax.nn.relu), eqx.nn.Linear(12, 1, key=key)]
    )
    assert "ravel" in gf.conservation_of(no_flatten).detail
    with pytest.raises(ValueError, match="no conserved quantities are known for Quadratic"):
        gf.conserved(Quadratic(3, key=key))
    # pooling between ReLU convolutions keeps the per-channel symmetry
    pooled = eqx.nn.Sequential(
        [
            eqx.nn.Conv2d(1, 2, 3, padding=1, key=key),
            eqx.nn.Lambda(jax.nn.relu),
            eqx.nn.MaxPool2d(2, 2),
            eqx.nn.Lambda(jnp.ravel),
            eqx.nn.Linear(2 * 16, 1, key=key),
        ]
    )
    assert gf.conservation_of(pooled).source == "equinox"
    assert gf.conserved(pooled).shape == (2,)


def test_user_conserved_callable():
    """``conserved=callable``: the user's quantities are recorded (here the interface's own,
    so they must agree); relative drift is NaN (no unit norms are known)."""
    net = Quadratic(3, key=jr.PRNGKey(0))
    data = _data()
    fn = lambda m: jnp.sum(m.b**2, keepdims=True)  # not conserved: its drift shows
    traj = gf.gradient_flow(net, data, "mse", t1=0.5, conserved=fn)
    assert traj.conserved.shape == (101, 1) and traj.conserved_source == "user"
    assert float(traj.drift[0]) > 0 and np.isnan(float(traj.drift[1]))
    skip = SkipNet(3, 4, key=jr.PRNGKey(1))
    a = gf.train(skip, data, "mse", "gd", lr=0.1, steps=5, conserved=lambda m: gf.conserved(m))
    b = gf.train(skip, data, "mse", "gd", lr=0.1, steps=5)
    np.testing.assert_allclose(a.conserved, b.conserved, rtol=1e-14)


@pytest.mark.parametrize(
    "make",
    [
        lambda k: eqx_mlp(3, 4, 2, bias=True, key=k, activation=jnp.tanh),
        pytest.param(lambda k: Quadratic(3, key=k), marks=pytest.mark.slow),  # swept by default below
    ],
    ids=["tanh-mlp", "quadratic"],
)
def test_no_laws_runs_with_one_notice(make, tmp_path):
    net = make(jr.PRNGKey(0))
    data = _data()
    with pytest.warns(gf.NoConservedQuantities) as caught:
        traj = gf.gradient_flow(net, data, "mse", t1=0.5)
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    assert traj.status_name == "successful" and traj.conserved is None and traj.drift is None
    assert np.isnan(traj.summary()["drift"])
    assert "pattern_changes" not in traj.stats  # hidden pre-activations: interface only
    with pytest.warns(gf.NoConservedQuantities) as caught:
        gd = gf.train(net, data, "mse", "gd", lr=0.1, steps=20)
    assert len(caught) == 1 and gd.conserved is None and gd.status_name == "successful"
    gd.save(str(tmp_path / "t.npz"))
    back = gf.Trajectory.load(str(tmp_path / "t.npz"), like=net)
    np.testing.assert_array_equal(back.loss, gd.loss) and back.conserved is None
    with pytest.raises(ValueError, match="project=True"):
        gf.gradient_flow(net, data, "mse", t1=0.5, project=True)
    with pytest.raises(ValueError, match="neuron_dies"):
        gf.gradient_flow(net, data, "mse", t1=0.5, events=["neuron_dies"])
    with pytest.raises(ValueError, match="kinks='pin'"):
        gf.gradient_flow(net, data, "mse", t1=0.5, kinks="pin")


# ------------------------------------------------------------------------------------ sweeps

SWEEP = dict(data="toy", n_data=32, t1=1.0, rtol=1e-7, atol=1e-7, n_inits=3, slots=2, chunk_size=3, n_save=4)


def _rows(out_dir, drop=("wall_time", "factory")):
    table = pq.read_table(os.path.join(out_dir, store.RUNS))
    return table.drop_columns([c for c in drop if c in table.column_names]).to_pylist()


def _assert_rows_equal(a, b):
    assert len(a) == len(b)
    for ra, rb in zip(a, b, strict=True):
        assert ra.keys() == rb.keys()
        for k in ra:
            if isinstance(ra[k], float):
                np.testing.assert_allclose(ra[k], rb[k], rtol=1e-10, atol=1e-14, err_msg=k)
            else:
                assert ra[k] == rb[k], k


@pytest.mark.parametrize("method", [pytest.param("flow", marks=pytest.mark.slow), "gd"])
def test_sweep_factory_equals_builtin(tmp_path, method):
    """The same rows from model="mlp" and from factories building the same network -- gflow's
    MLP (Python API, the callable) and eqx.nn.MLP (TOML reference) -- all columns but wall time."""
    from own_nets import eqx_mlp_factory, gflow_mlp_factory

    base = dict(SWEEP, method=method, hidden=(3,), steps=20)
    run_sweep(SweepConfig(**base, model="mlp"), str(tmp_path / "builtin"), progress=False)
    run_sweep(SweepConfig(**dict(base, model=gflow_mlp_factory)), str(tmp_path / "own"), progress=False)
    builtin = _rows(tmp_path / "builtin")
    _assert_rows_equal(builtin, _rows(tmp_path / "own"))
    assert {r["factory"] for r in _rows(tmp_path / "own", drop=())} == {"own_nets:gflow_mlp_factory"}
    toml = tmp_path / "sweep.toml"
    toml.write_text(
        f'method = "{method}"\nmodel = "own_nets:eqx_mlp_factory"\nhidden = [3]\nsteps = 20\n'
        + "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in SWEEP.items())
    )
    assert cli_main(["sweep", str(toml), "--out", str(tmp_path / "toml"), "--quiet"]) == 0
    _assert_rows_equal(builtin, _rows(tmp_path / "toml"))
    assert eqx_mlp_factory is not None


def test_sweep_hash_covers_factory():
    from own_nets import eqx_mlp_factory, gflow_mlp_factory

    a, b = SweepConfig(model=eqx_mlp_factory).to_dict(), SweepConfig(model=gflow_mlp_factory).to_dict()
    assert a["model"] == "own_nets:eqx_mlp_factory" and store.config_hash(a) != store.config_hash(b)
    assert SweepConfig(model="own_nets:eqx_mlp_factory").to_dict() == a


def test_sweep_without_laws_nan_columns(tmp_path, capsys):
    """Networks without conserved quantities sweep to completion with NaN drift columns and
    one notice: a tanh MLP by GD through the CLI (one printed note), a non-homogeneous
    module by the exact flow through the Python API (one warning)."""
    from own_nets import quadratic_factory

    toml = tmp_path / "sweep.toml"
    toml.write_text(
        'method = "gd"\nmodel = "own_nets:tanh_factory"\nsteps = 20\n'
        + "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in SWEEP.items())
    )
    assert cli_main(["sweep", str(toml), "--out", str(tmp_path / "gd"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count("gflow sweep: note: no conserved quantities for MLP") == 1, err
    with pytest.warns(gf.NoConservedQuantities) as caught:
        run_sweep(SweepConfig(**dict(SWEEP, model=quadratic_factory)), str(tmp_path / "flow"), progress=False)
    assert len(caught) == 1
    for out in ("gd", "flow"):
        rows = _rows(tmp_path / out)
        assert all(np.isnan(r["drift"]) and np.isnan(r["relative_drift"]) for r in rows)
        assert all(r["status"] == "successful" and r["final_loss"] < r["initial_loss"] for r in rows)


def test_sweep_user_data(tmp_path):
    """data = "file.npz" and data = "module:factory" give the same rows."""
    from own_nets import toy_data

    x, y = toy_data()
    np.savez(tmp_path / "d.npz", x=x, y=y)
    cfg = dict(SWEEP, method="gd", steps=10, model="mlp", hidden=(3,))
    run_sweep(SweepConfig(**dict(cfg, data=str(tmp_path / "d.npz"))), str(tmp_path / "a"), progress=False)
    run_sweep(SweepConfig(**dict(cfg, data="own_nets:toy_data")), str(tmp_path / "b"), progress=False)
    _assert_rows_equal(_rows(tmp_path / "a"), _rows(tmp_path / "b"))
    manifest = store.read_manifest(str(tmp_path / "a"))["config"]
    assert "data_sha256" in manifest
    assert SweepConfig.from_dict(manifest).to_dict() == manifest  # parts, merges and readers rebuild it


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("model", "no_such_module_xyz:f", "config field 'model': cannot import module 'no_such_module_xyz'"),
        ("model", "own_nets:nothing_here", "config field 'model': module 'own_nets' has no attribute 'nothing_here'"),
        ("model", "own_nets:NOT_CALLABLE", "config field 'model': 'own_nets:NOT_CALLABLE' is a int, not a callable"),
        ("model", "own_nets:not_a_module", "config field 'model': factory own_nets:not_a_module returned a int"),
        ("model", "own_nets:wrong_output", "config field 'model': the network of own_nets:wrong_output returns shape"),
        ("model", "resnet", "config field 'model' must be one of shallow, mlp or 'package.module:factory'"),
        ("kinks", "pin", "config field 'kinks' must be auto or none for MLP"),
        ("project", True, "config field 'project' needs a network implementing gflow.AbstractReLUNet"),
        ("events", ["neuron_dies"], "config field 'events': neuron_dies needs a network implementing"),
        ("data", "missing.npz", "config field 'data': file not found"),
        ("data", "NOKEYS", "config field 'data': "),
        ("data", "BADSHAPE", "config field 'data': "),
    ],
)
def test_sweep_bad_factory_or_data_exit_2(tmp_path, capsys, field, value, message):
    if value == "NOKEYS":
        np.savez(tmp_path / "d.npz", inputs=np.zeros((4, 2)), y=np.zeros(4))
        value, message = str(tmp_path / "d.npz"), message + f"{tmp_path / 'd.npz'} has no array 'x'"
    elif value == "BADSHAPE":
        np.savez(tmp_path / "d.npz", x=np.zeros((4, 2)), y=np.zeros(5))
        value, message = str(tmp_path / "d.npz"), message + f"{tmp_path / 'd.npz'}'s arrays: y_train must have shape"
    toml = tmp_path / "sweep.toml"
    if field in ("kinks", "project", "events"):  # flow options an eqx.nn.MLP cannot take
        value = {"kinks": '"pin"', "project": "true", "events": '["neuron_dies"]'}[field]
        toml.write_text(f'model = "own_nets:eqx_mlp_factory"\nmethod = "flow"\n{field} = {value}\nn_inits = 2\n')
    else:
        toml.write_text(f'{field} = "{value}"\nn_inits = 2\nmethod = "gd"\nsteps = 2\n')
    out = tmp_path / "out"
    assert cli_main(["sweep", str(toml), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gflow sweep: error: " + message), err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()
