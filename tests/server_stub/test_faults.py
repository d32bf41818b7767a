"""The fault seam: each bug built in through `create_app(..., faults=...)` does what it says,
seen the way the lab's judge sees it (handset acknowledgements, the audit API, a meter), and
nothing but a constructor can switch one on."""

from __future__ import annotations

import ast
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import server_stub
from agent_client.agent import Agent
from agent_client.protocol.auth import Claim, HandsetKey
from agent_client.protocol.frames import UplinkFrame, decode_downlink, encode_uplink
from agent_client.protocol.keycodes import KeycodeFormat
from agent_client.protocol.ops import Kind, Operation
from field_lab.testing.platform import PaygPlatform, PlatformSpec, running_platform
from meter_sim import Meter, Outcome
from server_stub.faults import Every, PlatformFaults
from server_stub.keycodes import creditable_days
from server_stub.store import Store

from .fixtures import PRICE_PER_DAY, meter_for, seed_platform
from .platform import AUDIT_TOKEN, SECRET, audit_items, pay

DAY_S = 86_400


def spec(faults: PlatformFaults | None) -> dict[str, Any]:
    """The platform of a fault test: `faults` built in, the operator's secret, the audit."""
    return {
        "faults": faults,
        "price_per_day": PRICE_PER_DAY,
        "mm_secret": SECRET,
        "audit_token": AUDIT_TOKEN,
    }


def built_with(faults: PlatformFaults) -> pytest.MarkDecorator:
    return pytest.mark.payg_platform(**spec(faults))


@dataclass
class Faulty:
    platform: PaygPlatform
    agent: Agent
    device: int  # a Nexus-full device in ama's stock

    @property
    def url(self) -> str:
        return self.platform.url

    async def sell(self, days: int = 3) -> tuple[int, int]:
        """Register a customer and sell `device` with `days` paid; returns both seqs."""
        customer = await self.agent.register_customer("Esi", "+233200000001")
        sale = await self.agent.record_sale(
            customer, self.device, self.platform.plan, days * PRICE_PER_DAY
        )
        return customer, sale


@pytest.fixture
def faulty(payg_platform: PaygPlatform, payg_agent: Agent) -> Faulty:
    return Faulty(payg_platform, payg_agent, payg_platform.agents[0].devices[0])


