"""The sync wire contract: sans-I/O frame codecs, request signing and the sync state machine.

This package is pure: it takes bytes, values and ``now`` and returns bytes, values and events.
The server imports it as the contract it serves; nothing here touches sockets, files or clocks.
See docs/sync-protocol.md for the frame layout and the schema-evolution rules.
"""

from __future__ import annotations
