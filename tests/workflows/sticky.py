"""What the real server does for a dead worker's sticky queue and the time-skipping test server does
not: move its workflow tasks to the normal queue.

A worker with a workflow cache asks the server to send a run's next task to a queue of its own
(the sticky queue, named `<client identity>-<random uuid>` by the SDK core). If the worker dies,
the real server moves a task waiting there to the normal queue once the sticky schedule-to-start
timeout (10 s) passes. The Java time-skipping test server has no such timeout (its
TestWorkflowMutableStateImpl sets a timer only once a task is started), so a task scheduled on a
dead worker's sticky queue but not yet polled by it waits there for ever.

`StickySpy` is a TCP proxy between one worker process and the server that reads the sticky queue's
name from the worker's own poll requests (gRPC over plain HTTP/2: DATA frames carry length-prefixed
messages, gzip-compressed by the SDK core). `drain_sticky` then does what the real server's
timeout does: it takes each task waiting on that queue and fails it with RESET_STICKY_TASK_QUEUE,
the cause an SDK reports for a run it no longer holds; the server drops the run's sticky
attributes and schedules the task again on the normal queue, where the replacement worker picks it
up and replays the run from its history.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from datetime import timedelta

from google.protobuf.message import DecodeError
from temporalio.api.enums.v1 import TaskQueueKind, WorkflowTaskFailedCause
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import (
    PollWorkflowTaskQueueRequest,
    RespondWorkflowTaskFailedRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError


class StickySpy:
    """`async with StickySpy(upstream, queue) as spy:` serves on `spy.address`; a worker of task
    queue `queue` that connects there is forwarded to `upstream` (`host:port`), and `spy.names`
    collects the sticky queues it polls."""

    def __init__(self, upstream: str, queue: str) -> None:
        host, _, port = upstream.rpartition(":")
        self._upstream = (host, int(port))
        self._queue = queue
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self.names: set[str] = set()

    @property
    def address(self) -> str:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"{host}:{port}"

    async def __aenter__(self) -> StickySpy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        for pipe in list(self._pipes):
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        pipes = {
            asyncio.create_task(self._pipe(reader, up_writer, spy=True)),
            asyncio.create_task(self._pipe(up_reader, writer, spy=False)),
        }
        self._pipes |= pipes
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pipe in pipes:
                pipe.cancel()
            self._pipes -= pipes
            for w in (writer, up_writer):
                w.close()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, spy: bool
    ) -> None:
        requests = GrpcMessages()
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(65536):
                if spy:
                    for message in requests.feed(chunk):
                        self._look(message)
                writer.write(chunk)
                await writer.drain()

    def _look(self, message: bytes) -> None:
        """A sticky poll, if `message` reads as one (the method's name is in compressed headers;
        a message of another type does not read as a poll of this sticky kind and queue)."""
        with contextlib.suppress(DecodeError):
            poll = PollWorkflowTaskQueueRequest.FromString(message)
            queue = poll.task_queue
            sticky = queue.kind == TaskQueueKind.TASK_QUEUE_KIND_STICKY
            if sticky and queue.normal_name == self._queue:
                self.names.add(queue.name)


class GrpcMessages:
    """The gRPC messages a client sends on one plain-text HTTP/2 connection, fed in any pieces:
    the connection preface, then frames (9-byte header: length, type, flags, stream); a DATA
    frame's payload (less any padding) continues its stream's messages, each a compressed flag,
    a 4-byte length and the message, gzip when flagged."""

    PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

    def __init__(self) -> None:
        self._buffer = b""
        self._preface = True
        self._streams: dict[int, bytes] = {}

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buffer += chunk
        if self._preface:
            if len(self._buffer) < len(self.PREFACE):
                return []
            self._buffer = self._buffer[len(self.PREFACE) :]
            self._preface = False
        messages: list[bytes] = []
        while len(self._buffer) >= 9:
            length = int.from_bytes(self._buffer[:3], "big")
            if len(self._buffer) < 9 + length:
                break
            kind, flags = self._buffer[3], self._buffer[4]
            stream = int.from_bytes(self._buffer[5:9], "big") & 0x7FFFFFFF
            payload = self._buffer[9 : 9 + length]
            self._buffer = self._buffer[9 + length :]
            if kind != 0:  # not DATA
                continue
            if flags & 0x8:  # PADDED
                payload = payload[1 : len(payload) - payload[0]]
            data = self._streams.get(stream, b"") + payload
            while len(data) >= 5 and len(data) >= 5 + (size := int.from_bytes(data[1:5], "big")):
                message = data[5 : 5 + size]
                messages.append(zlib.decompress(message, 31) if data[0] else message)
                data = data[5 + size :]
            self._streams[stream] = data
        return messages


async def drain_sticky(client: Client, sticky: str, normal: str, moved: list[str]) -> None:
    """Until cancelled, fail every workflow task that reaches the (dead worker's) sticky queue
    `sticky` of task queue `normal`, so that it is scheduled again on `normal`; the workflow ids
    go to `moved`. A poll the server answers after its deadline passed leaves a task started
    here; the task's 10 s start-to-close timeout then moves it the same way."""
    poll = PollWorkflowTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(
            name=sticky, kind=TaskQueueKind.TASK_QUEUE_KIND_STICKY, normal_name=normal
        ),
        identity="sticky-drainer",
    )
    while True:
        try:
            task = await client.workflow_service.poll_workflow_task_queue(
                poll, timeout=timedelta(seconds=5)
            )
        except RPCError:
            continue  # nothing came within the deadline
        if not task.task_token:
            continue
        await client.workflow_service.respond_workflow_task_failed(
            RespondWorkflowTaskFailedRequest(
                namespace=client.namespace,
                task_token=task.task_token,
                cause=WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_RESET_STICKY_TASK_QUEUE,
                identity="sticky-drainer",
            )
        )
        moved.append(task.workflow_execution.workflow_id)
