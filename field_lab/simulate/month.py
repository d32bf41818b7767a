"""A month of field life: the scenario's `[simulate]` table and `[[incident]]` entries, and the
seeded generators that turn them into payment times, link-outage windows and working hours.

Everything here is pure: the engine asks, this module answers from (config, seed). Times are
simulated seconds since day 0 00:00; day 0 is weekday 0 (visit days count from it).

    [simulate]
    days = 30
    villages = 20                     # devices and agents are spread over these

    [simulate.agents]
    hours = ["08:00", "17:00"]        # working window on a visit day
    visit_days = [0, 1, 2, 3, 4, 5]   # weekdays (day % 7) agents work
    jitter_min = 30                   # each agent starts/ends up to this much earlier or later

    [simulate.plans.solar-home]       # one table per plan
    price_per_day = 500
    days_per_payment = 7              # each payment buys this many days
    habits = { on_time = 0.6, late = 0.2, defaulter = 0.05, advance = 0.15 }
    late_days = [1, 4]                # late payers pay this long after credit ran out
    advance_days = [1, 3]             # advance payers pay this long before it runs out

    [simulate.coverage.good]          # village coverage classes, shares of the villages
    share = 0.7
    outages_per_day = 0.3
    outage_hours = [0.25, 1]
    peak = ["18:00", "22:00"]         # diurnal: outages start mostly in this window
    peak_share = 0.6

    [[incident]]
    kind = "platform_down"            # also operator_delay, sms_loss, agent_offline
    day = 3
    at = "10:00"
    hours = 2
"""

from __future__ import annotations

import math
import random
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from field_lab.scenario import Scenario, ScenarioError, _fail, _number
from field_lab.scenario import parse as parse_scenario

T = TypeVar("T")

DAY = 86_400.0
HOUR = 3_600.0
WEEK_DAYS = 7
PAY_HOURS = (7 * HOUR, 21 * HOUR)
"""Customers pay mobile money between 07:00 and 21:00."""

HABITS = ("on_time", "late", "defaulter", "advance")
INCIDENT_KINDS = ("platform_down", "operator_delay", "sms_loss", "agent_offline")
STAGES = ("operator", "platform", "delivery", "entry")
"""A payment's way to the meter (see `darkness.Stage`)."""

INCIDENT_STAGES: dict[str, tuple[tuple[str, str], ...]] = {
    # (stage name, delivery via or "" for any): what each incident kind holds up.
    "platform_down": (
        ("operator", ""),
        ("platform", ""),
        ("delivery", "agent"),
        ("delivery", "metrics"),
    ),
    "operator_delay": (("operator", ""),),
    "sms_loss": (("delivery", "sms"),),
    "agent_offline": (("delivery", "agent"),),
}


