-- A breaker per provider, shared by every host: submits that failed unavailable in a row, and
-- until when (ms) no claim takes the provider's queued tasks.
CREATE TABLE provider_breakers (
    provider TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    open_until BIGINT NOT NULL,
    last_error TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
