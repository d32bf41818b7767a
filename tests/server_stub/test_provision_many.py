"""`POST /v1/provision/many`: a fleet's handsets in one request, all or nothing; every refusal
is a 4xx naming its item, and a refused request writes nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_client.protocol.auth import HandsetKey
from agent_client.protocol.envelope import sync_key
from field_lab.testing.platform import PaygPlatform
from server_stub.errors import RequestError
from server_stub.provisioning import (
    MAX_PROVISIONINGS,
    PROVISION_MANY_PATH,
    Provisioning,
    provisionings,
)

from .test_bad_input import fingerprint

pytestmark = pytest.mark.payg_platform(agents=2, devices=4)


def key(n: int) -> HandsetKey:
    return HandsetKey.from_seed(bytes([n]) * 32)


def item(agent: str, code: str, n: int, **extra: object) -> dict[str, object]:
    k = key(n)
    return {"agent": agent, "code": code, "public_key": k.public.hex(), **extra}


@pytest.fixture
async def client(payg_platform: PaygPlatform) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=payg_platform.url) as session:
        yield session


async def post(client: aiohttp.ClientSession, doc: object) -> tuple[int, Any]:
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    async with client.post(PROVISION_MANY_PATH, data=body) as response:
        return response.status, await response.json()


async def test_many_handsets_in_one_request_each_as_one_would_be(
    payg_platform: PaygPlatform, client: aiohttp.ClientSession
) -> None:
    ama, kofi = payg_platform.agents
    doc = {
        "handsets": [
            item(ama.name, ama.code, 1, sync_key=sync_key(key(1).seed).hex()),
            item(kofi.name, kofi.code, 2),
            item(ama.name, ama.code, 3),
        ]
    }
    status, answer = await post(client, doc)
    assert status == 201
    made = [a["handset"] for a in answer["handsets"]]
    assert len(set(made)) == 3
    assert all(isinstance(a["server_ms"], int) for a in answer["handsets"])
    # the same key alone afterwards is the same handset (idempotent per agent and key), and a
    # retry of the whole lot gets the same handsets back, writing nothing new
    async with client.post("/v1/provision", json=doc["handsets"][1]) as response:
        assert (await response.json())["handset"] == made[1]
    before = fingerprint(payg_platform.db)
    status, again = await post(client, doc)
    assert (status, [a["handset"] for a in again["handsets"]]) == (201, made)
    assert fingerprint(payg_platform.db) == before


async def test_a_refused_item_refuses_the_lot_and_writes_nothing(
    payg_platform: PaygPlatform, client: aiohttp.ClientSession
) -> None:
    ama, kofi = payg_platform.agents
    taken = item(kofi.name, kofi.code, 9)
    async with client.post("/v1/provision", json=taken) as response:
        assert response.status == 201
    good = item(ama.name, ama.code, 4)
    cases: list[tuple[object, int, str, int | None]] = [
        ({"handsets": [good, item(ama.name, "wrong", 5)]}, 403, "bad_provisioning_code", 1),
        ({"handsets": [good, item("nobody", "x", 5)]}, 403, "bad_provisioning_code", 1),
        (
            {"handsets": [good, {**taken, "agent": ama.name, "code": ama.code}]},
            409,
            "key_already_registered",
            1,
        ),
        ({"handsets": [good, good]}, 400, "duplicate_public_key", 1),
        ({"handsets": [good, {**good, "public_key": "zz"}]}, 400, "bad_public_key", 1),
        ({"handsets": [{**good, "public_key": "00" * 31}]}, 400, "bad_public_key", 0),
        ({"handsets": [good, {**good, "sync_key": 7}]}, 400, "bad_field", 1),
        ({"handsets": [{**good, "sync_key": "00" * 31}]}, 400, "bad_sync_key", 0),
        ({"handsets": [good, 7]}, 400, "bad_field", 1),
        ({"handsets": [{**good, "agent": 1}]}, 400, "bad_field", 0),
        ({"handsets": []}, 400, "bad_field", None),
        ({"handsets": good}, 400, "bad_field", None),
        ({}, 400, "bad_field", None),
        ({"handsets": [good] * (MAX_PROVISIONINGS + 1)}, 400, "too_many_handsets", None),
        ([good], 400, "malformed_json", None),
        (b"{not json", 400, "malformed_json", None),
    ]
    for doc, status, code, at in cases:
        before = fingerprint(payg_platform.db)
        got, answer = await post(client, doc)
        assert (got, answer["error"], answer.get("item")) == (status, code, at), answer
        if at is not None:
            assert answer["detail"].startswith(f"handsets[{at}]: ")
        assert fingerprint(payg_platform.db) == before  # the good item was not registered


texts = st.text(max_size=8)
fields = st.one_of(st.none(), st.integers(), texts, st.lists(st.integers(), max_size=2))
hexes = st.binary(min_size=30, max_size=34).map(bytes.hex)
items = st.one_of(
    st.fixed_dictionaries(
        {"agent": texts, "code": texts, "public_key": st.one_of(hexes, fields)},
        optional={"sync_key": st.one_of(hexes, fields)},
    ),
    fields,
)


@given(
    st.one_of(
        st.fixed_dictionaries({"handsets": st.lists(items, max_size=4)}),
        st.dictionaries(texts, fields),
    )
)
def test_any_body_is_read_or_refused_with_a_400(doc: dict[str, Any]) -> None:
    refusal: RequestError | None = None
    try:
        made = provisionings(doc)
    except RequestError as exc:
        refusal = exc
    if refusal is not None:
        assert refusal.status == 400
        assert refusal.code in {
            "bad_field",
            "bad_public_key",
            "bad_sync_key",
            "duplicate_public_key",
        }
        return
    wanted = doc["handsets"]
    assert len(made) == len(wanted) > 0
    for one, raw in zip(made, wanted, strict=True):
        expected_sync = raw.get("sync_key")
        assert one == Provisioning(
            raw["agent"],
            raw["code"],
            bytes.fromhex(raw["public_key"]),
            None if expected_sync is None else bytes.fromhex(expected_sync),
        )
    assert len({one.public_key for one in made}) == len(made)
