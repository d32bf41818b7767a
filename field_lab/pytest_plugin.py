"""The lab's parts as pytest fixtures: installed with the package (entry point ``pytest11``,
name ``payg``), so any project that installs payg-field-lab can write

    async def test_a_sale_lights_the_meter(payg_platform, payg_agent, payg_meter): ...

Fixtures (function-scoped: every test gets its own):

- ``payg_platform``: a seeded ``server_stub`` on 127.0.0.1 (``PaygPlatform``); size it with
  ``@pytest.mark.payg_platform(agents=2, devices=6, protocols={"nexus-full": 1}, ...)`` or an
  indirect parameter of the same keywords.
- ``payg_agent``: a provisioned handset (``agent_client.Agent``) of the platform's first agent
  (``@pytest.mark.payg_agent(agent=1, config=SyncConfig(...))``); it talks through
  ``payg_link`` when the test uses that fixture too.
- ``payg_meter``: ``payg_meter(serial, now=0.0)`` makes a simulated meter for a device.
- ``payg_link``: an emulated 2G link in front of the platform with live controls
  (``PaygLink``); ``@pytest.mark.payg_link(profile="gprs-typ", seed=0)``.
- ``payg_dut``: a device under test on ``--payg-dut-url`` (pyserial URL, tty, pty or
  ``tcp://``) at ``--payg-baud``, else ``meter-sim serve`` started for the test (``Dut``);
  ``@pytest.mark.payg_dut(protocol=..., key=..., pty=True, timeout=5)``.

The async fixtures need pytest-asyncio (the ``test`` extra); heavy modules load only when a
fixture is used, so the plugin costs nothing to test runs that do not use it.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pytest

from field_lab.testing.errors import FixtureError

if TYPE_CHECKING:
    from agent_client.agent import Agent
    from field_lab.testing.dut import Dut
    from field_lab.testing.link import PaygLink
    from field_lab.testing.platform import PaygPlatform
    from meter_sim import Meter

_make_async_fixture: Callable[[Callable[..., Any]], Any] | None
try:
    import pytest_asyncio

    _make_async_fixture = pytest_asyncio.fixture
except ImportError:  # pragma: no cover - the test extra installs it
    _make_async_fixture = None

MARKERS = {
    "payg_platform": "payg_platform(agents=2, devices=6, protocols={'nexus-full': 1.0},"
    " price_per_day=500, seed=1, faults=None, mobile_money=True, mm_secret=None, audit=True,"
    " audit_token=None): what the payg_platform fixture seeds and serves",
    "payg_agent": "payg_agent(agent=0, config=None): which agent payg_agent is, and its"
    " agent_client SyncConfig",
    "payg_link": "payg_link(profile='perfect', seed=0): the profile payg_link starts on",
    "payg_dut": "payg_dut(protocol='nexus-full', key=None, starting_code=None, pty=False,"
    " timeout=10): the simulated device payg_dut starts (without --payg-dut-url)",
}


def _async_fixture(fn: Callable[..., Any]) -> Any:
    """`pytest_asyncio.fixture`, or without pytest-asyncio a fixture that says what is missing
    (the plugin loads in every pytest run of the environment; it must never break one)."""
    if _make_async_fixture is not None:
        return _make_async_fixture(fn)

    def missing() -> None:  # pragma: no cover - the test extra installs pytest-asyncio
        raise FixtureError(
            f"{fn.__name__} needs pytest-asyncio: pip install 'payg-field-lab[test]'"
        )

    missing.__doc__ = fn.__doc__
    return pytest.fixture(name=fn.__name__)(missing)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("payg", "PAYG field lab fixtures")
    group.addoption(
        "--payg-dut-url",
        metavar="URL",
        default=None,
        help="device under test for payg_dut: /dev/ttyUSB0, /dev/pts/N, socket://H:P,"
        " rfc2217://H:P, loop://, tcp://H:P (default: start meter-sim serve)",
    )
    group.addoption(
        "--payg-baud",
        metavar="N",
        type=_positive_int,
        default=115_200,
        help="serial speed for --payg-dut-url (default 115200)",
    )
    group.addoption(
        "--payg-parity",
        choices=["none", "even", "odd", "mark", "space"],
        default="none",
        help="serial parity for --payg-dut-url (default none: 8N1)",
    )
    group.addoption(
        "--payg-rtscts", action="store_true", help="RTS/CTS flow control on --payg-dut-url"
    )
    group.addoption(
        "--payg-xonxoff", action="store_true", help="XON/XOFF flow control on --payg-dut-url"
    )


def pytest_configure(config: pytest.Config) -> None:
    for marker in MARKERS.values():
        config.addinivalue_line("markers", marker)


def _options(request: pytest.FixtureRequest, name: str) -> dict[str, Any]:
    """Keyword options for fixture `name` from its marker or its indirect parameter."""
    marker = request.node.get_closest_marker(name)
    param = getattr(request, "param", None)
    if marker is not None and param is not None:
        raise FixtureError(f"{name}: give options by the marker or by parameter, not both")
    if marker is not None:
        if marker.args:
            raise FixtureError(f"@pytest.mark.{name}: keyword arguments only, got {marker.args}")
        return dict(marker.kwargs)
    if param is not None:
        if not isinstance(param, Mapping):
            raise FixtureError(f"{name}: an indirect parameter must be a dict, got {param!r}")
        return dict(param)
    return {}


@_async_fixture
async def payg_platform(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[PaygPlatform]:
    """A seeded platform stand-in (server_stub) on 127.0.0.1, its own for each test:
    url, db, fixture (agents with name, code and devices; secrets; plan; price_per_day),
    audit_token, mm_secret, agents, devices, plan, price_per_day; audit() -> AuditClient,
    await pay(device, amount, msisdn=None) -> the operator's Txn, meter(serial, now=0.0).
    Size and faults: @pytest.mark.payg_platform(agents=2, devices=6, protocols={"nexus-full":
    1}, price_per_day=500, seed=1, faults=PlatformFaults(...), mobile_money=True,
    mm_secret=None, audit=True, audit_token=None), or an indirect parameter with those keys.
    """
    from field_lab.testing.platform import PlatformSpec, running_platform

    spec = PlatformSpec.of(_options(request, "payg_platform"))
    async with running_platform(tmp_path_factory.mktemp("payg-platform"), spec) as platform:
        yield platform


@pytest.fixture
def _payg_handset_url(request: pytest.FixtureRequest, payg_platform: PaygPlatform) -> str:
    """Where payg_agent connects: through payg_link when the test uses it, else straight."""
    if "payg_link" in request.fixturenames:
        link: PaygLink = request.getfixturevalue("payg_link")
        return link.url
    return payg_platform.url


@_async_fixture
async def payg_agent(
    request: pytest.FixtureRequest,
    payg_platform: PaygPlatform,
    _payg_handset_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Agent]:
    """A provisioned handset (agent_client.Agent) of the platform's first agent, closed at
    teardown; through payg_link when the test uses it, else straight to payg_platform. Its
    stock is payg_platform.agents[0].devices; sell on payg_platform.plan with a down payment
    of whole days at payg_platform.price_per_day. Another agent or sync pacing:
    @pytest.mark.payg_agent(agent=1, config=SyncConfig(backoff_base_s=0.05)).
    """
    from agent_client.agent import Agent
    from agent_client.protocol.sync import SyncConfig

    options = _checked(_options(request, "payg_agent"), ("agent", "config"), "payg_agent")
    index, config = options.get("agent", 0), options.get("config")
    count = len(payg_platform.agents)
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < count:
        raise FixtureError(f"payg_agent: agent must be an index 0..{count - 1}, got {index!r}")
    if config is not None and not isinstance(config, SyncConfig):
        raise FixtureError(f"payg_agent: config must be an agent_client SyncConfig, got {config!r}")
    spec = payg_platform.agents[index]
    db = tmp_path_factory.mktemp("payg-agent") / "handset.db"
    agent = await Agent.provision(db, _payg_handset_url, spec.name, spec.code, config=config)
    try:
        yield agent
    finally:
        await agent.close()


@pytest.fixture
def payg_meter(payg_platform: PaygPlatform) -> Callable[..., Meter]:
    """payg_meter(serial, now=0.0): a fresh simulated meter (meter_sim.Meter) holding that
    platform device's secret, its clock at `now` s; meter.enter_keycode(text, now) types a
    keycode. A serial not on the platform raises FixtureError naming the platform's range.
    """
    return payg_platform.meter


@_async_fixture
async def payg_link(
    request: pytest.FixtureRequest, payg_platform: PaygPlatform
) -> AsyncIterator[PaygLink]:
    """An emulated 2G link between handset and platform with live controls, as toxiproxy:
    url (payg_agent uses it when the test asks for payg_link); set_profile(name or Profile);
    start_outage(), stop_outage(), `with payg_link.outage():` (bytes wait; connections open
    past the profile's reset_after_s are reset); cut("up" or "down", after=N) resets the
    next connection after N more bytes that way; uncut(); cuts; outage_active; profile;
    stats(). Starts on @pytest.mark.payg_link(profile="perfect", seed=0).
    """
    from field_lab.testing.link import LinkSpec, linked

    spec = LinkSpec(**_checked(_options(request, "payg_link"), ("profile", "seed"), "payg_link"))
    async with linked(payg_platform.url, spec) as link:
        yield link


@pytest.fixture
def payg_dut(request: pytest.FixtureRequest) -> Iterator[Dut]:
    """A device under test speaking the meter line protocol (docs/line-protocol.md): on
    --payg-dut-url URL (/dev/ttyUSB0, /dev/pts/N, socket://H:P, rfc2217://H:P, loop://,
    tcp://H:P) at --payg-baud N (--payg-parity, --payg-rtscts, --payg-xonxoff), else
    `meter-sim serve` started for the test (TCP on 127.0.0.1;
    @pytest.mark.payg_dut(pty=True, protocol=, key=, starting_code=, timeout=)).
    write(line); expect(regex or list, timeout=None) -> re.Match, consuming output up to it
    (DutTimeout names the pattern and the last lines seen); command(line) -> the OK/ERR
    answer line; typed calls through meter_sim.line_client.LineClient: hello(), key(k),
    code(text), time(s), wait(s), status(), power(), reset(); lines; name.
    """
    from field_lab.testing.dut import SimulatorSpec, open_dut, simulator

    options = _options(request, "payg_dut")
    timeout = options.pop("timeout", None)
    known = ("protocol", "key", "starting_code", "pty")
    spec = SimulatorSpec(**_checked(options, known, "payg_dut"))
    timeout_s = 10.0 if timeout is None else timeout
    if not isinstance(timeout_s, int | float) or isinstance(timeout_s, bool) or timeout_s <= 0:
        raise FixtureError(f"payg_dut: timeout must be a number > 0, got {timeout!r}")
    url: str | None = request.config.getoption("--payg-dut-url")
    baud: int = request.config.getoption("--payg-baud")
    if url:
        from meter_sim.trace.targets import SerialSettings

        try:
            serial = SerialSettings(
                baudrate=baud,
                parity=request.config.getoption("--payg-parity"),
                rtscts=request.config.getoption("--payg-rtscts"),
                xonxoff=request.config.getoption("--payg-xonxoff"),
            )
        except ValueError as exc:
            raise FixtureError(f"payg_dut: {exc}") from exc
        dut = open_dut(url, serial=serial, timeout_s=float(timeout_s))
        try:
            yield dut
        finally:
            dut.close()
        return
    with simulator(spec, baud=baud, timeout_s=float(timeout_s)) as dut:
        yield dut


def _checked(options: dict[str, Any], known: tuple[str, ...], name: str) -> dict[str, Any]:
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise FixtureError(f"{name}: unknown argument(s) {unknown}; known: {list(known)}")
    return options
