-- Each worker counts as alive until its own lease after its last heartbeat, whatever lease
-- the process reading the row runs with: a fleet whose processes run different leases
-- neither lists a dead worker for the reader's longer lease nor drops a live one between its
-- beats for the reader's shorter one. Rows written before this know no lease of their own:
-- they get the default one.
ALTER TABLE workers ADD COLUMN alive_until BIGINT NOT NULL DEFAULT 0;
UPDATE workers SET alive_until = last_seen + 30000;
DROP INDEX workers_seen;
CREATE INDEX workers_alive ON workers (alive_until);
