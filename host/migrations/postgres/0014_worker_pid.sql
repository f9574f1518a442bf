-- The process id of each worker, so an operator running several on one machine can tell
-- which process a row is (and signal it). Rows written before this have none.
ALTER TABLE workers ADD COLUMN pid BIGINT;