# -- the model ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Incident:
    """One declared incident. `start`/`end` are simulated seconds; `name` labels it in reports."""

    kind: str
    day: int
    at_min: int
    """Minutes after 00:00 of `day`."""
    hours: float
    delay_hours: float = 0.0
    """operator_delay: how late each callback arrives."""
    loss: float = 0.0
    """sms_loss: the share of keycode SMS the gateway drops."""
    agent: int | str | None = None
    """agent_offline: the agent's index in the fleet or its id (see `Month.resolve_agents`)."""

    @property
    def start(self) -> float:
        return self.day * DAY + self.at_min * 60.0

    @property
    def end(self) -> float:
        return self.start + self.hours * HOUR

    @property
    def effect_end(self) -> float:
        """Until when waiting may be this incident's fault: a callback delayed at the window's
        last minute still arrives `delay_hours` later."""
        return self.end + self.delay_hours * HOUR

    @property
    def scope(self) -> str:
        """The link scope an agent_offline incident silences ("" for the others)."""
        return agent_scope(self.agent) if self.kind == "agent_offline" else ""

    @property
    def when(self) -> str:
        return (
            f"day {self.day} {self.at_min // 60:02d}:{self.at_min % 60:02d} ({_num(self.hours)} h)"
        )

    @property
    def name(self) -> str:
        what = {
            "platform_down": "platform outage",
            "operator_delay": f"operator callbacks {_num(self.delay_hours)} h late",
            "sms_loss": f"SMS gateway losing {_num(self.loss * 100)} %",
            "agent_offline": f"{self._agent_label} phone offline",
        }[self.kind]
        return f"{what} {self.when}"

    @property
    def _agent_label(self) -> str:
        """ "agent 17" for an index, the id itself when it already says agent ("agent-00017")."""
        label = str(self.agent)
        return label if label.lower().startswith("agent") else f"agent {label}"

    def holds_up(self, stage: str, via: str, scope: str) -> bool:
        """Whether this incident delays a payment in `stage` (delivered `via`, over `scope`)."""
        if not any(s == stage and v in ("", via) for s, v in INCIDENT_STAGES[self.kind]):
            return False
        return self.kind != "agent_offline" or scope == self.scope

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "day": self.day,
            "at": f"{self.at_min // 60:02d}:{self.at_min % 60:02d}",
            "hours": self.hours,
        }
        if self.kind == "operator_delay":
            out["delay_hours"] = self.delay_hours
        if self.kind == "sms_loss":
            out["loss"] = self.loss
        if self.kind == "agent_offline":
            out["agent"] = self.agent
        return out


def agent_scope(agent: int | str | None) -> str:
    """The link scope string of an agent's handset (use it as `Stage.scope`/`Outage.scope`)."""
    return f"agent:{agent}"


def village_scope(village: int) -> str:
    return f"village:{village}"


@dataclass(frozen=True)
class AgentHours:
    hours: tuple[int, int] = (8 * 60, 17 * 60)
    """Working window, minutes after 00:00."""
    visit_days: tuple[int, ...] = (0, 1, 2, 3, 4, 5)
    jitter_min: int = 30


@dataclass(frozen=True)
class Plan:
    price_per_day: int = 500
    days_per_payment: int = 7
    habits: dict[str, float] = field(
        default_factory=lambda: {"on_time": 0.6, "late": 0.2, "defaulter": 0.05, "advance": 0.15}
    )
    late_days: tuple[float, float] = (1.0, 4.0)
    advance_days: tuple[float, float] = (1.0, 3.0)


@dataclass(frozen=True)
class Coverage:
    share: float = 1.0
    outages_per_day: float = 0.3
    outage_hours: tuple[float, float] = (0.25, 1.0)
    peak: tuple[int, int] = (18 * 60, 22 * 60)
    """Minutes after 00:00; a window may wrap past midnight (e.g. 22:00 to 02:00)."""
    peak_share: float = 0.6


def _default_coverage() -> dict[str, Coverage]:
    return {
        "good": Coverage(share=0.7, outages_per_day=0.3, outage_hours=(0.25, 1.0)),
        "poor": Coverage(share=0.3, outages_per_day=2.0, outage_hours=(0.5, 4.0)),
    }


