"""``gflow run`` (one trajectory) and ``gflow demo``."""

from __future__ import annotations

import json
import math
import time

from .._validate import FIELDS, Choice, InputError, Int, OutFile, OutFolder, per_unit
from ._args import value


def set_precision(bits: int) -> None:
    """Float64 (``64``, the default) or float32; must run before any array is built."""
    import jax

    jax.config.update("jax_enable_x64", bits == 64)


def add_parsers(sub) -> None:
    demo = sub.add_parser("demo", help="the topological obstruction on the toy problem, in about a minute")
    demo.add_argument(
        "--out",
        default="gflow-demo",
        type=value("--out", OutFolder()),
        help="folder for the figure (default: gflow-demo)",
    )
    demo.set_defaults(func=run_demo)

    run = sub.add_parser("run", help="train one network with the exact flow or a discrete optimizer")
    run.add_argument(
        "--model",
        default="shallow",
        type=value("--model", Choice(("shallow", "mlp"))),
        help="shallow | mlp (default shallow)",
    )
    run.add_argument(
        "--width", type=value("--width", "width"), default=8, help="hidden width of a shallow net (default 8)"
    )
    run.add_argument(
        "--hidden", default=(8, 8), type=value("--hidden", "hidden"), help="hidden widths of an MLP, e.g. 16,16,16"
    )
    run.add_argument("--bias", action="store_true", help="hidden units get biases")
    run.add_argument(
        "--init", default="kaiming", type=value("--init", "init"), help="kaiming | xavier (default kaiming, fan-in)"
    )
    run.add_argument(
        "--delta", type=value("--delta", "delta"), help="relocate every hidden unit to this conserved value (Prop. 4)"
    )
    run.add_argument(
        "--signs", type=value("--signs", "signs"), help="force output-weight signs after relocating, e.g. 1,-1"
    )
    run.add_argument(
        "--data", default="toy", help="toy | breast_cancer | teacher_student | toy_population (default toy)"
    )
    run.add_argument(
        "--n", type=value("--n", "n_data"), default=1000, help="toy / teacher-student data set size (default 1000)"
    )
    run.add_argument(
        "--teacher-width",
        type=value("--teacher-width", "teacher_width"),
        default=2,
        help="teacher_student: the teacher's hidden width (default 2)",
    )
    run.add_argument(
        "--teacher-seed",
        type=value("--teacher-seed", "teacher_seed"),
        default=1234,
        help="teacher_student: the teacher is drawn with this seed (default 1234)",
    )
    run.add_argument(
        "--noise", type=value("--noise", "noise"), default=0.0, help="teacher_student: label noise std (default 0)"
    )
    run.add_argument(
        "--loss",
        type=value("--loss", "loss"),
        help="mse | bce | cross_entropy (default: mse for toy, bce for breast_cancer)",
    )
    run.add_argument("--method", default="flow", help="flow | gd | sgd | momentum | adam (default flow)")
    run.add_argument("--solver", default="tsit5", help="euler | heun | tsit5 | dopri5 | dopri8 | kvaerno5")
    run.add_argument("--rtol", type=value("--rtol", "rtol"), default=1e-8, help="relative tolerance (default 1e-8)")
    run.add_argument("--atol", type=value("--atol", "atol"), default=1e-8, help="absolute tolerance (default 1e-8)")
    run.add_argument(
        "--max-steps",
        type=value("--max-steps", "max_steps"),
        default=None,
        help="bound on solver steps (default: sized to t1, about 1000 per unit time)",
    )
    run.add_argument("--project", action="store_true", help="project onto the invariant set after each step")
    run.add_argument(
        "--kinks",
        default="auto",
        help="auto | none | pin | slide | pin+slide: how the flow handles ReLU kinks (default auto)",
    )
    run.add_argument(
        "--event",
        action="append",
        default=None,
        metavar="EVENT",
        help="watch an event (repeatable): loss_below=THR, grad_norm_below=THR, neuron_dies, output_sign_change",
    )
    run.add_argument("--on-event", default="stop", help="stop | record (default stop)")
    run.add_argument(
        "--dtmin",
        type=value("--dtmin", "dtmin"),
        default=None,
        help="absolute floor on the step size (steps at it are accepted and counted; default: 100 eps max(|t|, t1))",
    )
    run.add_argument(
        "--t1", type=value("--t1", "t1"), default=10.0, help="final time (default 10; inf: to convergence)"
    )
    run.add_argument("--lr", type=value("--lr", "lr"), default=1e-2, help="learning rate of a discrete optimizer")
    run.add_argument("--steps", type=value("--steps", "steps"), default=0, help="optimizer steps (default 0: t1/lr)")
    run.add_argument("--batch-size", type=value("--batch-size", Int(1)), help="minibatch size for sgd (default 32)")
    run.add_argument("--n-save", type=value("--n-save", "n_save"), default=101, help="saved time points (default 101)")
    run.add_argument("--seed", type=value("--seed", "seed"), default=0, help="random seed (default 0)")
    run.add_argument("--precision", type=value("--precision", "precision"), default=64, help="64 (default) or 32")
    run.add_argument("--out", type=value("--out", OutFile(".npz")), help="write the trajectory to this .npz file")
    run.add_argument("--json", action="store_true", help="print a JSON summary")
    run.set_defaults(func=run_one)


