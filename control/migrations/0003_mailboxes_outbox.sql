-- Mailboxes per tenant and email type, and the transactional outbox of mailbox commands.
CREATE TABLE mailboxes (
    mailbox_id        text PRIMARY KEY,             -- "<tenant_id>:<email_type>"
    tenant_id         text NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    email_type        text NOT NULL CHECK (email_type ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'),
    config            jsonb NOT NULL,               -- producers.config.MailboxConfig, no secrets
    enabled           boolean NOT NULL DEFAULT false,
    config_version    bigint NOT NULL DEFAULT 1,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, email_type)
);

-- Written in the same transaction as the change it announces; a relay publishes rows in id
-- order to the compacted commands topic and then marks them sent (docs/decisions.md).
CREATE TABLE command_outbox (
    id            bigserial PRIMARY KEY,
    mailbox_id    text NOT NULL,
    payload       bytea NOT NULL,                   -- the encoded MailboxCommand event
    created_at    timestamptz NOT NULL DEFAULT now(),
    sent_at       timestamptz
);
CREATE INDEX command_outbox_unsent ON command_outbox (id) WHERE sent_at IS NULL;
