"""`python -m streams worker`: run one worker of the status app (Faust), with its HTTP API.

    python -m streams worker --web-port 6066
    python -m streams worker --web-port 6067 --data-dir /var/tmp/idlewire-streams/w2

Settings come from the environment (streams.config): KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL
(required: every query is authenticated against it), IDLEWIRE_STATE_TOPIC,
IDLEWIRE_NEW_MAIL_TOPIC, IDLEWIRE_STREAMS_APP_ID, IDLEWIRE_STREAMS_PARTITIONS, ... The options
below override them. Start more workers with the same app id (and each its own port and data
dir) to share the partitions; any worker answers any query. SIGTERM stops a worker cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import faust

from streams import _kafka
from streams.app import build
from streams.config import StreamsSettings
from streams.credentials import Credentials
from streams.http_api import StatusApi
from streams.routing import Cluster


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m streams",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    w = sub.add_parser("worker", help="run a worker")
    w.add_argument("--web-port", type=int, help="HTTP port (IDLEWIRE_STREAMS_WEB_PORT, 6066)")
    w.add_argument("--web-host", help="host other workers reach this one by (127.0.0.1)")
    w.add_argument("--web-bind", help="address to listen on (defaults to --web-host)")
    w.add_argument("--data-dir", type=Path, help="this worker's own data directory")
    w.add_argument("--app-id", help="Faust app id: consumer group and internal topic prefix")
    w.add_argument("--loglevel", default="info", choices=["debug", "info", "warning", "error"])
    return p


def settings_from(args: argparse.Namespace) -> StreamsSettings:
    overrides: dict[str, Any] = {
        field: value
        for field, value in {
            "web_port": args.web_port,
            "web_host": args.web_host,
            "web_bind": args.web_bind,
            "data_dir": args.data_dir,
            "app_id": args.app_id,
        }.items()
        if value is not None
    }
    return StreamsSettings(**overrides)  # keyword values win over the environment


def run_worker(settings: StreamsSettings, loglevel: str) -> None:
    if not settings.database_url:
        raise SystemExit("error: DATABASE_URL is not set (queries are authenticated against it)")
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(
        _kafka.ensure_topics(
            settings.kafka_bootstrap_servers,
            [settings.state_topic, settings.new_mail_topic],
            settings.source_partitions,
        )
    )
    status_app = build(settings)
    StatusApi(status_app, Credentials(settings.database_url), Cluster(status_app)).install()
    worker = faust.Worker(status_app.app, loop=loop, loglevel=loglevel)
    worker.execute_from_commandline()


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "worker":
        run_worker(settings_from(args), args.loglevel)


if __name__ == "__main__":
    main(sys.argv[1:])
