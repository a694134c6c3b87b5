"""Unit (layer 1): the house's floors. Every module of ``attune/`` (the runtime) and ``attune_lab/`` (benchmarks,
evaluation, training: the top floor) imports only its own room or rooms below it, and module-level imports form no
cycle. Built from the source with ``ast``, so no module is imported; one test then imports the whole runtime with
the lab made unimportable."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

LAYER = "unit"  # STYLE.md layer 1: a pure core, loop-free, no models

REPO = Path(__file__).resolve().parents[1]
ROOT = REPO / "attune"
LAB = REPO / "attune_lab"

# Lowest first. A room may import itself and any room with a smaller rank.
RANKS: dict[str, int] = {
    "core": 0,
    "config": 1,
    "models": 2,
    "backends": 3,
    "agent": 4,
    "pipeline": 5,
    "transports": 6,
    "commands": 7,
    "__main__": 8,
    "lab": 9,  # attune_lab: nothing in attune/ may import it
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _room(module: str) -> str:
    if module == "attune_lab" or module.startswith("attune_lab."):
        return "lab"
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.Module) -> tuple[set[str], set[str]]:
    """(every attune import anywhere in the module, the ones run when the module loads)."""
    every: set[str] = set()
    eager: set[str] = set()

    def names(node: ast.AST) -> list[str]:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            base = node.module
            return [base] + [f"{base}.{a.name}" for a in node.names]
        if isinstance(node, ast.Import):
            return [a.name for a in node.names]
        return []

    for node in ast.walk(tree):
        every.update(n for n in names(node) if n.startswith("attune"))

    def walk_top(body: list[ast.stmt]) -> None:
        for stmt in body:
            if isinstance(stmt, ast.If) and _is_type_checking(stmt):
                continue
            if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                eager.update(n for n in names(stmt) if n.startswith("attune"))
            elif isinstance(stmt, (ast.If, ast.Try)):
                walk_top(stmt.body + stmt.orelse + [s for h in getattr(stmt, "handlers", []) for s in h.body])

    walk_top(tree.body)
    return every, eager


def _graph() -> tuple[set[str], dict[str, set[str]], dict[str, set[str]]]:
    modules: set[str] = set()
    every: dict[str, set[str]] = {}
    eager: dict[str, set[str]] = {}
    for path in sorted([*ROOT.rglob("*.py"), *LAB.rglob("*.py")]):
        name = _module_name(path)
        modules.add(name)
        every[name], eager[name] = _imports(ast.parse(path.read_text(encoding="utf-8")))
    # "from attune.core import audio" names a module; "from attune.core.audio import rms" names a symbol.
    def resolve(targets: set[str]) -> set[str]:
        return {t for t in targets if t in modules}

    return modules, {m: resolve(t) for m, t in every.items()}, {m: resolve(t) for m, t in eager.items()}


def test_every_room_has_a_rank() -> None:
    modules, _, _ = _graph()
    rooms = {_room(m) for m in modules if m not in ("attune", "attune_lab")}
    assert rooms <= set(RANKS), f"rooms without a floor in RANKS: {sorted(rooms - set(RANKS))}"


def test_no_import_reaches_up_a_floor() -> None:
    _, every, _ = _graph()
    upward = sorted(f"{a} -> {b}" for a, targets in every.items() for b in targets
                    if "attune" not in (a, b) and a != "attune_lab" and RANKS[_room(b)] > RANKS[_room(a)])
    assert not upward, "imports from a lower room into a higher one:\n" + "\n".join(upward)


def test_module_level_imports_have_no_cycle() -> None:
    _, _, eager = _graph()
    graph: dict[str, set[str]] = defaultdict(set, eager)
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            pytest.fail("import cycle: " + " -> ".join(cycle))


def test_the_graph_test_sees_an_upward_import(tmp_path: Path) -> None:
    """The checker itself: a core module importing the pipeline is caught."""
    every, _ = _imports(ast.parse("from attune.pipeline.session import Session\n"))
    assert "attune.pipeline.session" in every
    assert RANKS[_room("attune.pipeline.session")] > RANKS[_room("attune.core.audio")]


def test_the_runtime_imports_without_the_lab() -> None:
    """Every module of ``attune/`` imports with ``attune_lab`` unimportable (as where only the runtime is installed):
    a lazy import of the lab inside a function would pass the graph but fail here only if it ran at import time,
    so the graph test above also forbids any ``attune -> attune_lab`` import, lazy or not."""
    import subprocess
    import sys

    code = ("import sys, pkgutil, importlib; sys.modules['attune_lab'] = None; import attune; "
            "names = [m.name for m in pkgutil.walk_packages(attune.__path__, 'attune.')]; "
            "[importlib.import_module(n) for n in names if not n.endswith(('mlx_backend', 'e2v_mlx'))]; "
            "print(len(names))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.split()[-1]) > 80  # every room was walked (98 modules when this was written)


def test_the_graph_test_sees_the_runtime_importing_the_lab() -> None:
    every, _ = _imports(ast.parse("def f():\n    from attune_lab.latency import voice_to_voice\n"))
    assert "attune_lab.latency" in every
    assert RANKS[_room("attune_lab.latency")] > RANKS[_room("attune.commands.serve")]
