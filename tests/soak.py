"""`make soak`: the generated-lifecycle billing test at scale, with progress and a summary.

Runs tests/workflows/test_billing_workflow.py's generated-lifecycle test (every invoice of every
lifecycle against tests/billing_oracle.py, to the won) in SHARDS pytest processes at once, each
with its own PostgreSQL, time-skipping server, worker and share of the lifecycles, so that both
cores work (one Python process uses at most one). While they run it prints lifecycles done,
mismatches so far, elapsed and estimated time left; at the end the lifecycles, invoices and won
compared, and every mismatch with its timeline.

    BIZSUPPORT_SOAK_LIFECYCLES  how many (default 10000)
    BIZSUPPORT_SOAK_SEED        the seed (default: a new one, printed); the same seed and shard
                                count draw the same lifecycles
    BIZSUPPORT_SOAK_SHARDS      processes (default 2)

Shard i draws its lifecycles from seed * 100 + i; the summary prints the command that reruns one
shard alone. Exit status 0 only when every lifecycle was compared and none disagreed.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

TEST = "tests/workflows/test_billing_workflow.py"
SELECT = "generated_lifecycles"
EVERY = 10.0  # seconds between progress lines when not on a terminal


@dataclass
class Shard:
    index: int
    lifecycles: int
    seed: int
    progress: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        return {
            "BIZSUPPORT_ORACLE_EXAMPLES": str(self.lifecycles),
            "BIZSUPPORT_SOAK_SEED": str(self.seed),
            "BIZSUPPORT_SOAK_PROGRESS": str(self.progress),
        }

    def command(self) -> list[str]:
        return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", TEST, "-k", SELECT]

    def rerun(self) -> str:
        settings = " ".join(f"{k}={v}" for k, v in self.env().items() if "PROGRESS" not in k)
        return f"{settings} .venv/bin/python -m pytest -q {TEST} -k {SELECT}"

    def start(self) -> None:
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                self.command(), env={**os.environ, **self.env()}, stdout=out, stderr=out
            )

    def read(self) -> tuple[dict[str, Any], list[str]]:
        """The latest counts this shard reported, and its mismatches so far."""
        counts: dict[str, Any] = {"lifecycles": 0, "invoices": 0, "won": 0}
        mismatches: list[str] = []
        if self.progress.exists():
            for line in self.progress.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a line being written
                if "mismatch" in record:
                    mismatches.append(record["mismatch"])
                else:
                    counts = record
        return counts, mismatches


def clock(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s"


def totals(shards: list[Shard]) -> tuple[int, int, int, list[str]]:
    done = invoices = won = 0
    mismatches: list[str] = []
    for shard in shards:
        counts, found = shard.read()
        done += counts["lifecycles"]
        invoices += counts["invoices"]
        won += counts["won"]
        mismatches += found
    return done, invoices, won, mismatches


def progress_line(shards: list[Shard], total: int, started: float) -> str:
    done, invoices, _, mismatches = totals(shards)
    elapsed = time.monotonic() - started
    left = f"~{clock(elapsed * (total - done) / done)} left" if done else "starting"
    return (
        f"soak: {done:,}/{total:,} lifecycles, {len(mismatches)} mismatches, "
        f"{invoices:,} invoices, {clock(elapsed)} elapsed, {left}"
    )


def watch(shards: list[Shard], total: int, started: float, out: TextIO) -> None:
    tty = out.isatty()
    last = 0.0
    while any(shard.process and shard.process.poll() is None for shard in shards):
        time.sleep(1.0)
        if tty:
            out.write("\r" + progress_line(shards, total, started).ljust(100))
            out.flush()
        elif time.monotonic() - last >= EVERY:
            last = time.monotonic()
            print(progress_line(shards, total, started), file=out, flush=True)
    if tty:
        out.write("\n")


def main() -> int:
    total = int(os.environ.get("BIZSUPPORT_SOAK_LIFECYCLES", "10000"))
    seed_text = os.environ.get("BIZSUPPORT_SOAK_SEED")
    seed = int(seed_text) if seed_text else random.SystemRandom().randrange(1, 10**9)
    count = max(1, min(int(os.environ.get("BIZSUPPORT_SOAK_SHARDS", "2")), total))
    folder = Path(tempfile.mkdtemp(prefix="bizsupport-soak-"))
    shards = [
        Shard(
            index=i,
            lifecycles=total // count + (1 if i < total % count else 0),
            seed=seed * 100 + i,
            progress=folder / f"shard-{i}.jsonl",
            log=folder / f"shard-{i}.log",
        )
        for i in range(count)
    ]
    print(
        f"soak: {total:,} lifecycles, seed {seed} (BIZSUPPORT_SOAK_SEED), {count} shards;"
        f" logs in {folder}",
        flush=True,
    )
    started = time.monotonic()
    for shard in shards:
        shard.start()
    try:
        watch(shards, total, started, sys.stdout)
    except KeyboardInterrupt:
        for shard in shards:
            if shard.process:
                shard.process.terminate()
        raise
    elapsed = time.monotonic() - started
    done, invoices, won, mismatches = totals(shards)
    failed = [s for s in shards if s.process is None or s.process.returncode != 0]
    print(
        f"soak summary (seed {seed}): {done:,} lifecycles, {invoices:,} invoices compared,"
        f" {won:,} won compared, {len(mismatches)} mismatches, in {clock(elapsed)}"
    )
    for mismatch in mismatches[:20]:
        print(f"mismatch: {mismatch}")
    for shard in failed:
        print(f"shard {shard.index} failed; its log: {shard.log}\n  rerun alone: {shard.rerun()}")
        print("".join(shard.log.read_text(errors="replace").splitlines(keepends=True)[-15:]))
    return 0 if done == total and not mismatches and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
