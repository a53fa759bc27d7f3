"""The engine's modules import one another one way only: no circle, function-local imports and
imports under TYPE_CHECKING included (a local import hides a circle from Python, not from a
reader). Each subpackage imports only the layers below it (README, Design)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROOTS = {"session_stream": REPO / "include" / "session_stream", "benchmarks": REPO / "benchmarks"}

# What each part of the package may import, besides the shared modules at the top
# (tables, errors, utc, redact, sql, private_keys). Read down the list: data flows one way.
LAYERS = {
    "drop": {"drop"},
    "split": {"split", "drop"},
    "metadata": {"metadata"},
    "warehouse": {"warehouse", "metadata", "split", "drop"},
    "runs": {"runs", "warehouse", "metadata", "split", "drop"},
}
SHARED = {"tables", "errors", "utc", "redact", "sql", "private_keys"}


def modules() -> dict[str, Path]:
    found = {}
    for top, root in ROOTS.items():
        for path in root.rglob("*.py"):
            parts = [top, *path.relative_to(root).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = modules()


def imported(name: str, path: Path) -> set[str]:
    """The project modules `name` imports anywhere in its body, and the packages that hold it
    (importing a.b.c runs a/__init__.py and a/b/__init__.py first)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.add(sub if sub in MODULES else base)
    deps = set()
    for target in targets:
        parts = target.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if prefix in MODULES and prefix != name:
                deps.add(prefix)
    return deps


GRAPH = {name: imported(name, path) for name, path in MODULES.items()}


def test_every_package_module_is_seen():
    assert "session_stream.runs.dag_tasks" in GRAPH
    assert (
        "session_stream.warehouse.migrations" in GRAPH["session_stream.warehouse.load_connection"]
    )


def test_no_import_circle():
    circles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for dep in sorted(GRAPH[node]):
            if state.get(dep) == 1:
                circles.append(" -> ".join(path[path.index(dep) :] + [dep]))
            elif dep not in state:
                visit(dep)
        path.pop()
        state[node] = 2

    for node in sorted(GRAPH):
        if node not in state:
            visit(node)
    assert circles == []


def layer(name: str) -> str | None:
    parts = name.split(".")
    if parts[0] != "session_stream" or len(parts) < 2:
        return None
    return parts[1]


@pytest.mark.parametrize("name", sorted(n for n in GRAPH if layer(n) in LAYERS))
def test_each_subpackage_imports_only_the_layers_below_it(name):
    allowed = LAYERS[layer(name)] | SHARED
    wrong = sorted(
        dep for dep in GRAPH[name] if dep != "session_stream" and layer(dep) not in allowed
    )
    assert wrong == [], f"{name} imports {wrong}: the README's Design section says what it may"


def test_the_runtime_package_imports_no_dev_tool_and_no_airflow():
    for name, path in MODULES.items():
        if not name.startswith("session_stream"):
            continue
        assert not {d for d in GRAPH[name] if d.startswith("benchmarks")}, name
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                )
                assert not any(n.split(".")[0] == "airflow" for n in names), name
