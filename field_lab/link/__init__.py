"""2G link emulation: a sans-I/O link model in virtual time, and asyncio shells around it.

Core (no clocks, no sockets): `Link`, `Connection`, `Direction`, the events `poll` returns,
profiles, traces, outages and the analytical model (`expected_transfer_time`, `floor_seconds`).
Shells: `LinkScheduler` drives many links from one asyncio task, `LinkProxy` is the TCP proxy,
`LinkConnector` puts one handset's link under an aiohttp ClientSession.
"""

from __future__ import annotations

from field_lab.link.aio import LinkConnector
from field_lab.link.core import (
    DOWN,
    UP,
    Accepted,
    Arrived,
    Connection,
    EofArrived,
    Established,
    Event,
    Link,
    Reset,
    State,
)
from field_lab.link.direction import Delivery, Direction
from field_lab.link.errors import (
    ConfigError,
    LinkBroken,
    LinkError,
    LinkReset,
    OutageFileError,
    ProfileError,
    TraceError,
    UsageError,
)
from field_lab.link.loss import GilbertElliott
from field_lab.link.model import expected_transfer_time, floor_seconds, one_way_time
from field_lab.link.outages import OnOff, Outage, load_outages, parse_outages
from field_lab.link.profiles import (
    BUILTIN_PROFILES,
    Profile,
    get_profile,
    load_profiles,
    parse_profiles,
)
from field_lab.link.proxy import LinkProxy
from field_lab.link.scheduler import LinkPort, LinkScheduler
from field_lab.link.trace import Trace, load_trace, parse_trace
from field_lab.link.virtual import exchange_time

__all__ = [
    "BUILTIN_PROFILES",
    "DOWN",
    "UP",
    "Accepted",
    "Arrived",
    "ConfigError",
    "Connection",
    "Delivery",
    "Direction",
    "EofArrived",
    "Established",
    "Event",
    "GilbertElliott",
    "Link",
    "LinkBroken",
    "LinkConnector",
    "LinkError",
    "LinkPort",
    "LinkProxy",
    "LinkReset",
    "LinkScheduler",
    "OnOff",
    "Outage",
    "OutageFileError",
    "Profile",
    "ProfileError",
    "Reset",
    "State",
    "Trace",
    "TraceError",
    "UsageError",
    "exchange_time",
    "expected_transfer_time",
    "floor_seconds",
    "get_profile",
    "load_outages",
    "load_profiles",
    "load_trace",
    "one_way_time",
    "parse_outages",
    "parse_profiles",
    "parse_trace",
]
