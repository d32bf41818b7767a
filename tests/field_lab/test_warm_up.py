"""Connections opened before the field cross their handsets' links; the first poll is warm."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agent_client.adapters import CompactAdapter
from field_lab.link import Outage
from field_lab.testing.platform import PlatformSpec, running_platform
from field_lab.world.fleet import Fleet
from field_lab.world.handset import KEEP_WARM_S


async def test_handsets_that_keep_a_connection_open_it_over_their_link_before_the_field(
    tmp_path: Path,
) -> None:
    async with running_platform(tmp_path, PlatformSpec(agents=3, devices=6)) as platform:
        fleet = Fleet(tmp_path, CompactAdapter())
        try:
            await fleet.provision(
                platform.url, platform.fixture, ["gprs-typ"] * 3, [0, 1, 2], lambda h, k: None
            )
            await fleet.drain()
            await fleet.to_field(platform.url, {}, warm=2)  # the third has no socket to keep
            fleet.handsets[1].covered = False  # no signal: it does not try
            assert await fleet.warm_up() == 1
            warm, offline, cold = fleet.handsets
            assert warm.transport is not None
            assert warm.port is not None
            assert warm.transport.keep_alive_s == KEEP_WARM_S
            # the handshake crossed the link: a SYN up, the radio's wake-up and a round trip
            assert warm.port.opened == 1
            assert warm.port.link.up.stats.packets == 1
            [(_, seconds)] = warm.transport.handshakes
            assert seconds >= warm.profile.rtt_s
            assert offline.port is not None
            assert offline.port.opened == 0
            assert cold.port is not None
            assert cold.port.opened == 0
            assert cold.transport is not None
            assert cold.transport.handshakes == []
            # a second warm-up opens nothing: the connection is there
            assert await fleet.warm_up() == 0

            for handset in (warm, cold):
                assert await handset.sync_once() is not None
            assert [e.cold for e in warm.exchanges] == [False]  # it used the kept connection
            assert warm.port.opened == 1
            assert [e.cold for e in cold.exchanges] == [True]  # it opened its own
            assert cold.port.opened == 1
            assert cold.exchanges[0].floor > warm.exchanges[0].floor  # the handshake counted
        finally:
            await fleet.close()


async def test_a_handshake_stuck_in_an_outage_is_left_for_the_first_poll(tmp_path: Path) -> None:
    async with running_platform(tmp_path, PlatformSpec(agents=2, devices=4)) as platform:
        fleet = Fleet(tmp_path, CompactAdapter())
        try:
            await fleet.provision(
                platform.url, platform.fixture, ["gprs-typ"] * 2, [0, 1], lambda h, k: None
            )
            await fleet.drain()
            await fleet.to_field(platform.url, {1: [Outage(0.0, 60.0)]}, warm=2)
            loop = asyncio.get_running_loop()
            began = loop.time()
            assert await fleet.warm_up(within_s=3.0) == 1  # the one in coverage
            assert loop.time() - began < 3.5  # bounded: the stuck one was not waited for
            stuck = fleet.handsets[1]
            assert stuck.port is not None
            assert stuck.port.opened == 1  # its SYN went up the link, and never came back
            assert stuck.port.link.connections == ()  # given up: nothing left on its link
            assert stuck.transport is not None
            assert stuck.transport.handshakes == []
        finally:
            await fleet.close()
