"""starter/process.py: our processes run on uvloop, and start-up's objects leave the collector's
walk."""

from __future__ import annotations

import asyncio
import gc

from starter import process


def test_run_uses_uvloops_event_loop() -> None:
    async def loop_module() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert process.run(loop_module()).startswith("uvloop")


def test_the_startup_heap_is_frozen_out_of_later_collections() -> None:
    assert gc.get_freeze_count() == 0
    try:
        process.freeze_startup_heap()
        frozen = gc.get_freeze_count()
        assert frozen > 10_000  # this process's modules, pytest's included
        # a full collection now walks only what was made since
        assert sum(len(gc.get_objects(generation)) for generation in (0, 1, 2)) < frozen
    finally:
        gc.unfreeze()
