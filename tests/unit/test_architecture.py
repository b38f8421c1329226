"""The import rule, held by a test: listeners → jobs → (motion, store, slack, workspaces); the
poller and the routes beside jobs; `app` and `__main__` wire everything; the local stand-in and
the sandbox are never imported by the product; no module imports another's private names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

BOT = Path(__file__).resolve().parents[2] / "bot"

# A module's layer is the first rule whose prefix matches its dotted name.
LAYERS: dict[str, tuple[str, ...]] = {
    # layer: the other layers it may import. The leaves first: they know nothing of the app.
    "bot.motion": (),  # the only place that knows Motion's wire format
    "bot.store": (),  # the only place with SQL
    "bot.poll_plan": (),  # the arithmetic of the fewest looks
    "bot.schedule": ("bot.poll_plan",),
    "bot.links": (),
    "bot.logs": (),
    "bot.refresher": (),  # a snapshot refreshed in the background
    "bot.config": (),
    "bot.http_intake": (),
    "bot.command_line": ("bot.motion",),  # `/motion` text → a Motion request
    "bot.slack": ("bot.motion",),  # the Slack side; credits are Motion's sources
    "bot.file_links": ("bot.links", "bot.slack"),
    "bot.health": ("bot.store", "bot.refresher"),
    "bot.metrics": (
        "bot.store",
        "bot.refresher",
    ),  # the parts it counts are handed its callables by `app`
    "bot.poller": ("bot.store",),  # it advances jobs through a callable `app` hands it
    # Installations, secrets at rest (Fernet), and later per-workspace settings and keys.
    "bot.workspaces": ("bot.store", "bot.config", "bot.slack"),
    # Only jobs knows Motion, the store and Slack together.
    "bot.jobs": (
        "bot.motion",
        "bot.store",
        "bot.slack",
        "bot.schedule",
        "bot.command_line",
        "bot.links",
        "bot.file_links",
        "bot.config",
        "bot.workspaces",
        "bot.logs",  # what a log line is about (the job, its run, the workspace)
        "bot.refresher",  # forgotten workspaces, kept fresh in memory
    ),
    "bot.video_links": ("bot.jobs", "bot.links", "bot.motion"),
    "bot.listeners": ("bot.jobs", "bot.slack", "bot.command_line", "bot.workspaces"),
    "bot.check": ("bot.config", "bot.motion", "bot.slack", "bot.store", "bot.workspaces"),
    "bot.sandbox": ("bot.motion",),  # the emulator reuses Motion's published limits
}
WIRING = ("bot.app", "bot.__main__", "bot.local")  # may import anything
OUTER = ("bot.local", "bot.sandbox")  # never imported by the product


def modules() -> dict[str, Path]:
    found = {}
    for path in BOT.rglob("*.py"):
        parts = path.relative_to(BOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) for every `import` and `from … import` in the file, at any depth."""
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def layer_of(name: str) -> str | None:
    for layer in (*WIRING, *LAYERS):
        if name == layer or name.startswith(layer + "."):
            return layer
    return None


def within(name: str, layer: str) -> bool:
    return name == layer or name.startswith(layer + ".")


MODULES = modules()


def test_every_module_of_bot_has_a_layer() -> None:
    assert [name for name in MODULES if name != "bot" and layer_of(name) is None] == []


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n != "bot"))
def test_imports_flow_one_way(name: str) -> None:
    layer = layer_of(name)
    assert layer is not None
    if layer in WIRING:
        return
    allowed = (layer, *LAYERS[layer])
    wrong = [
        target
        for target, _ in imports(MODULES[name])
        if within(target, "bot") and target != "bot" and not any(within(target, a) for a in allowed)
    ]
    assert wrong == [], f"{name} ({layer}) may import only {allowed}"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n != "bot"))
def test_the_product_never_imports_the_local_world(name: str) -> None:
    layer = layer_of(name)
    if layer in ("bot.app", "bot.__main__") or layer in OUTER:
        return
    wrong = [t for t, _ in imports(MODULES[name]) if any(within(t, o) for o in OUTER)]
    assert wrong == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_imports_another_modules_private_names(name: str) -> None:
    wrong = [
        f"{target}.{imported}"
        for target, names in imports(MODULES[name])
        for imported in names
        if within(target, "bot") and imported.startswith("_") and not imported.startswith("__")
    ]
    assert wrong == []
