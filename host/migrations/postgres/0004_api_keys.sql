-- API keys: several per client, each with a public id, an optional label and expiry. A revoked
-- key keeps its row (and why), so listings show what happened to it. `source` says who manages
-- a key: `env` (EASEL_API_KEYS, reconciled at every start), `admin` (the /admin routes) or
-- `migrated` (stored before sources were recorded; a start claims those of the clients that
-- EASEL_API_KEYS lists for the environment and keeps the others valid).
CREATE TABLE api_keys (
    hash            TEXT PRIMARY KEY,   -- hex SHA-256 of the secret
    id              TEXT NOT NULL UNIQUE,
    client_id       TEXT NOT NULL,
    label           TEXT,
    source          TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT,
    revoked_at      BIGINT,
    revoked_reason  TEXT,
    replaced_by     TEXT                -- the id of the key a rotation made in its place
);
CREATE INDEX api_keys_client ON api_keys (client_id, created_at);

-- The key hash makes each id unique; random() only keeps the id from revealing the hash.
INSERT INTO api_keys (hash, id, client_id, source, created_at)
    SELECT key_hash, 'key_' || md5(random()::text || key_hash), id, 'migrated', created_at FROM clients;

-- A client is now just its id.
ALTER TABLE clients DROP COLUMN key_hash;
