"""Griffe extension: reStructuredText roles and literal markers in docstrings, as Markdown.

jaxrnn's docstrings use Sphinx roles (``:func:`jaxrnn.scan```, ``:class:`~jaxrnn.LSTM```) and
``::`` before literal blocks. mkdocstrings renders docstrings as Markdown, so this extension
rewrites them when the package is loaded:

- a role becomes an optional cross-reference: a link where the target is rendered somewhere in
  the site, plain code where it is not (a private module, a third-party name);
- a trailing ``::`` (literal block follows) becomes ``:``.

Enabled in ``mkdocs.yml`` under the python handler's ``extensions``.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|attr|data|obj|exc|const):`(~?)([^`<>]+)`")
LITERAL = re.compile(r"::[ \t]*$", re.MULTILINE)


def _resolve(obj: griffe.Object, target: str) -> str:
    """The full path of ``target`` as written in ``obj``'s docstring (best effort)."""
    if target.startswith("jaxrnn"):
        return target
    head, _, rest = target.partition(".")
    scope = obj if isinstance(obj, griffe.Module | griffe.Class) else obj.parent
    while scope is not None:
        try:
            full = scope.resolve(head)
        except (griffe.NameResolutionError, ValueError):
            scope = scope.parent
            continue
        return f"{full}.{rest}" if rest else full
    return target


def _rewrite(obj: griffe.Object, text: str) -> str:
    def role(match: re.Match) -> str:
        short, target = match.group(1), match.group(2).strip()
        title = target.rsplit(".", 1)[-1] if short else target
        identifier = _resolve(obj, target)
        return f'<autoref identifier="{identifier}" optional><code>{title}</code></autoref>'

    return LITERAL.sub(":", ROLE.sub(role, text))


def _walk(obj: Any, seen: set[int]):
    if id(obj) in seen or obj.is_alias:
        return
    seen.add(id(obj))
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member, seen)


class SphinxRoles(griffe.Extension):
    """Rewrites every docstring of a loaded package (see the module docstring)."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any):
        for obj in _walk(pkg, set()):
            if obj.docstring is not None:
                obj.docstring.value = _rewrite(obj, obj.docstring.value)
