-- Directory: workplaces and their members (R-PERM-1). Written by directory sync.
CREATE TABLE workplaces (
    workplace_id text PRIMARY KEY,
    name         text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE members (
    workplace_id text NOT NULL REFERENCES workplaces,
    member_id    text NOT NULL,
    login_id     text NOT NULL,
    name         text NOT NULL,
    role         text NOT NULL CHECK (role IN ('member', 'admin', 'representative_admin')),
    joined_at    timestamptz NOT NULL DEFAULT now(),
    left_at      timestamptz,
    PRIMARY KEY (workplace_id, member_id)
);
-- Exactly one representative admin among present members (R-PERM-1).
CREATE UNIQUE INDEX members_one_representative
    ON members (workplace_id) WHERE role = 'representative_admin' AND left_at IS NULL;

-- Read model of subscriptions. The row is reserved by the application before the workflow starts
-- (R-LIFE-1: the one write not made by an activity); the workflow's activities keep it current.
CREATE TABLE subscriptions (
    subscription_id       text PRIMARY KEY,
    workplace_id          text NOT NULL REFERENCES workplaces,
    service_id            text NOT NULL,
    state                 text NOT NULL CHECK (state IN
                              ('applied', 'active', 'plan_changing', 'cancelled', 'purged')),
    plan_id               text NOT NULL,
    applicant_id          text NOT NULL,
    terms_version         text NOT NULL,
    requested_at          timestamptz NOT NULL DEFAULT now(),
    applied_at            timestamptz,
    activated_at          timestamptz,
    cancelled_at          timestamptz,
    cancel_reason         text,
    next_plan_change_at   timestamptz,
    scheduled_plan_change jsonb,
    last_plan_change      jsonb,
    data_deletion_at      timestamptz,
    final_invoice_at      timestamptz,
    purged_at             timestamptz,
    usage_permission_count integer NOT NULL DEFAULT 0,
    status_seq            bigint NOT NULL DEFAULT 0,
    updated_at            timestamptz NOT NULL DEFAULT now()
);
-- At most one live subscription per workplace and service; cancellation frees the slot.
CREATE UNIQUE INDEX subscriptions_one_live
    ON subscriptions (workplace_id, service_id) WHERE state IN ('applied', 'active', 'plan_changing');
CREATE INDEX subscriptions_by_workplace ON subscriptions (workplace_id, service_id, requested_at);

-- R-APPLY-2: the agreement to the terms (version, who, when).
CREATE TABLE terms_agreements (
    subscription_id text PRIMARY KEY REFERENCES subscriptions,
    workplace_id    text NOT NULL,
    service_id      text NOT NULL,
    terms_version   text NOT NULL,
    agreed_by       text NOT NULL,
    agreed_at       timestamptz NOT NULL
);

-- Usage permissions (seats) are local service data: deleted with the subscription's data.
CREATE TABLE usage_permissions (
    subscription_id text NOT NULL REFERENCES subscriptions,
    member_id       text NOT NULL,
    granted_at      timestamptz NOT NULL,
    PRIMARY KEY (subscription_id, member_id)
);

-- Management permissions belong to the workplace and service, not to a subscription (R-LIFE-3).
CREATE TABLE management_permissions (
    workplace_id text NOT NULL,
    service_id   text NOT NULL,
    member_id    text NOT NULL,
    permission   text NOT NULL CHECK (permission IN
                     ('usage.view', 'usage.grant', 'plan.change', 'subscription.cancel')),
    granted_at   timestamptz NOT NULL DEFAULT now(),
    granted_by   text,
    PRIMARY KEY (workplace_id, service_id, member_id, permission)
);

-- Audit log: who, when, what, outcome (R-LIFE-4). Kept forever, never deleted by the purge.
-- event_key makes a retried activity write the same entry once.
CREATE TABLE audit_log (
    audit_id        bigserial PRIMARY KEY,
    event_key       text UNIQUE,
    at              timestamptz NOT NULL,
    workplace_id    text NOT NULL,
    service_id      text,
    subscription_id text,
    actor           text NOT NULL,
    action          text NOT NULL,
    outcome         text NOT NULL,
    details         jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_by_workplace ON audit_log (workplace_id, service_id, at);

-- R-CANCEL-2: what the 30-day deletion removed, and when.
CREATE TABLE deletion_records (
    subscription_id text PRIMARY KEY REFERENCES subscriptions,
    deleted_at      timestamptz NOT NULL,
    partner_objects integer NOT NULL,
    local_rows      integer NOT NULL,
    details         jsonb NOT NULL DEFAULT '{}'::jsonb
);

-- R-BILL-6: exactly one invoice per subscription and month; an issued invoice never changes.
CREATE TABLE invoices (
    invoice_id      text PRIMARY KEY,
    subscription_id text NOT NULL REFERENCES subscriptions,
    workplace_id    text NOT NULL,
    service_id      text NOT NULL,
    period          text NOT NULL,
    issued_at       timestamptz NOT NULL,
    lines           jsonb NOT NULL,
    subtotal        numeric(18, 0) NOT NULL,
    vat             numeric(18, 0) NOT NULL,
    total           numeric(18, 0) NOT NULL,
    UNIQUE (subscription_id, period)
);

-- The sandbox partner keeps its side in a schema of its own, acting on real rows.
CREATE SCHEMA partner_sandbox;

CREATE TABLE partner_sandbox.accounts (
    subscription_id text PRIMARY KEY,
    workplace_id    text NOT NULL,
    service_id      text NOT NULL,
    plan_id         text NOT NULL,
    status          text NOT NULL CHECK (status IN ('active', 'suspended')),
    sso_registered  boolean NOT NULL,
    created_at      timestamptz NOT NULL,
    suspended_at    timestamptz
);

-- ubob learning records; a course in progress blocks an unconfirmed plan change (R-PLAN-5).
CREATE TABLE partner_sandbox.learning_records (
    record_id       bigserial PRIMARY KEY,
    subscription_id text NOT NULL,
    member_id       text NOT NULL,
    course_id       text NOT NULL,
    status          text NOT NULL CHECK (status IN ('in_progress', 'completed', 'stopped')),
    progress        integer NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL
);

-- miricanvas design documents and other partner-side objects.
CREATE TABLE partner_sandbox.documents (
    document_id     bigserial PRIMARY KEY,
    subscription_id text NOT NULL,
    member_id       text NOT NULL,
    title           text NOT NULL,
    created_at      timestamptz NOT NULL
);

-- Scripted partner answers, so operators and tests can rehearse refusals and outages.
CREATE TABLE partner_sandbox.scripted_faults (
    workplace_id    text NOT NULL,
    service_id      text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('refuse', 'transient')),
    reason          text NOT NULL DEFAULT '',
    remaining       integer NOT NULL DEFAULT 1,
    PRIMARY KEY (workplace_id, service_id, kind)
);
