-- The queue's indexes hold only the queued rows, and the capacity count's only the running
-- ones. Every claim, count and listing that should use them names the status as a literal
-- (`status = 'queued'`, `status = 'running'`), which is what lets the planner pick a partial
-- index. A task that never queues (a chat) enters none of the queue's indexes and a finished
-- task leaves all of them, so a chat's insert updates five structures instead of seven and
-- its finish three instead of five.
DROP INDEX tasks_queue;
DROP INDEX tasks_queue_provider;
DROP INDEX tasks_claim_order;
CREATE INDEX tasks_queued ON tasks (created_at) WHERE status = 'queued';
-- A claim walks the queue in claim order and tests the providers it serves; the queue per
-- provider and a task's place in it are counted. All three read this index alone: it holds
-- the provider, and the status too, although always 'queued' here, because SQLite reads the
-- row to test it otherwise. An index led by the provider would be chosen for a claim's
-- `provider IN (…)` and sort that provider's whole queue on every claim.
CREATE INDEX tasks_claim_order ON tasks (priority DESC, created_at, id, provider, status)
    WHERE status = 'queued';
CREATE INDEX tasks_running ON tasks (provider, model, status) WHERE status = 'running';