def run_demo(args) -> int:
    set_precision(64)
    from .demo import format_table
    from .demo import run_demo as demo

    start = time.perf_counter()
    result = demo(args.out)
    print(format_table(result["rows"]))
    rows = {(r["init"].split()[0], r["method"]): r for r in result["rows"]}
    good, bad = rows[("reachable", "exact flow")], rows[("unreachable", "exact flow")]
    print(
        f"\nBoth initializations have two pathological neurons (delta = -1), so no output weight can change sign: "
        f"with signs (+, -) the exact flow fits the target (loss {good['final_loss']:.1e}), with (+, +) it is stuck "
        f"at loss {bad['final_loss']:.3f}; small-lr GD follows the flow but drifts off the invariant set by "
        f"~{max(r['drift'] for r in result['rows'] if r['method'] != 'exact flow'):.0e}."
    )
    print(f"Figure: {result['figure']}   ({time.perf_counter() - start:.0f} s)")
    return 0


def _check(args) -> None:
    """Every ``gflow run`` option that argparse has not checked yet (choices defined in
    modules imported only now, options that depend on each other), before anything runs."""
    from ..data import DATASETS
    from ..flow.events import parse_events

    Choice((*DATASETS, "teacher_student", "toy_population"))(args.data, "--data")
    for field in ("method", "solver", "kinks", "on_event"):
        FIELDS[field](getattr(args, field), "--" + field.replace("_", "-"))
    try:
        parse_events(args.event)
    except ValueError as err:
        raise InputError(f"--event: {err}") from None
    if args.t1 == math.inf and args.method != "flow":
        raise InputError("--t1 inf (run to convergence) needs --method flow.")
    if args.signs is not None and args.delta is None:
        raise InputError("--signs needs --delta (signs are forced after relocating).")
    hidden = (args.width,) if args.model == "shallow" else args.hidden
    if args.delta is not None:
        per_unit(args.delta, "--delta", sum(hidden))
    if args.signs is not None:
        per_unit(args.signs, "--signs", hidden[-1], "output weight of a hidden unit")


def _dataset(args):
    import jax.random as jr

    from ..data import breast_cancer, toy

    if args.data == "toy":
        return toy(n=args.n, key=jr.PRNGKey(args.seed)), "mse", None
    if args.data == "teacher_student":  # the teacher and data a sweep with these fields draws
        from ..sweep import SweepConfig, dataset

        fields = dict(n_data=args.n, teacher_width=args.teacher_width, teacher_seed=args.teacher_seed)
        data, teacher = dataset(SweepConfig(data="teacher_student", noise=args.noise, **fields))
        return data, "mse", teacher
    if args.data == "toy_population":
        from ..population import toy_population

        return toy_population(), "mse", None
    return breast_cancer(seed=args.seed), "bce", None


def _model(args, data):
    import jax.numpy as jnp
    import jax.random as jr

    from ..invariants import relocate
    from ..nets.mlp import MLP
    from ..nets.shallow import ShallowReLU

    key = jr.PRNGKey(args.seed + 1)
    if args.model == "shallow":
        model = ShallowReLU(data.in_size, args.width, data.out_size, bias=args.bias, init=args.init, key=key)
    else:
        model = MLP(data.in_size, args.hidden, data.out_size, bias=args.bias, init=args.init, key=key)
    if args.delta is not None:
        signs = None if args.signs is None else jnp.asarray(args.signs)
        model = relocate(model, jnp.asarray(args.delta), signs)
    return model


def run_one(args) -> int:
    _check(args)
    set_precision(args.precision)
    from ..data import Dataset
    from ..discrete import train
    from ..flow.solve import gradient_flow

    data, default_loss, teacher = _dataset(args)
    n_train = int(data.x_train.shape[0]) if isinstance(data, Dataset) else None  # a population: no limit
    if args.batch_size is not None and n_train is not None and args.batch_size > n_train:
        raise InputError(f"--batch-size must be at most the training set size ({n_train}); got {args.batch_size}.")
    model = _model(args, data)
    loss = args.loss or default_loss
    if args.method == "flow":
        traj = gradient_flow(
            model,
            data,
            loss,
            args.t1,
            solver=args.solver,
            rtol=args.rtol,
            atol=args.atol,
            n_save=args.n_save,
            max_steps=args.max_steps,
            project=args.project,
            kinks=args.kinks,
            events=args.event,
            on_event=args.on_event,
            dtmin=args.dtmin,
        )
    else:
        steps = args.steps or max(1, round(args.t1 / args.lr))
        traj = train(
            model, data, loss, args.method, lr=args.lr, steps=steps, batch_size=args.batch_size, n_save=args.n_save
        )
    summary = traj.summary()
    from ..nets.shallow import ShallowReLU

    if teacher is not None and isinstance(model, ShallowReLU) and not args.bias:
        from ..topology.symmetry import reachable, recovered

        summary.update(reachable=bool(reachable(teacher, model)), recovered=bool(recovered(traj.final, teacher)))
    if args.out:
        traj.save(args.out)
        summary["out"] = args.out
    if args.json:  # strict JSON: a time that never happened (inf) or a NaN loss is null
        print(
            json.dumps(
                {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in summary.items()}, indent=2
            )
        )
    else:
        for k, v in summary.items():
            print(f"{k:>16}: {v:.6g}" if isinstance(v, float) else f"{k:>16}: {v}")
    return 0
