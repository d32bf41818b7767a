"""agent_client: the agent's handset.

    protocol/   the sync wire contract, pure and sans-I/O (frames, keycode formats, signing,
                the sync state machine); the server imports it, so it imports nothing else of ours
    store       the durable SQLite outbox and inbox (WAL, migrations)
    database    its connection: sqlite3 on one shared thread (or inline), no thread per file
    http1       HTTP/1.1 request and response codec, sans-I/O
    transport   the `Transport` seam: `Http1Transport` (the default: one POST per exchange on
                a kept-alive connection, over `http1`), `HttpTransport` (the same on aiohttp)
                and `MockTransport` (in memory, for tests)
    adapters    how a handset talks to a platform: `CompactAdapter` (our protocol),
                `NaiveAdapter`, or your own (`provision`, `exchange`)
    agent       `Agent`: record offline, sync, read keycodes (the I/O shell around the core)
    cli         the ``agent-client`` command

Kept import-light on purpose: importing ``agent_client.protocol`` must not pull in aiohttp.
"""
