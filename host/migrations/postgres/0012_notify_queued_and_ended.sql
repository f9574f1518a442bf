-- Wakes workers only when there may be work for them: a task became queued, or a running one
-- ended (a slot under a [capacity] limit counted in the database is free again). The
-- statement-level trigger this replaces fired for every claim, including one that matched no
-- row, so each idle worker's claim woke the workers of every host, whose claims woke them
-- again: thousands of empty claims a second on an idle fleet.
DROP TRIGGER tasks_queued_notify ON tasks;

CREATE TRIGGER tasks_inserted_queued_notify
    AFTER INSERT ON tasks
    FOR EACH ROW WHEN (NEW.status = 'queued') EXECUTE FUNCTION easel_notify_queued();

CREATE TRIGGER tasks_requeued_notify
    AFTER UPDATE OF status ON tasks
    FOR EACH ROW WHEN (NEW.status = 'queued' AND OLD.status IS DISTINCT FROM 'queued')
    EXECUTE FUNCTION easel_notify_queued();

CREATE TRIGGER tasks_ended_notify
    AFTER UPDATE OF status ON tasks
    FOR EACH ROW WHEN (OLD.status = 'running' AND NEW.status <> 'running')
    EXECUTE FUNCTION easel_notify_queued();
