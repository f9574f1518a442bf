-- The queue's indexes hold only the queued rows, the capacity count's only the running ones,
-- the poller's only the pending ones. Every claim, count and listing that should use them
-- names the status or phase as a literal (`status = 'queued'`, `phase = 'pending'`), which
-- is what lets the planner pick a partial index. A chat (running, then finished) is in
-- `tasks_running` alone while it runs and in none of them once it ended, so a chat's insert
-- updates four structures instead of seven (the table, its primary key, `tasks_client` and
-- `tasks_running`) and its finish two instead of five.
DROP INDEX tasks_queue;
DROP INDEX tasks_queue_provider;
DROP INDEX tasks_claim_order;
DROP INDEX tasks_wake;
CREATE INDEX tasks_queued ON tasks (created_at) WHERE status = 'queued';
-- A claim walks the queue in claim order and tests the providers it serves; the queue per
-- provider and a task's place in it are counted. All three read this index alone: it holds
-- the provider, and the status too, although always 'queued' here, because SQLite reads the
-- row to test it otherwise. An index led by the provider would be chosen for a claim's
-- `provider IN (…)` and sort that provider's whole queue on every claim.
CREATE INDEX tasks_claim_order ON tasks (priority DESC, created_at, id, provider, status)
    WHERE status = 'queued';
CREATE INDEX tasks_running ON tasks (provider, model, status) WHERE status = 'running';
-- Due polls in `wake_at` order. Leases (`submitting`, `streaming`) are found among the
-- running rows: keeping them here would move an entry at every lease renewal.
CREATE INDEX tasks_pending ON tasks (wake_at) WHERE phase = 'pending';
