-- Issue 11: a key being answered is a lease, not a permanent lock. `owner` is the process
-- answering it (one id per process), `lease_until` when the lease runs out unless the owner renews
-- it; a retry after that takes the key over (`attempts` + 1) and runs the request again, safely:
-- Temporal de-duplicates the update or start by an id derived from the key. Keys claimed before
-- this migration have no lease and may be taken over at once.
ALTER TABLE idempotency_keys
    ADD COLUMN owner       text,
    ADD COLUMN lease_until timestamptz,
    ADD COLUMN attempts    integer NOT NULL DEFAULT 1;
