"""``gflow topology``: the topology of an invariant set, and ``gflow topology probability``.

The network comes from exactly one of

- ``--in-size D --out-size E --delta=-1,2,0.5 [--bias]``: a shallow net's conserved values;
- ``--model PATH``: a trajectory saved by :meth:`gflow.Trajectory.save` (its final network);
- ``--dag PATH``: a JSON file ``{"inputs": d, "hidden": h, "outputs": e, "edges":
  [["x0", "h0"], ...], "c": [...]}`` (``Graph.to_json()`` plus ``"c"``, one conserved value
  per hidden node, or ``"weights"``, one per edge).

It prints the Betti numbers (shallow nets, Theorem 1), the number of components (Cor. 1
and, for every network, the DAG count ``2^{#rigid edges}``), the number of effective
components, the label of the given point and its singular sub-networks (docs/theory.md §1-2).
``--json`` prints one JSON object instead.
"""

from __future__ import annotations

import json
import math

import numpy as np

from .._validate import InFile, InputError, Int, Reals, fail, read_json
from ._args import value as typed

ACTIONS = ("probability",)


def add_parser(subparsers) -> None:
    """Register ``topology`` on an ``argparse`` sub-parser collection."""
    p = subparsers.add_parser(
        "topology",
        help="Betti numbers, components, labels and singularities of an invariant set",
        description="Topology of the invariant set Q(delta) (docs/theory.md §1-2). "
        "'gflow topology probability' gives the probability of obstruction (App. F).",
    )
    p.add_argument(
        "action",
        nargs="?",
        default=None,
        choices=ACTIONS,
        help="'probability': exact and Monte Carlo probability that a random init is obstructed",
    )
    p.add_argument("--in-size", type=typed("--in-size", Int(1)), help="input dimension d of a shallow net")
    p.add_argument("--out-size", type=typed("--out-size", Int(1)), default=1, help="output dimension e (default 1)")
    p.add_argument(
        "--delta", type=typed("--delta", Reals()), help="conserved values, one per hidden neuron, e.g. --delta=-1,2,0.5"
    )
    p.add_argument("--bias", action="store_true", help="hidden neurons have biases (d -> d+1)")
    p.add_argument(
        "--model",
        type=typed("--model", InFile()),
        help="a trajectory .npz written by Trajectory.save (its final network is used)",
    )
    p.add_argument("--dag", type=typed("--dag", InFile()), help='a DAG as JSON: Graph.to_json() plus "c" or "weights"')
    p.add_argument(
        "--tol",
        type=typed("--tol", "tol"),
        default=None,
        help="|c| <= tol max(1, max|c|) counts as zero (default gflow.topology.TOL = 1e-9)",
    )
    p.add_argument("--scheme", default="kaiming", help="probability: kaiming | xavier | SIGMA_W,SIGMA_V")
    p.add_argument("--width", type=typed("--width", Int(1)), help="probability: hidden width l")
    p.add_argument(
        "--samples",
        type=typed("--samples", Int(1)),
        default=100_000,
        help="probability: Monte Carlo samples (default 1e5)",
    )
    p.add_argument("--seed", type=typed("--seed", "seed"), default=0, help="probability: Monte Carlo seed (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_topology)


def run_topology(args) -> int:
    """Run ``gflow topology``; returns the exit code. Bad input raises ``ValueError``."""
    import jax

    jax.config.update("jax_enable_x64", True)
    result = _probability(args) if args.action == "probability" else _describe(args)
    print(json.dumps(result, indent=2) if args.json else _text(result))
    return 0


# ---------------------------------------------------------------- probability


def _scheme(text: str):
    if text in ("kaiming", "xavier"):
        return text
    try:
        sw, sv = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(
            f"--scheme must be kaiming, xavier or SIGMA_W,SIGMA_V (two positive numbers); got {text!r}."
        ) from None
    if not (sw > 0 and sv > 0 and math.isfinite(sw) and math.isfinite(sv)):
        raise ValueError(f"--scheme SIGMA_W,SIGMA_V needs two positive numbers, got {text!r}.")
    return (sw, sv)


def _positive(value, option):
    if value is None:
        raise InputError(f"{option} is required (a positive integer).")
    return value


def _probability(args) -> dict:
    import jax.random as jr

    from ..topology.shallow import obstruction_probability, obstruction_probability_mc

    scheme = _scheme(args.scheme)
    d, width = _positive(args.in_size, "--in-size"), _positive(args.width, "--width")
    n = _positive(args.samples, "--samples")
    exact = obstruction_probability(d, width, scheme, bias=args.bias)
    est, se = obstruction_probability_mc(d, width, scheme, n, jr.PRNGKey(args.seed), bias=args.bias)
    return dict(
        scheme=args.scheme,
        in_size=d,
        width=width,
        bias=args.bias,
        exact=exact,
        monte_carlo=est,
        standard_error=se,
        samples=n,
        agree_within_4_se=bool(abs(est - exact) <= 4 * max(se, 1.0 / n)),
    )


# ---------------------------------------------------------------- describe a network


def _describe(args) -> dict:
    given = [n for n, v in (("--delta", args.delta), ("--model", args.model), ("--dag", args.dag)) if v is not None]
    if len(given) != 1:
        raise InputError(
            "gflow topology needs exactly one of --delta (with --in-size, --out-size), "
            f"--model PATH or --dag PATH; got {', '.join(given) or 'none'}."
        )
    if args.delta is not None:
        return _from_delta(args)
    if args.model is not None:
        return _from_model(args)
    return _from_dag(args)


def _tol(args) -> float:
    from ..topology.shallow import TOL

    return TOL if args.tol is None else args.tol


def _from_delta(args) -> dict:
    if args.in_size is None:
        raise InputError("--in-size is required with --delta (the input dimension of the shallow net).")
    d, e = _positive(args.in_size, "--in-size"), _positive(args.out_size, "--out-size")
    from ..topology.summary import delta_summary  # lazy, as every CLI import of the library: fast --help

    delta = list(args.delta) if isinstance(args.delta, tuple) else [args.delta]
    return dict(source="delta", **delta_summary(d, e, delta, args.bias, _tol(args)))


def _load_model(path: str):
    from ..trajectory import Trajectory

    try:
        return Trajectory.load(path).final
    except Exception:  # noqa: BLE001 -- a truncated, empty or foreign file: the user's input
        raise InputError(
            f"--model must be a trajectory .npz written by Trajectory.save; could not read {path!r}."
        ) from None


def _from_model(args) -> dict:
    from ..invariants import conserved
    from ..topology.summary import model_summary

    model = _load_model(args.model)
    if not np.all(np.isfinite(np.asarray(conserved(model)))):
        raise InputError(f"--model must hold a network with finite weights; {args.model!r} has NaN or inf.")
    return dict(source="model", path=args.model, **model_summary(model, _tol(args)))


_DAG = "a JSON object with inputs, hidden, outputs, edges and c or weights"


def _from_dag(args) -> dict:
    from ..nets.dag import Graph
    from ..topology.summary import dag_summary

    obj = read_json(args.dag, "--dag")
    if not isinstance(obj, dict):
        fail("--dag", _DAG, type(obj).__name__, wrong_type=True)
    missing = [k for k in ("inputs", "hidden", "outputs", "edges") if k not in obj]
    if missing:
        raise InputError(f"--dag must be {_DAG}; {args.dag} has no {missing[0]!r}.")
    n_in, n_hidden, n_out = (
        Int(low)(obj[k], f'--dag "{k}"') for k, low in (("inputs", 1), ("hidden", 0), ("outputs", 1))
    )
    edges = obj["edges"]
    if not isinstance(edges, list) or not all(
        isinstance(e, list) and len(e) == 2 and all(isinstance(n, str) for n in e) for e in edges
    ):
        fail(
            '--dag "edges"', 'a list of pairs of node names, e.g. [["x0", "h0"], ["h0", "y0"]]', edges, wrong_type=True
        )
    try:
        graph = Graph(n_in, n_hidden, n_out, tuple(tuple(e) for e in edges))
    except ValueError as err:
        raise InputError(f"--dag: {err}") from None
    if ("c" in obj) == ("weights" in obj):
        raise InputError(
            '--dag JSON must hold exactly one of "c" (one conserved value per hidden node) or "weights" (one per edge).'
        )
    key, n = ("c", graph.n_hidden) if "c" in obj else ("weights", graph.n_edges)
    what = "hidden node" if key == "c" else "edge"
    values = obj[key]
    if not isinstance(values, list):
        fail(f'--dag "{key}"', f"a list of finite numbers, one per {what} ({n})", values, wrong_type=True)
    values = np.asarray(Reals()(values, f'--dag "{key}"') if values else (), dtype=float)
    if values.shape != (n,):
        raise InputError(f'--dag "{key}" must have one value per {what} ({n}); got {values.size}.')
    c, weights = (values, None) if key == "c" else (None, values)
    return dict(source="dag", path=args.dag, **dag_summary(graph, c, weights))


_NAMES = dict(
    betti_numbers="Betti numbers",
    poincare_polynomial="Poincaré polynomial",
    n_components="components",
    dag_n_components="components (DAG, 2^#rigid edges)",
    n_effective_components="effective components",
    label="label",
    dag_label="label (rigid edges)",
    effective_label="effective label",
    singular_subnetworks="singular sub-networks",
    rigid_edges="rigid edges",
    exact="P(obstructed), exact",
    monte_carlo="P(obstructed), Monte Carlo",
    standard_error="standard error",
)


def _text(result: dict) -> str:
    lines = []
    for key, value in result.items():
        if value is None:
            continue
        if key == "singular_subnetworks":
            value = "none" if not value else "; ".join("{" + ", ".join(s) + "}" for s in value)
        elif isinstance(value, list):
            value = ", ".join(str(v) if not isinstance(v, list) else "->".join(v) for v in value) or "()"
        elif isinstance(value, float):
            value = f"{value:.6g}"
        lines.append(f"{_NAMES.get(key, key.replace('_', ' '))}: {value}")
    return "\n".join(lines)
