"""The platform reads every v2 sync key when it starts, so no handset's first exchange after a
restart waits on the store thread for its key."""

from __future__ import annotations

from pathlib import Path

from pytest_aiohttp import AiohttpClient

from agent_client.protocol import envelope
from agent_client.protocol.auth import Claim, HandsetKey
from server_stub.app import SYNC_KEYS, create_app
from server_stub.store import Store

from .fixtures import seed_platform


async def test_keys_registered_before_a_start_are_known_at_start(
    tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    path = tmp_path / "s.db"
    seeded = seed_platform(path)
    store = Store.open(path)
    keys = {}
    for _ in range(3):
        handset = store.provision("ama", seeded.agents["ama"][1], HandsetKey.generate().public, 1)
        keys[handset] = envelope.sync_key(bytes([handset]) * 32)
        store.set_sync_key(Claim(handset, 2, b""), keys[handset])
    store.close()
    app = create_app(path)
    await aiohttp_client(app)  # started
    assert app[SYNC_KEYS] == keys
