"""Bad input at the platform's boundary: every refusal is a 4xx with a machine-readable code,
writes nothing, and nothing at all produces a 500."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_client.protocol.auth import HandsetKey
from agent_client.protocol.frames import (
    MAX_BODY_BYTES,
    VERSION,
    Keycode,
    Reason,
    UplinkFrame,
    decode_downlink,
    encode_uplink,
)
from agent_client.protocol.ops import Kind, Operation
from field_lab.testing.platform import PaygPlatform

from .fixtures import PRICE_PER_DAY

pytestmark = pytest.mark.payg_platform(agents=2, devices=4, price_per_day=PRICE_PER_DAY)
KEY = HandsetKey.from_seed(b"k" * 32)
AMA, AMA_CODE, KOFI, KOFI_CODE = "<ama>", "<ama's code>", "<kofi>", "<kofi's code>"
"""Stand-ins for the seeded agents' names and codes in parameters (filled in by `named`)."""


def fingerprint(path: Path) -> str:
    """Hash of every row of every table but the security trail (which records refused codes
    and tokens on purpose): proof that a refused request wrote nothing."""
    digest = hashlib.sha256()
    with sqlite3.connect(path) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in sorted(set(tables) - {"auth_events"}):
            for row in db.execute(f"SELECT * FROM {table} ORDER BY 1, 2"):
                digest.update(repr(row).encode())
    return digest.hexdigest()


def named(doc: object, platform: PaygPlatform) -> object:
    """`doc` with the agents' stand-ins replaced by their seeded names and codes."""
    ama, kofi = platform.agents
    names = {AMA: ama.name, AMA_CODE: ama.code, KOFI: kofi.name, KOFI_CODE: kofi.code}
    if not isinstance(doc, dict):
        return doc
    return {k: names.get(v, v) if isinstance(v, str) else v for k, v in doc.items()}


class Handset:
    def __init__(self, client: aiohttp.ClientSession, handset: int, key: HandsetKey) -> None:
        self.client, self.handset, self.key = client, handset, key
        self.ts = int(time.time() * 1000)

    def headers(self, body: bytes, path: str = "/v1/sync", ts: int | None = None) -> dict[str, str]:
        self.ts += 1
        return self.key.headers("POST", path, body, self.handset, self.ts if ts is None else ts)

    async def post(
        self, body: bytes, headers: dict[str, str] | None = None, path: str = "/v1/sync"
    ) -> tuple[int, dict[str, object] | bytes]:
        async with self.client.post(
            path, data=body, headers=headers or self.headers(body, path)
        ) as response:
            raw = await response.read()
            if response.content_type == "application/json":
                return response.status, json.loads(raw)
            return response.status, raw


Env = tuple[Handset, PaygPlatform, Path]
"""A provisioned raw handset, its platform, and the platform's database file."""


@pytest.fixture
async def env(payg_platform: PaygPlatform) -> AsyncIterator[Env]:
    ama = payg_platform.agents[0]
    async with aiohttp.ClientSession(base_url=payg_platform.url) as client:
        doc = {"agent": ama.name, "code": ama.code, "public_key": KEY.public.hex()}
        async with client.post("/v1/provision", json=doc) as response:
            assert response.status == 201
            handset = Handset(client, (await response.json())["handset"], KEY)
        yield handset, payg_platform, payg_platform.db


def frame(handset: int, *ops: Operation) -> bytes:
    return encode_uplink(UplinkFrame(handset, 0, ops))


