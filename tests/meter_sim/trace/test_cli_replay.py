"""`meter-sim replay`: exit codes, the mismatch report and the summary, on real shells."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from meter_sim.cli import main
from meter_sim.trace import Timing, load, open_target, replay
from meter_sim.trace.report import print_report

from .devices import cli_process
from .test_golden import GOLDEN_DIR

CREDIT = GOLDEN_DIR / "nexus_full_credit.jsonl"
SAMPLE_KEY = "deadbeef1020304004030201feebdaed"


def run(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["replay", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_identical_replay_exits_0_with_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(str(CREDIT), "--fast", capsys=capsys)
    assert code == 0
    assert "replay on sim (nexus-full): identical" in out
    assert "34/34 events replayed" in out
    assert "│ total   │    34 │" in out


def tampered(tmp_path: Path) -> tuple[Path, int]:
    """The credit trace with one recorded answer changed; returns (path, event index)."""
    lines = CREDIT.read_text().splitlines(keepends=True)
    number = next(i for i, line in enumerate(lines) if '"duplicate"' in line)
    lines[number] = lines[number].replace('"duplicate"', '"applied"')
    path = tmp_path / "tampered.jsonl"
    path.write_text("".join(lines))
    return path, number - 1


def test_a_mismatch_exits_1_and_says_where_what_and_what_is_near(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, index = tampered(tmp_path)
    code, out, _ = run(str(path), "--fast", capsys=capsys)
    assert code == 1
    assert f"mismatch at event {index} ({path}:{index + 2}) CODE *" in out
    assert "  expected: OK CODE applied credit=85680 state=enabled" in out
    assert "  got:      OK CODE duplicate credit=85680 state=enabled" in out
    assert "  differs:  outcome: applied -> duplicate" in out
    assert "nearest recorded events" in out
    assert "MISMATCH" in out


def test_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, index = tampered(tmp_path)
    code, out, _ = run(str(path), "--fast", "--json", capsys=capsys)
    report = json.loads(out)
    assert code == report["exit_code"] == 1
    assert report["counts"]["mismatch"] == 1
    assert report["mismatches"][0]["index"] == index
    assert report["mismatches"][0]["differs"] == ["outcome"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.jsonl"], "cannot read"),
        ([str(CREDIT), "--target", "tcp://nowhere"], "tcp://HOST:PORT"),
        ([str(CREDIT), "--device", "missing.json"], "cannot read the device file"),
        ([str(CREDIT), "--max-timeouts", "0"], "at least 1"),
    ],
)
def test_usage_and_trace_errors_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(*args, capsys=capsys)
    assert code == 2
    assert message in err


def test_a_bad_trace_names_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.jsonl"
    lines = CREDIT.read_text().splitlines(keepends=True)
    lines[5] = '{"t": 1, "event": "teleport"}\n'
    path.write_text("".join(lines))
    code, _, err = run(str(path), capsys=capsys)
    assert code == 2
    assert f"{path}:6: event is 'teleport'" in err


def test_argument_errors_exit_2() -> None:
    with pytest.raises(SystemExit) as caught:
        main(["replay", str(CREDIT), "--fast", "--speed", "2"])
    assert caught.value.code == 2
    with pytest.raises(SystemExit):
        main(["replay", str(CREDIT), "--speed", "-1"])


def test_a_long_recorded_pace_is_announced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = CREDIT.read_text().splitlines(keepends=True)
    lines[-1] = lines[-1].replace('"t": ', '"t": 1000', 1)
    path = tmp_path / "slow.jsonl"
    path.write_text("".join(lines))
    code, _, err = run(str(path), "--target", "tcp://127.0.0.1:1", capsys=capsys)
    assert code == 3
    assert "1.0x the recorded pace takes 10,002 s" in err
    assert "--fast" in err
    code, _, err = run(str(path), "--fast", "--target", "tcp://127.0.0.1:1", capsys=capsys)
    assert "recorded pace" not in err


def test_unreachable_targets_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(str(CREDIT), "--target", "tcp://127.0.0.1:1", capsys=capsys)
    assert code == 3
    assert "127.0.0.1:1" in err
    code, _, err = run(str(CREDIT), "--target", "/dev/does-not-exist", capsys=capsys)
    assert code == 3


@contextmanager
def served(*how: str) -> Iterator[str]:
    """`meter-sim serve ...` in a subprocess; yields what it says it serves on."""
    with cli_process("serve", *how, "--key", SAMPLE_KEY) as (_, line):
        assert line.startswith("serving on "), line
        yield line.removeprefix("serving on ").strip()


def test_replay_against_served_simulators_over_tcp_and_pty(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with served("--tcp", "127.0.0.1:0") as where:
        code, out, _ = run(str(CREDIT), "--fast", "--target", f"tcp://{where}", capsys=capsys)
        assert code == 0, out
    with served("--pty") as path:
        code, out, _ = run(str(CREDIT), "--speed", "50", "--target", path, capsys=capsys)
        assert code == 0, out
        assert f"replay on {path}: identical" in out


def test_print_report_is_plain_text() -> None:
    trace = load(CREDIT)
    out = io.StringIO()
    result = replay(trace, open_target("sim", trace.header.device))
    print_report(result, Timing(elapsed=0.5), source="x", target="sim", events=34, out=out)
    assert "\x1b[" not in out.getvalue()
    assert "68 events/s" in out.getvalue()


def junit_case(path: Path) -> tuple[ET.Element, ET.Element]:
    """The report's one testsuite and its one testcase, checking the counts agree."""
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    (case,) = suite.findall("testcase")
    assert suite.get("tests") == "1"
    failures, errors = len(case.findall("failure")), len(case.findall("error"))
    assert (suite.get("failures"), suite.get("errors")) == (str(failures), str(errors))
    assert float(case.get("time", "-1")) >= 0
    return suite, case


