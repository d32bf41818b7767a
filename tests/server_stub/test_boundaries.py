"""Package boundaries from DESIGN.md: agent_client imports nothing of ours; server_stub imports
only agent_client.protocol (the contract) and the keycode encoders that meter_sim publishes
(issuer and validator share the protocol's formulas, never copies of them); the contract
itself stays free of I/O libraries."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = ("meter_sim", "agent_client", "server_stub", "field_lab", "tests")


def imported(package: str) -> set[str]:
    names: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
    return {name for name in names if name.split(".")[0] in OURS}


@pytest.mark.parametrize(
    ("package", "allowed"),
    [
        ("agent_client", ("agent_client",)),
        (
            "server_stub",
            (
                "server_stub",
                "agent_client.protocol",
                "meter_sim.nexus.encode",
                "meter_sim.openpaygo.encode",
            ),
        ),
    ],
)
def test_imports_stay_inside_their_boundary(package: str, allowed: tuple[str, ...]) -> None:
    stray = {
        n for n in imported(package) if not any(n == a or n.startswith(a + ".") for a in allowed)
    }
    assert not stray


def test_the_contract_imports_no_io_library() -> None:
    code = (
        "import sys, agent_client.protocol.sync, agent_client.protocol.auth; "
        "print(sorted(m for m in ('aiohttp', 'aiosqlite', 'sqlite3') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
