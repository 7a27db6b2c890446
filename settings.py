"""Configuration read from the environment, in one place.

Every process (worker, API, CLI, dev launcher) reads the same names, so a setting means the same
thing everywhere. Defaults suit the embedded dev stack started by `make run`.
"""

from __future__ import annotations

import os
import secrets
import stat
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

from domain.tokens import WeakSecretError, check_secret

REPO_ROOT = Path(__file__).resolve().parent
TASK_QUEUE_DEFAULT = "bizsupport"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str | None
    temporal_address: str
    temporal_namespace: str
    task_queue: str
    sandbox: bool
    api_port: int
    # Subscription workflows a worker keeps in memory between tasks; an evicted one replays its
    # history on its next task. Size it to the live subscriptions one worker serves (~144 KiB
    # each): at month-end every one of them wakes at once (bench/README.md).
    worker_cache_size: int
    # The worker's Prometheus endpoint (the Temporal SDK's own metrics): None turns it off.
    worker_metrics_port: int | None = None
    # Where metrics endpoints listen: loopback unless a container needs 0.0.0.0 (compose).
    metrics_bind_address: str = "127.0.0.1"
    # The API's /metrics asks for a system bearer token unless this is set (METRICS_PUBLIC=1).
    metrics_public: bool = False
    # Month-end spread (INVOICE_SPREAD_MINUTES): new subscriptions issue their invoice at their
    # own instant within this long after 00:00 on the 1st, instead of all at 00:00.
    invoice_spread: timedelta = timedelta(0)
    # The Temporal dev server's Web UI (`make run`); another port lets two stacks share a host.
    temporal_ui_port: int = 8233
    # Webhook endpoints on loopback (http or https) are accepted only on a local stack:
    # `make run` and the tests set WEBHOOK_ALLOW_LOOPBACK=1 (docs/webhooks.md, "Endpoint URLs").
    webhook_allow_loopback: bool = False

    @property
    def worker_metrics_address(self) -> str | None:
        """`host:port` for the worker's Prometheus endpoint, or None when it is off."""
        if not self.worker_metrics_port:
            return None
        return f"{self.metrics_bind_address}:{self.worker_metrics_port}"

    @property
    def secret_file(self) -> Path:
        return self.data_dir / "auth-secret"


def load_settings() -> Settings:
    env = os.environ
    return Settings(
        data_dir=Path(env.get("DATA_DIR", str(REPO_ROOT / ".data"))).resolve(),
        database_url=env.get("DATABASE_URL") or None,
        temporal_address=env.get("TEMPORAL_ADDRESS", "127.0.0.1:7233"),
        temporal_namespace=env.get("TEMPORAL_NAMESPACE", "default"),
        task_queue=env.get("TEMPORAL_TASK_QUEUE", TASK_QUEUE_DEFAULT),
        sandbox=env.get("SANDBOX", "") not in ("", "0", "false"),
        api_port=int(env.get("API_PORT", "8000")),
        worker_cache_size=_cache_size(env.get("WORKER_CACHE_SIZE", "2500")),
        worker_metrics_port=int(env.get("WORKER_METRICS_PORT", "9464") or "0") or None,
        metrics_bind_address=env.get("METRICS_BIND_ADDRESS") or "127.0.0.1",
        metrics_public=env.get("METRICS_PUBLIC", "") not in ("", "0", "false"),
        invoice_spread=_minutes(env.get("INVOICE_SPREAD_MINUTES", "0"), "INVOICE_SPREAD_MINUTES"),
        temporal_ui_port=int(env.get("TEMPORAL_UI_PORT", "8233")),
        webhook_allow_loopback=env.get("WEBHOOK_ALLOW_LOOPBACK", "") not in ("", "0", "false"),
    )


def _cache_size(text: str) -> int:
    """WORKER_CACHE_SIZE: at least 1. Without a cache the workflow's local activities each wait
    out a 10 s workflow task timeout (docs/architecture.md, Versions)."""
    try:
        size = int(text)
    except ValueError:
        raise SystemExit(f"WORKER_CACHE_SIZE must be a whole number, got {text!r}") from None
    if size < 1:
        raise SystemExit(
            f"WORKER_CACHE_SIZE must be at least 1, got {size}: the subscription workflow's"
            " local activities need a workflow cache"
        )
    return size


def _minutes(text: str, name: str) -> timedelta:
    """A whole number of minutes within a day, or a refusal to start that says so."""
    try:
        minutes = int(text)
    except ValueError:
        raise SystemExit(f"{name} must be a whole number of minutes, got {text!r}") from None
    if not 0 <= minutes <= 24 * 60:
        raise SystemExit(f"{name} must be between 0 and 1440 minutes (one day), got {minutes}")
    return timedelta(minutes=minutes)


class InsecureSetting(SystemExit):
    """A setting the process refuses to start with; the message says what to do instead."""


def _strong(secret: str, where: str) -> str:
    try:
        return check_secret(secret)
    except WeakSecretError as err:
        raise InsecureSetting(f"refusing to start: {err} (read from {where})") from None


def auth_secret(settings: Settings) -> str:
    """The token-signing secret: `BIZSUPPORT_AUTH_SECRET`, else one made once under DATA_DIR.

    Never a fixed default: a secret in the source would let anyone mint admin tokens. Shorter than
    32 bytes, from either place, stops the process (`InsecureSetting`) with a message saying so.
    """
    from_env = os.environ.get("BIZSUPPORT_AUTH_SECRET")
    if from_env:
        return _strong(from_env, "BIZSUPPORT_AUTH_SECRET")
    path = settings.secret_file
    if path.exists():
        return _strong(path.read_text().strip(), str(path))
    secret = secrets.token_urlsafe(48)
    if not create_private(path, secret):  # another process made it first: use theirs
        return _strong(path.read_text().strip(), str(path))
    return secret


def metrics_token() -> str | None:
    """`METRICS_TOKEN`: a long-lived bearer token that opens the API's /metrics only (for
    Prometheus, whose scrape credential cannot be a 12-hour system token). Unset: none. A short
    one stops the process (`InsecureSetting`)."""
    token = os.environ.get("METRICS_TOKEN")
    return _strong(token, "METRICS_TOKEN") if token else None


# ── private files ────────────────────────────────────────────────────────────────────────────


def create_private(path: Path, text: str) -> bool:
    """Create `path` holding `text`, mode 0600 from the first byte, only if it does not exist:
    True if this call made it, False if it already existed (then it is left as it was). The file
    appears whole (written aside, then hard-linked into place), so a racing reader never sees it
    empty."""
    tmp = _private_tmp(path, text)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True


def _private_tmp(path: Path, text: str) -> Path:
    """A new 0600 file beside `path` holding `text`, flushed to disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def write_private(path: Path, text: str) -> None:
    """Replace `path` atomically with `text`, mode 0600 (readers see the old or the new file,
    never a half-written or briefly world-readable one). For stack.json and other files that
    carry a database URL with its password."""
    tmp = _private_tmp(path, text)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def open_private_log(path: Path) -> BinaryIO:
    """`path` opened for appending, mode 0600 (an older, looser log is narrowed to 0600): logs of
    the stack's processes may hold connection strings."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:  # not a link to another file
        os.close(fd)
        raise OSError(f"{path} is not a plain file; refusing to log into it")
    if info.st_mode & 0o077:
        os.fchmod(fd, 0o600)
    return os.fdopen(fd, "ab")
