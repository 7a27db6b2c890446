"""How our long-running processes (worker.py, the API under uvicorn) run: their event loop and
what they do with the objects start-up leaves behind. Both measured in bench/README.md
("Event loop and start-up heap")."""

from __future__ import annotations

import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, on uvloop's event loop.

    The SDK's core hands each poll result and each finished workflow activation to the event loop
    from another thread. The standard loop writes a byte to its wake-up socket for every one of
    those; uvloop coalesces them, and its loop costs less per callback. uvicorn picks uvloop by
    itself when it is installed, so the API gets it there."""
    return uvloop.run(main)


def freeze_startup_heap() -> None:
    """Collect once, then move every object alive after start-up (modules, the app's routes and
    schemas, the SDK's protobuf classes: about 110,000 in the worker) into the collector's
    permanent generation, which no later collection walks.

    A full collection walks every tracked object and holds the whole process meanwhile: every
    request in flight waits for it. The objects start-up leaves live as long as the process, so
    walking them finds nothing; frozen, a full collection costs what the process holds beyond
    them (the worker's cached workflows, a request's objects). Call it once, when start-up is
    done and before serving."""
    gc.collect()
    gc.freeze()
