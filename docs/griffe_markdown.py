"""Griffe extension for the docs build: read gflow's docstrings as the Markdown they are meant to be.

The docstrings are written for the terminal as well as for the site, so three habits need a
small translation before mkdocstrings renders them:

- a list that follows its lead-in line directly (``**Arguments:**`` then ``- x: ...``) gets the
  blank line Python-Markdown needs to see a list;
- Sphinx roles (``:func:`gflow.conserved```) become links to the API reference when they name a
  public ``gflow`` name, and code spans otherwise;
- citations of the theory (``THEORY.md §3``, ``docs/theory.md §3``) become links to that section
  of the theory page (anchors ``theory-1`` ... ``theory-6``).
"""

from __future__ import annotations

import re
import types

import griffe

_ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|obj):`~?([^`]+)`")
_THEORY = re.compile(r"(?:docs/theory\.md|THEORY\.md)(?:\s+(?:§|section\s+)(\d+)((?:[-–]\d+)?))?")
_THEORY_PAGE = re.compile(r"the theory page(?: \(docs/theory\.md\)|,? docs/theory\.md)")  # -> one link
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+\.)\s")


def _public_names() -> set[str]:
    """``gflow.__all__`` (or, without one, the names ``gflow/__init__.py`` binds not starting with
    ``_``), less the subpackages and modules that importing re-exports binds."""
    import gflow

    names = getattr(gflow, "__all__", None)
    names = [n for n in vars(gflow) if not n.startswith("_")] if names is None else names
    return {n for n in names if not isinstance(getattr(gflow, n), types.ModuleType)}


def _role(match: re.Match, public: set[str]) -> str:
    target = match.group(1).strip()
    short = target.rsplit(".", 1)[-1] if target.startswith("gflow.") else target
    if short in public:
        return f"[`gflow.{short}`][gflow.{short}]"
    return f"`{target}`"


def _theory(match: re.Match) -> str:
    section, rest = match.group(1), match.group(2) or ""
    if section is None:
        return "[the theory page][theory]"
    return f"[the theory page, §{section}{rest}][theory-{section}]"


def _blank_line_before_lists(text: str) -> str:
    out: list[str] = []
    for line in text.splitlines():
        if _LIST_ITEM.match(line) and out and out[-1].strip() and not _LIST_ITEM.match(out[-1]):
            prev_indent = len(out[-1]) - len(out[-1].lstrip())
            indent = len(line) - len(line.lstrip())
            if indent <= prev_indent:  # not the continuation of a list item above
                out.append("")
        out.append(line)
    return "\n".join(out)


def translate(text: str, public: set[str]) -> str:
    """The docstring ``text`` in the Markdown the site renders."""
    text = _ROLE.sub(lambda m: _role(m, public), text)
    text = _THEORY_PAGE.sub("docs/theory.md", text)
    text = _THEORY.sub(_theory, text)
    return _blank_line_before_lists(text)


class GflowMarkdown(griffe.Extension):
    def __init__(self) -> None:
        self._public = _public_names()

    def on_object(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None and obj.path.startswith("gflow"):
            obj.docstring.value = translate(obj.docstring.value, self._public)
