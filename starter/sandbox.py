"""`SANDBOX=1 make run`: the stack on Temporal's time-skipping server (a rehearsal).

The time-skipping server keeps workflows in memory and has no Web UI, so the sandbox has its own
database under DATA_DIR/sandbox, emptied at each start (API.md, "Sandbox clock").
"""

from __future__ import annotations

from settings import Settings


async def run_sandbox(settings: Settings) -> None:
    raise SystemExit(
        "[bizsupport] SANDBOX=1 is not wired yet (the API's sandbox clock lands with it)"
    )
