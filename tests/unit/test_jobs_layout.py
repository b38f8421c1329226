"""How the service is put together: stages are composed, not inherited, share nothing private,
and stay small enough to read."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import bot.jobs

JOBS = Path(bot.jobs.__file__).parent
MAX_FUNCTION_LINES = 60


def modules() -> list[Path]:
    return sorted(JOBS.glob("*.py"))


def test_no_stage_inherits_from_another() -> None:
    for info in pkgutil.iter_modules([str(JOBS)]):
        module = importlib.import_module(f"bot.jobs.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__:
                continue
            inherited = [b for b in cls.__mro__[1:] if b.__module__.startswith("bot.jobs")]
            assert inherited == [], f"{cls.__qualname__} inherits {inherited}"


def test_no_module_imports_another_modules_private_names() -> None:
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bot"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert private == [], f"{path.name} imports {private} from {node.module}"


def test_no_stage_reaches_into_another_objects_private_attributes() -> None:
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
                if node.attr.startswith("__"):
                    continue
                owner = node.value
                assert isinstance(owner, ast.Name) and owner.id in ("self", "cls"), (
                    f"{path.name}:{node.lineno} reads .{node.attr} of another object"
                )


def test_no_function_is_longer_than_a_screen() -> None:
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                assert lines <= MAX_FUNCTION_LINES, f"{path.name}: {node.name} has {lines} lines"
