"""The clients' payload converter (starter/temporal.py): pydantic's, with one type-adapter cache
per process instead of one per workflow run."""

from __future__ import annotations

from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter
from temporalio.worker import Replayer

from domain.effects import CoursesInProgress
from starter.sandbox_runner import workflow_runner
from starter.temporal import DATA_CONVERTER, PayloadConverter
from tests.starter.test_sandbox_runner import histories
from workflows.subscription import SubscriptionWorkflow


def _adapters(converter: PayloadConverter) -> object:
    converters = converter.converters.values()
    [json] = [c for c in converters if isinstance(c, PydanticJSONPlainPayloadConverter)]
    return json._type_adapter


def test_every_converter_shares_one_type_adapter_cache() -> None:
    first, second = PayloadConverter(), DATA_CONVERTER.payload_converter_class()
    assert isinstance(second, PayloadConverter)
    assert _adapters(first) is _adapters(second)
    value = CoursesInProgress(subscription_id="s")
    assert second.from_payloads(first.to_payloads([value]), [CoursesInProgress]) == [value]


async def test_recorded_histories_replay_with_it() -> None:
    replayer = Replayer(
        workflows=[SubscriptionWorkflow],
        workflow_runner=workflow_runner(),
        data_converter=DATA_CONVERTER,
    )
    for history in histories():
        await replayer.replay_workflow(history)
