-- An ended task past `[engine] keep_ended_secs` is deleted with its idempotency keys, found
-- by the task they name.
CREATE INDEX idempotency_keys_task ON idempotency_keys (task_id);
