"""GET /openapi.json describes every route the gateway serves, and schemathesis, fuzzing each operation of a
real server against it, finds no answer that contradicts it: no 5xx, every status, header and body as
documented. The fuzzing runs in a private network namespace (contract_run.py), so no URL it invents can
reach anything; money stays exact through it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from starlette.routing import Route
from tests.conftest import Harness

from imagegate.api.routes import ROUTES

TESTS_DIR = Path(__file__).resolve().parents[1]
EXAMPLES = int(os.environ.get("IMAGEGATE_CONTRACT_EXAMPLES", "40"))  # per operation; CI's budget


async def test_the_document_names_every_route_with_its_methods(harness: Harness) -> None:
    r = await harness.client.get("/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    document = r.json()
    assert document["openapi"].startswith("3.1")
    served = {(re.sub(r":\w+}", "}", route.path), method.lower()) for route in ROUTES if isinstance(route, Route)
              for method in route.methods or () if method != "HEAD"}
    described = {(path, method) for path, item in document["paths"].items() for method in item}
    assert described == served


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"network namespaces are required in CI: {reason}")
    pytest.skip(f"network namespaces unavailable: {reason}")


@pytest.mark.netns
def test_schemathesis_finds_nothing_the_document_does_not_say() -> None:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        _unavailable("`unshare` or `ip` is not installed")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(["unshare", "-rn", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", sys.executable,
                           "-m", "api.contract_run", str(EXAMPLES), "20261202"],
                          capture_output=True, text=True, timeout=1500, env=env, cwd=TESTS_DIR)
    if proc.returncode != 0 and "unshare" in proc.stderr:
        _unavailable(proc.stderr.strip())
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["exit"] == 0, result["output"]
    books = result["books"]
    assert books["deposits"] == books["balance"] + books["held"] + books["spent"] and books["held"] == 0
