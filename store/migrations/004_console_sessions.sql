-- Console sessions live on the server (issue: logout must end the session). The cookie holds a
-- random id; only its SHA-256 is stored, so reading this table reveals no usable cookie. A
-- session has a bounded lifetime and ends at logout (the row is deleted). Each carries the CSRF
-- token its forms must send back.
CREATE TABLE console_sessions (
    session_hash  text        PRIMARY KEY,
    workplace_id  text        NOT NULL,
    member_id     text        NOT NULL,
    csrf_token    text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
