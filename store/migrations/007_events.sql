-- R-EVENT-1: the outbox. Every committed decision writes its event in the same transaction
-- (store/events.py). `event_key` is the decision's business key (the audit entry's
-- "{subscription_id}:{seq}", or another key for workplace-level decisions): a repeated commit
-- finds its event and writes nothing. `event_id` is derived from it, so it is stable too.
--
-- `stream` is what `seq` counts in: the subscription id, or "workplace:{id}" for decisions that
-- belong to no subscription (management permissions). `seq` is 1, 2, 3… per stream.
--
-- The feed reads in (txid, event_no) order and only rows whose transaction id is below the
-- oldest transaction still running (pg_snapshot_xmin): a row that commits late can never appear
-- behind a cursor a reader has already passed (docs/events.md).
CREATE TABLE events (
    event_no        bigserial PRIMARY KEY,
    txid            xid8        NOT NULL DEFAULT pg_current_xact_id(),
    event_id        text        NOT NULL UNIQUE,
    event_key       text        NOT NULL UNIQUE,
    type            text        NOT NULL,
    created_at      timestamptz NOT NULL,
    workplace_id    text        NOT NULL,
    service_id      text,
    subscription_id text,
    stream          text        NOT NULL,
    seq             bigint      NOT NULL,
    data            jsonb       NOT NULL,
    UNIQUE (stream, seq)
);
CREATE INDEX events_feed ON events (txid, event_no);
CREATE INDEX events_workplace_feed ON events (workplace_id, txid, event_no);
