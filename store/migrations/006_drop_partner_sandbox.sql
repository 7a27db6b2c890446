-- The sandbox partner is a server of its own now (partners/sandbox_server.py), keeping its state
-- in a schema bizsupport never reads; the in-database partner's schema goes (docs/partners.md).
DROP SCHEMA IF EXISTS partner_sandbox CASCADE;