@dataclass(frozen=True)
class Month:
    days: int = 30
    villages: int = 20
    agents: AgentHours = field(default_factory=AgentHours)
    plans: dict[str, Plan] = field(default_factory=lambda: {"solar-home": Plan()})
    coverage: dict[str, Coverage] = field(default_factory=_default_coverage)
    incidents: tuple[Incident, ...] = ()

    @property
    def end(self) -> float:
        return self.days * DAY

    def with_days(self, days: int) -> Month:
        """The same month cut or stretched to `days` (the CLI's --days), re-validated."""
        raw = to_dict(self)
        raw["simulate"]["days"] = days
        return parse(raw)

    def resolve_agents(self, agent_ids: Sequence[str]) -> Month:
        """Name each agent_offline incident's agent by id (an index becomes `agent_ids[index]`);
        an unknown agent is the scenario's fault."""
        out = []
        for i, inc in enumerate(self.incidents):
            if inc.kind == "agent_offline":
                agent = inc.agent
                if isinstance(agent, int):
                    if agent >= len(agent_ids):
                        raise ScenarioError(
                            f"incident[{i}].agent: index {agent} but the fleet has"
                            f" {len(agent_ids)} agents (0 to {len(agent_ids) - 1})"
                        )
                    agent = agent_ids[agent]
                elif agent not in agent_ids:
                    raise ScenarioError(f"incident[{i}].agent: no agent with id {agent!r}")
                inc = Incident(inc.kind, inc.day, inc.at_min, inc.hours, agent=agent)
            out.append(inc)
        _unique(out)  # an index and an id may name the same agent
        return Month(self.days, self.villages, self.agents, self.plans, self.coverage, tuple(out))


def _num(x: float) -> str:
    return f"{x:g}"


# -- parsing ------------------------------------------------------------------------------


def _table(path: str, value: object, known: Sequence[str] | None = None) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(path, "a table", value)
    if known is not None:
        for key in value:
            if key not in known:
                raise ScenarioError(f"{path}.{key}: unknown field; known: {', '.join(known)}")
    return value


_CLOCK = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


def _clock(path: str, value: object) -> int:
    match = _CLOCK.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise _fail(path, 'a time of day "HH:MM" (00:00 to 23:59)', value)
    return int(match[1]) * 60 + int(match[2])


def _clock_window(path: str, value: object) -> tuple[int, int]:
    if not isinstance(value, list) or len(value) != 2:
        raise _fail(path, '["HH:MM", "HH:MM"]', value)
    return (_clock(f"{path}[0]", value[0]), _clock(f"{path}[1]", value[1]))


def _range(path: str, value: object, *, low: float, high: float) -> tuple[float, float]:
    if not isinstance(value, list) or len(value) != 2:
        raise _fail(path, "[min, max]", value)
    lo = _number(f"{path}[0]", value[0], low=low, high=high)
    hi = _number(f"{path}[1]", value[1], low=low, high=high)
    if lo > hi:
        raise ScenarioError(f"{path}: min {lo:g} is above max {hi:g}")
    return (float(lo), float(hi))


def _shares(path: str, value: object, allowed: Sequence[str]) -> dict[str, float]:
    table = _table(path, value, allowed)
    out = {k: float(_number(f"{path}.{k}", v, low=0, high=1)) for k, v in table.items()}
    total = sum(out.values())
    if not out or not math.isclose(total, 1.0, abs_tol=1e-6):
        raise ScenarioError(f"{path}: shares must add up to 1, they add up to {total:g}")
    return out


Check = Callable[[str, Any], Any]


def _whole(low: int, high: int) -> Check:
    return lambda p, v: int(_number(p, v, low=low, high=high, integer=True))


def _real(low: float, high: float) -> Check:
    return lambda p, v: float(_number(p, v, low=low, high=high))


def _build(path: str, value: object, cls: type[T], rules: dict[str, Check]) -> T:
    """A `cls` from a table: each key given is checked by its rule, the rest are defaults."""
    table = _table(path, value, tuple(rules))
    return cls(**{k: check(f"{path}.{k}", table[k]) for k, check in rules.items() if k in table})


def _work_hours(path: str, value: object) -> tuple[int, int]:
    hours = _clock_window(path, value)
    if hours[0] >= hours[1]:
        raise ScenarioError(f"{path}: the day must end after it starts, got {value!r}")
    return hours


def _weekdays(path: str, value: object) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise _fail(path, "a non-empty list of weekdays 0 to 6", value)
    days = [_whole(0, 6)(f"{path}[{i}]", d) for i, d in enumerate(value)]
    if len(set(days)) != len(days):
        raise ScenarioError(f"{path}: a weekday is listed twice: {days}")
    return tuple(sorted(days))


