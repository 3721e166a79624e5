"""The command line's argument parser: errors as one line (no usage block) naming the
option and the allowed values, negative numbers accepted as values (``--delta -1``,
``--rtol -1e-6``), and option values read with the rules of :mod:`gflow._validate`."""

from __future__ import annotations

import argparse
import re
from typing import NoReturn

from .._validate import FIELDS, InputError, Rule

# a value that starts with "-" and a digit, ".digit", inf or nan is a (negative) number, not an option
_NEGATIVE = re.compile(r"^-(\d|\.\d|inf|nan)", re.IGNORECASE)


class UsageError(Exception):
    """A command-line error: ``gflow`` prints ``"<prog>: error: <message>"`` and exits with 2."""

    def __init__(self, prog: str, message: str):
        super().__init__(message)
        self.prog = prog


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors raise :class:`UsageError` with one sentence."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = _NEGATIVE

    def error(self, message: str) -> NoReturn:
        raise UsageError(self.prog, one_sentence(message))


def one_sentence(message: str) -> str:
    """argparse's message as one sentence that starts with the option's name."""
    message = " ".join(message.split())
    m = re.fullmatch(r"argument ([^:]+): (.*)", message)
    if m:
        option, rest = m.group(1).split("/")[-1], m.group(2)
        choice = re.fullmatch(r"invalid choice: (.*) \(choose from (.*)\)", rest)
        invalid = re.fullmatch(r"invalid (\w+) value: (.*)", rest)
        if rest.startswith((option + " ", option + ":")):
            message = rest
        elif choice:
            allowed = ", ".join(v.strip().strip("'") for v in choice.group(2).split(","))
            message = f"{option} must be one of {allowed}; got {choice.group(1)}"
        elif invalid:
            kind = {"int": "an integer", "float": "a number"}.get(invalid.group(1), f"a valid {invalid.group(1)}")
            message = f"{option} must be {kind}; got {invalid.group(2)}"
        elif rest == "expected one argument":
            message = f"{option} needs a value"
        else:
            message = f"{option}: {rest}"
    return message if message.endswith(".") else message + "."


def value(option: str, rule: Rule | str):
    """An argparse ``type=`` reading ``option``'s string with ``rule`` (or ``FIELDS[rule]``)."""
    check = FIELDS[rule] if isinstance(rule, str) else rule

    def convert(text: str):
        try:
            return check.parse(text, option)
        except InputError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    convert.__name__ = option
    return convert
