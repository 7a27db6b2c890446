"""`python -m store.migrate`: apply the SQL migrations to DATABASE_URL (one-shot job)."""

from __future__ import annotations

import sys

from settings import load_settings
from store.db import migrate


def main() -> int:
    settings = load_settings()
    if not settings.database_url:
        print("DATABASE_URL is not set; `make run` migrates its embedded database itself.")
        return 2
    applied = migrate(settings.database_url)
    print(f"migrations applied: {', '.join(applied) or 'none pending'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
