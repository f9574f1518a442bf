-- The fleet (issue 17): one row per process that runs tasks (`serve` with workers,
-- `easel worker`), written again every third of its lease. A row whose `last_seen` is older
-- than one lease is a dead worker: it is neither listed nor counted as serving anything, but
-- its models stay known for the grace period (`[engine] model_grace_secs`), then it is deleted.
-- `providers` is a JSON array of provider ids; `announcement` a JSON array of what each
-- provider announced (version, submit idempotent, reads input bytes, models with schemas).
CREATE TABLE workers (
    id            TEXT PRIMARY KEY,
    host          TEXT NOT NULL,
    providers     TEXT NOT NULL,
    announcement  TEXT NOT NULL,
    capacity      INTEGER NOT NULL,
    version       TEXT NOT NULL,
    model_loaded  INTEGER NOT NULL,
    started_at    INTEGER NOT NULL,
    last_seen     INTEGER NOT NULL
);
CREATE INDEX workers_seen ON workers (last_seen);

-- The worker (`workers.id`) whose claim a task was last taken under; claims are routed by
-- provider, so a worker only takes tasks of the providers it serves.
ALTER TABLE tasks ADD COLUMN worker_id TEXT;
CREATE INDEX tasks_queue_provider ON tasks (status, provider, created_at);
