"""Is the platform still there? A run whose platform dies stops within seconds, not at its end.

Once a second the watchdog opens (and closes) a TCP connection to the platform's port; after
`misses` refusals in a row it raises `PlatformGone`, which the lab turns into its harness
error (exit 107). Handsets' own failures cannot tell a dead platform from a bad 2G link; a
refused connection can. A connection that only takes long is a busy platform (or a busy lab
whose loop is late), not a dead one: timeouts count only after `SLOW_S` of nothing else.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from field_lab.errors import ConfigError, PlatformGone

EVERY_S = 1.0
MISSES = 3
CONNECT_S = 5.0
SLOW_S = 60.0


async def watch(url: str, *, every_s: float = EVERY_S, misses: int = MISSES) -> None:
    """Runs until cancelled; raises `PlatformGone` once the platform stops accepting."""
    parts = urlsplit(url)
    if parts.hostname is None:
        raise ConfigError(f"the platform URL {url!r} names no host")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    missed = 0
    silent_since: float | None = None
    loop = asyncio.get_running_loop()
    while True:
        try:
            async with asyncio.timeout(CONNECT_S):
                _, writer = await asyncio.open_connection(parts.hostname, port)
                writer.close()
                await writer.wait_closed()
            missed, silent_since = 0, None
        except TimeoutError as exc:
            silent_since = silent_since or loop.time()
            if loop.time() - silent_since > SLOW_S:
                raise _gone(url, exc) from exc
        except OSError as exc:
            missed += 1
            if missed >= misses:
                raise _gone(url, exc) from exc
        await asyncio.sleep(every_s)


def _gone(url: str, exc: Exception) -> PlatformGone:
    return PlatformGone(
        f"the platform at {url} stopped answering ({type(exc).__name__}: {exc});"
        " the run was stopped, its figures are not written"
    )
