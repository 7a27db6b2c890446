-- Member notices shown in the member's menu (R-PERM-9: a learning-record reset, …).
CREATE TABLE member_notices (
    notice_id       bigserial PRIMARY KEY,
    workplace_id    text NOT NULL,
    member_id       text NOT NULL,
    kind            text NOT NULL,
    service_id      text,
    subscription_id text,
    message         text NOT NULL,
    message_ko      text NOT NULL,
    details         jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL,
    dismissed_at    timestamptz
);
CREATE INDEX member_notices_by_member ON member_notices (workplace_id, member_id, created_at);

-- R-PERM-8: single-sign-on launch tokens are single-use. The first verification inserts the jti;
-- a second one conflicts and is refused. Rows may be dropped once the token has expired.
CREATE TABLE spent_launch_tokens (
    jti          text PRIMARY KEY,
    workplace_id text NOT NULL,
    member_id    text NOT NULL,
    service_id   text NOT NULL,
    expires_at   timestamptz NOT NULL,
    spent_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX spent_launch_tokens_by_expiry ON spent_launch_tokens (expires_at);

CREATE INDEX management_permissions_by_member
    ON management_permissions (workplace_id, member_id);
