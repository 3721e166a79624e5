"""One place for the look of every gflow figure: sizes for a paper column, a colour-blind-safe
palette (Okabe & Ito), labelled axes, PNG + PDF output."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import matplotlib
from cycler import cycler

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

# Okabe-Ito palette: distinguishable under the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
COLUMN_WIDTH = 3.4  # inches, one column of a two-column paper
RC: dict[RcKeyType, Any] = {
    "figure.dpi": 150,
    "savefig.dpi": 200,
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "lines.linewidth": 1.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": cycler(color=PALETTE),
    "savefig.bbox": "tight",
    "pdf.fonttype": 42,
}


def figure(ncols: int = 1, nrows: int = 1, width: float = COLUMN_WIDTH, aspect: float = 0.75, **kw):
    """A new figure with the gflow style: ``width`` inches wide, panels of ``aspect`` height/width."""
    matplotlib.rcParams.update(RC)
    return plt.subplots(nrows, ncols, figsize=(width, width * aspect * nrows / ncols), constrained_layout=True, **kw)


def save(fig, path_without_ext: str, formats=("png", "pdf")) -> list[str]:
    """Save ``fig`` as PNG and PDF next to each other; returns the paths written."""
    os.makedirs(os.path.dirname(os.path.abspath(path_without_ext)), exist_ok=True)
    paths = []
    for ext in formats:
        path = f"{path_without_ext}.{ext}"
        fig.savefig(path)
        paths.append(path)
    plt.close(fig)
    return paths
