"""Settings of a status worker, from the environment (IDLEWIRE_* and the stack's KEY=value names).

Everything a test needs to isolate itself is here: its own topics, its own Faust app id (which
names the consumer group, the repartition and the changelog topics) and a data dir per worker.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class StreamsSettings(BaseSettings):
    # populate_by_name: command-line options override by field name (environment uses aliases).
    model_config = SettingsConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:19092", validation_alias="KAFKA_BOOTSTRAP_SERVERS"
    )
    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    new_mail_topic: str = Field(
        default="idlewire.new-mail", validation_alias="IDLEWIRE_NEW_MAIL_TOPIC"
    )
    state_topic: str = Field(
        default="idlewire.connection-state", validation_alias="IDLEWIRE_STATE_TOPIC"
    )
    # Partitions given to the source topics when this app has to create them (same variable and
    # default as the producer, which may create them first).
    source_partitions: int = Field(default=6, ge=1, validation_alias="IDLEWIRE_TOPIC_PARTITIONS")
    app_id: str = Field(
        default="idlewire-status", min_length=1, validation_alias="IDLEWIRE_STREAMS_APP_ID"
    )
    # Partitions of the by-tenant repartition topic and of the table's changelog (they must be
    # equal). Fixed at first start: changing it later re-homes every tenant (docs/streams.md).
    partitions: int = Field(default=8, ge=1, validation_alias="IDLEWIRE_STREAMS_PARTITIONS")
    replication_factor: int = Field(default=1, ge=1, validation_alias="IDLEWIRE_STREAMS_REPLICAS")
    standby_replicas: int = Field(
        default=1, ge=0, validation_alias="IDLEWIRE_STREAMS_STANDBY_REPLICAS"
    )
    # How long a killed worker keeps its partitions before the others take them over. Faust's
    # default (60 s) means a minute of 503s; the broker's minimum is 6 s.
    session_timeout_seconds: float = Field(
        default=10.0, ge=6.0, validation_alias="IDLEWIRE_STREAMS_SESSION_TIMEOUT"
    )
    heartbeat_seconds: float = Field(
        default=2.0, gt=0, validation_alias="IDLEWIRE_STREAMS_HEARTBEAT_INTERVAL"
    )
    web_host: str = Field(default="127.0.0.1", validation_alias="IDLEWIRE_STREAMS_WEB_HOST")
    web_port: int = Field(
        default=6066, ge=1, le=65535, validation_alias="IDLEWIRE_STREAMS_WEB_PORT"
    )
    # Address to listen on; defaults to web_host (loopback on the local stack, never 0.0.0.0
    # unless asked for).
    web_bind: str | None = Field(default=None, validation_alias="IDLEWIRE_STREAMS_WEB_BIND")
    data_dir: Path | None = Field(default=None, validation_alias="IDLEWIRE_STREAMS_DATA_DIR")

    @property
    def canonical_url(self) -> str:
        """How the other workers reach this one: published in the group's assignment metadata."""
        return f"http://{self.web_host}:{self.web_port}"

    @property
    def worker_data_dir(self) -> Path:
        # One directory per worker: two workers on one machine must not share Faust's data dir.
        return self.data_dir or Path(tempfile.gettempdir()) / "idlewire-streams" / (
            f"{self.app_id}-{self.web_port}"
        )

    @property
    def broker_urls(self) -> list[str]:
        hosts = [h.strip() for h in self.kafka_bootstrap_servers.split(",")]
        return [f"kafka://{h}" for h in hosts if h]
