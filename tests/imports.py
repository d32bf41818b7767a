"""What a package's modules import, read from their source (for boundary tests)."""

from __future__ import annotations

import ast
from pathlib import Path


def imported_roots(package: Path) -> dict[str, set[str]]:
    """Module path (relative to `package`) -> the top-level names it imports absolutely."""
    found: dict[str, set[str]] = {}
    for path in package.rglob("*.py"):
        roots: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots.add((node.module or "").split(".")[0])
        found[path.relative_to(package).as_posix()] = roots
    return found
