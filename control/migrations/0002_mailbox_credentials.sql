-- Mailbox credentials, encrypted at rest (AES-256-GCM, see control/crypto.py). One row per
-- mailbox. `secret` decrypts to a JSON object: {"password": ...} or {"access_token": ...,
-- "refresh_token": ..., "expires_at": ...}. The mailbox id is the AEAD associated data, so a
-- ciphertext copied to another row does not decrypt. `version` makes token rotation atomic.
CREATE TABLE mailbox_credentials (
    mailbox_id  text PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('password', 'oauth2')),
    key_id      text NOT NULL,
    nonce       bytea NOT NULL,
    ciphertext  bytea NOT NULL,
    version     bigint NOT NULL DEFAULT 1,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mailbox_credentials_key_id ON mailbox_credentials (key_id);
