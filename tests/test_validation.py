"""Bad input never costs a run, never leaves debris, never passes silently (issue 17).

Malformed inputs are generated over fields x bad values (every sweep config field by the kind
of its rule, every ``gflow run`` / ``gflow topology`` option, DAG JSON keys, input files,
output paths, argparse's own errors). Every case must exit with code 2, print exactly one
line on stderr naming the option or field, and leave no file or folder behind; the library
equivalents (``SweepConfig``, ``relocate``, the topology functions) raise with the same
sentence. The CLI runs in-process (``gflow.cli.main``); three cases run as a subprocess to
prove the exit code of the installed command.
"""

import json
import math
import os
import subprocess
import sys

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import gflow as gf
from gflow._validate import FIELDS, Bool, Choice, Int, Ints, Real, Reals, Signs, Strings, Text
from gflow.cli import main
from gflow.sweep.config import SweepConfig
from gflow.topology.dag import shallow_graph

NAN, INF = math.nan, math.inf

# ---------------------------------------------------------------- bad values by kind of rule


def bad_values(rule) -> list:
    """Values every rule of this kind must refuse: wrong types (bool for int, str for bool,
    ...), NaN and infinities, and values out of range."""
    if isinstance(rule, Int):
        return [True, 2.5, "3", NAN, rule.low - 1]
    if isinstance(rule, Real):
        out = [True, "abc", NAN, -INF] + ([] if rule.inf else [INF])  # t1 = inf: run to convergence
        return out + ([0.0, -1.0] if rule.low == "positive" else [-1.0] if rule.low else [])
    if isinstance(rule, Bool):
        return ["yes", 1, 0.0]
    if isinstance(rule, Choice):
        return ["nope", 3, True]
    if isinstance(rule, Text):
        return [5, "", True]
    if isinstance(rule, Reals):
        return ["abc", NAN, INF, [1.0, NAN], [], [True]]
    if isinstance(rule, Signs):
        return [[2, -1], [True, -1], [0.5, 1], [], ["a", 1]]
    if isinstance(rule, Ints):
        return [[4, 0], [], [2.5], [True], 3]
    if isinstance(rule, Strings):
        return ["loss_below=1", [1]]
    raise AssertionError(type(rule))


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return json.dumps(v)


BASE = dict(name="t", n_data=8, width=2, delta=-1.0, t1=1.0, n_inits=2, slots=2, chunk_size=2, n_save=2)
CONFIG_FIELDS = [f for f in FIELDS if f not in ("dtmin", "tol")]  # the two are options, not config fields
CONFIG_CASES = [(f, v) for f in CONFIG_FIELDS for v in bad_values(FIELDS[f])] + [
    ("delta", [1.0, 2.0, 3.0]),  # width 2: one value or two
    ("signs", [1, 1, 1]),
    ("signs", "sometimes"),
    ("model", 5),
    ("model", "resnet"),
    ("data", "mnist"),
    ("data", 3),
    ("data", "missing.npz"),
    ("solver", "euler"),  # sweeps need an adaptive solver
    ("solver", "kvaerno5"),  # and an explicit one (the engine runs inside shard_map)
]

# ---------------------------------------------------------------- the harness


