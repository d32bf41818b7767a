"""The JUnit XML writer: valid XML whatever a device sends, and counts that match the cases."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from meter_sim.trace.errors import TargetUnreachable
from meter_sim.trace.junit import (
    Case,
    Problem,
    error_case,
    replay_case,
    to_xml,
    write_junit,
    xml_safe,
)
from meter_sim.trace.replay import Result, Status

from .test_replay_core import BEHAVIOURS, TRACE, drive

problems = st.builds(Problem, st.text(max_size=20), st.text(max_size=80), st.text(max_size=200))
cases = st.builds(
    Case,
    st.text(max_size=40),
    st.text(max_size=20),
    st.floats(0, 1e6),
    st.none() | problems,
    st.none() | problems,
)


def round_trip(cases: list[Case]) -> ET.Element:
    return ET.fromstring(ET.tostring(to_xml(cases), encoding="unicode"))


@given(st.lists(cases, max_size=5), st.dictionaries(st.text(max_size=10), st.text(max_size=20)))
def test_any_text_makes_a_report_that_parses_back(cases: list[Case], props: dict[str, str]) -> None:
    root = ET.fromstring(ET.tostring(to_xml(cases, properties=props), encoding="unicode"))
    (suite,) = root.findall("testsuite")
    assert suite.get("tests") == str(len(cases))
    assert suite.get("failures") == str(sum(c.failure is not None for c in cases))
    assert suite.get("errors") == str(sum(c.error is not None for c in cases))
    parsed = suite.findall("testcase")
    for case, element in zip(cases, parsed, strict=True):
        assert element.get("name") == xml_safe(case.name)
        assert element.get("classname") == xml_safe(case.classname)
        assert float(element.get("time", "nan")) == round(case.seconds, 3)
        for tag, problem in (("failure", case.failure), ("error", case.error)):
            found = element.find(tag)
            assert (found is None) == (problem is None)
            if problem is not None and found is not None:
                assert found.get("message") == xml_safe(problem.message)
                assert found.get("type") == xml_safe(problem.kind)
                assert (found.text or "") == xml_safe(problem.detail)
    names = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert names == {xml_safe(k): xml_safe(v) for k, v in props.items()}


def carried(ch: str) -> bool:
    """Whether XML carries `ch` unchanged (CR would come back as LF)."""
    return ch in "\t\n" or " " <= ch <= "\ud7ff" or "\ue000" <= ch <= "\ufffd" or ch >= "\U00010000"


@given(st.text())
def test_xml_safe_keeps_what_xml_can_carry_and_escapes_the_rest(text: str) -> None:
    safe = xml_safe(text)
    element = ET.Element("x", a=safe)
    element.text = safe
    back = ET.fromstring(ET.tostring(element, encoding="unicode"))
    assert (back.get("a"), back.text or "") == (safe, safe)
    if all(carried(ch) for ch in text):
        assert safe == text
    else:
        assert all(carried(ch) for ch in safe)


@given(st.lists(st.sampled_from(BEHAVIOURS), max_size=8))
def test_a_misbehaving_device_gives_one_failure_or_none(behaviours: list[str]) -> None:
    result = drive(TRACE, behaviours).result
    case = replay_case(result, source="t.jsonl", protocol="nexus-small", seconds=0.25)
    element = round_trip([case]).find("testsuite/testcase")
    assert element is not None
    bad = [c for c in result.checks if c.status in (Status.MISMATCH, Status.TIMEOUT)]
    if result.aborted is not None:
        assert element.find("error") is not None
    elif bad:
        failure = element.find("failure")
        assert failure is not None
        assert failure.get("type") == bad[0].status.value
        assert failure.get("message", "").startswith(f"{bad[0].status.value} at event ")
    else:
        assert list(element) == []


def test_a_replay_that_stopped_is_an_error() -> None:
    result = Result(aborted="the target stopped answering", abort_code=3)
    case = replay_case(result, source="t.jsonl", protocol="openpaygo", seconds=1.0)
    assert case.failure is None
    assert case.error == Problem(
        "aborted",
        "replay stopped: the target stopped answering",
        case.error.detail if case.error else "",
    )


def test_several_traces_make_one_suite(tmp_path: Path) -> None:
    passed = Case("a.jsonl", "nexus-full", 1.5)
    unreachable = error_case(
        TargetUnreachable("cannot open /dev/ttyUSB9"), source="b.jsonl", protocol=None, seconds=0
    )
    path = tmp_path / "junit.xml"
    write_junit(path, [passed, unreachable], properties={"target": "/dev/ttyUSB9"})
    assert path.read_bytes().startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    root = ET.parse(path).getroot()
    assert (root.get("tests"), root.get("errors"), root.get("time")) == ("2", "1", "1.500")
    first, second = root.findall("testsuite/testcase")
    assert (first.get("name"), list(first)) == ("a.jsonl", [])
    assert second.get("classname") == "unknown-device"
    error = second.find("error")
    assert error is not None
    assert (error.get("type"), error.get("message")) == (
        "TargetUnreachable",
        "cannot open /dev/ttyUSB9",
    )