async def refused(h: Handset, db: Path, body: bytes, status: int, code: str, **kw: object) -> None:
    before = fingerprint(db)
    got_status, doc = await h.post(body, **kw)  # type: ignore[arg-type]
    assert (got_status, doc["error"]) == (status, code), doc  # type: ignore[index]
    assert isinstance(doc, dict)
    assert isinstance(doc["server_ms"], int)
    assert fingerprint(db) == before


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"\xc1", "malformed_frame"),
        (b"", "malformed_frame"),
        (msgpack.packb([VERSION, 1, 0, 0, 0, []]) + b"junk", "malformed_frame"),
        (msgpack.packb({"ops": []}), "malformed_frame"),
        (msgpack.packb([VERSION + 1, 1, 0, 0, 0, []]), "unsupported_version"),
        (msgpack.packb([VERSION, 1, 0, 0, 0, [[0, 2, 0, "12", 300]]]), "bad_field"),
        (msgpack.packb([VERSION, 1, 0, 0, 0, [[0, 2, 0, 5, -1]]]), "bad_field"),
        (msgpack.packb([VERSION, 1, "0", 0, 0, []]), "bad_field"),
        (msgpack.packb([VERSION, 1, 0, 0, 0]), "malformed_frame"),  # too few fields
        (msgpack.packb([VERSION, 1, 0, 1, 0, [[1, 2, 0, 5, 1]]]), "bad_field"),  # d_seq 1st
        (msgpack.packb([VERSION, 1, 0, 1, 0, ["row"]]), "malformed_frame"),
    ],
)
async def test_malformed_frames(env: Env, body: bytes, code: str) -> None:
    h, _, db = env
    await refused(h, db, body, 400, code)


async def test_oversized_body(env: Env) -> None:
    h, _, db = env
    await refused(h, db, b"\x00" * (MAX_BODY_BYTES + 1), 413, "too_large")


async def test_over_inflating_body_is_413(env: Env) -> None:
    h, _, db = env
    bomb = msgpack.packb(zlib.compress(b"\x00" * (2 * 1024 * 1024), 9))
    assert len(bomb) < MAX_BODY_BYTES
    await refused(h, db, bomb, 413, "too_large")


async def test_one_invalid_operation_is_refused_alone(env: Env) -> None:
    """A batch holding one operation with a bad field (a 65-character name): that one is
    refused with `bad_field` (reason 9), the others are applied and acknowledged; a replay
    gets the same answer, and the same seq with other content is a conflict."""
    h, platform, db = env
    device = platform.agents[0].devices[0]
    rows = [
        [0, 0, 0, "Esi Mensah", "+233200000001"],
        [1, 0, 0, "x" * 65, "+233200000002"],  # the poison
        [1, 1, 0, 1, device, platform.plan, 3 * PRICE_PER_DAY],
        [1, 9, 0, "a kind from a newer app"],
        [1, 2, 0, device, 0],  # amount 0
        [1, 2, 0, device, PRICE_PER_DAY],
    ]
    body = msgpack.packb([VERSION, h.handset, 0, 1, 1_795_000_000, rows])
    status, raw = await h.post(body)
    assert status == 200
    assert isinstance(raw, bytes)
    reply = decode_downlink(raw)
    bad, unknown = Reason.BAD_FIELD, Reason.UNKNOWN_KIND
    assert reply.rejected == ((2, bad), (4, unknown), (5, bad))
    assert reply.acked == (1, 3, 6)
    keycodes = [e for e in reply.entries if isinstance(e, Keycode)]
    assert [(k.op_seq, k.device) for k in keycodes] == [(3, device), (6, device)]
    again = decode_downlink((await h.post(body))[1])  # type: ignore[arg-type]
    assert (again.acked, again.rejected) == (reply.acked, reply.rejected)
    fixed = frame(h.handset, Operation.make(2, Kind.REGISTER_CUSTOMER, 1, "Esi", "+2332"))
    assert decode_downlink((await h.post(fixed))[1]).rejected == (  # type: ignore[arg-type]
        (2, Reason.CONFLICT),
    )
    with sqlite3.connect(db) as conn:
        outcomes = conn.execute("SELECT seq, outcome FROM ops ORDER BY seq").fetchall()
    assert outcomes == [(1, 0), (2, 9), (3, 0), (4, 8), (5, 9), (6, 0)]


