"""What a StreamIngest replica does: hold streams by lease, decode each in its own thread, and
caption every window and answer its rules through the backend policy, never letting the model
hold the decoder back.

    tick (every streams.claim_interval_s): renew this replica's leases (a stream lost: stopped,
        deleted, or taken over -> its decoder stops); take one free stream if there is room
        (one a tick, so replicas starting together share the streams); deliver due webhooks.
    each stream: a StreamRunner (streams/stream_runner.py), its decoder thread and its windows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from deploy.config.settings import AppArgs
from deploy.serving.backends import BackendRouter
from deploy.serving.fetch import UrlFetcher
from deploy.streams import webhook
from deploy.streams.stream_runner import StreamRunner
from deploy.streams.stream_store import AlertRecord, StreamRecord, StreamStore

logger = logging.getLogger("ray.serve.vidserve.streams")

THREAD_STOP_TIMEOUT_S = 5.0


class StreamMetrics(Protocol):
    def streams(self, by_state: dict[str, int], decoding: int) -> None: ...

    def window(self, outcome: str, lag_s: float | None = None) -> None: ...

    def reconnected(self) -> None: ...

    def alert(self) -> None: ...

    def delivery(self, outcome: str) -> None: ...


def alert_view(alert: AlertRecord, stream: StreamRecord) -> dict[str, Any]:
    question = next((r.question for r in stream.spec.rules if r.name == alert.rule), None)
    return {
        "id": alert.id,
        "object": "stream.alert",
        "stream_id": alert.stream_id,
        "rule": alert.rule,
        "question": question,
        "window": alert.window_idx,
        "start_s": alert.start_s,
        "end_s": alert.end_s,
        "fired_at": alert.fired_at,
        "delivery": alert.delivery,
        "attempts": alert.attempts,
        "last_error": alert.last_error,
    }


class StreamWatcher:
    def __init__(
        self,
        store: StreamStore,
        router: BackendRouter,
        args: AppArgs,
        replica: str,
        *,
        metrics: StreamMetrics,
        indexer: Callable[[str], Awaitable[int]] | None = None,
        transcriber: Any = None,
    ) -> None:
        self.store = store
        self.router = router
        self.args = args
        self.settings = args.streams
        self.replica = replica
        self.metrics = metrics
        self.indexer = indexer
        self.transcriber = transcriber  # the Transcriber's handle: windows are heard too
        self.fetcher = UrlFetcher(args.url_fetch)
        self.runners: dict[str, StreamRunner] = {}
        self._task: asyncio.Task[None] | None = None
        self._delivering = asyncio.Lock()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Stop every decoder and hand the leases back (another replica resumes them)."""
        if self._task is not None:
            self._task.cancel()
        for runner in self.runners.values():
            runner.stop()
        for runner in self.runners.values():
            await asyncio.to_thread(runner.join, THREAD_STOP_TIMEOUT_S)
        await asyncio.to_thread(self.store.release, self.replica, list(self.runners))
        self.runners.clear()

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # the database away for a moment: the next tick tries again
                logger.exception("streams: a tick failed")
            await asyncio.sleep(self.settings.claim_interval_s)

    async def tick(self) -> None:
        for stream_id in [i for i, r in self.runners.items() if not r.alive]:
            del self.runners[stream_id]  # ended by itself (failed): nothing to hold
        if self.runners:
            lost = await asyncio.to_thread(
                self.store.renew, self.replica, list(self.runners), self.settings.lease_s
            )
            for stream_id in lost:
                logger.info("stream %s: no longer held here (stopped, deleted or taken)", stream_id)
                self.runners.pop(stream_id).stop()
        if len(self.runners) < self.settings.max_streams_per_replica:
            claimed = await asyncio.to_thread(
                self.store.claim, self.replica, self.settings.lease_s, 1
            )
            for stream_id in claimed:
                record = await asyncio.to_thread(self.store.get, stream_id)
                if record is not None:
                    logger.info("stream %s: decoding %s here", stream_id, record.spec.url)
                    runner = StreamRunner(self, record)
                    self.runners[stream_id] = runner
                    runner.start()
        await self.deliver_due()
        by_state = await asyncio.to_thread(self.store.count_by_state)
        self.metrics.streams(by_state, len(self.runners))

    async def deliver_due(self) -> None:
        """Send the webhooks due of this replica's streams (one delivery at a time)."""
        async with self._delivering:
            due = await asyncio.to_thread(self.store.due_deliveries, list(self.runners))
            for alert in due:
                runner = self.runners.get(alert.stream_id)
                hook = runner.record.spec.webhook if runner else None
                if runner is None or hook is None:
                    continue
                payload = {"type": "alert", "alert": alert_view(alert, runner.record)}
                sent = await webhook.deliver(
                    self.fetcher, hook.url, hook.secret, payload, self.settings.webhook_timeout_s
                )
                if sent.ok:
                    state, next_at, outcome = "delivered", None, "delivered"
                elif alert.attempts + 1 >= self.settings.webhook_attempts:
                    state, next_at, outcome = "failed", None, "failed"
                else:
                    wait = self.settings.webhook_backoff_s * 2**alert.attempts
                    state, next_at, outcome = "pending", time.time() + wait, "retried"
                if not sent.ok:
                    logger.warning(
                        "stream %s: webhook %s: %s", alert.stream_id, outcome, sent.error
                    )
                await asyncio.to_thread(self.store.delivery, alert.id, state, sent.error, next_at)
                self.metrics.delivery(outcome)