def snapshot(root) -> set:
    return {os.path.join(d, n) for d, dirs, files in os.walk(root) for n in dirs + files}


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    """``cli(argv, names)``: run ``gflow argv`` in ``tmp_path``; assert exit code 2, exactly one
    line on stderr naming one of ``names``, nothing on stdout, nothing written. Returns the line."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))  # gflow sweep sets it

    def run(argv, names):
        before = snapshot(tmp_path)
        capsys.readouterr()
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        lines = err.splitlines()
        assert code == 2, (argv, code, err)
        assert len(lines) == 1, (argv, lines)
        assert lines[0].startswith("gflow"), lines
        names = [names] if isinstance(names, str) else names
        assert any(n in lines[0] for n in names), (names, lines[0])
        assert out == "", out
        assert snapshot(tmp_path) == before, (argv, snapshot(tmp_path) - before)
        return lines[0]

    return run


def _message(err: BaseException) -> str:
    return str(err)


def after_name(line: str, name: str) -> str:
    """The sentence after the option's or field's name."""
    return line[line.index(name) + len(name) :]


# ---------------------------------------------------------------- sweep configs


@pytest.mark.parametrize("field,bad", CONFIG_CASES, ids=[f"{f}={v!r}" for f, v in CONFIG_CASES])
def test_sweep_config_field(field, bad, tmp_path, cli):
    """Every field x bad value: one line naming the field, no manifest, and the Python API
    raises the same sentence (a TypeError too when the type is wrong)."""
    values = dict(BASE, **{field: bad})
    (tmp_path / "c.toml").write_text("".join(f"{k} = {toml_value(v)}\n" for k, v in values.items()))
    line = cli(["sweep", "c.toml", "--out", "out"], f"config field {field!r}")
    with pytest.raises(ValueError) as info:
        SweepConfig(**values)
    assert line == f"gflow sweep: error: {info.value}"
    rule = FIELDS.get(field)
    type_ok = isinstance(bad, (int, float)) and not isinstance(bad, bool)
    if rule is not None and isinstance(rule, (Int, Real)) and not type_ok:
        assert isinstance(info.value, TypeError)


def test_sweep_config_without_out_writes_nothing(tmp_path, cli):
    (tmp_path / "c.toml").write_text("name = 5\nwidth = 2\n")  # results/<name> cannot even be named
    cli(["sweep", "c.toml"], "config field 'name'")
    assert not (tmp_path / "results").exists()


FILE_CASES = [
    ("sweep = 3\n", "config field 'sweep'"),
    ("[sweep]\nwidth = true\n", "config field 'width'"),
    ("width = \n", "not valid TOML"),
    ("colour = 'red'\n", "unknown config field 'colour'"),
    (b"\x80\x81\xfe\xff\x00binary", "CONFIG must be a TOML file"),
    ('method = "sgd"\nn_data = 8\nbatch_size = 100\n', "config field 'batch_size'"),  # needs the data
]


@pytest.mark.parametrize("text,name", FILE_CASES)
def test_sweep_config_file(text, name, tmp_path, cli):
    path = tmp_path / "c.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    cli(["sweep", "c.toml", "--out", "out"], name)


@pytest.mark.parametrize("array,bad", [("x", NAN), ("x", INF), ("y", NAN), ("y", -INF)])
def test_sweep_data_file_must_be_finite(array, bad, tmp_path, cli):
    arrays = dict(x=np.ones((4, 2)), y=np.ones(4))
    arrays[array][1] = bad
    np.savez(tmp_path / "d.npz", **arrays)
    (tmp_path / "c.toml").write_text('data = "d.npz"\n')
    line = cli(["sweep", "c.toml", "--out", "out"], "config field 'data'")
    assert f"{array} must hold finite numbers" in line


def test_sweep_paths(tmp_path, cli):
    (tmp_path / "c.toml").write_text('name = "ok"\n')
    (tmp_path / "file").write_text("x")
    cli(["sweep", "missing.toml"], "CONFIG")
    cli(["sweep", "."], "CONFIG")
    cli(["sweep", "c.toml", "--out", "file"], "--out")
    cli(["sweep", "c.toml", "--out", "file/sub"], "--out")
    cli(["sweep", "c.toml", "--part", "3/2"], "--part")
    cli(["sweep", "c.toml", "--part", "a/b"], "--part")
    for option in ("--devices", "--array", "--max-concurrent", "--time", "--mem", "--solved"):
        for bad in ("0", "nan", "abc"):
            cli(["sweep", "c.toml", option, bad], option)


def test_sweep_merge(tmp_path, cli):
    (tmp_path / "file").write_text("x")
    cli(["sweep", "merge", "file"], "DIR")
    cli(["sweep", "merge", "missing"], "DIR")
    cli(["sweep", "merge", "."], "DIR")
    cli(["sweep", "report", "file"], "DIR")
    cli(["sweep", "report", "missing"], "DIR")
    for name, manifest in [
        ("noconfig", b'{"config_hash": "abc"}'),
        ("notjson", b"{not json"),
        ("binary", b"\x80\xff\x00"),
        ("list", b"[1, 2]"),
        ("badcount", b'{"config": {"n_inits": true, "chunk_size": 2}}'),
    ]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_bytes(manifest)
        cli(["sweep", "merge", name], ["manifest.json", "DIR"])


# ---------------------------------------------------------------- gflow run


def _strings(rule) -> list[str]:
    """Bad command-line strings for an option read with ``rule``."""
    if isinstance(rule, Int):
        return ["2.5", "abc", "true", "nan", "inf", str(rule.low - 1)]
    if isinstance(rule, Real):
        out = ["abc", "nan", "-inf", "true"] + ([] if rule.inf else ["inf"])
        return out + (["0", "-1e-6"] if rule.low == "positive" else ["-1e-6"] if rule.low else [])
    if isinstance(rule, Choice):
        return ["nope", "1.5"]
    raise AssertionError(type(rule))


RUN_OPTIONS = {
    "--width": FIELDS["width"],
    "--n": FIELDS["n_data"],
    "--max-steps": FIELDS["max_steps"],
    "--steps": FIELDS["steps"],
    "--batch-size": Int(1),
    "--n-save": FIELDS["n_save"],
    "--seed": FIELDS["seed"],
    "--rtol": FIELDS["rtol"],
    "--atol": FIELDS["atol"],
    "--t1": FIELDS["t1"],
    "--lr": FIELDS["lr"],
    "--dtmin": FIELDS["dtmin"],
    "--model": Choice(("shallow", "mlp")),
    "--init": FIELDS["init"],
    "--data": Choice(("toy",)),
    "--loss": FIELDS["loss"],
    "--method": FIELDS["method"],
    "--solver": FIELDS["solver"],
    "--kinks": FIELDS["kinks"],
    "--on-event": FIELDS["on_event"],
    "--precision": FIELDS["precision"],
}
RUN_CASES = [(o, s) for o, rule in RUN_OPTIONS.items() for s in _strings(rule)]
RUN_CASES += [("--delta", s) for s in ("abc", "nan", "inf", "-inf", "1,nan", "1,,2", "-1,-1,-1", "true")]
RUN_CASES += [("--signs", s) for s in ("2,-1", "abc", "nan", "1,1,1", "0,1", "true,1")]
RUN_CASES += [("--hidden", s) for s in ("4,0", "abc", "2.5,2", "-1", "true")]
RUN_CASES += [("--event", s) for s in ("foo", "loss_below", "loss_below=abc", "loss_below=nan", "neuron_dies=3")]


@pytest.mark.parametrize("option,text", RUN_CASES, ids=[f"{o}={t}" for o, t in RUN_CASES])
def test_run_option(option, text, cli):
    """Every option x bad string, given after a space (a negative number is a value)."""
    extra = {"--signs": ["--delta", "-1"], "--hidden": ["--model", "mlp"]}.get(option, [])
    cli(["run", "--width", "2", *extra, option, text, "--out", "t.npz"], option)


def test_run_option_sentences_match_the_library(cli):
    """``gflow run --OPTION VALUE`` and ``SweepConfig(option=VALUE)`` say the same sentence."""
    for option, field, value, text in [
        ("--rtol", "rtol", -1e-6, "-1e-6"),
        ("--t1", "t1", -1.0, "-1"),
        ("--width", "width", 0, "0"),
        ("--delta", "delta", NAN, "nan"),
        ("--n-save", "n_save", 1, "1"),
        ("--lr", "lr", 0.0, "0"),
    ]:
        line = cli(["run", option, text], option)
        with pytest.raises(ValueError) as info:
            SweepConfig(**dict(BASE, **{field: value}))
        assert after_name(line, option) == after_name(str(info.value), f"'{field}'")


def test_run_cross_options_and_paths(tmp_path, cli):
    (tmp_path / "file").write_text("x")
    (tmp_path / "folder.npz").mkdir()
    cli(["run", "--signs", "1,-1"], "--signs")  # needs --delta
    cli(["run", "--batch-size", "5000", "--method", "sgd", "--n", "16"], "--batch-size")
    for out in ("file/t.npz", "folder.npz", "t.txt", "missing/t.npz"):
        cli(["run", "--out", out], "--out")


def test_negative_numbers_after_a_space(cli, tmp_path):
    """``--rtol -1e-6`` is the value -1e-6 (refused as not positive), not a missing argument;
    ``--delta -1`` (and ``--delta -1,-1``) are accepted values."""
    line = cli(["run", "--rtol", "-1e-6"], "--rtol")
    assert "must be a positive finite number; got -1e-06" in line
    from gflow.cli import build_parser

    args = build_parser().parse_args(["run", "--delta", "-1", "--signs", "-1,1", "--dtmin", "-0"])
    assert args.delta == -1.0 and args.signs == (-1.0, 1.0)
    assert build_parser().parse_args(["run", "--width", "2", "--delta", "-1,-2"]).delta == (-1.0, -2.0)


# ---------------------------------------------------------------- gflow topology

TOPOLOGY_CASES = [(o, s) for o in ("--in-size", "--out-size") for s in _strings(Int(1))]
TOPOLOGY_CASES += [("--tol", s) for s in _strings(FIELDS["tol"])]
TOPOLOGY_CASES += [("--delta", s) for s in ("abc", "nan", "inf", "1,-inf", "1,,2")]


@pytest.mark.parametrize("option,text", TOPOLOGY_CASES, ids=[f"{o}={t}" for o, t in TOPOLOGY_CASES])
def test_topology_option(option, text, cli):
    args = {"--in-size": "2", "--delta": "1,-1"}
    args[option] = text
    cli(["topology", *[x for kv in args.items() for x in kv]], option)


PROBABILITY_CASES = [(o, s) for o in ("--width", "--samples", "--seed") for s in _strings(FIELDS["seed"])[:5]]


@pytest.mark.parametrize("option,text", PROBABILITY_CASES, ids=[f"{o}={t}" for o, t in PROBABILITY_CASES])
def test_topology_probability_option(option, text, cli):
    args = {"--in-size": "2", "--width": "2"}
    args[option] = text
    cli(["topology", "probability", *[x for kv in args.items() for x in kv]], option)


GRAPH = {"inputs": 1, "hidden": 2, "outputs": 1, "edges": [["x0", "h0"], ["h0", "h1"], ["h1", "y0"]], "c": [1, 1]}
DAG_CASES = [(k, v) for k in ("inputs", "outputs") for v in (0, True, "2", 2.5, None)]
DAG_CASES += [("hidden", v) for v in (-1, True, "x", 1.5)]
DAG_CASES += [("edges", v) for v in (3, "x0->h0", [["x0"]], [[1, 2]], [["x0", "h9"]], [["y0", "h0"]])]
DAG_CASES += [(k, v) for k in ("c", "weights") for v in ("abc", [1, NAN], [1], [True, 1], ["a", 1], [1, INF], 5)]


@pytest.mark.parametrize("key,bad", DAG_CASES, ids=[f"{k}={v!r}" for k, v in DAG_CASES])
def test_topology_dag_file(key, bad, tmp_path, cli):
    obj = dict(GRAPH)
    if key == "weights":
        del obj["c"]
        bad = bad if not isinstance(bad, list) else bad + [1]  # three edges
    obj[key] = bad
    (tmp_path / "g.json").write_text(json.dumps(obj))
    cli(["topology", "--dag", "g.json"], "--dag")


def test_topology_files(tmp_path, cli):
    (tmp_path / "binary.json").write_bytes(b"\x80\xff\x00\x01")
    (tmp_path / "broken.json").write_text('{"inputs": ')
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "nokey.json").write_text('{"inputs": 1}')
    (tmp_path / "both.json").write_text(json.dumps(dict(GRAPH, weights=[1, 1, 1])))
    for name in ("binary.json", "broken.json", "list.json", "nokey.json", "both.json", "missing.json", "."):
        cli(["topology", "--dag", name], "--dag")
    traj = tmp_path / "t.npz"
    np.savez(traj, ts=np.zeros(2))
    good = traj.read_bytes()
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "truncated.npz").write_bytes(good[: len(good) // 2])
    (tmp_path / "text.npz").write_text("not a zip")
    for name in ("empty.npz", "truncated.npz", "text.npz", "t.npz", "missing.npz", "."):
        cli(["topology", "--model", name], "--model")


# ---------------------------------------------------------------- argparse's own errors, other commands

ARGPARSE_CASES = [
    (["nope"], "COMMAND"),
    (["run", "--rtol"], "--rtol"),
    (["run", "--frobnicate"], "--frobnicate"),
    (["bench", "--size", "huge"], "--size"),
    (["bench", "--only", "work_precision,nope"], "--only"),
    (["bench", "--out", "file"], "--out"),
    (["cache", "nope"], "action"),
    (["figure", "nope"], "figure"),
    (["figure"], "figure name"),
    (["figure", "dag", "--out", "file"], "--out"),
    (["demo", "--out", "file"], "--out"),
    (["sweep", "c.toml", "--executor", "cloud"], "--executor"),
    (["topology", "nope"], "action"),
    (["topology", "--in-size", "2", "--delta", "1", "--model", "file"], "exactly one of"),
]


@pytest.mark.parametrize("argv,name", ARGPARSE_CASES, ids=[" ".join(a) for a, _ in ARGPARSE_CASES])
def test_argparse_errors_are_one_line(argv, name, tmp_path, cli):
    (tmp_path / "file").write_text("x")
    line = cli(argv, name)
    assert "usage:" not in line


# ---------------------------------------------------------------- the library: same rules, same sentences


def test_library_refuses_non_finite_input():
    model = gf.ShallowReLU(2, 3, key=jr.PRNGKey(0))
    sentence = "must be a finite number or a non-empty list of finite numbers; got nan."
    for call in (
        lambda: gf.relocate(model, NAN),
        lambda: gf.project(model, jnp.asarray(NAN)),
        lambda: gf.n_components(2, 1, NAN),
    ):
        with pytest.raises(ValueError) as info:
            call()
        assert str(info.value) == "delta " + sentence
    with pytest.raises(ValueError, match="alphas must be a finite number"):
        gf.rescale(model, jnp.asarray([1.0, INF, 1.0]))
    with pytest.raises(ValueError, match="alphas must be positive"):
        gf.rescale(model, jnp.asarray([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match=r"signs must be a non-empty list of \+1/-1 values; got \[2.0"):
        gf.relocate(model, -1.0, jnp.asarray([2.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match="finite"):
        gf.dag_components(shallow_graph(1, 2), [1.0, INF])
    with pytest.raises(ValueError, match="finite"):
        gf.singular_subnetworks(shallow_graph(1, 1), [1.0, NAN])
    for tol in (NAN, -1.0, True):
        with pytest.raises(ValueError, match="tol must be a finite number >= 0"):
            gf.n_components(2, 1, [1.0], tol=tol)
        with pytest.raises(ValueError, match="tol must be a finite number >= 0"):
            gf.dag_components(shallow_graph(1, 1), [1.0], tol=tol)
    broken = gf.ShallowReLU(2, 3, key=jr.PRNGKey(0))
    broken = type(broken)(2, 3, key=jr.PRNGKey(0))
    import equinox as eqx

    broken = eqx.tree_at(lambda m: m.W, broken, broken.W.at[0, 0].set(NAN))
    with pytest.raises(ValueError, match="finite"):
        gf.relocate(broken, -1.0)
    with pytest.raises(ValueError, match="finite"):
        gf.n_components(broken)


def test_cli_and_library_say_the_same_for_delta(cli):
    line = cli(["topology", "--in-size", "2", "--delta=1,nan"], "--delta")
    with pytest.raises(ValueError) as info:
        gf.n_components(2, 1, [1.0, NAN])
    assert after_name(line, "--delta") == after_name(str(info.value), "delta")
    line = cli(["run", "--delta", "nan"], "--delta")
    with pytest.raises(ValueError) as info:
        gf.relocate(gf.ShallowReLU(1, 2, key=jr.PRNGKey(0)), NAN)
    assert after_name(line, "--delta") == after_name(str(info.value), "delta")


def test_at_least_150_generated_cases():
    n = len(CONFIG_CASES) + len(RUN_CASES) + len(TOPOLOGY_CASES) + len(PROBABILITY_CASES) + len(DAG_CASES)
    assert n + len(FILE_CASES) + len(ARGPARSE_CASES) >= 150


# ---------------------------------------------------------------- the installed command


@pytest.mark.parametrize(
    "argv,name",
    [
        (["run", "--rtol", "tight"], "--rtol"),
        (["sweep", "c.toml", "--out", "out"], "config field 'width'"),
        (["topology", "--dag", "g.json"], "--dag"),
    ],
)
def test_exit_code_of_the_command(argv, name, tmp_path):
    (tmp_path / "c.toml").write_text("width = true\n")
    (tmp_path / "g.json").write_bytes(b"\x80\xff")
    before = snapshot(tmp_path)
    code = "import sys; from gflow.cli import main; sys.exit(main(sys.argv[1:]))"
    res = subprocess.run([sys.executable, "-c", code, *argv], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 2 and res.stdout == ""
    assert len(res.stderr.splitlines()) == 1 and name in res.stderr, res.stderr
    assert snapshot(tmp_path) == before
