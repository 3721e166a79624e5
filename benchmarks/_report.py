"""Shared by the benchmark scripts: the report helpers live in :mod:`gflow.bench.report`."""

from gflow.bench.report import table as table  # noqa: F401
from gflow.bench.report import write_csv as write_csv  # noqa: F401
from gflow.bench.report import write_report as write_report  # noqa: F401
