"""The ``howhot`` command: run the stack or one service, print the config, migrate, fetch models, evaluate."""

from __future__ import annotations

import argparse
import asyncio
import json
import runpy
import sys

from pydantic import ValidationError

from libs.common.settings import Settings

SERVICE_NAMES = ("upload", "face", "scoring", "share", "analytics")


def _cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    print(json.dumps(settings.masked(), indent=2, default=str))
    return 0


def _cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from libs.common.analytics_store import connect, migrate

    client = connect(settings)
    applied = migrate(client, settings.clickhouse.database)
    print(f"{len(applied)} migration(s) applied" + (": " + ", ".join(applied) if applied else " (up to date)"))
    return 0


def _cmd_topics(args: argparse.Namespace, settings: Settings) -> int:
    from libs.common.bus import ensure_topics

    created = asyncio.run(ensure_topics(settings.kafka))
    print(f"{len(created)} topic(s) created")
    return 0


def _cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from libs.cli.stack import run_up

    return run_up(settings)


def _cmd_service(args: argparse.Namespace, settings: Settings) -> int:
    runpy.run_module(f"services.{args.name}", run_name="__main__", alter_sys=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="howhot", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("config", help="print the effective configuration (secrets masked)").set_defaults(fn=_cmd_config)
    sub.add_parser("migrate", help="apply ClickHouse migrations idempotently").set_defaults(fn=_cmd_migrate)
    sub.add_parser("topics", help="create Kafka topics and their dead-letter twins").set_defaults(fn=_cmd_topics)
    sub.add_parser("up", help="start the whole local stack and print the URLs").set_defaults(fn=_cmd_up)
    service = sub.add_parser("service", help="run one service in the foreground")
    service.add_argument("name", choices=SERVICE_NAMES)
    service.set_defaults(fn=_cmd_service)
    from libs.cli import commands

    commands.register(sub)
    return parser


EXIT_FAILURE = 1  # the command could not do its job (a backend down or failing)
EXIT_USAGE = 2  # the command line or the configuration is wrong: argparse's code for usage errors


def expected_failure(exc: Exception) -> tuple[int, str] | None:
    """The exit code and one-line message for a failure an operator meets in normal use (no broker configured, the
    broker unreachable), or None for a bug, whose traceback is worth showing. Imports lazily: only on failure."""
    from aiokafka.errors import KafkaError

    from libs.common.bus.kafka import BrokerNotConfigured

    if isinstance(exc, BrokerNotConfigured):
        return EXIT_USAGE, str(exc)
    if isinstance(exc, KafkaError):
        return EXIT_FAILURE, f"Kafka broker error: {exc} (is HOWHOT_KAFKA_BOOTSTRAP right and the broker up?)"
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:  # a bad HOWHOT_* value: named by its variable, no traceback
        print(f"howhot: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.fn(args, settings) or 0)
    except Exception as exc:
        known = expected_failure(exc)
        if known is None:
            raise
        print(f"howhot {args.command}: {known[1]}", file=sys.stderr)
        return known[0]


if __name__ == "__main__":
    sys.exit(main())