async def test_bad_signature_and_missing_auth(env: Env) -> None:
    h, _, db = env
    body = frame(h.handset)
    forged = HandsetKey.generate().headers("POST", "/v1/sync", body, h.handset, h.ts + 5)
    await refused(h, db, body, 401, "bad_signature", headers=forged)
    await refused(h, db, body, 401, "bad_signature", headers=h.headers(b"other body"))
    await refused(h, db, body, 401, "missing_auth", headers={"X-Handset": str(h.handset)})
    unknown = KEY.headers("POST", "/v1/sync", body, 999, h.ts + 10)
    await refused(h, db, body, 401, "unknown_handset", headers=unknown)


async def test_replayed_and_stale_requests(env: Env) -> None:
    h, _seeded, db = env
    op = Operation.make(1, Kind.REGISTER_CUSTOMER, 1, "Esi", "+233200000001")
    body = frame(h.handset, op)
    headers = h.headers(body)
    status, _ = await h.post(body, headers=headers)
    assert status == 200
    await refused(h, db, body, 401, "replayed_request", headers=headers)
    stale = h.headers(body, ts=int(time.time() * 1000) - 3_600_000)
    await refused(h, db, body, 401, "stale_timestamp", headers=stale)


async def test_frame_for_another_handset(env: Env) -> None:
    h, _, db = env
    await refused(h, db, frame(h.handset + 1), 403, "handset_mismatch")


async def test_another_agents_devices_are_refused_per_operation(
    env: Env,
) -> None:
    h, platform, db = env
    customer = Operation.make(1, Kind.REGISTER_CUSTOMER, 1, "Esi", "+233200000001")
    status, _ = await h.post(frame(h.handset, customer))
    assert status == 200
    before = fingerprint(db)
    theirs = platform.agents[1].devices[0]
    sale = Operation.make(2, Kind.RECORD_SALE, 1, 1, theirs, platform.plan, 9 * PRICE_PER_DAY)
    status, raw = await h.post(frame(h.handset, sale))
    assert status == 200
    assert isinstance(raw, bytes)
    reply = decode_downlink(raw)
    assert reply.rejected == ((2, Reason.NOT_IN_STOCK),)
    with sqlite3.connect(db) as conn:
        assert conn.execute(
            "SELECT customer FROM devices WHERE device = ?", (theirs,)
        ).fetchone() == (None,)
        assert conn.execute("SELECT count(*) FROM keycodes").fetchone() == (0,)
    assert fingerprint(db) != before  # only the (handset, seq) outcome and last_ms were stored
    # the naive endpoint refuses the same thing with a coded 422 and nothing more written
    doc = {
        "seq": 3,
        "type": "record_sale",
        "recorded_at": 1,
        "fields": {"customer": 1, "device": theirs, "plan": platform.plan, "down_payment": 900},
    }
    body = json.dumps(doc).encode()
    status, answer = await h.post(body, path="/v1/ops")
    assert (status, answer["error"]) == (422, "not_in_stock")  # type: ignore[index]


@pytest.mark.parametrize(
    ("doc", "status", "code"),
    [
        ({"agent": AMA, "code": "wrong", "public_key": "00" * 32}, 403, "bad_provisioning_code"),
        ({"agent": "nobody", "code": "x", "public_key": "00" * 32}, 403, "bad_provisioning_code"),
        ({"agent": AMA, "code": AMA_CODE, "public_key": "zz"}, 400, "bad_public_key"),
        ({"agent": AMA, "code": AMA_CODE, "public_key": "00"}, 400, "bad_public_key"),
        ({"agent": 1, "code": AMA_CODE, "public_key": "00"}, 400, "bad_field"),
        (
            {"agent": AMA, "code": AMA_CODE, "public_key": "11" * 32, "sync_key": "zz"},
            400,
            "bad_sync_key",
        ),
        (
            {"agent": AMA, "code": AMA_CODE, "public_key": "11" * 32, "sync_key": "00" * 31},
            400,
            "bad_sync_key",
        ),
        (
            {"agent": AMA, "code": AMA_CODE, "public_key": "11" * 32, "sync_key": 7},
            400,
            "bad_field",
        ),
        ([1, 2], 400, "malformed_json"),
        ("{not json", 400, "malformed_json"),
        (
            {"agent": KOFI, "code": KOFI_CODE, "public_key": KEY.public.hex()},
            409,
            "key_already_registered",
        ),
    ],
)
async def test_bad_provisioning(env: Env, doc: object, status: int, code: str) -> None:
    h, platform, db = env
    doc = named(doc, platform)
    body = doc.encode() if isinstance(doc, str) else json.dumps(doc).encode()
    before = fingerprint(db)
    async with h.client.post("/v1/provision", data=body) as response:
        assert (response.status, (await response.json())["error"]) == (status, code)
    assert fingerprint(db) == before


