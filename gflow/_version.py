"""The installed version of a distribution, read from its metadata."""

from __future__ import annotations

import importlib.metadata


def version(distribution: str = "gflow") -> str:
    """``importlib.metadata.version(distribution)``, or ``"0+unknown"`` for a source tree that
    was never installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"
