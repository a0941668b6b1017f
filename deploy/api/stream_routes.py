"""Live streams over HTTP (decoded by the StreamIngest deployment; deploy/streams/):

    POST   /v1/streams                 JSON StreamSpec: url, window_s, frames_per_window, prompt,
                                       rules, webhook -> 201 and the stream, Location header
    GET    /v1/streams                 the key's streams, newest first
    GET    /v1/streams/{id}            one stream: state, reconnects, windows, dropped, lag
    DELETE /v1/streams/{id}            stop it (its windows stay in the library)
    GET    /v1/streams/{id}/windows    its windows (?after=N), captions as they were recorded
    GET    /v1/streams/{id}/alerts     the alerts its rules fired
    GET    /v1/streams/{id}/events     server-sent events: `window`, `alert`, `state`, then `done`

Streams are owned by the API key that created them, like jobs: another key's is a 404.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from pydantic import ValidationError
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from deploy.api import json_body
from deploy.api.body import read_capped
from deploy.api.error_body import error_body
from deploy.api.jobs_protocol import chunk_view, owner_of
from deploy.api.sse import DONE, KEEPALIVE, KEEPALIVE_S, EventSlots, event
from deploy.config.settings import AppArgs
from deploy.core.errors import InvalidRequest, NotFound, PayloadTooLarge, TooManyRequests
from deploy.jobs.records import StoreUnavailable
from deploy.serving.fetch import UrlFetcher
from deploy.streams import source
from deploy.streams.stream_spec import StreamSpec
from deploy.streams.stream_store import StreamRecord, StreamStore
from deploy.streams.watcher import alert_view

MAX_STREAM_JSON_BYTES = 64 * 1024
EVENTS_POLL_S = 1.0


def stream_view(stream: StreamRecord) -> dict[str, Any]:
    return {
        "id": stream.id,
        "object": "stream",
        "state": stream.state.value,
        "options": stream.spec.public(),
        "created_at": stream.created_at,
        "updated_at": stream.updated_at,
        "error": stream.error,
        "reconnects": stream.reconnects,
        "windows": stream.windows,
        "dropped": stream.dropped,
        "lag_s": stream.lag_s,
        "next_window": stream.next_window,
        "decoder": stream.lease_owner,  # the StreamIngest replica decoding it now
        # Each rule's run of yes answers and whether it has fired since the last no.
        "rules": json.loads(stream.rules_state) if stream.rules_state else {},
        # Searchable, askable and deletable as a job: GET /v1/video/jobs/{id}, search results.
        "job_id": stream.id,
    }


class StreamRoutes:
    def __init__(
        self, store: StreamStore, args: AppArgs, ingest: DeploymentHandle[Any] | None
    ) -> None:
        self.store = store
        self._args = args
        self._settings = args.streams
        self._ingest = ingest
        self._fetcher = UrlFetcher(args.url_fetch)
        self._slots = EventSlots()  # event streams open here, per key

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/streams", self.create, methods=["POST"]),
            Route("/v1/streams", self.list, methods=["GET"]),
            Route("/v1/streams/{stream_id}", self.get, methods=["GET"]),
            Route("/v1/streams/{stream_id}", self.stop, methods=["DELETE"]),
            Route("/v1/streams/{stream_id}/windows", self.windows, methods=["GET"]),
            Route("/v1/streams/{stream_id}/alerts", self.alerts, methods=["GET"]),
            Route("/v1/streams/{stream_id}/events", self.events, methods=["GET"]),
        ]

    async def create(self, request: Request) -> Response:
        spec = await self._spec(request)
        owner = owner_of(request)
        active = await asyncio.to_thread(self.store.active_count, owner)
        if active >= self._settings.max_streams_per_key:
            raise TooManyRequests(
                f"this key has {active} streams running, the most streams.max_streams_per_key "
                "allows; DELETE one first",
                code="too_many_streams",
            )
        stream_id = f"stream_{uuid.uuid4().hex}"
        await asyncio.to_thread(self.store.create, stream_id, owner, spec)
        if self._ingest is not None:  # start now, not at the next claim tick
            self._ingest.wake.remote()
        created = await asyncio.to_thread(self.store.get, stream_id, owner)
        assert created is not None
        return JSONResponse(
            stream_view(created), status_code=201, headers={"Location": f"/v1/streams/{stream_id}"}
        )

    async def _spec(self, request: Request) -> StreamSpec:
        body = await read_capped(
            request,
            MAX_STREAM_JSON_BYTES,
            lambda: PayloadTooLarge(f"a stream request is at most {MAX_STREAM_JSON_BYTES} bytes"),
        )
        raw = json_body.loads(
            body, self._args.http.max_json_depth, what="the body", param=None, code="invalid_json"
        )
        if not isinstance(raw, dict):
            raise InvalidRequest("the body must be a JSON object", code="invalid_json")
        try:
            spec = StreamSpec.model_validate(raw)
        except ValidationError as exc:
            raise json_body.invalid(
                exc, f"a stream takes {', '.join(StreamSpec.model_fields)}"
            ) from None
        if len(spec.rules) > self._settings.max_rules:
            raise InvalidRequest(
                f"{len(spec.rules)} rules; a stream takes at most {self._settings.max_rules} "
                "(streams.max_rules)",
                param="rules",
                code="too_many_rules",
            )
        try:
            await source.resolve(spec.url, self._settings, self._fetcher)
        except source.SourceRefused as exc:
            raise InvalidRequest(str(exc), param="url", code=exc.code) from None
        if spec.webhook is not None:
            await self._fetcher.target(spec.webhook.url, param="webhook.url")
        return spec

    async def list(self, request: Request) -> Response:
        streams = await asyncio.to_thread(self.store.list_streams, owner_of(request), 100)
        return JSONResponse({"object": "list", "data": [stream_view(s) for s in streams]})

    async def get(self, request: Request) -> Response:
        return JSONResponse(stream_view(await self._stream(request)))

    async def stop(self, request: Request) -> Response:
        stream = await self._stream(request)
        stopped = await asyncio.to_thread(self.store.stop, stream.id, stream.owner)
        return JSONResponse(stream_view(stopped or stream))

    async def windows(self, request: Request) -> Response:
        stream = await self._stream(request)
        after = _int(request, "after", -1)
        windows = await asyncio.to_thread(self.store.windows, stream.id, after)
        return JSONResponse({"object": "list", "data": [chunk_view(w) for w in windows]})

    async def alerts(self, request: Request) -> Response:
        stream = await self._stream(request)
        alerts = await asyncio.to_thread(self.store.alerts, stream.id)
        return JSONResponse({"object": "list", "data": [alert_view(a, stream) for a in alerts]})

    async def events(self, request: Request) -> Response:
        stream = await self._stream(request)
        return self._slots.respond(
            request,
            stream.owner,
            self._events(stream.id, _int(request, "after", -1)),
            cap=self._settings.max_events_per_key,
            setting="streams.max_events_per_key",
            retry_after_s=self._args.http.retry_after_s,
        )

    async def _events(self, stream_id: str, after: int) -> AsyncIterator[str]:
        seen_alerts: set[str] = set()
        state = None
        idle_since = time.monotonic()
        while True:
            try:
                stream = await asyncio.to_thread(self.store.get, stream_id)
                windows = await asyncio.to_thread(self.store.windows, stream_id, after)
                alerts = await asyncio.to_thread(self.store.alerts, stream_id)
            except StoreUnavailable as exc:
                yield event("error", error_body(exc))
                return
            if stream is None:
                return
            for window in windows:
                after = max(after, window.index)
                yield event("window", chunk_view(window))
                idle_since = time.monotonic()
            for alert in alerts:
                if alert.id not in seen_alerts:
                    seen_alerts.add(alert.id)
                    yield event("alert", alert_view(alert, stream))
            if stream.state is not state:
                state = stream.state
                yield event("state", stream_view(stream))
            if not stream.state.active:
                yield DONE
                return
            if time.monotonic() - idle_since > KEEPALIVE_S:
                yield KEEPALIVE
                idle_since = time.monotonic()
            await asyncio.sleep(EVENTS_POLL_S)

    async def _stream(self, request: Request) -> StreamRecord:
        stream_id = request.path_params["stream_id"]
        stream = await asyncio.to_thread(self.store.get, stream_id, owner_of(request))
        if stream is None:
            raise NotFound(f"no stream {stream_id!r}", param="stream_id", code="stream_not_found")
        return stream


def _int(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidRequest(
            f"{name} must be an integer", param=name, code="invalid_value"
        ) from None
