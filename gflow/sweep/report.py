"""What a finished sweep found: summaries of ``runs.parquet`` and the files of ``gflow sweep report``.

:func:`summarize` reduces one sweep's rows to status counts, final-loss quantiles and the
fraction of runs that fit (final loss below ``solved``) per value of a grouping column (by
default ``label_start``, the component label of the initialization; docs/theory.md §1), and
the distributions of the conservation drift, the steps and the wall time per run.
:func:`load_sweeps` reads and checks several sweeps for a side-by-side comparison (they must
run the same problem: data, network, initializations) and :func:`write_report` writes
``report.md`` + ``report.png``. Figure modules call the same functions on their rows.
"""

from __future__ import annotations

import dataclasses
import datetime
import os

import numpy as np
from matplotlib.ticker import NullFormatter

from ..figures.style import PALETTE, figure, save
from . import store

__all__ = ["Sweep", "load_sweeps", "summarize", "quantiles", "compare", "write_report", "text_summary"]

QUANTILES = {"min": 0.0, "q05": 0.05, "q25": 0.25, "median": 0.5, "q75": 0.75, "q95": 0.95, "max": 1.0}
MAX_GROUPS = 24
# Config fields that may differ between sweeps compared side by side: how a problem is solved,
# not which problem (every other field, e.g. data, width, seed, delta, must agree).
HOW_FIELDS = {
    "name",
    "method",
    "solver",
    "rtol",
    "atol",
    "max_steps",
    "project",
    "kinks",
    "events",
    "on_event",
    "lr",
    "steps",
    "batch_size",
    "t1",
    "n_inits",
    "precision",
    "slots",
    "steps_per_call",
    "chunk_size",
    "n_save",
    "recover_tol",
    "save_trajectories",
}
DEFAULT_BY = ("label_start", "effective_label_start")
# fields a method ignores (shown as "–" for it)
_IGNORED = {
    "flow": {"lr", "steps", "batch_size"},
    "discrete": {"solver", "rtol", "atol", "max_steps", "project", "kinks", "events", "on_event"},
}
AXIS_LABELS = {
    "label_start": "component at $t = 0$ (signs of the pathological $v_k$)",
    "label_end": "component at the end (signs of the pathological $v_k$)",
    "effective_label_start": "effective component at $t = 0$ (# negative $v_k$)",
    "effective_label_end": "effective component at the end (# negative $v_k$)",
}


@dataclasses.dataclass
class Sweep:
    """A finished sweep: its folder, manifest (a dict) and rows (``{column: numpy array}``)."""

    path: str
    manifest: dict
    rows: dict

    @property
    def config(self) -> dict:
        return self.manifest["config"]


def read_sweep(path: str) -> Sweep:
    """A finished sweep folder; ``ValueError`` (one sentence) if it is missing or incomplete."""
    manifest = store.read_manifest(path)
    table = store.read_runs(path)
    n_inits = manifest["config"]["n_inits"]
    if table.num_rows != n_inits:
        raise ValueError(
            f"{os.path.join(path, store.RUNS)} has {table.num_rows} rows but the sweep has {n_inits} "
            f"initializations; run gflow sweep merge {path}."
        )
    rows = {name: np.asarray(table.column(name).to_pylist()) for name in table.column_names}
    return Sweep(path=path, manifest=manifest, rows=rows)


def _method_folders(path: str) -> list[str]:
    """A sweep with ``methods`` stands for its methods' sweeps, side by side; others as given."""
    manifest = os.path.join(path, store.MANIFEST)
    methods = store.read_manifest(path)["config"].get("methods") if os.path.exists(manifest) else None
    return [os.path.join(path, m) for m in methods] if isinstance(methods, dict) else [path]


