-- Times are milliseconds since the Unix epoch; JSON is stored as text.
CREATE TABLE clients (
    id          TEXT PRIMARY KEY,
    key_hash    TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

CREATE TABLE tasks (
    id              TEXT PRIMARY KEY,
    client_id       TEXT NOT NULL,
    api             TEXT NOT NULL,
    capability      TEXT NOT NULL,
    provider        TEXT NOT NULL,
    model           TEXT NOT NULL,
    request         TEXT NOT NULL,
    status          TEXT NOT NULL,
    phase           TEXT,
    progress        REAL NOT NULL DEFAULT 0,
    pending_handle  TEXT,
    wake_at         INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    attempts        INTEGER NOT NULL DEFAULT 0,
    outputs         TEXT NOT NULL DEFAULT '[]',
    error           TEXT,
    usage           TEXT,
    webhook_url     TEXT,
    extra           TEXT NOT NULL DEFAULT '{}',
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    started_at      INTEGER,
    finished_at     INTEGER
);
CREATE INDEX tasks_queue ON tasks (status, created_at);
CREATE INDEX tasks_wake ON tasks (phase, wake_at);
CREATE INDEX tasks_client ON tasks (client_id, created_at);

CREATE TABLE idempotency_keys (
    client_id     TEXT NOT NULL,
    key           TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    task_id       TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (client_id, key)
);

CREATE TABLE assets (
    id            TEXT PRIMARY KEY,
    client_id     TEXT NOT NULL,
    kind          TEXT NOT NULL,
    name          TEXT NOT NULL,
    content_type  TEXT NOT NULL,
    size          INTEGER,
    sha256        TEXT,
    url           TEXT,
    task_id       TEXT,
    created_at    INTEGER NOT NULL
);
CREATE INDEX assets_client ON assets (client_id, created_at);

CREATE TABLE webhook_outbox (
    id              TEXT PRIMARY KEY,
    task_id         TEXT NOT NULL,
    url             TEXT NOT NULL,
    body            TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    delivered_at    INTEGER,
    gave_up_at      INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL
);
CREATE INDEX webhook_due ON webhook_outbox (delivered_at, gave_up_at, next_attempt_at);
