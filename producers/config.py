"""Typed configuration, validated once at start-up. Secrets are SecretStr and never printed."""

from __future__ import annotations

import enum
import os
import socket
import ssl
import uuid
from functools import cached_property
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from producers.backoff import BackoffPolicy
from producers.providers import PROVIDERS


class Security(enum.StrEnum):
    TLS = "tls"  # implicit TLS (IMAPS, 993)
    STARTTLS = "starttls"  # plain connect, then STARTTLS (143)
    PLAIN = "plain"  # no TLS at all: only when a mailbox explicitly allows it


class AuthMethod(enum.StrEnum):
    PASSWORD = "password"  # LOGIN, or AUTHENTICATE PLAIN where the server says LOGINDISABLED
    XOAUTH2 = "xoauth2"
    OAUTHBEARER = "oauthbearer"  # RFC 7628


DEFAULT_PORTS = {Security.TLS: 993, Security.STARTTLS: 143, Security.PLAIN: 143}


class MailboxConfig(BaseModel):
    """One watched mailbox folder. Field names and defaults follow the original API."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant_id: str = Field(min_length=1, max_length=200)
    email_type: str = Field(min_length=1, max_length=100)
    mailbox_id: str = Field(default="", max_length=400)
    provider: str | None = None  # a key of producers.providers.PROVIDERS: fills defaults
    host: str = ""
    port: int | None = Field(default=None, ge=1, le=65535)
    security: Security = Security.TLS
    allow_plaintext: bool = False
    ca_file: Path | None = None
    username: str = Field(min_length=1)
    auth: AuthMethod = AuthMethod.PASSWORD
    # None: taken from the encrypted credential store (control.credentials) by mailbox_id.
    password: SecretStr | None = None
    oauth_token_url: str | None = None
    oauth_client_id: str | None = None
    # Where the client secret is: "env:NAME" or "file:/path" (the secret itself is never config).
    oauth_client_secret_ref: str | None = None
    oauth_scopes: tuple[str, ...] = ()
    folder: str = "INBOX"
    idle_timeout_seconds: float = Field(default=1740, gt=0, le=1740)
    reconnect_delay_seconds: float = Field(default=5, gt=0)
    max_reconnect_attempts: int = Field(default=10, ge=1)
    check_interval_seconds: float = Field(default=300, gt=0)
    # A dead or half-open connection is noticed within heartbeat + command timeout: silence
    # longer than the heartbeat ends IDLE, and the server then has the command timeout to answer.
    # (Dovecot says "* OK Still here" every 2 minutes during IDLE; TCP keepalive is on as well.)
    heartbeat_seconds: float = Field(default=150, gt=0)
    command_timeout_seconds: float = Field(default=30, gt=0)

    @model_validator(mode="after")
    def _check(self) -> Self:
        preset = PROVIDERS.get(self.provider) if self.provider else None
        if self.provider and preset is None:
            raise ValueError(f"unknown provider {self.provider!r}; known: {sorted(PROVIDERS)}")
        if preset is not None:
            if not self.host:
                object.__setattr__(self, "host", preset.host)
                if self.port is None:
                    object.__setattr__(self, "port", preset.port)
            if self.oauth_token_url is None and preset.oauth_token_url:
                object.__setattr__(self, "oauth_token_url", preset.oauth_token_url)
            if not self.oauth_scopes and preset.oauth_scopes:
                object.__setattr__(self, "oauth_scopes", preset.oauth_scopes)
            if "idle_timeout_seconds" not in self.model_fields_set:
                object.__setattr__(self, "idle_timeout_seconds", preset.idle_renew_seconds)
        if not self.host:
            raise ValueError("host is required (or a provider preset)")
        if not self.mailbox_id:
            object.__setattr__(self, "mailbox_id", f"{self.tenant_id}:{self.email_type}")
        if self.port is None:
            object.__setattr__(self, "port", DEFAULT_PORTS[self.security])
        if self.auth is not AuthMethod.PASSWORD and not (
            self.oauth_token_url and self.oauth_client_id
        ):
            raise ValueError(f"auth={self.auth} needs oauth_token_url and oauth_client_id")
        ref = self.oauth_client_secret_ref
        if ref is not None and not ref.startswith(("env:", "file:")):
            raise ValueError("oauth_client_secret_ref must be env:NAME or file:/path")
        if self.security is Security.PLAIN and not self.allow_plaintext:
            raise ValueError("security=plain sends the password in clear: set allow_plaintext")
        return self

    @property
    def backoff(self) -> BackoffPolicy:
        return BackoffPolicy(
            base_seconds=self.reconnect_delay_seconds, max_attempts=self.max_reconnect_attempts
        )

    def oauth_client_secret(self) -> str | None:
        ref = self.oauth_client_secret_ref
        if ref is None:
            return None
        kind, _, where = ref.partition(":")
        value = os.environ.get(where) if kind == "env" else Path(where).read_text().strip()
        if not value:
            raise ValueError(f"OAuth client secret {ref} is empty or missing")
        return value

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.security is Security.PLAIN:
            return None
        return shared_ssl_context(str(self.ca_file) if self.ca_file else None)


_contexts: dict[str | None, ssl.SSLContext] = {}


def shared_ssl_context(ca_file: str | None) -> ssl.SSLContext:
    """One SSLContext per CA bundle for the whole process: a context per connection costs ~1 MiB."""
    ctx = _contexts.get(ca_file)
    if ctx is None:
        ctx = ssl.create_default_context(cafile=ca_file)
        _contexts[ca_file] = ctx
    return ctx


class ProducerSettings(BaseSettings):
    """Process-wide settings, from the environment (IDLEWIRE_* and the stack's KEY=value names)."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:19092", validation_alias="KAFKA_BOOTSTRAP_SERVERS"
    )
    new_mail_topic: str = Field(
        default="idlewire.new-mail", validation_alias="IDLEWIRE_NEW_MAIL_TOPIC"
    )
    state_topic: str = Field(
        default="idlewire.connection-state", validation_alias="IDLEWIRE_STATE_TOPIC"
    )
    topic_partitions: int = Field(default=6, ge=1, validation_alias="IDLEWIRE_TOPIC_PARTITIONS")
    producer_id: str = Field(default="", validation_alias="IDLEWIRE_PRODUCER_ID")
    connect_concurrency: int = Field(
        default=100, ge=1, validation_alias="IDLEWIRE_CONNECT_CONCURRENCY"
    )
    # Per server. Dovecot on 2 cores took 200/s without a refusal (docs/benchmarks.md); lower it
    # for providers that throttle logins per IP.
    connect_rate: float = Field(default=200.0, gt=0, validation_alias="IDLEWIRE_CONNECT_RATE")
    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    command_topic: str = Field(
        default="idlewire.mailbox-commands", validation_alias="IDLEWIRE_COMMAND_TOPIC"
    )
    group_id: str = Field(default="idlewire-producers", validation_alias="IDLEWIRE_GROUP_ID")
    group_session_timeout_ms: int = Field(
        default=10000, ge=1000, validation_alias="IDLEWIRE_GROUP_SESSION_TIMEOUT_MS"
    )
    health_port: int | None = Field(default=None, validation_alias="IDLEWIRE_HEALTH_PORT")
    shutdown_timeout_seconds: float = Field(
        default=20, gt=0, validation_alias="IDLEWIRE_SHUTDOWN_TIMEOUT"
    )

    @cached_property
    def instance_id(self) -> str:
        return self.producer_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
