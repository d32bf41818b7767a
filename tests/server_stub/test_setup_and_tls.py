"""Operator-side setup (device CSV, server-stub CLI) and the self-signed TLS listener."""

from __future__ import annotations

import json
import random
import ssl
from pathlib import Path

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from agent_client.agent import Agent
from agent_client.protocol.keycodes import KeycodeFormat
from server_stub.app import create_app
from server_stub.cli import main
from server_stub.devices import make_devices, parse_devices_csv, write_devices_csv
from server_stub.errors import SetupError
from server_stub.tls import self_signed


@given(st.sampled_from(KeycodeFormat), st.integers(1, 10), st.integers(0, 2**16))
def test_device_csv_round_trip(fmt: KeycodeFormat, count: int, seed: int) -> None:
    records = make_devices(1000, count, fmt, random.Random(seed))
    assert parse_devices_csv(write_devices_csv(records)) == records


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("serial,key\n1,00\n", "header"),
        ("serial,format,key,starting_code,time_divider\n1,nexus_tiny,00,0,1\n", "line 2"),
        ("serial,format,key,starting_code,time_divider\n1,nexus_full,zz,0,1\n", "line 2"),
        ("serial,format,key,starting_code,time_divider\n1,nexus_full,00,0,1\n", "16 bytes"),
        (f"serial,format,key,starting_code,time_divider\n0,nexus_full,{'00' * 16},0,1\n", "serial"),
        (
            "serial,format,key,starting_code,time_divider\n"
            f"5,openpaygo,{'00' * 16},1,1\n5,openpaygo,{'00' * 16},1,1\n",
            "repeated",
        ),
    ],
)
def test_bad_device_csv_names_the_line(text: str, match: str) -> None:
    with pytest.raises(SetupError, match=match):
        parse_devices_csv(text)


def test_cli_sets_up_a_platform(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "s.db")
    assert main(["--db", db, "add-plan", "basic", "50"]) == 0
    assert (
        main(
            [
                "--db",
                db,
                "add-agent",
                "ama",
                "--code",
                "Code-ama-0001",
                "--devices",
                "2",
                "--seed",
                "1",
            ]
        )
        == 0
    )
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert out[0] == {"plan": 1}
    assert out[1]["devices"] == [10_000_001, 10_000_002]
    assert main(["--db", db, "export-devices"]) == 0
    exported = capsys.readouterr().out
    assert len(parse_devices_csv(exported)) == 2
    moved = tmp_path / "more.csv"
    moved.write_text(exported.replace("1000000", "2000000"))
    assert main(["--db", db, "import-devices", str(moved), "--agent", "ama"]) == 0
    assert json.loads(capsys.readouterr().out) == {"imported": 2}
    assert main(["--db", db, "import-devices", str(moved)]) == 2  # already registered
    assert main(["--db", db, "add-agent", "ama"]) == 2
    assert "already exists" in capsys.readouterr().err


async def test_tls_with_a_certificate_made_at_start(tmp_path: Path) -> None:
    main(["--db", str(tmp_path / "s.db"), "add-plan", "basic", "50"])
    main(
        [
            "--db",
            str(tmp_path / "s.db"),
            "add-agent",
            "ama",
            "--code",
            "Code-ama-0001",
            "--devices",
            "1",
        ]
    )
    context, pem = self_signed("127.0.0.1", tmp_path / "cert.pem")
    runner = web.AppRunner(create_app(tmp_path / "s.db"), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    url = f"https://127.0.0.1:{runner.addresses[0][1]}"
    trust = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
    agent = await Agent.provision(tmp_path / "h.db", url, "ama", "Code-ama-0001", ssl_context=trust)
    report = await agent.sync()
    assert (report.exchanges, report.failures) == (1, 0)
    assert (await agent.status()).stock == [10_000_001]
    await agent.close()
    # a handset that does not trust this certificate gets nothing through
    untrusting = await Agent.open(tmp_path / "h.db")
    assert (await untrusting.sync()).failures == 1
    await untrusting.close()
    await runner.cleanup()
    assert pem.startswith(b"-----BEGIN CERTIFICATE-----")
