-- Claim order and capacity (issue 17): workers claim the queued task with the highest
-- `priority`, then the oldest; `[capacity]` limits are counted from the running rows.
ALTER TABLE tasks ADD COLUMN priority BIGINT NOT NULL DEFAULT 0;
CREATE INDEX tasks_claim_order ON tasks (status, priority DESC, created_at, id);

-- A client's default task priority, on its client-wide row or a model's (the model's wins);
-- NULL leaves it to the other row, else 0.
ALTER TABLE client_limits ADD COLUMN priority BIGINT;
