"""The store's modules as the facade over repositories keeps them: no module imports another's
private names, the imports inside bot/store form no circle (function-level imports count: a
circle hidden in a function still ties the two modules together), and no code in bot/store
of the facade, the database or a repository reaches into another object's private attributes (a
repository uses the database's public methods)."""

from __future__ import annotations

import ast
from pathlib import Path

STORE = Path(__file__).resolve().parents[2] / "bot" / "store"
# The facade, the database and the repositories (migrations.py reads sqlite-utils' own list).
FACADE_AND_REPOSITORIES = (
    "__init__",
    "base",
    "events",
    "installations",
    "jobs",
    "outbox",
    "runs",
    "sealed",
    "steps",
    "stopping",
    "usage",
)


def _trees() -> dict[str, ast.Module]:
    return {p.stem: ast.parse(p.read_text(), str(p)) for p in sorted(STORE.glob("*.py"))}


def _store_imports(tree: ast.Module) -> list[ast.ImportFrom]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bot.")
    ]


def test_no_store_module_imports_another_modules_private_names() -> None:
    private = [
        f"{name}: from {node.module} import {alias.name}"
        for name, tree in _trees().items()
        for node in _store_imports(tree)
        for alias in node.names
        if alias.name.startswith("_")
    ]
    assert private == []


def test_the_store_modules_import_each_other_without_a_circle() -> None:
    graph = {
        name: {
            node.module.removeprefix("bot.store.")
            for node in _store_imports(tree)
            if node.module and node.module.startswith("bot.store.")
        }
        for name, tree in _trees().items()
    }
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, " -> ".join((*path, name))
        if name in done:
            return
        for imported in sorted(graph.get(name, set())):
            visit(imported, (*path, name))
        done.add(name)

    for name in graph:
        visit(name, ())
    assert "__init__" in done and "events" in done


def test_the_store_reaches_into_no_other_objects_private_attributes() -> None:
    reached = [
        f"{name}:{node.lineno}: .{node.attr}"
        for name, tree in _trees().items()
        if name in FACADE_AND_REPOSITORIES
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
    ]
    assert reached == []
