"""Schemathesis over every operation of a real `imagegate serve`, run by test_openapi.py inside a private
network namespace (`unshare -rn`, only `lo`): whatever URL the fuzzer puts in a request, nothing leaves.

Prints one JSON line: schemathesis's exit code and output tail, and the books of the account it used.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from imagegate.config import load_settings
from imagegate.db.accounts import AccountStore
from imagegate.db.engine import create_engine, migrate, sessionmaker

PORT = 8765
# Checks that cannot hold for this API by design: a request that matches the schema can still carry bytes
# that are not an image, or name a model, URL or file that does not exist (400/404, as documented).
EXCLUDED_CHECKS = "positive_data_acceptance"


async def fund(config: Path) -> tuple[AccountStore, str, object]:
    url = load_settings(config).database.url
    await migrate(url)
    engine = create_engine(url, null_pool=True)
    accounts = AccountStore(sessionmaker(engine))
    await accounts.add_credit("fuzz", 1_000_000_000)
    return accounts, await accounts.create_key("fuzz"), engine


async def books(accounts: AccountStore) -> dict[str, int]:
    s = await accounts.summary("fuzz")
    return {"deposits": s.deposits_micros, "balance": s.balance_micros, "held": s.held_micros,
            "spent": s.spent_micros}


def main() -> int:
    examples, seed = int(sys.argv[1]), int(sys.argv[2])
    work = Path(tempfile.mkdtemp(prefix="imagegate-contract-"))
    config = work / "imagegate.toml"
    config.write_text(f"""
[database]
url = "sqlite:///{work / 'imagegate.db'}"
[storage]
path = "{work / 'blobs'}"
public_base_url = "http://127.0.0.1:{PORT}"
[fetch]
timeout = 2.0
[tasks]
poll_interval = 0.1
[prices."local-edit"]
kind = "per_image"
per_image = 0.01
""")
    accounts, key, engine = asyncio.run(fund(config))
    server = subprocess.Popen([sys.executable, "-m", "imagegate.cli", "serve", "--port", str(PORT),
                               "--no-access-log"], env={**os.environ, "IMAGEGATE_CONFIG": str(config)},
                              cwd=work, stdout=subprocess.DEVNULL, stderr=open(work / "serve.log", "wb"))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{PORT}/healthz", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
        run = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "run", f"http://127.0.0.1:{PORT}/openapi.json",
             "-H", f"Authorization: Bearer {key}", "--checks", "all", "--exclude-checks", EXCLUDED_CHECKS,
             "--max-examples", str(examples), "--seed", str(seed), "--workers", "2", "--request-timeout", "30",
             "--generation-database", "none", "--no-color", "--phases", "examples,coverage,fuzzing"],
            capture_output=True, text=True, timeout=1200, cwd=work)
        time.sleep(1.0)  # the tasks the fuzzer created are run by the workers
        deadline = time.monotonic() + 60
        while (money := asyncio.run(books(accounts)))["held"] and time.monotonic() < deadline:
            time.sleep(0.2)
        print(json.dumps({"exit": run.returncode, "output": run.stdout[-20000:] + run.stderr[-5000:],
                          "books": money}))
    finally:
        server.terminate()
        server.wait(timeout=30)
        asyncio.run(engine.dispose())  # type: ignore[attr-defined]
    return 0


if __name__ == "__main__":
    sys.exit(main())
