-- A pending delivery always has the time it is due (R-EVENT-2): the dispatcher's round compares
-- it with the clock and would fail on NULL. Nothing in the product writes a pending row without
-- one (claim, a failed attempt with a retry, resend all set it); this makes the rule the
-- database's, so a row written by hand (an operator's repair, a test) cannot stall an endpoint.
-- A row that broke the rule before this migration becomes due when it was claimed.
UPDATE webhook_deliveries SET next_attempt_at = created_at
    WHERE status = 'pending' AND next_attempt_at IS NULL;
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_pending_is_due
    CHECK (status <> 'pending' OR next_attempt_at IS NOT NULL);
