"""Server-sent event streams of the jobs and streams APIs: the event text, and how many streams
each key (or address, without keys) holds open on this replica, bounded."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import StreamingResponse

from deploy.core.errors import TooManyRequests

# A comment line on an idle event stream, so proxies keep it open.
KEEPALIVE_S = 15.0
KEEPALIVE = ": keep-alive\n\n"
DONE = "event: done\ndata: [DONE]\n\n"
_NO_BUFFERING = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


class EventSlots:
    """Event streams open here, per key or address; past `cap` a 429 naming `setting`."""

    def __init__(self) -> None:
        self._open: Counter[str] = Counter()

    def respond(
        self,
        request: Request,
        owner: str,
        events: AsyncIterator[str],
        *,
        cap: int,
        setting: str,
        retry_after_s: float,
    ) -> StreamingResponse:
        holder = owner or f"addr:{request.client.host if request.client else '?'}"
        if self._open[holder] >= cap:
            raise TooManyRequests(
                f"this key already holds {self._open[holder]} event streams open here, the most "
                f"{setting} allows; close one, or poll the resource instead",
                code="too_many_event_streams",
                details={"retry_after_s": retry_after_s},
            )
        self._open[holder] += 1
        return StreamingResponse(
            self._counted(holder, events), media_type="text/event-stream", headers=_NO_BUFFERING
        )

    async def _counted(self, holder: str, events: AsyncIterator[str]) -> AsyncIterator[str]:
        """The stream, its slot given back however it ends (finished, client gone)."""
        try:
            async for item in events:
                yield item
        finally:
            self._open[holder] -= 1
            if self._open[holder] <= 0:
                del self._open[holder]
