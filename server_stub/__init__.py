"""server_stub: the platform stand-in.

    app        aiohttp application: POST /v1/sync, /v1/provision, /v1/ops (naive JSON), /v1/health
    store      agents, handsets, stock, customers, idempotent ingest, downlink logs (sqlite3)
    keycodes   keycode issuing with nexus-keycode and openpaygo
    devices    device CSV import/export and generation
    tls        a self-signed certificate made at start
    cli        the ``server-stub`` command

Imports only ``agent_client.protocol`` from our packages: the contract it serves.
"""
