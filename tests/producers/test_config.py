"""Configuration is validated once, with clear messages; secrets never print."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from producers.config import MailboxConfig, Security

BASE = {"tenant_id": "acme", "email_type": "reservations", "username": "u", "password": "hunter2"}


def test_defaults_follow_the_original_api():
    c = MailboxConfig(host="imap.example.com", **BASE)
    assert (
        c.idle_timeout_seconds,
        c.reconnect_delay_seconds,
        c.max_reconnect_attempts,
        c.check_interval_seconds,
    ) == (1740, 5, 10, 300)
    assert c.security is Security.TLS and c.port == 993 and c.mailbox_id == "acme:reservations"


def test_password_never_printed():
    c = MailboxConfig(host="h", **BASE)
    assert "hunter2" not in repr(c) and "hunter2" not in str(c)
    assert "hunter2" not in c.model_dump_json()


def test_plaintext_needs_explicit_permission():
    with pytest.raises(ValidationError, match="allow_plaintext"):
        MailboxConfig(host="h", security="plain", **BASE)
    assert MailboxConfig(host="h", security="plain", allow_plaintext=True, **BASE).port == 143


def test_provider_preset_fills_host_and_renewal():
    c = MailboxConfig(provider="yahoo", **BASE)
    assert c.host == "imap.mail.yahoo.com" and c.port == 993 and c.idle_timeout_seconds == 180
    with pytest.raises(ValidationError, match="unknown provider"):
        MailboxConfig(provider="aol-1998", **BASE)


@pytest.mark.parametrize(
    "bad",
    [
        {"host": ""},
        {"host": "h", "port": 0},
        {"host": "h", "idle_timeout_seconds": 3600},
        {"host": "h", "tenant_id": ""},
        {"host": "h", "unknown_field": 1},
    ],
)
def test_bad_values_are_rejected(bad):
    with pytest.raises(ValidationError):
        MailboxConfig(**{**BASE, **bad})