@pytest.mark.parametrize(
    "bad",
    [
        {"replays_apply_again": 1},
        {"lose_ack_every": -1},
        {"lose_ack_every": 1.5},
        {"lose_ack_every": True},
        {"apply_twice_every": -2},
        {"credit_factor": 0},
        {"credit_factor": -1},
        {"credit_factor": "2"},
    ],
)
def test_faults_are_validated_when_made(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        PlatformFaults(**bad)


def test_every_counts_from_one_and_zero_is_never() -> None:
    third = Every(3)
    assert [third.hit() for _ in range(7)] == [False, False, True, False, False, True, False]
    never = Every(0)
    assert not any(never.hit() for _ in range(100))


@built_with(PlatformFaults(lose_ack_every=1))
async def test_lost_acks_are_acknowledged_but_leave_nothing(faulty: Faulty) -> None:
    seqs = [await faulty.agent.register_customer(f"C{i}", "+233200000001") for i in range(3)]
    report = await faulty.agent.sync()
    assert report.acked == seqs  # the handset was told all were applied
    assert report.pending == 0
    assert await audit_items(faulty.url, "operations") == []  # yet the platform kept none


@built_with(PlatformFaults(lose_ack_every=2))
async def test_every_second_applied_operation_loses_its_ack(faulty: Faulty) -> None:
    customer, sale = await faulty.sell()  # the second applied operation: the sale is lost
    again = await faulty.agent.record_sale(
        customer, faulty.device, faulty.platform.plan, 3 * PRICE_PER_DAY
    )
    report = await faulty.agent.sync()
    assert report.acked == [customer, sale, again]
    operations = await audit_items(faulty.url, "operations")
    assert [(o["seq"], o["outcome"]) for o in operations] == [
        (customer, "applied"),
        (again, "applied"),  # the device was still in stock: the lost sale left no trace
    ]
    (keycode,) = await audit_items(faulty.url, "keycodes")
    assert keycode["paid_by"] == {"handset": faulty.agent.handset, "seq": again}
    assert [c.op_seq for c in await faulty.agent.keycodes_for(faulty.device)] == [again]


@built_with(PlatformFaults(apply_twice_every=1))
async def test_applied_twice_gives_two_keycodes_for_one_payment(faulty: Faulty) -> None:
    _, sale = await faulty.sell(days=3)
    await faulty.agent.sync()
    assert (await pay(faulty.url, "T1", faulty.device, 2 * PRICE_PER_DAY))["result"] == "confirmed"
    await faulty.agent.sync()
    keycodes = await audit_items(faulty.url, "keycodes")
    handset = faulty.agent.handset
    assert [(k["message_id"], k["days"], k["amount"], k["paid_by"]) for k in keycodes] == [
        (1, 3, 300, {"handset": handset, "seq": sale}),
        (2, 3, 300, {"handset": handset, "seq": sale}),
        (3, 2, 200, {"txn": "T1"}),
        (4, 2, 200, {"txn": "T1"}),
    ]
    (payment,) = await audit_items(faulty.url, "payments")
    assert payment["keycode"] == keycodes[2]["keycode"]
    # both copies went down to the handset, and a meter takes every one of them
    downlinked = await faulty.agent.keycodes_for(faulty.device)
    assert [c.text for c in downlinked] == [k["text"] for k in keycodes]
    meter = faulty.platform.meter(faulty.device)
    for k in keycodes:
        assert meter.enter_keycode(k["text"], now=0).outcome is Outcome.APPLIED
    assert meter.credit_remaining(0) == 2 * (3 + 2) * DAY_S  # twice what was paid


@built_with(PlatformFaults(credit_factor=2))
async def test_credit_factor_grants_more_days_than_paid_for(faulty: Faulty) -> None:
    await faulty.sell(days=3)
    await faulty.agent.sync()
    (keycode,) = await audit_items(faulty.url, "keycodes")
    # the row says what the keycode really grants; amount is what was paid
    assert (keycode["days"], keycode["credit_s"], keycode["amount"]) == (6, 6 * DAY_S, 300)
    secret = faulty.platform.fixture.secrets[faulty.device]
    assert secret.format is KeycodeFormat.NEXUS_FULL
    meter = Meter.nexus(secret.key, "full", now=0)
    assert meter.enter_keycode(keycode["text"], now=0).outcome is Outcome.APPLIED
    assert meter.credit_remaining(0) == 6 * DAY_S


@pytest.mark.parametrize(
    ("fmt", "factor"),
    [(KeycodeFormat.NEXUS_FULL, 10_000), (KeycodeFormat.NEXUS_SMALL, 200)],
)
def test_credit_factor_is_clamped_to_what_one_keycode_can_grant(
    tmp_path: Path, fmt: KeycodeFormat, factor: int
) -> None:
    db = tmp_path / "server.db"
    seeded = seed_platform(db)
    device = next(d for d in seeded.stock["ama"] if seeded.secrets[d].format is fmt)
    store = Store.open(db, faults=PlatformFaults(credit_factor=factor))
    try:
        handset = store.provision("ama", "code-ama-7f3a9c", HandsetKey.generate().public, 1)
        ops = [
            Operation.make(1, Kind.REGISTER_CUSTOMER, 1, "Esi", "+233200000001"),
            Operation.make(2, Kind.RECORD_SALE, 1, 1, device, seeded.plan, 3 * PRICE_PER_DAY),
        ]
        assert not store.exchange(Claim(handset, 2, b""), ops, 0, 1_000).rejected
        days, text = store.db.execute("SELECT days, text FROM keycodes").fetchone()
    finally:
        store.close()
    assert 3 * factor > days == creditable_days(fmt, 3 * factor) > 3
    meter = meter_for(seeded.secrets[device])
    assert meter.enter_keycode(text, now=0).outcome is Outcome.APPLIED
    assert meter.credit_remaining(0) == days * DAY_S


class RawHandset:
    """A handset that can do what a real one would only do after a lost answer: send the
    very same operations again."""

    def __init__(self, http: aiohttp.ClientSession, url: str, handset: int) -> None:
        self.http, self.url, self.handset = http, url, handset
        self.key = KEY
        self.ts = int(time.time() * 1000)

    async def send(self, body: bytes) -> tuple[tuple[int, ...], tuple[tuple[int, Any], ...]]:
        self.ts += 1
        headers = self.key.headers("POST", "/v1/sync", body, self.handset, self.ts)
        async with self.http.post(self.url + "/v1/sync", data=body, headers=headers) as response:
            assert response.status == 200, await response.text()
            reply = decode_downlink(await response.read())
        return reply.acked, reply.rejected


KEY = HandsetKey.from_seed(b"r" * 32)


async def replay_twice(tmp_path: Path, faults: PlatformFaults | None) -> list[dict[str, Any]]:
    """Sell, then send one payment's sync body twice and one operator callback twice;
    returns the audit's keycodes."""
    workdir = tmp_path / ("faulty" if faults else "correct")
    workdir.mkdir()
    async with running_platform(workdir, PlatformSpec(**spec(faults))) as platform:
        ama = platform.agents[0]
        device = ama.devices[0]
        url = platform.url
        async with aiohttp.ClientSession() as http:
            doc = {"agent": ama.name, "code": ama.code, "public_key": KEY.public.hex()}
            async with http.post(url + "/v1/provision", json=doc) as response:
                handset = RawHandset(http, url, (await response.json())["handset"])
            sale = [
                Operation.make(1, Kind.REGISTER_CUSTOMER, 1, "Esi", "+233200000001"),
                Operation.make(2, Kind.RECORD_SALE, 1, 1, device, platform.plan, 300),
            ]
            assert await handset.send(encode_uplink(UplinkFrame(handset.handset, 0, (*sale,))))
            payment = Operation.make(3, Kind.RECORD_PAYMENT, 2, device, 2 * PRICE_PER_DAY)
            body = encode_uplink(UplinkFrame(handset.handset, 0, (payment,)))
            for _ in range(2):  # the same body: the answer to the first was "lost"
                assert await handset.send(body) == ((3,), ())
        for _ in range(2):
            answer = await pay(url, "T1", device, PRICE_PER_DAY)
            assert answer["result"] == "confirmed"
        operations = await audit_items(url, "operations")
        assert [o["seq"] for o in operations] == [1, 2, 3]  # one row per key either way
        return await audit_items(url, "keycodes")


async def test_replays_are_applied_again(tmp_path: Path) -> None:
    correct = await replay_twice(tmp_path, None)
    faulty = await replay_twice(tmp_path, PlatformFaults(replays_apply_again=True))
    paid_by = [k["paid_by"] for k in correct]
    assert [p.get("seq") or p.get("txn") for p in paid_by] == [2, 3, "T1"]
    replayed = [k["paid_by"] for k in faulty]
    assert [p.get("seq") or p.get("txn") for p in replayed] == [2, 3, 3, "T1", "T1"]


SOURCE = Path(server_stub.__file__).parent
ENV_NAMES = {"environ", "getenv", "environb", "getenvb"}


def environment_reads() -> set[tuple[str, str]]:
    """(module, innermost enclosing function) of every place in server_stub's code that
    touches the environment (os.environ, os.getenv, or the names imported from os)."""
    found: set[tuple[str, str]] = set()
    for path in sorted(SOURCE.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        functions = [
            n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        ]  # breadth first: an outer function comes before the ones inside it
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                name = node.attr
            elif isinstance(node, ast.Name):
                name = node.id
            else:
                continue
            if name in ENV_NAMES:
                lineno = node.lineno
                inside = [f.name for f in functions if f.lineno <= lineno <= (f.end_lineno or 0)]
                found.add((path.name, inside[-1] if inside else "<module>"))
    return found


def test_only_the_cli_reads_the_environment_and_only_for_secrets() -> None:
    assert environment_reads() == {
        ("cli.py", "mm_secret"),
        ("cli.py", "audit_token"),
        ("cli.py", "report_token"),
    }
    for path in SOURCE.glob("*.py"):
        assert "PAYG_TEST" not in path.read_text(), path.name
    cli = (SOURCE / "cli.py").read_text()
    assert "faults" not in cli.lower()  # `server-stub serve` cannot build a bug in


def test_no_environment_variable_switches_a_fault_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("PAYG_TEST_DISABLE_IDEMPOTENCY", "PAYG_FAULTS", "PAYG_CREDIT_FACTOR"):
        monkeypatch.setenv(name, "1")
    seed_platform(tmp_path / "s.db")
    store = Store.open(tmp_path / "s.db")
    try:
        assert store.faults == PlatformFaults()
    finally:
        store.close()
