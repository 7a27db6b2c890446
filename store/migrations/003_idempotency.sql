-- R-ERR-2: a POST retried with the same Idempotency-Key by the same caller gets the first answer.
-- `caller` scopes the key (workplace:member, or "system"); `request_hash` is the method, path and
-- canonical body, so the same key with another request is refused (IDEMPOTENCY_KEY_REUSED).
-- A row without `status` is a request still being answered. Keys are kept for 24 hours.
CREATE TABLE idempotency_keys (
    caller       text NOT NULL,
    key          text NOT NULL,
    request_hash text NOT NULL,
    status       integer,
    body         jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (caller, key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