async def test_provisioning_retry_with_the_same_key_is_the_same_handset(
    env: Env,
) -> None:
    h, platform, db = env
    before = fingerprint(db)
    doc = named({"agent": AMA, "code": AMA_CODE, "public_key": KEY.public.hex()}, platform)
    async with h.client.post("/v1/provision", json=doc) as response:
        assert response.status == 201
        assert (await response.json())["handset"] == h.handset
    assert fingerprint(db) == before


async def test_wrong_method_and_path_are_coded(env: Env) -> None:
    h, _, _ = env
    async with h.client.get("/v1/sync") as response:
        assert (response.status, (await response.json())["error"]) == (405, "method_not_allowed")
    async with h.client.post("/v1/nothing") as response:
        assert (response.status, (await response.json())["error"]) == (404, "not_found")


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=30)
@given(
    body=st.one_of(
        st.binary(max_size=200),
        st.recursive(
            st.none()
            | st.booleans()
            | st.integers(-(2**63), 2**64 - 1)
            | st.text(max_size=5)
            | st.binary(max_size=5),
            lambda inner: st.lists(inner, max_size=6),
            max_leaves=30,
        ).map(
            lambda obj: msgpack.packb(
                [VERSION, obj] if not isinstance(obj, list) else [VERSION, *obj]
            )
        ),
    )
)
async def test_no_signed_garbage_is_ever_a_500(env: Env, body: bytes) -> None:
    h, _, db = env
    before = fingerprint(db)
    status, doc = await h.post(body)
    if status == 200:  # garbage that happens to be a valid empty frame for this handset
        return
    assert 400 <= status < 500, doc
    assert isinstance(doc, dict)
    assert isinstance(doc["error"], str)
    assert fingerprint(db) == before


HEX = "0123456789abcdefABCDEF"


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=30)
@given(
    sync_key=st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.lists(st.integers(), max_size=3),
        st.text(max_size=70),
        st.text(alphabet=HEX, max_size=70),
        st.text(alphabet=HEX, min_size=64, max_size=64),
        st.text(alphabet=HEX + " \n", min_size=60, max_size=70),
    ),
    seed=st.binary(min_size=32, max_size=32),
)
async def test_a_provisioning_sync_key_is_taken_or_refused_with_its_code(
    env: Env, sync_key: object, seed: bytes
) -> None:
    """Whatever `sync_key` holds, a new handset is provisioned (32 bytes as hex, or none) or
    the request is refused 400 `bad_sync_key` (a string that is not) or `bad_field` (not a
    string), and a refusal writes nothing."""
    h, platform, db = env
    ama = platform.agents[0]
    public = HandsetKey.from_seed(seed).public.hex()
    doc = {"agent": ama.name, "code": ama.code, "public_key": public, "sync_key": sync_key}
    before = fingerprint(db)
    async with h.client.post("/v1/provision", json=doc) as response:
        status, answer = response.status, await response.json()
    if sync_key is None or (
        isinstance(sync_key, str) and len(sync_key) == 64 and set(sync_key) <= set(HEX)
    ):
        assert status == 201, answer
        return
    expected = "bad_sync_key" if isinstance(sync_key, str) else "bad_field"
    assert (status, answer["error"]) == (400, expected)
    assert fingerprint(db) == before
