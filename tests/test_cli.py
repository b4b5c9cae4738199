"""The command line contract: keys create, credit add, accounts show, ledger, serve."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from tests.conftest import png_bytes

from imagegate.cli import main


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "imagegate.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{tmp_path}/cli.db"\n[storage]\npath = "{tmp_path}/blobs"\n')
    monkeypatch.setenv("IMAGEGATE_CONFIG", str(path))
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def test_keys_credit_accounts_ledger(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = run(capsys, "keys", "create", "--account", "acme", "--credit", "2.5")
    lines = out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("sk-")
    run(capsys, "credit", "add", "--account", "acme", "--amount", "1.25")
    shown = json.loads(run(capsys, "accounts", "show", "acme"))
    assert shown["balance_usd"] == 3.75 and shown["held_usd"] == 0 and shown["spent_usd"] == 0
    entries = [json.loads(line) for line in run(capsys, "ledger", "acme").splitlines()]
    assert [(e["kind"], e["amount_usd"]) for e in entries] == [("deposit", 2.5), ("deposit", 1.25)]


def test_unknown_account(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["accounts", "show", "nobody"]) == 1
    assert "nobody" in capsys.readouterr().err


def test_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[database]\nurl = 'sqlite:///x.db'\nbogus = 1\n")
    assert main(["--config", str(bad), "accounts", "show", "x"]) == 2
    assert "bogus" in capsys.readouterr().err


def test_serve_answers_health_and_edits(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = run(capsys, "keys", "create", "--account", "acme").strip()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "imagegate.cli", "serve", "--port", str(port)],
                            env={**os.environ, "IMAGEGATE_CONFIG": str(config)}, cwd=tmp_path)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        r = httpx.post(f"{base}/v1/images/edits", headers={"Authorization": f"Bearer {key}"},
                       data={"model": "local-edit", "prompt": "grayscale"},
                       files={"image": ("a.png", png_bytes(), "image/png")}, timeout=30)
        assert r.status_code == 200, r.text
        url = r.json()["data"][0]["url"]
        assert url.startswith("http://127.0.0.1:8000/blobs/outputs/")
        image = httpx.get(base + url.removeprefix("http://127.0.0.1:8000"))
        assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    finally:
        proc.terminate()
        proc.wait(10)
