"""A handset's link to the platform with a live control panel, as toxiproxy gives one.

    handset --> LinkProxy (2G model: profile, outages) --> FaultProxy (cuts) --> platform

The emulated link (`field_lab.link.proxy.LinkProxy`) carries the bytes as a radio link would and
takes a new profile or an outage at any moment; behind it the fault harness's proxy
(`field_lab.chaos.proxy.FaultProxy`) resets a connection after N bytes in one direction: N bytes
up and the platform never sees the whole request; N bytes down and the handset never sees the
answer to a request the platform committed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from field_lab.chaos.proxy import DOWN, UP, FaultProxy
from field_lab.link.errors import LinkError
from field_lab.link.profiles import Profile, get_profile
from field_lab.link.proxy import LinkProxy
from field_lab.net import LOOPBACK
from field_lab.testing.errors import FixtureError


def profile_named(profile: str | Profile, where: str = "payg_link") -> Profile:
    """A built-in profile by name, or the `Profile` given; anything else is a FixtureError."""
    if isinstance(profile, Profile):
        return profile
    if not isinstance(profile, str):
        raise FixtureError(f"{where}: profile must be a name or a Profile, got {profile!r}")
    try:
        return get_profile(profile)
    except LinkError as exc:
        raise FixtureError(f"{where}: {exc}") from exc


@dataclass(frozen=True, kw_only=True)
class LinkSpec:
    """What a test asks of `payg_link`: the profile it starts on and the link's seed."""

    profile: str | Profile = "perfect"
    seed: int = 0

    def __post_init__(self) -> None:
        profile_named(self.profile)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise FixtureError(f"payg_link: seed must be an int, got {self.seed!r}")


class PaygLink:
    """An emulated link in front of a platform, with live controls (see the module doc)."""

    def __init__(self, proxy: LinkProxy, faults: FaultProxy, url: str) -> None:
        self.proxy = proxy
        self.faults = faults
        self.url = url
        """Point a handset's `server_url` here to put it behind the link."""

    @property
    def profile(self) -> Profile:
        return self.proxy.profile

    def set_profile(self, profile: str | Profile) -> None:
        """From now on the link behaves as `profile` (a built-in name or a `Profile`); open
        connections stay open. `offline` is refused: use `start_outage`."""
        chosen = profile_named(profile, "set_profile")
        try:
            self.proxy.set_profile(chosen)
        except LinkError as exc:
            raise FixtureError(f"set_profile: {exc}") from exc

    def start_outage(self) -> None:
        """The radio goes down now: bytes wait; connections open longer than the profile's
        `reset_after_s` through it are reset."""
        try:
            self.proxy.start_outage()
        except LinkError as exc:
            raise FixtureError(f"start_outage: {exc}") from exc

    def stop_outage(self) -> None:
        """The radio comes back now; waiting bytes go on."""
        try:
            self.proxy.stop_outage()
        except LinkError as exc:
            raise FixtureError(f"stop_outage: {exc}") from exc

    @contextmanager
    def outage(self) -> Iterator[None]:
        """The radio is down for the duration of the block."""
        self.start_outage()
        try:
            yield
        finally:
            self.stop_outage()

    @property
    def outage_active(self) -> bool:
        return self.proxy.outage_active

    def cut(self, direction: str, *, after: int) -> None:
        """Reset the next connection that carries `after` more bytes `direction` ("up":
        handset to platform, "down": back), right after those bytes."""
        if direction not in (UP, DOWN):
            raise FixtureError(f"cut: direction must be 'up' or 'down', got {direction!r}")
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            raise FixtureError(f"cut: after must be an int >= 0, got {after!r}")
        self.faults.arm(direction, after)

    def uncut(self) -> bool:
        """Drop a cut that has not fired; True if one was armed."""
        return self.faults.disarm()

    @property
    def cuts(self) -> int:
        """Connections cut so far."""
        return self.faults.cuts

    def stats(self) -> dict[str, Any]:
        """The link's counters and per-connection bytes and times (`LinkProxy.stats`)."""
        return self.proxy.stats()


@asynccontextmanager
async def linked(platform_url: str, spec: LinkSpec) -> AsyncIterator[PaygLink]:
    """A link in front of the platform at `platform_url` (a loopback http URL)."""
    parts = urlsplit(platform_url)
    if parts.scheme != "http" or parts.hostname != LOOPBACK or parts.port is None:
        raise FixtureError(f"payg_link: the platform must be http://{LOOPBACK}:PORT")
    faults = FaultProxy((LOOPBACK, parts.port))
    fault_port = await faults.start()
    try:
        proxy = LinkProxy(profile_named(spec.profile), (LOOPBACK, fault_port), seed=spec.seed)
        _, port = await proxy.start(LOOPBACK, 0)
        try:
            yield PaygLink(proxy, faults, f"http://{LOOPBACK}:{port}")
        finally:
            await proxy.aclose()
    finally:
        await faults.aclose()
