"""The dev stack (`make run`): embedded PostgreSQL, the Temporal dev server, worker, API, demo
data, and the sandbox (time-skipping) rehearsal stack. Nothing in production imports this."""
