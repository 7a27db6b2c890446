-- R-EVENT-2: webhook endpoints, their signing secrets and their deliveries (docs/events.md).
-- An endpoint with workplace_id NULL is system-wide: it receives every workplace's events.
CREATE TABLE webhook_endpoints (
    endpoint_id      text        PRIMARY KEY,
    workplace_id     text,
    url              text        NOT NULL,
    types            text[],                       -- NULL: every type
    description      text        NOT NULL DEFAULT '',
    created_by       text        NOT NULL,
    created_at       timestamptz NOT NULL,
    status           text        NOT NULL DEFAULT 'enabled'
                     CHECK (status IN ('enabled', 'disabled', 'deleted')),
    status_changed_at timestamptz,
    failing_since    timestamptz,                  -- first failure since the last success
    -- the last event taken into webhook_deliveries, in feed order (store/events.py)
    cursor_txid      xid8,
    cursor_event_no  bigint
);
CREATE INDEX webhook_endpoints_workplace ON webhook_endpoints (workplace_id) WHERE status <> 'deleted';

-- Every secret that signs: the newest, and during a rotation the previous one until retires_at.
CREATE TABLE webhook_secrets (
    endpoint_id text        NOT NULL REFERENCES webhook_endpoints (endpoint_id),
    secret      text        NOT NULL,              -- whsec_<base64>, never logged
    created_at  timestamptz NOT NULL,
    retires_at  timestamptz,                       -- NULL: current
    PRIMARY KEY (endpoint_id, created_at)
);

CREATE TABLE webhook_deliveries (
    delivery_id      text        PRIMARY KEY,
    endpoint_id      text        NOT NULL REFERENCES webhook_endpoints (endpoint_id),
    event_no         bigint      NOT NULL REFERENCES events (event_no),
    stream           text        NOT NULL,
    seq              bigint      NOT NULL,
    status           text        NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts         integer     NOT NULL DEFAULT 0,
    last_status_code integer,
    last_error       text,
    last_attempt_at  timestamptz,
    next_attempt_at  timestamptz,
    created_at       timestamptz NOT NULL,
    UNIQUE (endpoint_id, event_no)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (endpoint_id, next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_stream ON webhook_deliveries (endpoint_id, stream, seq);
