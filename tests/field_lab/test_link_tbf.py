"""Bandwidth checked against the kernel's shaper: the same transfer through `tc tbf` on a
network namespace's loopback and through our proxy at the same rate.

Needs root with network namespaces and tc; where either is refused, the test is skipped with
the reason the system gave."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from field_lab.link import BUILTIN_PROFILES
from field_lab.link.proxy import LinkProxy

RATE_BPS = 800_000
NBYTES = 160_000
PROBE = Path(__file__).with_name("tbf_probe.py")


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


@pytest.fixture
def shaped_namespace() -> Iterator[str]:
    if shutil.which("ip") is None or shutil.which("tc") is None:
        pytest.skip("iproute2 (ip, tc) is not installed, so there is no kernel shaper to check")
    name = f"fieldlab-tbf-{os.getpid()}"
    made = _run("ip", "netns", "add", name)
    if made.returncode:
        pytest.skip(f"network namespaces are not permitted here: {made.stderr.strip()}")
    try:
        steps = [
            ("ip", "-n", name, "link", "set", "lo", "mtu", "1500"),
            ("ip", "-n", name, "link", "set", "lo", "up"),
            ("tc", "-n", name, "qdisc", "add", "dev", "lo", "root", "tbf",
             "rate", f"{RATE_BPS // 1000}kbit", "burst", "3100", "latency", "10s"),
        ]  # fmt: skip
        for step in steps:
            result = _run(*step)
            if result.returncode:
                pytest.skip(f"`{' '.join(step)}` was refused: {result.stderr.strip()}")
        yield name
    finally:
        _run("ip", "netns", "del", name)


async def _through_our_link() -> float:
    profile = BUILTIN_PROFILES["perfect"].replace(
        name="tbf-twin", down_bps=RATE_BPS, up_bps=RATE_BPS, queue_bytes=64_000
    )
    done = asyncio.get_running_loop().create_future()
    received = 0

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal received
        while received < NBYTES and (chunk := await reader.read(65536)):
            received += len(chunk)
        done.set_result(time.monotonic())
        writer.close()

    server = await asyncio.start_server(sink, "127.0.0.1", 0)
    proxy = LinkProxy(profile, ("127.0.0.1", server.sockets[0].getsockname()[1]))
    host, port = await proxy.start("127.0.0.1", 0)
    _, writer = await asyncio.open_connection(host, port)
    await asyncio.sleep(0.2)  # handshake done, as in the probe
    start = time.monotonic()
    writer.write(b"x" * NBYTES)
    end = await asyncio.wait_for(done, timeout=60)
    writer.close()
    await proxy.aclose()
    server.close()
    await server.wait_closed()
    return float(end - start)


@pytest.mark.slow
def test_bandwidth_matches_the_kernel_tbf_shaper(shaped_namespace: str) -> None:
    probe = _run("ip", "netns", "exec", shaped_namespace, sys.executable, str(PROBE), str(NBYTES))
    assert probe.returncode == 0, probe.stderr
    kernel = float(probe.stdout)
    ours = asyncio.run(_through_our_link())
    # both are wire-rate limited; headers differ slightly (lo adds 14 B and carries the ACKs)
    assert ours / kernel == pytest.approx(1.0, abs=0.10), (ours, kernel)
