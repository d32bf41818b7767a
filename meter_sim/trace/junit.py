"""Replays as a JUnit XML report, so a CI system lists each trace as a test case.

One ``<testsuite>`` holds one ``<testcase>`` per trace replayed: ``classname`` is the device's
keycode protocol, ``name`` the trace path, ``time`` seconds. An identical replay passes; a
mismatch or timeout is a ``<failure>`` whose message says where, what was expected and what came
back (its text is the full mismatch report); a trace that cannot be read, a target that cannot
be used, or a replay that stopped early is an ``<error>``.

Device answers and wire incidents end up in the report, and a device may send anything: text is
made XML-safe (characters XML 1.0 cannot carry are written as Python escapes).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from meter_sim.trace.replay import Result, Status
from meter_sim.trace.report import describe_check, render_text

SUITE = "meter-sim replay"
UNKNOWN_DEVICE = "unknown-device"
"""The classname of a trace whose header could not be read."""

_NOT_XML = re.compile("[^\t\n\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
"""Characters XML 1.0 cannot carry, plus CR (a parser would read it back as LF)."""


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a case did not pass: `kind` is the element's ``type``, `message` one line."""

    kind: str
    message: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Case:
    """One trace replayed (or not): a ``<testcase>``."""

    name: str
    classname: str
    seconds: float
    failure: Problem | None = None
    error: Problem | None = None


def replay_case(result: Result, *, source: str, protocol: str, seconds: float) -> Case:
    """The case for a replay that ran: an error if it stopped early, a failure if it differed."""
    detail = "\n".join(render_text(result, source))
    if result.aborted is not None:
        error = Problem("aborted", f"replay stopped: {result.aborted}", detail)
        return Case(source, protocol, seconds, error=error)
    bad = [c for c in result.checks if c.status in (Status.MISMATCH, Status.TIMEOUT)]
    if not bad:
        return Case(source, protocol, seconds)
    where, expected, got = (" ".join(line.split()) for line in describe_check(bad[0], source)[:3])
    message = f"{where}; {expected}; {got}"
    if len(bad) > 1:
        message += f" (and {len(bad) - 1} more)"
    return Case(source, protocol, seconds, failure=Problem(bad[0].status.value, message, detail))


def error_case(error: BaseException, *, source: str, protocol: str | None, seconds: float) -> Case:
    """The case for a trace that could not be replayed at all (unreadable, no target...)."""
    problem = Problem(type(error).__name__, str(error))
    return Case(source, protocol or UNKNOWN_DEVICE, seconds, error=problem)


def xml_safe(text: str) -> str:
    """`text` with every character XML cannot carry as it is written as a Python escape."""
    return _NOT_XML.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def to_xml(
    cases: Sequence[Case], *, suite: str = SUITE, properties: Mapping[str, str] | None = None
) -> ET.Element:
    """The report as an element tree: ``<testsuites>`` around the one ``<testsuite>``."""
    failures = sum(1 for c in cases if c.failure is not None)
    errors = sum(1 for c in cases if c.error is not None)
    total = sum(c.seconds for c in cases)
    counts = {"tests": len(cases), "failures": failures, "errors": errors, "skipped": 0}
    root = ET.Element("testsuites", {k: str(v) for k, v in counts.items()}, time=_seconds(total))
    attributes = {"name": xml_safe(suite), **{k: str(v) for k, v in counts.items()}}
    testsuite = ET.SubElement(root, "testsuite", attributes, time=_seconds(total))
    if properties:
        props = ET.SubElement(testsuite, "properties")
        for name, value in properties.items():
            ET.SubElement(props, "property", name=xml_safe(name), value=xml_safe(value))
    for case in cases:
        element = ET.SubElement(
            testsuite,
            "testcase",
            classname=xml_safe(case.classname),
            name=xml_safe(case.name),
            time=_seconds(case.seconds),
        )
        for tag, problem in (("failure", case.failure), ("error", case.error)):
            if problem is not None:
                child = ET.SubElement(
                    element, tag, message=xml_safe(problem.message), type=xml_safe(problem.kind)
                )
                child.text = xml_safe(problem.detail) or None
    ET.indent(root)
    return root


def write_junit(
    path: str | Path,
    cases: Sequence[Case],
    *,
    suite: str = SUITE,
    properties: Mapping[str, str] | None = None,
) -> None:
    """Write the report to `path` (UTF-8, with an XML declaration). OSError if it cannot."""
    tree = ET.ElementTree(to_xml(cases, suite=suite, properties=properties))
    tree.write(path, encoding="utf-8", xml_declaration=True)


def _seconds(value: float) -> str:
    return f"{max(0.0, value):.3f}"
