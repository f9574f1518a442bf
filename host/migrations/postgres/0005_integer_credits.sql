-- Credits in integer micro-credits (1 credit = 1 000 000): binary floating point cannot hold
-- 0.1, so three reservations of 0.1 did not fit in a grant of 0.3. Existing values are rounded
-- to the nearest micro-credit.
ALTER TABLE tasks ALTER COLUMN reserved_credits TYPE BIGINT
    USING round(reserved_credits * 1000000)::BIGINT;
ALTER TABLE tasks RENAME COLUMN reserved_credits TO reserved_micros;

ALTER TABLE balances ALTER COLUMN credits TYPE BIGINT USING round(credits * 1000000)::BIGINT;
ALTER TABLE balances RENAME COLUMN credits TO micros;

ALTER TABLE credit_ledger ALTER COLUMN amount TYPE BIGINT USING round(amount * 1000000)::BIGINT;
ALTER TABLE credit_ledger RENAME COLUMN amount TO amount_micros;  -- signed change
