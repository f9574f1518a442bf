-- Times are milliseconds since the Unix epoch; JSON is stored as text.
CREATE TABLE clients (
    id          TEXT PRIMARY KEY,
    key_hash    TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
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
    progress        DOUBLE PRECISION NOT NULL DEFAULT 0,
    pending_handle  TEXT,
    wake_at         BIGINT,
    cancel_requested BIGINT NOT NULL DEFAULT 0,
    attempts        BIGINT NOT NULL DEFAULT 0,
    outputs         TEXT NOT NULL DEFAULT '[]',
    error           TEXT,
    usage           TEXT,
    webhook_url     TEXT,
    extra           TEXT NOT NULL DEFAULT '{}',
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    started_at      BIGINT,
    finished_at     BIGINT
);
CREATE INDEX tasks_queue ON tasks (status, created_at);
CREATE INDEX tasks_wake ON tasks (phase, wake_at);
CREATE INDEX tasks_client ON tasks (client_id, created_at);

CREATE TABLE idempotency_keys (
    client_id     TEXT NOT NULL,
    key           TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    task_id       TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (client_id, key)
);

CREATE TABLE assets (
    id            TEXT PRIMARY KEY,
    client_id     TEXT NOT NULL,
    kind          TEXT NOT NULL,
    name          TEXT NOT NULL,
    content_type  TEXT NOT NULL,
    size          BIGINT,
    sha256        TEXT,
    url           TEXT,
    task_id       TEXT,
    created_at    BIGINT NOT NULL
);
CREATE INDEX assets_client ON assets (client_id, created_at);

CREATE TABLE webhook_outbox (
    id              TEXT PRIMARY KEY,
    task_id         TEXT NOT NULL,
    url             TEXT NOT NULL,
    body            TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    delivered_at    BIGINT,
    gave_up_at      BIGINT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL
);
CREATE INDEX webhook_due ON webhook_outbox (delivered_at, gave_up_at, next_attempt_at);
