"""A real handset against a running platform with escrow: the codes come down at sync and
stay sealed at rest; `Agent.sell_offline` lights a real meter with no link, the sale goes up
at the next sync and is accounted once (the audit API says so); a code is never offered
twice, nor for a device out of stock, nor after its revocation."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgpack
import pytest

from agent_client.errors import InvalidOperation
from agent_client.escrow import EscrowError, EscrowRefused
from agent_client.store import OpState
from meter_sim import Outcome
from server_stub.app import Platform
from server_stub.escrow import EscrowPolicy
from server_stub.store import Store

from .fixtures import PRICE_PER_DAY, meter_for, seed_platform
from .platform import AUDIT_TOKEN, agent_for, audit_items, start

DAY_S = 86_400


async def test_an_offline_sale_end_to_end(tmp_path: Path) -> None:
    seeded = seed_platform(tmp_path / "s.db")
    config = Platform(audit_token=AUDIT_TOKEN, escrow=EscrowPolicy(devices=2, days=1))
    server = await start(tmp_path / "s.db", config)
    agent = await agent_for(server, tmp_path)
    try:
        await agent.sync()
        held = await agent.escrow()
        assert [c.device for c in held] == seeded.stock["ama"][:2]
        at_rest = (tmp_path / "ama.db").read_bytes()
        for code in held:  # sealed: no code's wire number in the handset's file
            assert msgpack.packb([code.device, code.reserved_id]) not in at_rest
        device = held[0].device
        customer = await agent.register_customer("Esi Mensah", "+233200000001")
        with pytest.raises(InvalidOperation, match="less than one day"):
            await agent.sell_offline(customer, device, seeded.plan, PRICE_PER_DAY - 1)
        sale = await agent.sell_offline(customer, device, seeded.plan, 3 * PRICE_PER_DAY)
        meter = meter_for(seeded.secrets[device])
        assert meter.enter_keycode(sale.keycode, 5.0).outcome is Outcome.APPLIED
        assert sale.credit_s == DAY_S
        with pytest.raises(EscrowRefused, match="released already"):
            await agent.sell_offline(customer, device, seeded.plan, 3 * PRICE_PER_DAY)
        with pytest.raises(EscrowRefused, match="not in this agent's stock"):
            await agent.sell_offline(customer, seeded.stock["kofi"][0], seeded.plan, 300)

        report = await agent.sync()
        assert sale.seq in report.acked
        assert report.pending == 0
        rest = [k for k in await agent.keycodes_for(device) if k.op_seq == sale.seq]
        assert [k.credit_s for k in rest] == [2 * DAY_S]  # the down payment's other 2 days
        assert meter.enter_keycode(rest[0].text, 800.0).outcome is Outcome.APPLIED
        assert meter.credit_remaining(800.0) == pytest.approx(3 * DAY_S - 795, abs=60)
        events = await audit_items(server, "escrow")
        reconciled = [e for e in events if e["event"] == "reconciled"]
        assert reconciled == [
            {
                "event": "reconciled",
                "agent": seeded.agents["ama"][0],
                "device": device,
                "reserved_id": held[0].reserved_id,
                "days": 1,
                "sale": {"handset": agent.handset, "seq": sale.seq},
                "flag": None,
                "at_ms": reconciled[0]["at_ms"],
            }
        ]
        assert [c.device for c in await agent.escrow()] == [held[1].device, seeded.stock["ama"][2]]

        other = held[1].device  # back to the warehouse: revoked, dropped at the next sync
        store = Store.open(tmp_path / "s.db")
        store.move_device(other, None, 1)
        store.close()
        await agent.sync()
        assert other not in [c.device for c in await agent.escrow()]
        with pytest.raises(EscrowRefused, match="not in this agent's stock"):
            await agent.sell_offline(customer, other, seeded.plan, 300)
        queue = await agent.store.queue()
        assert all(row.state is OpState.ACKNOWLEDGED for row in queue)
    finally:
        await agent.close()
        await server.close()


async def test_a_damaged_vault_opens_nothing(tmp_path: Path) -> None:
    seed_platform(tmp_path / "s.db")
    config = Platform(escrow=EscrowPolicy(devices=1, days=1))
    server = await start(tmp_path / "s.db", config)
    agent = await agent_for(server, tmp_path)
    try:
        await agent.sync()
        assert len(await agent.escrow()) == 1
        db = sqlite3.connect(tmp_path / "ama.db")
        (blob,) = db.execute("SELECT value FROM meta WHERE key = 'escrow'").fetchone()
        damaged = bytes(blob[:-1]) + bytes([blob[-1] ^ 1])
        db.execute("UPDATE meta SET value = ? WHERE key = 'escrow'", (damaged,))
        db.commit()
        db.close()
        with pytest.raises(EscrowError, match="does not open"):
            await agent.escrow()
    finally:
        await agent.close()
        await server.close()
