"""Literal private addresses against real listeners, inside a private network namespace.

`unshare -rn` gives a fresh network namespace with only `lo`, where nothing can leave the machine. The
cases (netns_cases.py) run there once, in a subprocess, with the production policy and ports unchanged;
each case is reported here as its own test. Where namespaces are unavailable the cases are skipped, with
the reason, except in CI (CI=true), where that is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .netns_cases import ADDRESSES, ADDRESSES_V6, CASES

pytestmark = pytest.mark.netns

TESTS_DIR = Path(__file__).resolve().parents[1]
SETUP = "; ".join([
    "set -e",
    "ip link set lo up",
    *(f"ip addr add {a}/32 dev lo" for a in ADDRESSES),
    *(f"ip -6 addr add {a}/128 dev lo nodad" for a in ADDRESSES_V6),
    'exec "$@"',
])


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"network namespaces are required in CI: {reason}")
    pytest.skip(f"network namespaces unavailable: {reason}")


@pytest.fixture(scope="module")
def results() -> dict[str, str]:
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            _unavailable(f"`{tool}` is not installed")
    probe = subprocess.run(["unshare", "-rn", "ip", "link", "set", "lo", "up"], capture_output=True,
                           text=True, timeout=30)
    if probe.returncode != 0:
        _unavailable(f"`unshare -rn` failed: {probe.stderr.strip()}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS_DIR),
                                                                     os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(["unshare", "-rn", "sh", "-c", SETUP, "sh", sys.executable, "-m", "fetch.netns_cases"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=TESTS_DIR)
    assert proc.returncode == 0, f"the namespace run failed:\n{proc.stdout}\n{proc.stderr}"
    parsed: dict[str, str] = json.loads(proc.stdout.strip().splitlines()[-1])
    return parsed


@pytest.mark.parametrize("name", list(CASES))
def test_in_a_private_network_namespace(name: str, results: dict[str, str]) -> None:
    assert results[name] == "ok", results[name]
