"""The house plan, checked from the code's own imports: every import runs down a floor or along one, no two
modules import each other (directly or round a circle), nothing imports the command-line apps, and no
module grows past 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("musc_online", "daemon")

# Floors from the bottom up; a module belongs to the first floor one of whose prefixes it starts with.
FLOORS: list[tuple[str, ...]] = [
    (
        "musc_online.settings",
        "musc_online.atomic",
        "musc_online.device",
        "musc_online.timing",
        "musc_online.backbones",
        "musc_online.roi",
    ),
    ("musc_online.lnamd", "musc_online.msm", "musc_online.rscin", "musc_online.batch", "musc_online.tiling"),
    ("musc_online.online",),
    (
        "musc_online.datasets",
        "musc_online.metrics",
        "musc_online.regions",
        "musc_online.heatmaps",
        "musc_online.evaluation",
        "musc_online.synthetic",
        "musc_online.augment",
        "musc_online.stream_images",
        "musc_online.streams",
        "musc_online.prequential",
        "musc_online.replay",
    ),
    (
        "musc_online.protocol",
        "musc_online.messages",
        "musc_online.transport",
        "musc_online.client",
        "musc_online.cameras",
    ),
    ("musc_online.cli",),
    (
        "daemon.settings",
        "daemon.config_layers",
        "daemon.config",
        "daemon.store",
        "daemon.artifacts",
        "daemon.observability",
        "daemon.outputs",
    ),
    ("daemon.service",),
    ("daemon.review",),
    ("daemon.cli",),
]
APPS = ("daemon.cli.musc_online", "daemon.cli.musc_daemon")
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The project modules ``name`` imports (type-checking imports included: they are arrows too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def floor(name: str) -> int:
    for level, prefixes in enumerate(FLOORS):
        if any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes):
            return level
    if name in PACKAGES:
        return -1  # the packages' own __init__: docstring only
    raise AssertionError(f"{name} stands on no floor of the plan in {__file__}: add it to FLOORS")


def test_every_module_stands_on_a_floor_of_the_plan():
    for name in MODULES:
        floor(name)


def test_every_import_runs_down_or_along_a_floor():
    upward = [
        f"{name} (floor {floor(name)}) imports {target} (floor {floor(target)})"
        for name, targets in GRAPH.items()
        for target in targets
        if floor(target) > floor(name)
    ]
    assert not upward, "imports that run upward:\n" + "\n".join(sorted(upward))


def test_the_library_never_imports_the_service():
    assert not [(n, t) for n, ts in GRAPH.items() for t in ts if n.startswith("musc_online") and t.startswith("daemon")]


def test_nothing_imports_the_command_line_apps():
    assert not [(n, t) for n, ts in GRAPH.items() for t in ts if t in APPS]


def _circles() -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    return circles


def test_no_modules_import_each_other_in_a_circle():
    assert _circles() == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_each_module_stays_short(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name]} has {lines} lines: split it by job"


def test_the_checks_catch_an_upward_import_and_a_circle(monkeypatch):
    monkeypatch.setitem(GRAPH, "musc_online.msm", GRAPH["musc_online.msm"] | {"daemon.store", "musc_online.batch"})
    with pytest.raises(AssertionError, match=r"musc_online.msm .* imports daemon.store"):
        test_every_import_runs_down_or_along_a_floor()
    assert ["musc_online.batch", "musc_online.msm"] in _circles()
