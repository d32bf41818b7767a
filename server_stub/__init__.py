"""server_stub: the platform stand-in.

    app        aiohttp application: POST /v1/sync, /v1/provision, /v1/ops (naive JSON), /v1/health,
               POST /v1/mm/callback, GET /v1/reports/*, /v1/payments/{txn}, /v1/audit/*,
               /healthz, /readyz, /metrics, /openapi.json; graceful shutdown
    store      agents, handsets, stock, customers, idempotent ingest, downlink logs, mobile-money
               transactions, the SMS outbox, report rollups (sqlite3): reads the state an
               operation touches, asks the ledger, applies its effects in one transaction
    ledger/    the platform's rules, pure: sales and payments (effects or a refusal), credit and
               keycode ids/counts, rollups, replay answers, tokens and code strength, backoff
    callbacks  the operator's callback: validation, signature, answers per outcome (pure)
    notify     the platform's SMS sender: outbox to gateway, receipts, resend rule
    reports    distributor reports on a read-only connection, keyset pagination
    audit      the audit API's feeds (operations, keycodes, payments) for the lab's judge
    faults     bugs built in on purpose (constructor only), for tests of the judge
    runner     the store thread, with an urgent lane for operator callbacks
    metrics    Prometheus metrics (RED per route, sync, keycodes, mobile money, SMS)
    logs       JSON-lines logging
    openapi    the OpenAPI 3 document
    keycodes   keycode issuing with nexus-keycode and openpaygo
    devices    device CSV import/export and generation
    tls        a self-signed certificate made at start
    cli        the ``server-stub`` command

Imports only ``agent_client.protocol`` from our packages: the contract it serves. The outside
parties it talks to (the mobile-money operator, the SMS gateway) are simulated by the lab, in
``field_lab.world.mno`` and ``field_lab.world.sms``.
"""
