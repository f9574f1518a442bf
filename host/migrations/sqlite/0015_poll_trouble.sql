-- A task pending at its vendor keeps why the last poll got no answer, so that every host's
-- view of it can say so; the next answer clears it.
ALTER TABLE tasks ADD COLUMN poll_trouble TEXT;