def load_sweeps(paths: list[str], by: str | None = None) -> tuple[list[Sweep], str | None]:
    """Read and check the sweeps of a report; returns them and the grouping column.

    A folder of a sweep with ``methods`` stands for its methods' sweeps. ``ValueError`` when
    a folder is missing, not a sweep, unfinished, given twice, or when
    two sweeps run different problems (config fields outside ``HOW_FIELDS`` differ), or
    when ``by`` is not a column of every sweep or has more than ``MAX_GROUPS`` values."""
    paths = [q for p in paths for q in _method_folders(p)]
    if len({os.path.realpath(p) for p in paths}) != len(paths):
        raise ValueError("a sweep folder is given twice.")
    sweeps = [read_sweep(p) for p in paths]
    first = sweeps[0]
    for other in sweeps[1:]:
        keys = set(first.config) | set(other.config)
        diff = sorted(k for k in keys - HOW_FIELDS if first.config.get(k) != other.config.get(k))
        if diff:
            k = diff[0]
            raise ValueError(
                f"{first.path} and {other.path} sweep different problems ({k}: {first.config.get(k)!r} vs "
                f"{other.config.get(k)!r}); a report compares sweeps of the same problem."
            )
    if by is None:
        by = next((c for c in DEFAULT_BY if all(c in s.rows for s in sweeps)), None)
    else:
        for s in sweeps:
            if by not in s.rows:
                raise ValueError(f"--by {by!r} is not a column of {s.path}; columns: {', '.join(s.rows)}.")
        values = set().union(*({_key(v) for v in s.rows[by]} for s in sweeps))
        if len(values) > MAX_GROUPS:
            raise ValueError(f"--by {by!r} has {len(values)} distinct values; group by a column with <= {MAX_GROUPS}.")
    return sweeps, by


def _key(value) -> str:
    """A group value as text (labels stay strings, numbers their shortest form)."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    if isinstance(value, (float, np.floating)):
        return f"{float(value):g}"
    text = str(value.item() if isinstance(value, np.generic) else value)
    return text or "(none)"  # e.g. the label of a network without pathological neurons


def quantiles(values) -> dict:
    """``n`` (finite values), ``mean`` and ``min``/``q05``/``q25``/``median``/``q75``/``q95``/
    ``max`` of the finite entries of ``values`` (``None`` when there are none)."""
    x = np.asarray(values, float)
    x = x[np.isfinite(x)]
    out: dict = dict(n=int(x.size), mean=float(x.mean()) if x.size else None)
    out.update({k: float(np.quantile(x, q)) if x.size else None for k, q in QUANTILES.items()})
    return out


def summarize(rows: dict, by: str | None = "label_start", solved: float = 1e-3) -> dict:
    """One sweep's rows (``{column: array}``, as :func:`gflow.sweep.store.read_runs` gives
    them) reduced to plain numbers (JSON-ready):

    - ``n_runs``, ``status`` (counts per status name), ``successful`` (fraction with status
      ``successful``), ``solved`` (fraction with final loss ``< solved``)
    - ``final_loss``, ``drift`` (max ``|delta(t) - delta(0)|`` over the saved times),
      ``relative_drift``, ``steps``, ``wall_time``: :func:`quantiles`; ``wall_time_total`` (s)
    - ``groups``: per value of column ``by``: ``n``, ``successful``, ``solved``, ``final_loss``
    """
    n = len(rows["index"])
    status = np.asarray(rows["status"]).astype(str)
    loss = np.asarray(rows["final_loss"], float)
    fits = np.isfinite(loss) & (loss < solved)
    names, counts = np.unique(status, return_counts=True)
    out: dict = dict(
        n_runs=n,
        status={str(k): int(v) for k, v in zip(names, counts, strict=True)},
        successful=float(np.mean(status == "successful")) if n else None,
        solved=float(np.mean(fits)) if n else None,
        final_loss=quantiles(loss),
    )
    for col in ("drift", "relative_drift", "steps", "wall_time"):
        if col in rows:
            out[col] = quantiles(rows[col])
    if "wall_time" in rows:
        out["wall_time_total"] = float(np.nansum(np.asarray(rows["wall_time"], float)))
    if by is not None:
        keys = np.asarray([_key(v) for v in rows[by]])
        out["by"] = by
        out["groups"] = {}
        for g in sorted(set(keys.tolist())):
            m = keys == g
            out["groups"][g] = dict(
                n=int(m.sum()),
                successful=float(np.mean(status[m] == "successful")),
                solved=float(np.mean(fits[m])),
                final_loss=quantiles(loss[m]),
            )
    return out


def compare(sweeps: list[Sweep], by: str | None, solved: float = 1e-3) -> dict:
    """The report's summary: ``by``, ``solved``, ``differs`` (config fields that differ
    between the sweeps) and ``sweeps``: per sweep its ``path``, ``label``, ``config_hash``,
    the differing fields' values and :func:`summarize`."""
    keys = sorted(set().union(*(s.config for s in sweeps)))
    differs = [k for k in keys if k != "name" and len({repr(s.config.get(k)) for s in sweeps}) > 1]
    labels = _labels(sweeps, differs)
    return dict(
        by=by,
        solved=solved,
        differs=differs,
        sweeps=[
            dict(
                path=s.path,
                label=label,
                config_hash=s.manifest.get("config_hash"),
                config={k: s.config.get(k) for k in differs if k not in _ignored(s.config)},
                **summarize(s.rows, by, solved),
            )
            for s, label in zip(sweeps, labels, strict=True)
        ],
    )


