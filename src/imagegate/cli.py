"""The `imagegate` command line: serve, keys, credit, accounts, ledger."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from imagegate.config import ConfigError, Settings, load_settings
from imagegate.core.errors import NotFound
from imagegate.core.pricing import micros_to_usd, usd_to_micros
from imagegate.db.accounts import AccountStore
from imagegate.db.engine import create_engine, migrate, sessionmaker


async def _with_accounts(settings: Settings, work: Callable[[AccountStore], Awaitable[Any]]) -> Any:
    await migrate(settings.database.url)
    engine = create_engine(settings.database.url)
    try:
        return await work(AccountStore(sessionmaker(engine)))
    finally:
        await engine.dispose()


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from imagegate.app import create_app
    from imagegate.server import serve

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = create_app(settings)

    def stop_claiming() -> None:
        gateway = getattr(app.state, "gateway", None)
        if gateway is not None:
            gateway.runner.stop_claiming()

    limits = settings.limits
    return serve(app, host=args.host, port=args.port, log_level=settings.log_level,
                 access_log=not args.no_access_log, header_timeout=limits.header_timeout,
                 keep_alive=limits.keep_alive, on_stop=stop_claiming)


def _keys_create(args: argparse.Namespace, settings: Settings) -> int:
    expires = datetime.fromisoformat(args.expires).astimezone(UTC) if args.expires else None

    async def work(accounts: AccountStore) -> str:
        if args.credit:
            await accounts.add_credit(args.account, usd_to_micros(args.credit), memo="initial credit")
        return await accounts.create_key(
            args.account, name=args.name, expires_at=expires,
            spend_limit_micros=usd_to_micros(args.spend_limit) if args.spend_limit else None,
            allowed_models=args.models.split(",") if args.models else None)

    print(asyncio.run(_with_accounts(settings, work)))
    return 0


def _keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    async def work(accounts: AccountStore) -> bool:
        return await accounts.revoke_key(args.key)

    if not asyncio.run(_with_accounts(settings, work)):
        print("no such active key", file=sys.stderr)
        return 1
    return 0


def _credit_add(args: argparse.Namespace, settings: Settings) -> int:
    async def work(accounts: AccountStore) -> str:
        return await accounts.add_credit(args.account, usd_to_micros(args.amount), memo=args.memo)

    print(asyncio.run(_with_accounts(settings, work)))
    return 0


def _accounts_show(args: argparse.Namespace, settings: Settings) -> int:
    async def work(accounts: AccountStore) -> dict[str, Any]:
        s = await accounts.summary(args.name)
        return {"name": s.name, "balance_usd": micros_to_usd(s.balance_micros),
                "held_usd": micros_to_usd(s.held_micros), "spent_usd": micros_to_usd(s.spent_micros),
                "deposits_usd": micros_to_usd(s.deposits_micros), "balance_micros": s.balance_micros,
                "held_micros": s.held_micros, "spent_micros": s.spent_micros,
                "deposits_micros": s.deposits_micros}

    print(json.dumps(asyncio.run(_with_accounts(settings, work)), indent=2))
    return 0


def _ledger(args: argparse.Namespace, settings: Settings) -> int:
    async def work(accounts: AccountStore) -> list[dict[str, Any]]:
        return [{"id": e.id, "created_at": e.created_at.isoformat(), "transaction_id": e.transaction_id,
                 "kind": e.kind, "amount_usd": micros_to_usd(e.amount_micros), "memo": e.memo}
                for e in await accounts.ledger(args.name)]

    for entry in asyncio.run(_with_accounts(settings, work)):
        print(json.dumps(entry))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="imagegate", description="OpenAI-compatible image gateway")
    p.add_argument("--config", help="TOML config file (default: $IMAGEGATE_CONFIG, else embedded defaults)")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", dest="config_sub", help=argparse.SUPPRESS)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--no-access-log", action="store_true", help="do not log every request")
    serve.set_defaults(run=_serve)

    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="keys_command", required=True)
    create = keys.add_parser("create", help="create a key; prints the secret (shown once)")
    create.add_argument("--account", required=True)
    create.add_argument("--credit", type=float, help="deposit this many USD first")
    create.add_argument("--name")
    create.add_argument("--spend-limit", type=float, help="USD this key may spend in total")
    create.add_argument("--models", help="comma-separated model allow-list")
    create.add_argument("--expires", help="ISO 8601 expiry time")
    create.set_defaults(run=_keys_create)
    revoke = keys.add_parser("revoke", help="revoke a key by its secret or prefix")
    revoke.add_argument("key")
    revoke.set_defaults(run=_keys_revoke)

    credit = sub.add_parser("credit", help="balances").add_subparsers(dest="credit_command", required=True)
    add = credit.add_parser("add", help="deposit USD into an account")
    add.add_argument("--account", required=True)
    add.add_argument("--amount", type=float, required=True)
    add.add_argument("--memo", default="credit")
    add.set_defaults(run=_credit_add)

    accounts = sub.add_parser("accounts", help="accounts").add_subparsers(dest="accounts_command", required=True)
    show = accounts.add_parser("show", help="balance, held and spent as JSON")
    show.add_argument("name")
    show.set_defaults(run=_accounts_show)

    ledger = sub.add_parser("ledger", help="an account's ledger entries, one JSON object per line")
    ledger.add_argument("name")
    ledger.set_defaults(run=_ledger)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = load_settings(getattr(args, "config_sub", None) or args.config)
        return int(args.run(args, settings))
    except ConfigError as exc:
        print(f"imagegate: config error: {exc}", file=sys.stderr)
        return 2
    except NotFound as exc:
        print(f"imagegate: {exc.message}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"imagegate: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
