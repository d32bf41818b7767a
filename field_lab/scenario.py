"""Scenario files: what a lab run puts in the field, for how long, and what must hold.

A scenario is TOML. Every field has a default (the built-in scenario is the empty file), and
every value is checked on load with an error that names the field, what it expected and what
it got, so a typo fails before the run, not during it.

    name = "village-day"
    seed = 7
    duration_s = 75              # real seconds of field activity
    settle_s = 45                # then: no new actions; ends early once all has settled
    time_scale = 1440            # meters' virtual seconds per real second (1 min = 1 day)

    [fleet]
    agents = 200
    devices = 2000
    distributors = 3             # agents work for these in turn; each reads its own reports
    links = { gprs-typ = 0.5, gprs-bad = 0.2, edge-typ = 0.2, "3g" = 0.1 }
    outages = [ { at_s = 30, for_s = 12, share = 0.25 } ]

    [devices]
    protocols = { nexus-full = 0.5, nexus-small = 0.2, openpaygo = 0.3 }
    installed_share = 0.7        # devices already sold before the run (customers who pay)

    [agents]
    visits_per_hour = 40         # per agent, real time, Poisson
    visit_s = 90                 # a sale succeeds if the device is activated within this
    sync_interval_s = 15         # background sync besides sync-on-enqueue
    behaviour = ""               # MODULE:CLASS of your own AgentBehaviour (docs/library.md)

    [customers]
    payments_per_hour = 6        # per installed device, real time, Poisson
    mobile_money_share = 0.8     # the rest pay cash to an agent
    sms_share = 0.8              # keycodes by SMS; the rest only through the agent's handset
    seconds_per_key = 0.35
    typo_rate = 0.02             # per code: a typo costs an attempt and a retype
    behaviour = ""               # MODULE:CLASS of your own CustomerBehaviour

    [mobile_money]               # the operator's callbacks to the platform
    delay_s = [1, 8]
    reorder_window_s = 3
    duplicate_rate = 0.05
    lost_answer_rate = 0.03
    failure_rate = 0.01

    [sms]                        # keycodes to customers' phones
    delay_s = [2, 20]
    loss_rate = 0.03
    resend_after_s = 30

    [reports]
    readers = 4
    interval_s = 2.0

    [slo]
    activation_s = ["p(95)<120"]
    sale_failed = ["rate<0.05"]
    lost_ops = ["count==0"]

    [metering]                   # meters with their own 2G link (OpenPAYGO Metrics)
    metered_share = 0            # share of devices that report; payments also reach them so
    report_every_h = 4           # device hours between reports
    link = "gprs-typ"            # their link profile
    budget_kb_month = 750        # the 2G data budget bytes per device are compared with

    [checks]
    waive = []                   # checks whose thresholds may pass without evidence
    pass_without_samples = []    # metrics whose thresholds pass with no samples (else FAIL)
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from field_lab.check.keys import FIGURES
from field_lab.errors import ConfigError
from field_lab.measure.slo import SLOError, Threshold, parse_thresholds
from field_lab.protocols import SCENARIO_PROTOCOLS

LINK_PROFILES = ("perfect", "3g", "edge-typ", "gprs-typ", "gprs-bad", "offline")

METRICS: dict[str, str] = {
    "activation_s": "trend",
    "sale_activation_s": "trend",
    "sync_s": "trend",
    "sync_floor_ratio": "trend",
    "report_s": "trend",
    "sale_failed": "rate",
    "report_failed": "rate",
    "payment_unactivated": "rate",
    **dict.fromkeys(FIGURES, "counter"),
}
"""Every metric a threshold may name, with its kind (see `field_lab.measure.slo`)."""


class ScenarioError(ConfigError):
    """The scenario file is wrong; the message names the field (the scenario's fault)."""


@dataclass(frozen=True)
class Outage:
    at_s: float
    for_s: float
    share: float


@dataclass(frozen=True)
class Fleet:
    agents: int = 200
    devices: int = 2000
    distributors: int = 3
    """The platform's tenants the agents work for, in turn (at most one per agent)."""
    links: dict[str, float] = field(
        default_factory=lambda: {"gprs-typ": 0.5, "gprs-bad": 0.2, "edge-typ": 0.2, "3g": 0.1}
    )
    outages: tuple[Outage, ...] = (Outage(at_s=30, for_s=12, share=0.25),)


@dataclass(frozen=True)
class Devices:
    protocols: dict[str, float] = field(
        default_factory=lambda: {"nexus-full": 0.5, "nexus-small": 0.2, "openpaygo": 0.3}
    )
    installed_share: float = 0.7


@dataclass(frozen=True)
class Agents:
    visits_per_hour: float = 40.0
    visit_s: float = 90.0
    sync_interval_s: float = 15.0
    behaviour: str = ""
    """MODULE:CLASS of an `AgentBehaviour` (field_lab.workload.behaviour); empty: the built-in."""


@dataclass(frozen=True)
class Customers:
    payments_per_hour: float = 6.0
    mobile_money_share: float = 0.8
    sms_share: float = 0.8
    seconds_per_key: float = 0.35
    typo_rate: float = 0.02
    behaviour: str = ""
    """MODULE:CLASS of a `CustomerBehaviour`; empty: the built-in."""


@dataclass(frozen=True)
class MobileMoney:
    delay_s: tuple[float, float] = (1.0, 8.0)
    reorder_window_s: float = 3.0
    duplicate_rate: float = 0.05
    lost_answer_rate: float = 0.03
    failure_rate: float = 0.01


@dataclass(frozen=True)
class Sms:
    delay_s: tuple[float, float] = (2.0, 20.0)
    loss_rate: float = 0.03
    resend_after_s: float = 30.0


@dataclass(frozen=True)
class Reports:
    readers: int = 4
    interval_s: float = 2.0


@dataclass(frozen=True)
class Metering:
    metered_share: float = 0.0
    """Share of devices with their own link, reporting in OpenPAYGO Metrics (0: none)."""
    report_every_h: float = 4.0
    """Device hours between two reports."""
    link: str = "gprs-typ"
    budget_kb_month: float = 750.0


@dataclass(frozen=True)
class Checks:
    waive: tuple[str, ...] = ()
    """Judge figures whose thresholds may pass unchecked (no evidence); say why in a comment."""
    pass_without_samples: tuple[str, ...] = ()
    """Metrics whose thresholds pass when nothing was measured (e.g. no sale in a short run)."""


DEFAULT_SLO: dict[str, list[str]] = {
    "activation_s": ["p(95)<120"],
    "sale_failed": ["rate<0.05"],
    "report_failed": ["rate<0.01"],
    "lost_ops": ["count==0"],
    "duplicate_ops": ["count==0"],
    "overcredited_meters": ["count==0"],
    "undercredited_meters": ["count==0"],
}


@dataclass(frozen=True)
class Scenario:
    name: str = "default"
    seed: int = 1
    duration_s: float = 75.0
    settle_s: float = 45.0
    time_scale: float = 1440.0
    fleet: Fleet = field(default_factory=Fleet)
    devices: Devices = field(default_factory=Devices)
    agents: Agents = field(default_factory=Agents)
    customers: Customers = field(default_factory=Customers)
    mobile_money: MobileMoney = field(default_factory=MobileMoney)
    sms: Sms = field(default_factory=Sms)
    reports: Reports = field(default_factory=Reports)
    slo: dict[str, list[str]] = field(default_factory=lambda: dict(DEFAULT_SLO))
    checks: Checks = field(default_factory=Checks)
    metering: Metering = field(default_factory=Metering)

    @property
    def thresholds(self) -> list[Threshold]:
        return parse_thresholds(self.slo, METRICS)

    def with_overrides(self, **changes: Any) -> Scenario:
        """Apply CLI overrides (`agents`, `devices`, `duration_s`, `seed`), re-validated."""
        raw = to_dict(self)
        for key, value in changes.items():
            if value is None:
                continue
            if key in ("agents", "devices"):
                raw["fleet"][key] = value
            else:
                raw[key] = value
        return parse(raw)


# -- validation ---------------------------------------------------------------------------


def _fail(path: str, expected: str, got: object) -> ScenarioError:
    return ScenarioError(f"{path}: expected {expected}, got {got!r}")


def _number(path: str, value: object, *, low: float, high: float, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(path, "a number", value)
    if integer and not isinstance(value, int):
        raise _fail(path, "a whole number", value)
    if not math.isfinite(value) or not low <= value <= high:
        raise _fail(path, f"a number from {low:g} to {high:g}", value)
    return value


def _share(path: str, value: object) -> float:
    return _number(path, value, low=0.0, high=1.0)


def _mix(path: str, value: object, allowed: tuple[str, ...]) -> dict[str, float]:
    if not isinstance(value, Mapping) or not value:
        raise _fail(path, f"a table of shares over {', '.join(allowed)}", value)
    out = {}
    for key, share in value.items():
        if key not in allowed:
            raise ScenarioError(f"{path}.{key}: unknown; choose from {', '.join(allowed)}")
        out[key] = _share(f"{path}.{key}", share)
    total = sum(out.values())
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        raise ScenarioError(f"{path}: shares must add up to 1, they add up to {total:g}")
    return out


def _table(path: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(path, "a table", value)
    return value


def _check_keys(path: str, table: Mapping[str, Any], cls: type) -> None:
    known = {f.name for f in fields(cls)}
    for key in table:
        if key not in known:
            where = f"{path}.{key}" if path else key
            raise ScenarioError(f"{where}: unknown field; known: {', '.join(sorted(known))}")


def _section(path: str, raw: Mapping[str, Any], cls: type, rules: dict[str, Any]) -> Any:
    table = _table(path, raw.get(path, {}))
    _check_keys(path, table, cls)
    values = {
        name: check(f"{path}.{name}", table[name]) for name, check in rules.items() if name in table
    }
    return cls(**values)


def _choice(path: str, value: object, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise _fail(path, f"one of {', '.join(allowed)}", value)
    return value


def _interval(path: str, value: object) -> tuple[float, float]:
    if not isinstance(value, list) or len(value) != 2:
        raise _fail(path, "[min, max] seconds", value)
    lo = _number(f"{path}[0]", value[0], low=0, high=3600)
    hi = _number(f"{path}[1]", value[1], low=0, high=3600)
    if lo > hi:
        raise ScenarioError(f"{path}: min {lo:g} is above max {hi:g}")
    return (lo, hi)


def _outages(path: str, value: object) -> tuple[Outage, ...]:
    if not isinstance(value, list):
        raise _fail(path, "a list of { at_s, for_s, share }", value)
    out = []
    for i, item in enumerate(value):
        where = f"{path}[{i}]"
        table = _table(where, item)
        _check_keys(where, table, Outage)
        missing = {"at_s", "for_s", "share"} - set(table)
        if missing:
            raise ScenarioError(f"{where}: missing {', '.join(sorted(missing))}")
        out.append(
            Outage(
                at_s=_number(f"{where}.at_s", table["at_s"], low=0, high=86400),
                for_s=_number(f"{where}.for_s", table["for_s"], low=0, high=86400),
                share=_share(f"{where}.share", table["share"]),
            )
        )
    return tuple(out)


def _import_path(path: str, value: object) -> str:
    """MODULE:CLASS, checked for shape here; imported when the run builds its behaviours.
    Empty: the built-in behaviour."""
    if value == "":
        return ""
    module, sep, name = value.partition(":") if isinstance(value, str) else ("", "", "")
    ok = sep and name.isidentifier() and all(p.isidentifier() for p in module.split("."))
    if not ok:
        raise _fail(path, "MODULE:CLASS, e.g. 'mypkg.habits:MarketDayAgent'", value)
    return str(value)


def _waive(path: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(path, "a list of check names", value)
    unknown = [v for v in value if v not in FIGURES]
    if unknown:
        raise ScenarioError(f"{path}: {unknown[0]!r} is not a check; checks: {', '.join(FIGURES)}")
    return tuple(value)


def _metric_names(path: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(path, "a list of metric names", value)
    unknown = [v for v in value if v not in METRICS]
    if unknown:
        raise ScenarioError(
            f"{path}: {unknown[0]!r} is not a metric; metrics: {', '.join(METRICS)}"
        )
    return tuple(value)


def parse(raw: Mapping[str, Any]) -> Scenario:
    """Build a Scenario from a parsed TOML table, checking every field."""
    _check_keys("", raw, Scenario)
    top: dict[str, Any] = {}
    if "name" in raw:
        if not isinstance(raw["name"], str) or not raw["name"].strip():
            raise _fail("name", "a non-empty string", raw["name"])
        top["name"] = raw["name"]
    for key, low, high, integer in (
        ("seed", 0, 2**63 - 1, True),
        ("duration_s", 1, 86400, False),
        ("settle_s", 0, 3600, False),
        ("time_scale", 1, 1e6, False),
    ):
        if key in raw:
            top[key] = _number(key, raw[key], low=low, high=high, integer=integer)
    fleet = _section(
        "fleet",
        raw,
        Fleet,
        {
            "agents": lambda p, v: int(_number(p, v, low=1, high=100_000, integer=True)),
            "devices": lambda p, v: int(_number(p, v, low=1, high=1_000_000, integer=True)),
            "distributors": lambda p, v: int(_number(p, v, low=1, high=1000, integer=True)),
            "links": lambda p, v: _mix(p, v, LINK_PROFILES),
            "outages": _outages,
        },
    )
    if fleet.devices < fleet.agents:
        raise ScenarioError(
            f"fleet.devices ({fleet.devices}) must be at least fleet.agents ({fleet.agents}):"
            " every agent holds stock"
        )
    devices = _section(
        "devices",
        raw,
        Devices,
        {"protocols": lambda p, v: _mix(p, v, SCENARIO_PROTOCOLS), "installed_share": _share},
    )
    agents = _section(
        "agents",
        raw,
        Agents,
        {
            "visits_per_hour": lambda p, v: _number(p, v, low=0, high=3600),
            "visit_s": lambda p, v: _number(p, v, low=1, high=86400),
            "sync_interval_s": lambda p, v: _number(p, v, low=0.1, high=86400),
            "behaviour": _import_path,
        },
    )
    customers = _section(
        "customers",
        raw,
        Customers,
        {
            "payments_per_hour": lambda p, v: _number(p, v, low=0, high=3600),
            "mobile_money_share": _share,
            "sms_share": _share,
            "seconds_per_key": lambda p, v: _number(p, v, low=0, high=60),
            "typo_rate": _share,
            "behaviour": _import_path,
        },
    )
    mobile_money = _section(
        "mobile_money",
        raw,
        MobileMoney,
        {
            "delay_s": _interval,
            "reorder_window_s": lambda p, v: _number(p, v, low=0, high=3600),
            "duplicate_rate": _share,
            "lost_answer_rate": _share,
            "failure_rate": _share,
        },
    )
    sms = _section(
        "sms",
        raw,
        Sms,
        {
            "delay_s": _interval,
            "loss_rate": _share,
            "resend_after_s": lambda p, v: _number(p, v, low=1, high=86400),
        },
    )
    reports = _section(
        "reports",
        raw,
        Reports,
        {
            "readers": lambda p, v: int(_number(p, v, low=0, high=1000, integer=True)),
            "interval_s": lambda p, v: _number(p, v, low=0.05, high=3600),
        },
    )
    slo = raw.get("slo", DEFAULT_SLO)
    try:
        parse_thresholds(slo, METRICS)
    except SLOError as exc:
        raise ScenarioError(f"slo.{exc}") from exc
    normalised = {k: [v] if isinstance(v, str) else list(v) for k, v in _table("slo", slo).items()}
    checks = _section(
        "checks", raw, Checks, {"waive": _waive, "pass_without_samples": _metric_names}
    )
    metering = _section(
        "metering",
        raw,
        Metering,
        {
            "metered_share": _share,
            "report_every_h": lambda p, v: _number(p, v, low=0.01, high=24 * 365),
            "link": lambda p, v: _choice(p, v, LINK_PROFILES),
            "budget_kb_month": lambda p, v: _number(p, v, low=1, high=1e9),
        },
    )
    return Scenario(
        **top,
        metering=metering,
        fleet=fleet,
        devices=devices,
        agents=agents,
        customers=customers,
        mobile_money=mobile_money,
        sms=sms,
        reports=reports,
        slo=normalised,
        checks=checks,
    )


def loads(text: str) -> Scenario:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"not valid TOML: {exc}") from exc
    return parse(raw)


def load(path: str | Path) -> Scenario:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"cannot read scenario {path}: {exc}") from exc
    return loads(text)


def to_dict(scenario: Scenario) -> dict[str, Any]:
    """A plain, TOML-shaped dict (for summary.json and re-validation)."""

    def plain(value: Any) -> Any:
        if hasattr(value, "__dataclass_fields__"):
            return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    result: dict[str, Any] = plain(scenario)
    return result


DEFAULT = Scenario()
