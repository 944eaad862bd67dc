-- Tenants, API credentials (hashed), and the producers' durable checkpoints.
CREATE TABLE tenants (
    tenant_id   text PRIMARY KEY CHECK (tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'),
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- A bearer token is "iw_<credential_id>_<secret>"; only SHA-256(secret) is stored. Secrets are
-- 256-bit random, so a fast hash is enough (no password stretching needed).
CREATE TABLE api_credentials (
    credential_id  text PRIMARY KEY,
    secret_sha256  bytea NOT NULL,
    tenant_id      text REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    is_admin       boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz,
    CHECK (is_admin OR tenant_id IS NOT NULL)
);

-- Source offset of a watched folder: (UIDVALIDITY, last UID acknowledged by Kafka).
CREATE TABLE checkpoints (
    mailbox_id   text NOT NULL,
    folder       text NOT NULL,
    uidvalidity  bigint NOT NULL,
    last_uid     bigint NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mailbox_id, folder)
);
