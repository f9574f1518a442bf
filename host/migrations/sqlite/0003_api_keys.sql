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
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER,
    revoked_at      INTEGER,
    revoked_reason  TEXT,
    replaced_by     TEXT                -- the id of the key a rotation made in its place
);
CREATE INDEX api_keys_client ON api_keys (client_id, created_at);

INSERT INTO api_keys (hash, id, client_id, source, created_at)
    SELECT key_hash, 'key_' || lower(hex(randomblob(16))), id, 'migrated', created_at FROM clients;

-- A client is now just its id; SQLite cannot drop a UNIQUE column, so the table is rebuilt.
CREATE TABLE clients_rebuilt (
    id          TEXT PRIMARY KEY,
    created_at  INTEGER NOT NULL
);
INSERT INTO clients_rebuilt (id, created_at) SELECT id, created_at FROM clients;
DROP TABLE clients;
ALTER TABLE clients_rebuilt RENAME TO clients;