def _agents(path: str, value: object) -> AgentHours:
    rules = {"hours": _work_hours, "visit_days": _weekdays, "jitter_min": _whole(0, 180)}
    return _build(path, value, AgentHours, rules)


def _plan(path: str, value: object) -> Plan:
    rules: dict[str, Check] = {
        "price_per_day": _whole(1, 10**9),
        "days_per_payment": _whole(1, 365),
        "habits": lambda p, v: _shares(p, v, HABITS),
        "late_days": lambda p, v: _range(p, v, low=0, high=60),
        "advance_days": lambda p, v: _range(p, v, low=0, high=60),
    }
    return _build(path, value, Plan, rules)


def _coverage(path: str, value: object) -> Coverage:
    rules: dict[str, Check] = {
        "share": _real(0, 1),
        "outages_per_day": _real(0, 48),
        "outage_hours": lambda p, v: _range(p, v, low=0, high=72),
        "peak": _clock_window,
        "peak_share": _real(0, 1),
    }
    return _build(path, value, Coverage, rules)


_INCIDENT_EXTRA = {
    "platform_down": (),
    "operator_delay": ("delay_hours",),
    "sms_loss": ("loss",),
    "agent_offline": ("agent",),
}


def _incident(path: str, value: object, days: int) -> Incident:
    table = _table(path, value)
    kind = table.get("kind")
    if kind not in INCIDENT_KINDS:
        raise _fail(f"{path}.kind", f"one of {', '.join(INCIDENT_KINDS)}", kind)
    extra = _INCIDENT_EXTRA[kind]
    _table(path, table, ("kind", "day", "at", "hours", *extra))
    for key in ("day", "at", "hours", *extra):
        if key not in table:
            raise ScenarioError(f"{path}.{key}: missing (a {kind} incident needs it)")
    day = int(_number(f"{path}.day", table["day"], low=0, high=days - 1, integer=True))
    at_min = _clock(f"{path}.at", table["at"])
    hours = _number(f"{path}.hours", table["hours"], low=0, high=days * 24)
    if hours <= 0:
        raise _fail(f"{path}.hours", "a number above 0", hours)
    delay = loss = 0.0
    agent: int | str | None = None
    if kind == "operator_delay":
        delay = _number(f"{path}.delay_hours", table["delay_hours"], low=0, high=24 * 30)
        if delay <= 0:
            raise _fail(f"{path}.delay_hours", "a number above 0", delay)
    if kind == "sms_loss":
        loss = _number(f"{path}.loss", table["loss"], low=0, high=1)
        if loss <= 0:
            raise _fail(f"{path}.loss", "a share above 0 and at most 1", loss)
    if kind == "agent_offline":
        agent = table["agent"]
        is_index = isinstance(agent, int) and not isinstance(agent, bool) and agent >= 0
        if not is_index and not (isinstance(agent, str) and agent.strip()):
            raise _fail(f"{path}.agent", "an agent index (0, 1, ...) or an agent id", agent)
    return Incident(kind, day, at_min, float(hours), float(delay), float(loss), agent)


def parse(raw: Mapping[str, Any]) -> Month:
    """The month from a parsed scenario TOML table (its `simulate` and `incident` keys)."""
    known = ("days", "villages", "agents", "plans", "coverage")
    table = _table("simulate", raw.get("simulate", {}), known)
    d = Month()
    days = _whole(1, 366)("simulate.days", table.get("days", d.days))
    villages = _whole(1, 100_000)("simulate.villages", table.get("villages", d.villages))
    agents = _agents("simulate.agents", table.get("agents", {}))
    plans = d.plans
    if "plans" in table:
        plan_tables = _table("simulate.plans", table["plans"])
        if not plan_tables:
            raise ScenarioError("simulate.plans: expected at least one plan table")
        plans = {str(k): _plan(f"simulate.plans.{k}", v) for k, v in plan_tables.items()}
    coverage = d.coverage
    if "coverage" in table:
        classes = _table("simulate.coverage", table["coverage"])
        coverage = {str(k): _coverage(f"simulate.coverage.{k}", v) for k, v in classes.items()}
        total = sum(c.share for c in coverage.values())
        if not coverage or not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ScenarioError(
                f"simulate.coverage: the classes' shares must add up to 1, they add up to {total:g}"
            )
    items = raw.get("incident", [])
    if not isinstance(items, list):
        raise _fail("incident", "[[incident]] tables", items)
    incidents = tuple(_incident(f"incident[{i}]", item, days) for i, item in enumerate(items))
    _unique(incidents)
    return Month(days, villages, agents, plans, coverage, incidents)


