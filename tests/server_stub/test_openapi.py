"""schemathesis against the served OpenAPI document: generated requests (valid and not) to every
documented endpoint of a running server with data in it; no 5xx, and every response matches the
document (status, content type, body schema). The audit endpoints are called with the audit
token, reports and payment steps with a distributor's, and each also without one, with a wrong
one and with the other kind. Examples are bounded to keep this fast."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import positive_data_acceptance

from server_stub.app import Platform, create_app
from server_stub.callbacks import MoneyCallback
from server_stub.ledger.access import token_digest
from server_stub.ledger.throttle import Backoff
from server_stub.openapi import document
from server_stub.store import Store

from .platform import SECRET, sold_platform

REJECTIONS = [
    *("400", "401", "403", "404", "405", "406", "409", "413"),
    *("415", "422", "428", "429", "5xx"),
]
"""What counts as refusing a schema-violating request: schemathesis's own list and 413, the
platform's answer to a body over its size limit (refused before it is read, so the generated
oversized arrays and strings get 413, not 400). 5xx is failed by the server-error check."""
schema = schemathesis.openapi.from_dict(
    document(),
    config=SchemathesisConfig.from_dict(
        {"checks": {"negative_data_rejection": {"expected-statuses": REJECTIONS}}}
    ),
)
AUDIT_TOKEN = "audit-token-for-schemathesis"
AUDIT = f"Bearer {AUDIT_TOKEN}"
DISTRIBUTOR = "payg_distributor-token-for-schemathesis"
"""The seeded distributor's report token (known in advance: auth is asked while collecting)."""


@schema.auth()
class AuditToken:
    """The right token on every audit request; schemathesis then also probes each audit
    endpoint without it and with an invalid one (its ignored_auth check)."""

    def get(self, case: schemathesis.Case[Any], ctx: schemathesis.AuthContext) -> str:
        return AUDIT_TOKEN if case.path.startswith("/v1/audit/") else DISTRIBUTOR

    def set(self, case: schemathesis.Case[Any], data: str, ctx: schemathesis.AuthContext) -> None:
        case.headers["Authorization"] = f"Bearer {data}"


class ServerThread:
    """The app on its own event loop in a thread, so synchronous schemathesis can call it."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.port = 0
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.stop_event: asyncio.Event | None = None
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self.main(),))

    async def main(self) -> None:
        self.stop_event = asyncio.Event()
        runner = web.AppRunner(self.app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        assert runner.addresses
        self.port = int(runner.addresses[0][1])
        self.ready.set()
        await self.stop_event.wait()
        await runner.cleanup()

    def __enter__(self) -> str:
        self.thread.start()
        assert self.ready.wait(30)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        assert self.stop_event is not None
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(30)
        self.loop.close()


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db = tmp_path_factory.mktemp("openapi") / "server.db"
    sold = sold_platform(db)
    store = Store.open(db)
    try:
        for i in range(6):
            cb = MoneyCallback(
                f"S{i}",
                str(sold.devices[i % 2]),
                100 * (i + 1),
                "+233200000001",
                "success",
                1_790_000_000_000 + i,
            )
            store.mobile_money(cb, 1_790_000_001_000 + i)
        store.db.execute(  # the token as issue-token would store it
            "INSERT INTO tokens(digest, distributor, created_ms) VALUES (?, 1, 0)",
            (token_digest(DISTRIBUTOR),),
        )
    finally:
        store.close()
    # wrong tokens are what this test sends on purpose: no backoff to get in its way
    # readiness budget far above a loaded machine's report latency: a 503 here is a real fault
    platform = Platform(
        mm_secret=SECRET,
        audit_token=AUDIT_TOKEN,
        backoff=Backoff(free=10**9),
        ready_budget_s=30.0,
    )
    with ServerThread(create_app(db, platform=platform)) as url:
        yield url


def test_the_served_document_is_the_one_tested(base_url: str) -> None:
    assert requests.get(f"{base_url}/openapi.json", timeout=10).json() == document()


# the suite runs a fixed, bounded set (derandomized: same examples every run); set
# SCHEMATHESIS_EXAMPLES=300 to hunt with fresh random examples
@schema.parametrize()
@settings(
    max_examples=int(os.environ.get("SCHEMATHESIS_EXAMPLES", "30")),
    derandomize="SCHEMATHESIS_EXAMPLES" not in os.environ,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_api_conforms_to_its_document(case: schemathesis.Case[Any], base_url: str) -> None:
    # a cursor is opaque: a schema-valid string the server did not issue is rightly a 400
    opaque = bool(case.query) and "cursor" in case.query
    excluded = [positive_data_acceptance] if opaque else []
    answer = case.call_and_validate(base_url=base_url, excluded_checks=excluded)
    gated = case.path.startswith(("/v1/audit/", "/v1/reports/", "/v1/payments/"))
    if not gated or case.method != "GET":
        return
    if case.headers.get("Authorization") in (AUDIT, f"Bearer {DISTRIBUTOR}"):
        assert answer.status_code != 401
    # the same request without the token, or with a wrong one: refused before anything else
    wrong = (None, "Bearer not-the-token", "Basic " + AUDIT_TOKEN, AUDIT_TOKEN, DISTRIBUTOR)
    if case.path.startswith("/v1/audit/"):  # the operator's token opens no report, and back
        wrong += (f"Bearer {DISTRIBUTOR}",)
    else:
        wrong += (AUDIT,)
    for token in wrong:
        case.headers.pop("Authorization", None)
        if token is not None:
            case.headers["Authorization"] = token
        refused = case.call(base_url=base_url)
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"] == "unauthorized"
        assert refused.headers["www-authenticate"][0].startswith("Bearer")  # lowercased
