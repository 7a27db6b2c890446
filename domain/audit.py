"""What the audit log records: one code per action, written by the workflow and the services.

The log stores the code; the console words each one in Korean (`api/console/labels.py`,
`ACTION_KO`, one label per code, checked by a test).
"""

from __future__ import annotations

from typing import Literal, get_args

AuditAction = Literal[
    # a subscription's life, written by its workflow
    "applied",
    "activated",
    "refused",
    "cancelled",
    "purged",
    "plan_change_started",
    "plan_changed",
    "plan_change_failed",
    "plan_change_scheduled",
    "plan_change_withdrawn",
    "plan_change_dropped",
    "usage_granted",
    "usage_revoked",
    "learning_records_reset",
    "invoice_issued",
    "billing_closed",
    "deletion_upcoming",  # version 4: 7 days and 1 day before the data deletion (R-EVENT-4)
    # management permissions (services/access.py, services/directory.py)
    "management_permissions_changed",
    "management_permissions_dropped",
    # the directory (services/directory.py)
    "member_joined",
    "member_left",
    "member_role_changed",
    "member_renamed",
    "login_id_changed",
    "representative_changed",
    "workplace_created",
    "workplace_renamed",
    # the reconciler's repairs (services/reconcile.py, services/subscriptions.py)
    "reservation_resumed",
    "read_model_repaired",
    "partner_account_suspended",
    # a partner's refusal for good of a suspension or deletion (activities/effects.py)
    "partner_refused",
    # webhook endpoints (R-EVENT-2; services/webhooks.py)
    "webhook_endpoint_created",
    "webhook_endpoint_deleted",
    "webhook_endpoint_disabled",
    "webhook_secret_rotated",
]
AUDIT_ACTIONS: tuple[AuditAction, ...] = get_args(AuditAction)

AuditOutcome = Literal["ok", "refused", "failed", "dropped"]
