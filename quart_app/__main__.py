"""Command line: ``pulse serve|migrate|token|prune|publish`` (also ``python -m quart_app …``)."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

from .config import load_settings
from .errors import ConfigError
from .resources import InstallationError, check as check_installation, version


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pulse", description="Pulse: a realtime dashboard service. Configuration is the "
        "environment (docs/configuration.md).")
    try:
        installed = version()
    except InstallationError:
        installed = "(not installed)"
    parser.add_argument("--version", action="version", version=f"%(prog)s {installed}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the service on Hypercorn")
    serve.add_argument("--port", type=int, default=None, help="default: $PORT or 8000")
    serve.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    serve.add_argument("--demo", action="store_true", help="run the built-in event simulator")
    serve.add_argument("--workers", type=int, default=1, help="processes sharing the socket")
    serve.add_argument("--backlog", type=int, default=None,
                       help="listen queue length (default: $PULSE_BACKLOG or 4096)")
    sub.add_parser("migrate", help="apply sql/ schema files not yet applied")
    token = sub.add_parser("token", help="mint an access token (JWT)")
    token.add_argument("--user", type=int, required=True)
    token.add_argument("--projects", default="", help="comma-separated project ids")
    token.add_argument("--ttl", type=int, default=3600, help="seconds (default 3600)")
    token.add_argument("--name", default=None)
    sub.add_parser("prune", help="keep only the newest global feed items")
    publish = sub.add_parser("publish", help="publish JSON data on a channel (POST /api/publish)")
    publish.add_argument("channel")
    publish.add_argument("data", metavar="JSON", help='an object with a "type", e.g. '
                         '\'{"type": "score.updated", "score": 42}\'')
    publish.add_argument("--url", default="http://127.0.0.1:8000",
                         help="the server (default: http://127.0.0.1:8000)")
    publish.add_argument("--api-key", default=None, help="default: $PULSE_API_KEY")
    publish.add_argument("--idempotency-key", default=None,
                         help="default: a fresh one (retries never publish twice)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "publish":  # a client of a server: the server's settings do not apply
        return _publish(args)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"pulse: configuration error: {exc.detail}", file=sys.stderr)
        return 2
    if args.command in ("serve", "migrate", "prune"):
        try:
            check_installation()
        except InstallationError as exc:
            print(f"pulse: installation error: {exc.detail}", file=sys.stderr)
            return 2
    if args.command == "token":
        from .realtime.auth import mint_token

        projects = [p for p in args.projects.split(",") if p]
        print(mint_token(settings.jwt_secret, args.user, ttl_seconds=args.ttl,
                         projects=projects, name=args.name))
        return 0
    if args.command == "migrate":
        return asyncio.run(_migrate(settings))
    if args.command == "prune":
        return asyncio.run(_prune(settings))
    if args.demo:
        os.environ["PULSE_DEMO"] = "1"
    port = args.port if args.port is not None else settings.port
    backlog = args.backlog if args.backlog is not None else settings.backlog
    if backlog < 1:
        print(f"pulse: --backlog must be >= 1, got {backlog}", file=sys.stderr)
        return 2
    from .server import serve

    return serve(args.host, port, args.workers, demo=args.demo, backlog=backlog)


async def _migrate(settings) -> int:
    from .dashboard.db import Database, migrate

    db = Database(settings.database_url)
    await db.connect()
    try:
        applied = await migrate(db)
    finally:
        await db.close()
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
    return 0


async def _prune(settings) -> int:
    from .dashboard.db import Database, migrate
    from .dashboard.tasks import prune_feed

    db = Database(settings.database_url)
    await db.connect()
    try:
        await migrate(db)
        removed = await prune_feed(db, settings.feed_keep)
    finally:
        await db.close()
    print(f"pruned {removed} feed items (keeping the newest {settings.feed_keep})")
    return 0


def _publish(args) -> int:
    from .publisher import PublishError, Publisher

    try:
        data = json.loads(args.data)
    except ValueError as exc:
        print(f"pulse: JSON is not valid JSON: {exc}", file=sys.stderr)
        return 1
    api_key = args.api_key if args.api_key is not None else os.environ.get("PULSE_API_KEY", "")
    try:
        with Publisher(args.url, api_key) as publisher:
            answer = publisher.publish(args.channel, data, idempotency_key=args.idempotency_key)
    except PublishError as exc:
        print(f"pulse: publish failed ({exc.status or 'no answer'}): {exc.detail}",
              file=sys.stderr)
        return 1
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
