-- A queued task may name a time before which no claim takes it (`wake_at`, set when a submit
-- its vendor refused for now goes back to the queue). A claim tests it on the claim order's
-- index alone, as it tests the provider, so the index holds it too.
DROP INDEX tasks_claim_order;
CREATE INDEX tasks_claim_order ON tasks (priority DESC, created_at, id, provider, status, wake_at)
    WHERE status = 'queued';