def _ignored(config: dict) -> set[str]:
    return _IGNORED["flow" if config.get("method", "flow") == "flow" else "discrete"]


def _labels(sweeps: list[Sweep], differs: list[str]) -> list[str]:
    """Legend labels: the config name, or the folder name where names repeat, plus up to two
    of the differing fields."""
    names = [s.config.get("name") or os.path.basename(os.path.normpath(s.path)) for s in sweeps]
    if len(set(names)) < len(names):
        names = [os.path.basename(os.path.normpath(s.path)) for s in sweeps]
    if len(set(names)) < len(names):
        names = [s.path for s in sweeps]
    if len(sweeps) > 1 and differs:
        hidden = {"name", "n_inits", "slots", "chunk_size", "steps_per_call"}
        for j, s in enumerate(sweeps):
            shown = [k for k in differs if k not in hidden | _ignored(s.config)][:2]
            shown = [k for k in shown if not (k == "method" and s.config.get(k) == names[j])]
            if shown:
                names[j] += " (" + ", ".join(f"{k}={s.config.get(k)}" for k in shown) + ")"
    return names


# ------------------------------------------------------------------------------------ writing


def write_report(paths: list[str], by: str | None = None, out_dir: str | None = None, solved: float = 1e-3):
    """``report.md`` and ``report.png`` for the sweeps in ``paths`` (side by side when more
    than one) in ``out_dir`` (default: the first sweep's folder). Everything is checked
    before anything is written. Returns ``(paths written, summary)`` (:func:`compare`)."""
    if not (isinstance(solved, (int, float)) and 0 < solved < float("inf")):
        raise ValueError(f"--solved must be a positive loss, got {solved}.")
    sweeps, by = load_sweeps(list(paths), by)
    out_dir = out_dir or paths[0]
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"--out {out_dir} is a file, not a folder.")
    summary = compare(sweeps, by, solved)
    os.makedirs(out_dir, exist_ok=True)
    png = draw(sweeps, summary, os.path.join(out_dir, "report"))
    md = os.path.join(out_dir, "report.md")
    text = markdown(summary, os.path.basename(png), out_dir)
    tmp = md + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, md)
    return [md, png], summary


