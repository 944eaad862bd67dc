"""The Faust app: source topics -> re-key by tenant -> the tenant status table.

    state topic ─┐                                      (key = tenant_id)
                 ├─ agent `rekey` ─> {app_id}-events-by-tenant ─ agent `apply` ─> table
    mail topic  ─┘  (key = mailbox_id)                            status.apply    `tenant-status`

Both source topics are keyed by mailbox_id. `rekey` forwards every event to an internal topic
keyed by tenant_id, so all of a tenant's events, and the table rows built from them, live in one
partition; `apply` folds them into the table with the pure `streams.status.apply`. The table's
changelog has the repartition topic's partition count (Faust requires it: co-partitioning), and
a tenant's changelog record goes to the partition of the event that changed it.

Agents run with concurrency 1 and at_least_once (faust-streaming #606 and the exactly_once crash
reports); duplicates that at-least-once brings are harmless because `status.apply` is idempotent.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import faust
from faust.types import StreamT, TableT

from schemas.events import Event
from streams import codecs, status
from streams._faust_transport import RewindingTransport
from streams.config import StreamsSettings
from streams.status import TenantStatus

log = logging.getLogger(__name__)

TABLE_NAME = "tenant-status"


@dataclasses.dataclass(frozen=True, slots=True)
class StatusApp:
    app: faust.App
    table: TableT[str, TenantStatus]
    settings: StreamsSettings

    @property
    def changelog_topic(self) -> str:
        return self.table.changelog_topic.get_topic_name()


class TenantStatusTable(faust.Table[str, TenantStatus]):
    """A Table takes no serializer arguments: it derives them from key_type/value_type, "json"
    for str (keys written as b'"acme"') and for anything not a Faust model. A `schema=` passed in
    is overwritten with those, and setting the attributes after `app.Table()` is too late: the
    changelog topic (which reads during recovery) was already built with "json", so writes and
    recovery disagree and recovery never completes (docs/streams.md, findings). Here they are set
    before the table manager builds the changelog topic."""

    def __init__(self, app: faust.App, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.key_serializer = "raw"  # the tenant id's bytes, as in the repartition topic
        self.value_serializer = codecs.TENANT_STATUS


def _faust_settings(s: StreamsSettings) -> dict[str, Any]:
    return {
        "broker": s.broker_urls,
        "store": "memory://",  # rebuilt from the changelog on start; no RocksDB to install
        "processing_guarantee": "at_least_once",
        "topic_partitions": s.partitions,
        "topic_replication_factor": s.replication_factor,
        "table_standby_replicas": s.standby_replicas,
        "broker_session_timeout": s.session_timeout_seconds,
        "broker_heartbeat_interval": s.heartbeat_seconds,
        "consumer_auto_offset_reset": "earliest",  # a new group reads the events already there
        "datadir": str(s.worker_data_dir),
        "web_host": s.web_host,
        "web_port": s.web_port,
        "web_bind": s.web_bind or s.web_host,
        "canonical_url": s.canonical_url,
        # Faust's built-in pages answer without authentication: /table shows any tenant's rows,
        # /router and /assignment the cluster layout. Our API replaces all of them; routing uses
        # the assignor's metadata in-process and does not need the /router pages.
        "web_tables_enabled": False,
        "web_router_enabled": False,
        "web_stats_enabled": False,
        "web_graph_enabled": False,
        "web_metrics_enabled": False,
        "autodiscover": False,
    }


def build(settings: StreamsSettings) -> StatusApp:
    codecs.register()
    app = faust.App(settings.app_id, **_faust_settings(settings))
    # Before any topic is declared: declaring one builds the conductor on app.transport.
    app.transport = RewindingTransport(app.conf.broker_consumer, app)
    sources = app.topic(
        settings.state_topic,
        settings.new_mail_topic,
        key_type=bytes,
        value_serializer=codecs.AVRO_EVENTS,
    )
    by_tenant = app.topic(
        f"{settings.app_id}-events-by-tenant",
        internal=True,
        partitions=settings.partitions,
        key_type=str,
        value_serializer=codecs.AVRO_EVENTS,
    )
    table = TenantStatusTable(
        app,
        name=TABLE_NAME,
        beacon=app.tables.beacon,
        partitions=settings.partitions,
        key_type=str,
        help="Per tenant: its mailboxes' connection state and new-mail counts",
    )
    app.tables.add(table)

    @app.agent(sources, name="rekey", concurrency=1)
    async def rekey(stream: StreamT[Event | codecs.Undecodable]) -> None:
        async for event in stream:
            if isinstance(event, codecs.Undecodable):
                log.warning("skipped an undecodable event (%d bytes): %s", event.size, event.reason)
                continue
            await by_tenant.send(key=event.tenant_id, value=event)

    @app.agent(by_tenant, name="apply", concurrency=1)
    async def apply(stream: StreamT[Event | codecs.Undecodable]) -> None:
        async for event in stream:
            if isinstance(event, codecs.Undecodable):
                log.warning("skipped an undecodable re-keyed event: %s", event.reason)
                continue
            old = table.get(event.tenant_id)
            new = status.apply(old, event)
            if new is not old:  # duplicates and no-ops write no changelog record
                table[event.tenant_id] = new

    return StatusApp(app, table, settings)
