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
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

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
    offset: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    mismatches: list[str] = field(default_factory=list)

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

    def read(self) -> None:
        """Take in what the shard reported since the last read."""
        if not self.progress.exists():
            return
        with self.progress.open("rb") as source:
            source.seek(self.offset)
            chunk = source.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line being written waits for next time
        self.offset += len(complete)
        for line in complete.decode("utf-8").splitlines():
            record = json.loads(line)
            if "mismatch" in record:
                self.mismatches.append(record["mismatch"])
            else:
                self.counts = record


def clock(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s"


def total(shards: list[Shard], key: str) -> int:
    return sum(shard.counts.get(key, 0) for shard in shards)


def progress_line(shards: list[Shard], lifecycles: int, started: float) -> str:
    for shard in shards:
        shard.read()
    done, acts = total(shards, "lifecycles"), total(shards, "acts")
    all_acts = total(shards, "total_acts") if all(s.counts for s in shards) else 0
    elapsed = time.monotonic() - started
    # Lifecycles finish late in their timeline; the acts performed measure the way better.
    left = f"~{clock(elapsed * (all_acts - acts) / acts)} left" if acts and all_acts else "starting"
    mismatches = sum(len(shard.mismatches) for shard in shards)
    return (
        f"soak: {done:,}/{lifecycles:,} lifecycles, {mismatches} mismatches, "
        f"{clock(elapsed)} elapsed, {left}"
    )


def watch(shards: list[Shard], lifecycles: int, started: float, out: TextIO) -> None:
    tty = out.isatty()
    last = 0.0
    while any(shard.process and shard.process.poll() is None for shard in shards):
        time.sleep(1.0)
        if tty:
            out.write("\r" + progress_line(shards, lifecycles, started).ljust(100))
            out.flush()
        elif time.monotonic() - last >= EVERY:
            last = time.monotonic()
            print(progress_line(shards, lifecycles, started), file=out, flush=True)
    if tty:
        out.write("\n")


def interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def stop(shards: list[Shard]) -> None:
    """SIGINT to every shard, then 30 s for their teardown, then SIGKILL."""
    running = [s.process for s in shards if s.process and s.process.poll() is None]
    for process in running:
        process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 30
    for process in running:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()


def main() -> int:
    lifecycles = int(os.environ.get("BIZSUPPORT_SOAK_LIFECYCLES", "10000"))
    seed_text = os.environ.get("BIZSUPPORT_SOAK_SEED")
    seed = int(seed_text) if seed_text else random.SystemRandom().randrange(1, 10**9)
    count = max(1, min(int(os.environ.get("BIZSUPPORT_SOAK_SHARDS", "2")), lifecycles))
    folder = Path(tempfile.mkdtemp(prefix="bizsupport-soak-"))
    shards = [
        Shard(
            index=i,
            lifecycles=lifecycles // count + (1 if i < lifecycles % count else 0),
            seed=seed * 100 + i,
            progress=folder / f"shard-{i}.jsonl",
            log=folder / f"shard-{i}.log",
        )
        for i in range(count)
    ]
    print(
        f"soak: {lifecycles:,} lifecycles, seed {seed} (BIZSUPPORT_SOAK_SEED), {count} shards;"
        f" logs in {folder}",
        flush=True,
    )
    # Ctrl-C or SIGTERM stops the shards the way Ctrl-C stops pytest (fixtures torn down: their
    # PostgreSQL and time-skipping server stop), also when started in the background, where a
    # shell starts it, and so the shards, with SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupted)
    started = time.monotonic()
    for shard in shards:
        shard.start()
    try:
        watch(shards, lifecycles, started, sys.stdout)
    except KeyboardInterrupt:
        stop(shards)
        print(f"\nsoak interrupted: the shards stopped; their logs are in {folder}")
        return 130
    elapsed = time.monotonic() - started
    for shard in shards:
        shard.read()
    done, invoices, won = (total(shards, key) for key in ("lifecycles", "invoices", "won"))
    mismatches = [mismatch for shard in shards for mismatch in shard.mismatches]
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
    return 0 if done == lifecycles and not mismatches and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
