"""The real process: ``server-stub serve`` with the operator secret from the environment,
a payment through ``field-lab mm-pay``, JSON log lines on stderr without the secret, and a
clean exit on SIGTERM; the audit API with its token from the environment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from field_lab.cli import main as field_lab_main
from field_lab.net import free_port
from server_stub.cli import AUDIT_TOKEN_ENV, SECRET_ENV, main

from .fixtures import seed_platform

SECRET = "cli-secret-value-42"


def spawn(db: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """`server-stub serve` on a free port, once it answers; returns the process and base URL."""
    port = free_port()
    script = Path(sys.executable).parent / "server-stub"  # the installed console script
    command = [str(script), "--db", str(db), "serve", "--port", str(port)]
    proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):  # bounded wait for the listener
        try:
            if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                return proc, base
        except requests.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    proc.communicate(timeout=30)
    pytest.fail("server did not come up")


def test_serve_pay_and_stop_on_sigterm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "s.db"
    seeded = seed_platform(db)
    proc, base = spawn(db, {**os.environ, SECRET_ENV: SECRET})
    try:
        monkeypatch.setenv(SECRET_ENV, SECRET)
        account = str(seeded.stock["ama"][0])  # in stock, not sold: the platform refuses it
        url = f"{base}/v1/mm/callback"
        assert field_lab_main(["mm-pay", "--url", url, account, "100", "+233200000001"]) == 1
        out = json.loads(capsys.readouterr().out)
        assert out["final"] == "refused"
        assert out["answers"][0]["error"] == "unknown_account"
        monkeypatch.delenv(SECRET_ENV)
        assert field_lab_main(["mm-pay", "--url", url, account, "100", "+233200000001"]) == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    logs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(d.get("route") == "/v1/mm/callback" and d["status"] == 422 for d in logs)
    assert SECRET not in err


def test_serve_takes_the_audit_token_from_the_environment(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    seed_platform(db)
    token = "cli-audit-token-7"
    env = {k: v for k, v in os.environ.items() if k not in (SECRET_ENV, AUDIT_TOKEN_ENV)}
    proc, base = spawn(db, {**env, AUDIT_TOKEN_ENV: token})
    try:
        for feed in ("operations", "keycodes", "payments"):
            url = f"{base}/v1/audit/{feed}"
            ok = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
            assert ok.status_code == 200
            assert ok.json()["items"] == []
            assert ok.json()["next_cursor"] is None
            refused = requests.get(url, timeout=10)
            assert refused.status_code == 401
            assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert token not in err


def test_serve_refuses_an_audit_token_that_cannot_be_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(AUDIT_TOKEN_ENV, "two words")
    assert main(["--db", str(tmp_path / "s.db"), "serve", "--port", "1"]) == 2
    assert AUDIT_TOKEN_ENV in capsys.readouterr().err
