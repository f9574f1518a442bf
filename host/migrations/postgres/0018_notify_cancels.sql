-- Tells every host at once that a task was asked to stop, so the one holding it (a worker
-- mid-submit, the host streaming a chat) cancels it now rather than at its next lease renewal.
CREATE FUNCTION easel_notify_cancel() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('easel_cancels', NEW.id);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER tasks_cancel_notify
    AFTER UPDATE OF cancel_requested ON tasks
    FOR EACH ROW WHEN (OLD.cancel_requested = 0 AND NEW.cancel_requested <> 0)
    EXECUTE FUNCTION easel_notify_cancel();
