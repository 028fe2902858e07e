"""The package stays in rooms a reader can hold: modules of at most 400 lines, classes of
about 250, and each room entered only through its door.

A room is a package under ``hstsync/`` (``service/sync`` and ``service/daemon`` are
rooms of their own); its door is its ``__init__`` (``__all__``, the face other rooms
import). The import-linter contracts in ``pyproject.toml`` say which room may import
which; this says how. docs/architecture.md describes the rooms.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "hstsync"
#: the most lines a module may have
MODULE_LINES = 400
#: the most lines a class may have, from its ``class`` line to its last (about 250)
CLASS_LINES = 250


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def dotted(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(
        ".__init__"
    )


def room(module: str) -> str:
    """``hstsync.transfer.fetch`` -> ``hstsync.transfer``; ``service`` has two rooms."""
    parts = module.split(".")
    if len(parts) >= 3 and parts[1] == "service":
        return ".".join(parts[:3])
    return ".".join(parts[:2])


def test_no_module_is_over_400_lines():
    long = {
        str(path.relative_to(PACKAGE.parent)): n
        for path in modules()
        if (n := path.read_text().count("\n")) > MODULE_LINES
    }
    assert long == {}, f"split these by responsibility: {long}"


def test_no_class_is_over_about_250_lines():
    long = {}
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                assert node.end_lineno is not None
                lines = node.end_lineno - node.lineno + 1
                if lines > CLASS_LINES:
                    long[f"{path.relative_to(PACKAGE.parent)}:{node.name}"] = lines
    assert long == {}, f"give each responsibility its own class: {long}"


def test_other_rooms_are_entered_only_through_their_door():
    """``from hstsync.transfer import Downloader``, never ``from
    hstsync.transfer.downloader import Downloader`` outside ``transfer/``."""
    through_the_wall = []
    for path in modules():
        me = dotted(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or not node.module:
                continue
            target = node.module
            if not target.startswith("hstsync.") or room(target) == room(me):
                continue
            if target == room(target):  # the door itself, or a top-level module
                continue
            through_the_wall.append(f"{me} imports {target}")
    assert through_the_wall == []