def _unique(incidents: Sequence[Incident]) -> None:
    """Two incidents with one name would share one line of every output: refuse them."""
    seen: dict[str, int] = {}
    for i, inc in enumerate(incidents):
        if inc.name in seen:
            raise ScenarioError(f"incident[{i}]: the same as incident[{seen[inc.name]}]")
        seen[inc.name] = i


def to_dict(month: Month) -> dict[str, Any]:
    """TOML-shaped: `parse(to_dict(m)) == m`."""

    def clock(minutes: int) -> str:
        return f"{minutes // 60:02d}:{minutes % 60:02d}"

    return {
        "simulate": {
            "days": month.days,
            "villages": month.villages,
            "agents": {
                "hours": [clock(m) for m in month.agents.hours],
                "visit_days": list(month.agents.visit_days),
                "jitter_min": month.agents.jitter_min,
            },
            "plans": {
                name: {
                    "price_per_day": p.price_per_day,
                    "days_per_payment": p.days_per_payment,
                    "habits": dict(p.habits),
                    "late_days": list(p.late_days),
                    "advance_days": list(p.advance_days),
                }
                for name, p in month.plans.items()
            },
            "coverage": {
                name: {
                    "share": c.share,
                    "outages_per_day": c.outages_per_day,
                    "outage_hours": list(c.outage_hours),
                    "peak": [clock(m) for m in c.peak],
                    "peak_share": c.peak_share,
                }
                for name, c in month.coverage.items()
            },
        },
        "incident": [inc.to_dict() for inc in month.incidents],
    }


def loads(text: str) -> tuple[Scenario, Month]:
    """A scenario file with a month in it: the lab scenario and the month, both validated."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"not valid TOML: {exc}") from exc
    rest = {k: v for k, v in raw.items() if k not in ("simulate", "incident")}
    return parse_scenario(rest), parse(raw)


def load(path: str | Path) -> tuple[Scenario, Month]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"cannot read scenario {path}: {exc}") from exc
    return loads(text)


# -- seeded generators --------------------------------------------------------------------


@dataclass(frozen=True)
class Payment:
    at: float
    """Simulated seconds when the customer pays."""
    amount: int
    days: int
    """Days of credit the amount buys."""


def _rng(seed: int, *parts: object) -> random.Random:
    """One generator per (seed, what): independent of how many others were drawn."""
    return random.Random(":".join(str(p) for p in (seed, *parts)))


def habit_of(seed: int, customer: int, plan: Plan) -> str:
    """The customer's habit, drawn from the plan's shares."""
    rng = _rng(seed, "habit", customer)
    names = [h for h in HABITS if plan.habits.get(h, 0.0) > 0]
    return rng.choices(names, weights=[plan.habits[h] for h in names])[0]


def _pay_hours(rng: random.Random, t: float) -> float:
    """`t` moved into paying hours (07:00-21:00): at night, to the next morning's first two."""
    day, into = divmod(t, DAY)
    if PAY_HOURS[0] <= into < PAY_HOURS[1]:
        return t
    if into >= PAY_HOURS[1]:
        day += 1
    return day * DAY + PAY_HOURS[0] + rng.uniform(0, 2 * HOUR)


