-- The outbox's work is its undelivered rows, which are few beside the delivered ones it keeps.
-- A claim takes the oldest due rows along `webhook_pending`, and, when receivers at their
-- limit fill those, skips from one URL to the next along `webhook_pending_by_url` (a claim
-- used to rank every due row, which a dead receiver's backlog made cost a sort of it all). A
-- task's view lists its deliveries by `webhook_by_task` instead of reading the whole outbox.
DROP INDEX webhook_due;
CREATE INDEX webhook_pending ON webhook_outbox (next_attempt_at, id)
    WHERE delivered_at IS NULL AND gave_up_at IS NULL;
CREATE INDEX webhook_pending_by_url ON webhook_outbox (url, next_attempt_at, id)
    WHERE delivered_at IS NULL AND gave_up_at IS NULL;
CREATE INDEX webhook_by_task ON webhook_outbox (task_id);