def _fmt(x) -> str:
    return "–" if x is None else f"{x:.3g}"


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def markdown(summary: dict, png: str, out_dir: str) -> str:
    """The text of ``report.md``."""
    sw = summary["sweeps"]
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    lines = [
        f"# Sweep report: {', '.join(s['label'] for s in sw)}",
        "",
        f"Written by `gflow sweep report` on {date}.",
        "",
    ]
    head = "| sweep | folder | config hash | runs |" + "".join(f" {k} |" for k in summary["differs"])
    lines += [head, "|" + "---|" * (4 + len(summary["differs"]))]
    for s in sw:
        extra = "".join(f" {s['config'].get(k, '–')} |" for k in summary["differs"])
        lines.append(
            f"| {s['label']} | `{os.path.relpath(s['path'], out_dir)}` | `{s['config_hash']}` | {s['n_runs']} |{extra}"
        )
    lines += ["", f"![report]({png})", "", "## Status", ""]
    statuses = sorted(set().union(*(s["status"] for s in sw)))
    lines += ["| sweep | " + " | ".join(statuses) + " |", "|" + "---|" * (1 + len(statuses))]
    lines += [f"| {s['label']} | " + " | ".join(str(s["status"].get(k, 0)) for k in statuses) + " |" for s in sw]
    solved = summary["solved"]
    by = summary["by"]
    lines += ["", f"## Final training loss{f' by `{by}`' if by else ''}", ""]
    lines += [f"*fit*: final loss < {solved:g}. Quantiles over the runs with a finite final loss.", ""]
    head = "| sweep | " + (f"`{by}` | " if by else "") + "runs | successful | fit | min | 5% | median | 95% | max |"
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    for s in sw:
        every = dict(n=s["n_runs"], successful=s["successful"], solved=s["solved"], final_loss=s["final_loss"])
        rows = [(f"`{g}`", v) for g, v in s.get("groups", {}).items()] + [("all", every)] if by else [(None, every)]
        for g, v in rows:
            q = v["final_loss"]
            lines.append(
                f"| {s['label']} | " + (f"{g} | " if by else "") + f"{v['n']} | {_pct(v['successful'])} | "
                f"{_pct(v['solved'])} | {_fmt(q['min'])} | {_fmt(q['q05'])} | {_fmt(q['median'])} | "
                f"{_fmt(q['q95'])} | {_fmt(q['max'])} |"
            )
    lines += ["", "## Conservation drift, steps and wall time", ""]
    lines += ["Drift: max over the saved times of `|δ_k(t) − δ_k(0)|` (docs/theory.md §4): round-off and"]
    lines += [
        "tolerance for the exact flow, O(lr) for discrete optimizers. Wall time per run: its share of its chunk's"
    ]
    lines += ["(exact flow, by steps) or batch's (discrete) time, compilation included.", ""]
    head = "| sweep | quantity | min | 5% | median | 95% | max |"
    lines += [head, "|---|---|---|---|---|---|---|"]
    for s in sw:
        for col, unit in (("drift", ""), ("relative_drift", ""), ("steps", ""), ("wall_time", " (s)")):
            if col in s:
                q = s[col]
                lines.append(
                    f"| {s['label']} | {col}{unit} | {_fmt(q['min'])} | {_fmt(q['q05'])} | {_fmt(q['median'])} | "
                    f"{_fmt(q['q95'])} | {_fmt(q['max'])} |"
                )
    lines += [""]
    for s in sw:
        if "wall_time_total" in s:
            lines.append(f"- {s['label']}: {s['wall_time_total']:.1f} s of wall time over {s['n_runs']} runs.")
    return "\n".join(lines) + "\n"


def _positive(x: np.ndarray, floor: float) -> np.ndarray:
    x = np.asarray(x, float)
    return np.maximum(x[np.isfinite(x)], floor)


def _log_if_wide(ax, arrays: list[np.ndarray]) -> None:
    """Log x-axis when the values span more than ~1.5 decades, else linear."""
    x = np.concatenate([a for a in arrays if a.size] or [np.ones(1)])
    if x.max() > 30 * x.min():
        ax.set_xscale("log")


def _ecdf(ax, x: np.ndarray, color, label):
    x = np.sort(x)
    if x.size:
        ax.step(np.concatenate([[x[0]], x]), np.arange(x.size + 1) / x.size, where="post", color=color, label=label)


