-- Per-client limits (issue 18): one row per client and scope. `model` is '' for a limit on all
-- of the client's tasks, else the model id (`provider/key`) it applies to. A NULL column is no
-- limit of that kind. Budgets are micro-credits per UTC `day` or `month`. Admissions lock the
-- client's rows (PostgreSQL) and count from `tasks` in the insert's own transaction.
CREATE TABLE client_limits (
    client_id            TEXT NOT NULL,
    model                TEXT NOT NULL,
    requests_per_minute  INTEGER,
    concurrent_tasks     INTEGER,
    budget_micros        INTEGER,
    budget_period        TEXT,
    updated_at           INTEGER NOT NULL,
    PRIMARY KEY (client_id, model)
);

-- The HTTP request that created a task (`req_…`, its `x-request-id`), so that the lines a
-- worker, the poller or a chat's relay logs about the task carry it too (EASEL_LOG_FORMAT).
ALTER TABLE tasks ADD COLUMN request_id TEXT;
