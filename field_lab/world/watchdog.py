"""Is the platform still there? A run whose platform dies stops within seconds, not at its end.

Once a second the watchdog opens (and closes) a TCP connection to the platform's port; after
`misses` failures in a row it raises `PlatformGone`, which the lab turns into its harness
error (exit 107). Handsets' own failures cannot tell a dead platform from a bad 2G link; a
refused loopback connection can.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from field_lab.errors import ConfigError, PlatformGone

EVERY_S = 1.0
MISSES = 3


async def watch(url: str, *, every_s: float = EVERY_S, misses: int = MISSES) -> None:
    """Runs until cancelled; raises `PlatformGone` once the platform stops accepting."""
    parts = urlsplit(url)
    if parts.hostname is None:
        raise ConfigError(f"the platform URL {url!r} names no host")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    missed = 0
    while True:
        try:
            async with asyncio.timeout(2 * every_s):
                _, writer = await asyncio.open_connection(parts.hostname, port)
                writer.close()
                await writer.wait_closed()
            missed = 0
        except (OSError, TimeoutError) as exc:
            missed += 1
            if missed >= misses:
                raise PlatformGone(
                    f"the platform at {url} stopped answering ({type(exc).__name__}: {exc});"
                    " the run was stopped, its figures are not written"
                ) from exc
        await asyncio.sleep(every_s)
