"""The layers depend one way: formats -> model -> the filesystem and the checkpointers.
Read from the source (every import, at module level or inside a function), so a lazy
import cannot hide a dependency that runs the wrong way."""

import ast
from pathlib import Path

import pytest

CRFS = Path(__file__).resolve().parents[1] / "crfs"
# package -> the crfs packages it must not import
FORBIDDEN = {"formats": ("crfs.model", "crfs.fs", "crfs.checkpoint"),
             "model": ("crfs.fs", "crfs.checkpoint")}


def imported(path):
    """The module names `path` imports."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_lower_layers_import_nothing_above_them(package):
    wrong = sorted(f"{path.relative_to(CRFS)}: {name}"
                   for path in (CRFS / package).glob("*.py") for name in imported(path)
                   if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[package]))
    assert wrong == []
