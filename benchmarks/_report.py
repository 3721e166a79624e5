"""Shared by the benchmark scripts: the report helpers live in :mod:`gflow.bench.report`."""

from gflow.bench.report import table as table, write_csv as write_csv, write_report as write_report  # noqa: F401
