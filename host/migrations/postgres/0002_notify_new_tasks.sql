-- Wakes workers on every host when tasks are queued, without a round trip in the submit path.
CREATE FUNCTION easel_notify_queued() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('easel_tasks', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER tasks_queued_notify
    AFTER INSERT OR UPDATE OF status ON tasks
    FOR EACH STATEMENT EXECUTE FUNCTION easel_notify_queued();
