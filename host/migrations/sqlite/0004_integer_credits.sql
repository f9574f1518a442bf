-- Credits in integer micro-credits (1 credit = 1 000 000): binary floating point cannot hold
-- 0.1, so three reservations of 0.1 did not fit in a grant of 0.3. Existing values are rounded
-- to the nearest micro-credit. SQLite keeps a REAL column's affinity, so each amount moves to a
-- new INTEGER column and the REAL one is dropped.
ALTER TABLE tasks ADD COLUMN reserved_micros INTEGER NOT NULL DEFAULT 0;
UPDATE tasks SET reserved_micros = CAST(ROUND(reserved_credits * 1000000) AS INTEGER);
ALTER TABLE tasks DROP COLUMN reserved_credits;

ALTER TABLE balances ADD COLUMN micros INTEGER NOT NULL DEFAULT 0;
UPDATE balances SET micros = CAST(ROUND(credits * 1000000) AS INTEGER);
ALTER TABLE balances DROP COLUMN credits;

ALTER TABLE credit_ledger ADD COLUMN amount_micros INTEGER NOT NULL DEFAULT 0;  -- signed change
UPDATE credit_ledger SET amount_micros = CAST(ROUND(amount * 1000000) AS INTEGER);
ALTER TABLE credit_ledger DROP COLUMN amount;
