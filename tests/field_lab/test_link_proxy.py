"""The TCP proxy and the CLI on loopback (real sockets, the link's own timeline asserted)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from field_lab.cli import main
from field_lab.link import BUILTIN_PROFILES, Outage
from field_lab.link.proxy import LinkProxy
from tests.field_lab.echo import echo_upper

FAST = BUILTIN_PROFILES["perfect"].replace(
    name="fast", rtt_s=0.02, down_bps=4_000_000, up_bps=2_000_000
)


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[str, int]]:
    server = await asyncio.start_server(echo_upper, "127.0.0.1", 0)
    yield "127.0.0.1", server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def _proxy(upstream: tuple[str, int], profile: object = FAST, **kw: object) -> LinkProxy:
    proxy = LinkProxy(profile, upstream, **kw)  # type: ignore[arg-type]
    await proxy.start("127.0.0.1", 0)
    return proxy


async def _open(proxy: LinkProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    assert proxy._server is not None
    port = proxy._server.sockets[0].getsockname()[1]
    return await asyncio.open_connection("127.0.0.1", port)


async def test_bytes_and_eof_pass_both_ways(upstream: tuple[str, int]) -> None:
    proxy = await _proxy(upstream)
    reader, writer = await _open(proxy)
    payload = bytes(range(97, 123)) * 4000  # 104 KB, several queue-fulls
    writer.write(payload)
    writer.write_eof()
    received = await asyncio.wait_for(reader.read(), timeout=30)
    assert received == payload.upper()
    writer.close()
    await proxy.aclose()
    stats = proxy.stats()
    (conn,) = stats["connections"]
    assert conn["up"]["bytes"] == conn["down"]["bytes"] == len(payload)
    assert conn["state"] == "closed"
    assert stats["directions"]["up"]["payload_bytes"] == len(payload)


async def test_connections_share_one_link_and_have_their_own_stats(
    upstream: tuple[str, int],
) -> None:
    proxy = await _proxy(upstream)
    pairs = [await _open(proxy) for _ in range(3)]
    for i, (_reader, writer) in enumerate(pairs):
        writer.write(b"x" * (i + 1))
        writer.write_eof()
    results = [await asyncio.wait_for(r.read(), timeout=30) for r, _ in pairs]
    assert results == [b"X", b"XX", b"XXX"]
    for _, writer in pairs:
        writer.close()
    await proxy.aclose()
    conns = proxy.stats()["connections"]
    assert [c["up"]["bytes"] for c in conns] == [1, 2, 3]
    assert len({c["id"] for c in conns}) == 3


async def test_handshake_timeline_is_the_models(upstream: tuple[str, int]) -> None:
    profile = FAST.replace(wakeup_s=0.05)
    proxy = await _proxy(upstream, profile)
    reader, writer = await _open(proxy)
    writer.write(b"ping")
    writer.write_eof()
    assert await asyncio.wait_for(reader.read(), timeout=30) == b"PING"
    writer.close()
    await proxy.aclose()
    (conn,) = proxy.stats()["connections"]
    handshake = 0.05 + 52 * 8 / 2_000_000 + 52 * 8 / 4_000_000 + 0.02
    assert conn["established_at"] - conn["opened_at"] == pytest.approx(handshake, abs=1e-6)


async def test_long_outage_resets_the_client(upstream: tuple[str, int]) -> None:
    profile = FAST.replace(reset_after_s=0.2)
    proxy = await _proxy(upstream, profile, outages=[Outage(0.0, 60.0)])
    reader, writer = await _open(proxy)
    writer.write(b"lost")
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    await proxy.aclose()
    assert proxy.resets == 1
    assert proxy.stats()["connections"][0]["state"] == "reset"


async def test_refused_upstream_closes_the_client() -> None:
    probe = await asyncio.start_server(echo_upper, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()  # nothing listens on `port` now
    proxy = await _proxy(("127.0.0.1", port))
    reader, writer = await _open(proxy)
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    await proxy.aclose()
    assert proxy.upstream_failures == 1


def test_cli_runs_for_a_duration_and_writes_stats(tmp_path: Path) -> None:
    stats = tmp_path / "stats.json"
    outages = tmp_path / "o.toml"
    outages.write_text("[[outage]]\nstart_s = 1\nduration_s = 2\n")
    code = main(
        ["link", "--profile", "gprs-typ", "--listen", "127.0.0.1:0", "--upstream",
         "127.0.0.1:9", "--duration", "0.2", "--outages", str(outages),
         "--stats-json", str(stats), "--seed", "7"]
    )  # fmt: skip
    assert code == 0
    document = json.loads(stats.read_text())
    assert document["profile"] == "gprs-typ"
    assert document["seed"] == 7
    assert document["connections"] == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--profile", "lte"], "unknown profile 'lte'"),
        (["--profile", "x", "--profiles", "/nonexistent.toml"], "cannot read the profile file"),
        (["--profile", "3g", "--outages", "/nonexistent.toml"], "cannot read the outage file"),
    ],
)
def test_cli_config_errors_exit_2_with_the_reason(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["link", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:9"]
    assert main([*base, *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["9000", "host:", "host:99999", ":80", "h:x"])
def test_cli_rejects_bad_addresses(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["link", "--profile", "3g", "--listen", bad, "--upstream", "127.0.0.1:9"])
    assert info.value.code == 2
    assert "--listen" in capsys.readouterr().err


def test_cli_needs_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
