"""The real process: ``server-stub serve`` with the operator secret from the environment,
a payment through ``server-stub mm-pay``, JSON log lines on stderr without the secret, and a
clean exit on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from server_stub.cli import SECRET_ENV, main

from .fixtures import seed_platform

SECRET = "cli-secret-value-42"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_pay_and_stop_on_sigterm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "s.db"
    seeded = seed_platform(db)
    port = free_port()
    env = {**os.environ, SECRET_ENV: SECRET}
    script = Path(sys.executable).parent / "server-stub"  # the installed console script
    command = [str(script), "--db", str(db), "serve"]
    proc = subprocess.Popen(
        [*command, "--port", str(port)], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):  # bounded wait for the listener
            try:
                if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.05)
        else:
            pytest.fail("server did not come up")
        monkeypatch.setenv(SECRET_ENV, SECRET)
        account = str(seeded.stock["ama"][0])  # in stock, not sold: the platform refuses it
        url = f"{base}/v1/mm/callback"
        assert main(["mm-pay", "--url", url, account, "100", "+233200000001"]) == 1
        out = json.loads(capsys.readouterr().out)
        assert out["final"] == "refused"
        assert out["answers"][0]["error"] == "unknown_account"
        monkeypatch.delenv(SECRET_ENV)
        assert main(["mm-pay", "--url", url, account, "100", "+233200000001"]) == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    logs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(d.get("route") == "/v1/mm/callback" and d["status"] == 422 for d in logs)
    assert SECRET not in err
