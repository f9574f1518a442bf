-- Credits: a balance per client; a task reserves its price at submit (tasks.reserved_credits),
-- keeps it when it succeeds and gets it back otherwise. The ledger lists every balance change.
ALTER TABLE tasks ADD COLUMN reserved_credits DOUBLE PRECISION NOT NULL DEFAULT 0;

CREATE TABLE balances (
    client_id   TEXT PRIMARY KEY,
    credits     DOUBLE PRECISION NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE credit_ledger (
    id          TEXT PRIMARY KEY,
    client_id   TEXT NOT NULL,
    task_id     TEXT,
    kind        TEXT NOT NULL,   -- grant, reserve, refund
    amount      DOUBLE PRECISION NOT NULL,   -- signed change of the balance
    created_at  BIGINT NOT NULL
);
CREATE INDEX credit_ledger_client ON credit_ledger (client_id, created_at);

-- Host-wide values every process shares (the key that signs public file links).
CREATE TABLE settings (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