def draw(sweeps: list[Sweep], summary: dict, path_without_ext: str) -> str:
    """``report.png``: (a) final loss per group (boxes: 5-25-50-75-95 %), (b) fraction that fit
    per group, (c) status counts, (d) drift ECDF, (e) steps ECDF, (f) wall-time ECDF."""
    by, solved = summary["by"], summary["solved"]
    labels = [s["label"] for s in summary["sweeps"]]
    groups = sorted(set().union(*(s.get("groups", {"all": 0}).keys() for s in summary["sweeps"])))
    keys = [np.asarray([_key(v) for v in s.rows[by]]) if by else np.full(len(s.rows["index"]), "all") for s in sweeps]
    fig, axes = figure(ncols=2, nrows=3, width=7.0, aspect=0.62)
    (ax_l, ax_s), (ax_t, ax_d), (ax_n, ax_w) = axes
    k, width = len(sweeps), 0.8 / len(sweeps)
    spread: dict[str, list] = dict(drift=[], steps=[], wall_time=[])
    rotate = len(groups) > 6 or max(len(g) for g in groups) > 8
    for j, (s, key, label) in enumerate(zip(sweeps, keys, labels, strict=True)):
        color = PALETTE[j % len(PALETTE)]
        loss = np.asarray(s.rows["final_loss"], float)
        data = [loss[(key == g) & np.isfinite(loss)] for g in groups]
        pos = np.arange(len(groups)) + (j - (k - 1) / 2) * width
        keep = [i for i, d in enumerate(data) if d.size]
        if keep:
            ax_l.boxplot(
                [np.maximum(data[i], 1e-300) for i in keep],
                positions=pos[keep],
                widths=width * 0.85,
                whis=(5, 95),
                showfliers=False,
                patch_artist=True,
                boxprops=dict(facecolor=color, alpha=0.35, edgecolor=color),
                medianprops=dict(color=color, lw=1.5),
                whiskerprops=dict(color=color),
                capprops=dict(color=color),
            )
        fits = [np.mean(d < solved) if d.size else 0.0 for d in data]
        ax_s.bar(pos, fits, width=width * 0.9, color=color, label=label)
        for ax, col, floor in ((ax_d, "drift", 1e-18), (ax_n, "steps", 1), (ax_w, "wall_time", 1e-6)):
            if col in s.rows:
                _ecdf(ax, _positive(s.rows[col], floor), color, label)
                spread[col].append(_positive(s.rows[col], floor))
    group_title = f"grouped by {by}" if by else "all runs"
    for ax in (ax_l, ax_s):
        ax.set_xticks(np.arange(len(groups)), groups, rotation=45 if rotate else 0, ha="right" if rotate else "center")
        ax.set_xlim(-0.6, len(groups) - 0.4)
        ax.set_xlabel(AXIS_LABELS.get(by, by or ""))
    ax_l.set(
        yscale="log", ylabel="final training loss", title=f"(a) final loss, {group_title} (box 25–75%, whiskers 5–95%)"
    )
    ax_l.axhline(solved, color="0.5", ls=":", lw=1.0)
    ax_s.set(ylim=(0, 1.05), ylabel="fraction of runs", title=f"(b) runs with final loss < {solved:g}")
    # (c) status counts
    statuses = sorted(set().union(*(s["status"] for s in summary["sweeps"])))
    spos = np.arange(len(statuses))
    for j, s in enumerate(summary["sweeps"]):
        counts = [s["status"].get(st, 0) for st in statuses]
        ax_t.bar(
            spos + (j - (k - 1) / 2) * width,
            counts,
            width=width * 0.9,
            color=PALETTE[j % len(PALETTE)],
            label=s["label"],
        )
    ax_t.set_xticks(spos, statuses)
    ax_t.set(ylabel="runs", title="(c) solver status", xlim=(-0.6, len(statuses) - 0.4))
    for ax, col in ((ax_d, "drift"), (ax_n, "steps"), (ax_w, "wall_time")):
        _log_if_wide(ax, spread[col])
    ax_d.set(
        xlabel=r"drift $\max_t |\delta_k(t) - \delta_k(0)|$",
        ylabel="fraction of runs",
        title="(d) conservation drift (ECDF)",
    )
    ax_n.set(xlabel="steps per run", ylabel="fraction of runs", title="(e) steps (ECDF)")
    ax_w.set(xlabel="wall time per run (s, with compilation)", ylabel="fraction of runs", title="(f) wall time (ECDF)")
    for ax in (ax_l, ax_d, ax_n, ax_w):  # no minor-tick labels: they collide on short log ranges
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
    if len(sweeps) > 1:
        handles, names = ax_s.get_legend_handles_labels()
        fig.legend(handles, names, loc="outside upper center", ncols=min(k, 3), frameon=False)
    (png,) = save(fig, path_without_ext, formats=("png",))
    return png


def text_summary(summary: dict) -> str:
    """A few lines for the terminal."""
    out = []
    for s in summary["sweeps"]:
        statuses = ", ".join(f"{k}: {v}" for k, v in s["status"].items())
        q = s["final_loss"]
        out.append(
            f"{s['label']}: {s['n_runs']} runs ({statuses}); final loss median {_fmt(q['median'])}, "
            f"fit (< {summary['solved']:g}) {_pct(s['solved'])}; max drift {_fmt(s.get('drift', {}).get('max'))}"
        )
        for g, v in (s.get("groups") or {}).items():
            median = _fmt(v["final_loss"]["median"])
            out.append(f"  {summary['by']} = {g}: {v['n']} runs, fit {_pct(v['solved'])}, median {median}")
    return "\n".join(out)
