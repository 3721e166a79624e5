"""The ``gflow`` command itself (the subcommands have their own test files)."""

import importlib.metadata

import pytest

from gflow.cli import main


def test_version_is_read_from_the_installed_metadata(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == importlib.metadata.version("gflow")
