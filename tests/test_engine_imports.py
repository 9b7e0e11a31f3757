"""The engine knows nothing of Textual, and no two modules of the product import each other.

The first keeps the engine a process of its own that any client (a console, headless, the
control commands) can drive; the second keeps each module readable on its own. Both are
checked on the real code: the engine's modules imported in a fresh interpreter, and every
import statement of ``tui`` and ``backends`` read from the source.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_engine_imports_no_textual() -> None:
    engine = sorted(p.stem for p in (ROOT / "tui" / "engine").glob("*.py") if p.stem != "__init__")
    assert {"supervisor", "server", "host", "local"} <= set(engine)
    script = "; ".join(f"import tui.engine.{name}" for name in engine) + (
        "; import sys; print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('textual', 'rich')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"the engine loaded {done.stdout.strip()}"


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Every module of ours this file imports when it runs, wherever the statement is (a
    cycle hidden in a function is still a cycle), except under ``if TYPE_CHECKING:``: those
    only name types for the checker and never run. ``from package import module`` depends on
    that module, not on the whole package."""
    tree = ast.parse(path.read_text())
    skipped = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = {f"{node.module}.{a.name}" for a in node.names} & modules
            names = subs if len(subs) == len(node.names) else {node.module, *subs}
        elif isinstance(node, ast.Import):
            names = {a.name for a in node.names}
        else:
            continue
        found |= names & modules
    return found


def test_no_import_cycles() -> None:
    modules = {}
    for package in ("tui", "backends"):
        for path in (ROOT / package).rglob("*.py"):
            if "demo" in path.parts or "migrations" in path.parts:
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    graph = {name: _imports(path, set(modules)) - {name} for name, path in modules.items()}
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*trail[trail.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "\n".join(cycles)
