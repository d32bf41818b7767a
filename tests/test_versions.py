"""Every CLI answers --version with its name and the installed distribution's version."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from agent_client.cli import main as agent_client
from agent_client.protocol.version import distribution_version
from field_lab.cli import main as field_lab
from meter_sim.cli import main as meter_sim
from server_stub.cli import main as server_stub


@pytest.mark.parametrize(
    ("name", "main"),
    [
        ("meter-sim", meter_sim),
        ("agent-client", agent_client),
        ("server-stub", server_stub),
        ("field-lab", field_lab),
    ],
)
def test_version(
    name: str, main: Callable[[Sequence[str]], int], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"{name} {distribution_version()}"
