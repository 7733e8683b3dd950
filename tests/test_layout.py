"""The package layout: no import cycles between the parts of the system.

A part is a subpackage of `bot` (`bot.slack`, `bot.store`, ...), a top-level module of `bot`
(`bot.config`, `bot.app`, ...), `handlers` or `tools`. Every import counts, including those
inside functions and under `TYPE_CHECKING`: a cycle there is a cycle a reader must untangle.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "handlers", "tools")


def part(module: str) -> str | None:
    """The part of the system a dotted module name belongs to (None: not ours)."""
    pieces = module.split(".")
    if pieces[0] not in PACKAGES:
        return None
    if pieces[0] != "bot" or len(pieces) == 1:
        return pieces[0]
    return ".".join(pieces[:2])


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def part_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = module_name(path)
            src = part(name)
            assert src is not None
            edges = graph.setdefault(src, set())
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                targets: list[str] = []
                if isinstance(node, ast.Import):
                    targets = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                for target in targets:
                    dst = part(target)
                    # `from bot import x` names the part `bot.x`, not `bot` itself.
                    if dst is not None and dst != src and dst != "bot":
                        edges.add(dst)
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle in `graph` as a path of parts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles_between_parts() -> None:
    found = cycle(part_graph())
    assert found is None, "import cycle: " + " -> ".join(found or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None


def test_every_path_the_readme_architecture_names_exists() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    paths = set(re.findall(r"`((?:bot|handlers|tools|tests)/[\w/.]*)`", section))
    assert len(paths) > 20
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"README names paths that do not exist: {missing}"


def test_every_package_of_bot_is_in_the_readme_architecture() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    packages = sorted(p.name for p in (ROOT / "bot").iterdir() if (p / "__init__.py").exists())
    assert [p for p in packages if f"`bot/{p}/`" not in section] == []