def test_junit_report_of_an_identical_replay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "junit.xml"
    code, out, _ = run(str(CREDIT), "--fast", "--junit", str(report), capsys=capsys)
    assert code == 0
    assert "identical" in out  # the usual report is still printed
    suite, case = junit_case(report)
    assert suite.get("name") == "meter-sim replay"
    assert (case.get("classname"), case.get("name")) == ("nexus-full", str(CREDIT))
    assert list(case) == []
    target = suite.find("properties/property[@name='target']")
    assert target is not None
    assert target.get("value") == "sim (nexus-full)"


def test_junit_report_of_a_mismatch_says_where_expected_and_got(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, index = tampered(tmp_path)
    report = tmp_path / "junit.xml"
    code, _, _ = run(str(path), "--fast", "--junit", str(report), capsys=capsys)
    assert code == 1
    _, case = junit_case(report)
    assert case.get("name") == str(path)
    (failure,) = case.findall("failure")
    message = failure.get("message", "")
    assert failure.get("type") == "mismatch"
    assert message.startswith(f"mismatch at event {index} ({path}:{index + 2}) CODE *")
    assert "; expected: OK CODE applied credit=85680 state=enabled;" in message
    assert message.endswith("; got: OK CODE duplicate credit=85680 state=enabled")
    assert "differs:  outcome: applied -> duplicate" in (failure.text or "")


@pytest.mark.parametrize(
    ("args", "code", "classname", "kind", "message"),
    [
        (["--target", "tcp://127.0.0.1:1"], 3, "nexus-full", "TargetUnreachable", "127.0.0.1:1"),
        (["--device", "missing.json"], 2, "nexus-full", "TraceFormatError", "device file"),
        (["--max-timeouts", "0"], 2, "unknown-device", "ValueError", "at least 1"),
    ],
)
def test_junit_report_of_a_replay_that_cannot_run_is_an_error(
    args: list[str],
    code: int,
    classname: str,
    kind: str,
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    report = tmp_path / "junit.xml"
    assert run(str(CREDIT), *args, "--junit", str(report), capsys=capsys)[0] == code
    _, case = junit_case(report)
    assert case.get("classname") == classname
    (error,) = case.findall("error")
    assert error.get("type") == kind
    assert message in error.get("message", "")


def test_junit_report_of_an_unreadable_trace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"t": 1, "event": "teleport"}\n')
    report = tmp_path / "junit.xml"
    for trace in (bad, tmp_path / "missing.jsonl"):
        assert run(str(trace), "--junit", str(report), capsys=capsys)[0] == 2
        _, case = junit_case(report)
        assert (case.get("classname"), case.get("name")) == ("unknown-device", str(trace))
        (error,) = case.findall("error")
        assert error.get("type") == "TraceFormatError"
        assert error.get("message", "").startswith(f"{trace}")


def test_junit_into_a_missing_directory_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "no" / "junit.xml"
    code, _, err = run(str(CREDIT), "--fast", "--junit", str(report), capsys=capsys)
    assert code == 2
    assert "no such directory" in err
    assert not report.exists()