def payments(
    *, seed: int, customer: int, plan: Plan, habit: str, credit_until: float, days: int
) -> tuple[Payment, ...]:
    """When a customer with `habit` pays in a `days`-long month, starting with credit until
    `credit_until` (seconds; may be 0 or past). Each payment buys `plan.days_per_payment` days.
    Defaulters never pay. Sorted, all within [0, days * DAY)."""
    if habit not in HABITS:
        raise ValueError(f"habit {habit!r}: expected one of {', '.join(HABITS)}")
    rng = _rng(seed, "payments", customer)
    end = days * DAY
    out: list[Payment] = []
    if habit == "defaulter":
        return ()
    amount = plan.price_per_day * plan.days_per_payment
    last = 0.0
    for _ in range(days + 2):  # at most one payment a day (days_per_payment >= 1)
        if habit == "on_time":
            target = credit_until - rng.uniform(0, 12 * HOUR)
        elif habit == "late":
            target = credit_until + rng.uniform(*plan.late_days) * DAY
        else:
            target = credit_until - rng.uniform(*plan.advance_days) * DAY
        at = _pay_hours(rng, max(target, last, 0.0))
        if at >= end:
            break
        out.append(Payment(at, amount, plan.days_per_payment))
        credit_until = max(credit_until, at) + plan.days_per_payment * DAY
        last = at + HOUR
    return tuple(out)


def village_outages(
    *, seed: int, village: int, coverage: Coverage, days: int
) -> tuple[tuple[float, float], ...]:
    """A village's link-outage windows (start, end) for the month: Poisson many a day, starting
    in the peak window with `peak_share`; merged where they overlap, within [0, days * DAY]."""
    rng = _rng(seed, "village", village)
    windows: list[tuple[float, float]] = []
    for day in range(days):
        count = _poisson(rng, coverage.outages_per_day)
        for _ in range(count):
            if rng.random() < coverage.peak_share:
                lo, hi = coverage.peak
                span = (hi - lo) % (24 * 60) or 24 * 60
                minute = (lo + rng.uniform(0, span)) % (24 * 60)
            else:
                minute = rng.uniform(0, 24 * 60)
            start = day * DAY + minute * 60
            length = rng.uniform(*coverage.outage_hours) * HOUR
            windows.append((start, min(start + length, days * DAY)))
    return _merge(sorted(w for w in windows if w[1] > w[0]))


def coverage_of(seed: int, village: int, month: Month) -> str:
    """Which coverage class a village is in (drawn by the classes' shares)."""
    rng = _rng(seed, "coverage", village)
    names = [n for n, c in month.coverage.items() if c.share > 0]
    return rng.choices(names, weights=[month.coverage[n].share for n in names])[0]


def working_windows(
    *, seed: int, agent: int, hours: AgentHours, days: int
) -> tuple[tuple[float, float], ...]:
    """An agent's working windows: one per visit day, its start and end each moved by up to
    `jitter_min` minutes (the same shift every day for one agent)."""
    rng = _rng(seed, "agent", agent)
    shift_start = rng.uniform(-hours.jitter_min, hours.jitter_min) * 60
    shift_end = rng.uniform(-hours.jitter_min, hours.jitter_min) * 60
    # within the day, at least a minute long, however far the jitter moved them
    lo = min(max(0.0, hours.hours[0] * 60 + shift_start), DAY - 60)
    hi = min(max(lo + 60, hours.hours[1] * 60 + shift_end), DAY)
    return tuple(
        (day * DAY + lo, day * DAY + hi)
        for day in range(days)
        if day % WEEK_DAYS in hours.visit_days
    )


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method, bounded (mean is at most 48 a day)."""
    limit, k, p = math.exp(-mean), 0, 1.0
    while k < 1000:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1
    return k


def _merge(windows: Sequence[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
    out: list[tuple[float, float]] = []
    for start, end in windows:
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return tuple(out)
