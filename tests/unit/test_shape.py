"""The house rules that a reader meets first: classes small enough to read at once, few positional
parameters. Invoke tasks are left out of the second: Invoke makes each of a task's parameters a flag."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "fabfile_lib"
MAX_CLASS_LINES = 130  # "about 120"
MAX_POSITIONAL = 5


@functools.cache
def _nodes() -> tuple:
    """Every class and function of the package, nested ones included (statements only: a definition is
    never inside an expression)."""
    return tuple((path.relative_to(PACKAGE.parent), node) for path in sorted(PACKAGE.rglob("*.py"))
                 for node in _statements(ast.parse(path.read_text(), str(path))))


def _statements(node: ast.AST):
    for field in ("body", "orelse", "finalbody", "handlers", "cases"):
        for child in getattr(node, field, None) or ():
            if isinstance(child, ast.stmt | ast.excepthandler | ast.match_case):
                yield child
                yield from _statements(child)


def test_no_class_is_too_long_to_read_at_once():
    long = [f"{path}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for path, node in _nodes()
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES]
    assert not long


def test_no_function_takes_more_than_five_positional_parameters():
    many = []
    for path, node in _nodes():
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or path.parts[1] == "tasks":
            continue
        positional = [a for a in (*node.args.posonlyargs, *node.args.args) if a.arg not in ("self", "cls")]
        if len(positional) > MAX_POSITIONAL:
            many.append(f"{path}:{node.lineno} {node.name} ({len(positional)})")
    assert not many
