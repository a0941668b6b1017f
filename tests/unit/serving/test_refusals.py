"""A replica answers its client errors (4xx) as `Refusal` values, not exceptions (Ray Serve logs
each exception a replica method raises with its traceback); the caller's `call_stage` raises
them again, so the client sees the same typed error."""

from __future__ import annotations

import asyncio
import pickle
from typing import Any

import pytest

from deploy.core.errors import (
    EngineError,
    PayloadTooLarge,
    Refusal,
    UnprocessableInput,
    refusals_returned,
)
from deploy.serving.handles import call_stage


class _Replica:
    @refusals_returned
    async def extract(self, error: Exception | None) -> str:
        if error is not None:
            raise error
        return "frames"


class _Response:
    """A DeploymentResponse's surface around a replica's (pickled) answer."""

    def __init__(self, value: Any) -> None:
        self._value = pickle.loads(pickle.dumps(value))

    def __await__(self) -> Any:
        async def answer() -> Any:
            return self._value

        return answer().__await__()

    def cancel(self) -> None:
        pass


def test_a_client_error_is_returned_then_raised_by_the_caller() -> None:
    replica = _Replica()
    error = PayloadTooLarge("too big", code="max_source_pixels_exceeded", param="file")
    answered = asyncio.run(replica.extract(error))
    assert isinstance(answered, Refusal)
    with pytest.raises(PayloadTooLarge) as raised:
        asyncio.run(call_stage(_Response(answered), stage="extract", timeout_s=5))  # type: ignore[arg-type]
    assert raised.value.code == "max_source_pixels_exceeded"
    assert raised.value.param == "file"


def test_server_errors_are_still_raised_and_values_pass() -> None:
    replica = _Replica()
    with pytest.raises(EngineError):
        asyncio.run(replica.extract(EngineError("broken")))
    assert asyncio.run(replica.extract(None)) == "frames"
    assert asyncio.run(call_stage(_Response("frames"), stage="x", timeout_s=5)) == "frames"  # type: ignore[arg-type]
    refused = asyncio.run(replica.extract(UnprocessableInput("corrupt", code="corrupt_media")))
    assert isinstance(refused, Refusal)
    assert refused.error.status_code == 422
