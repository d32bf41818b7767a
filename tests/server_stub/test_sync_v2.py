"""Sync v2 at the platform: the envelope authenticates, the answer is lean, v1 is still served,
and every refusal writes nothing (docs/sync-protocol.md, Version 2: the envelope)."""

from __future__ import annotations

import json
import time

import msgpack
import pytest

from agent_client.protocol import envelope
from agent_client.protocol.auth import HandsetKey
from agent_client.protocol.frames import decode_downlink
from agent_client.protocol.ops import Kind, Operation

from .fixtures import PRICE_PER_DAY
from .test_bad_input import KEY, Env, Handset, env, fingerprint, frame

__all__ = ["env"]  # the fixture, imported to be used here
pytestmark = pytest.mark.payg_platform(agents=2, devices=4, price_per_day=PRICE_PER_DAY)
SYNC_KEY = envelope.sync_key(KEY.seed)


async def register(h: Handset) -> None:
    status, doc = await h.post(SYNC_KEY, path=envelope.KEY_PATH)
    assert status == 201, doc


async def post_v2(h: Env, body: bytes) -> tuple[int, dict[str, str], bytes]:
    handset = h[0]
    async with handset.client.post(envelope.SYNC_PATH, data=body) as response:
        return response.status, dict(response.headers), await response.read()


def register_op(h: Env) -> bytes:
    op = Operation.make(1, Kind.REGISTER_CUSTOMER, int(time.time()), "Esi Mensah", "+233200000001")
    return frame(h[0].handset, op)


async def test_a_v2_exchange_is_acknowledged_with_a_lean_answer(env: Env) -> None:
    h = env[0]
    await register(h)
    h.ts += 1
    status, headers, body = await post_v2(
        env, envelope.seal(SYNC_KEY, h.handset, h.ts, register_op(env))
    )
    assert status == 200, body
    assert decode_downlink(body).acked == (1,)
    assert not {"Server", "Date", "Content-Type"} & set(headers)


@pytest.mark.parametrize(
    ("forge", "status", "code"),
    [
        ("no_key", 401, "no_sync_key"),
        ("wrong_key", 401, "bad_signature"),
        ("other_frame", 401, "bad_signature"),
        ("no_tag", 401, "missing_auth"),
        ("v1_body", 400, "unsupported_version"),
        ("replayed", 401, "replayed_request"),
        ("stale", 401, "stale_timestamp"),
    ],
)
async def test_v2_refusals_write_nothing(env: Env, forge: str, status: int, code: str) -> None:
    h, _, db = env
    if forge != "no_key":
        await register(h)
    data = register_op(env)
    h.ts += 1
    ts = {"replayed": h.ts - 1, "stale": h.ts - 600_000}.get(forge, h.ts)
    key = envelope.sync_key(b"\x01" * 32) if forge == "wrong_key" else SYNC_KEY
    body = envelope.seal(key, h.handset, ts, data + b"\x00" if forge == "other_frame" else data)
    if forge == "other_frame":
        body = body[:-1]
    if forge == "no_tag":
        body = msgpack.packb([envelope.VERSION, h.handset, ts]) + data
    if forge == "v1_body":
        body = data
    before = fingerprint(db)
    got, _, raw = await post_v2(env, body)
    doc = json.loads(raw)
    assert (got, doc["error"]) == (status, code), doc
    assert fingerprint(db) == before


async def test_v1_is_still_served_beside_v2(env: Env) -> None:
    h = env[0]
    await register(h)
    status, body = await h.post(register_op(env))
    assert status == 200
    assert isinstance(body, bytes)
    assert decode_downlink(body).acked == (1,)


async def test_provisioning_with_a_sync_key_needs_no_registration(env: Env) -> None:
    """`sync_key` in the provisioning request registers it: the first v2 sync is accepted with
    no `/v2/key` request; a retry of that provisioning with another key replaces nothing."""
    h, platform, _ = env
    new = HandsetKey.from_seed(b"n" * 32)
    ama = platform.agents[0]
    doc = {"agent": ama.name, "code": ama.code, "public_key": new.public.hex()}
    sync_key = envelope.sync_key(new.seed)
    for sent in (sync_key, envelope.sync_key(b"x" * 32)):  # the retry's key is not taken
        async with h.client.post("/v1/provision", json={**doc, "sync_key": sent.hex()}) as reply:
            assert reply.status == 201
            handset = (await reply.json())["handset"]
    h.ts += 1
    body = envelope.seal(sync_key, handset, h.ts, frame(handset))
    status, _, raw = await post_v2(env, body)
    assert status == 200, raw
