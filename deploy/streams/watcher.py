"""What a StreamIngest replica does: hold streams by lease, decode each in its own thread, and
caption every window and answer its rules through the backend policy, never letting the model
hold the decoder back.

    tick (every streams.claim_interval_s): renew this replica's leases (a stream lost: stopped,
        deleted, or taken over -> its decoder stops); take one free stream if there is room
        (one a tick, so replicas starting together share the streams); deliver due webhooks.
    decoder thread (StreamRunner._decode): resolve the URL (SSRF guard) -> frames -> Windower ->
        a closed window goes to the event loop; source lost -> state reconnecting, waits
        streams.reconnect_initial_s doubling to reconnect_max_s, then again.
    event loop (StreamRunner._admit): a window finds streams.max_windows_in_flight of its
        stream's windows at the model -> dropped and counted; else caption + rules -> recorded.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import numpy as np

from deploy.config.settings import AppArgs
from deploy.core.errors import InvalidRequest, VidserveError
from deploy.core.messages import (
    FrameBatch,
    GenerationParams,
    InferenceRequest,
    MediaKind,
    StoredFrames,
)
from deploy.jobs.records import ChunkRecord
from deploy.serving.backends import BackendRouter
from deploy.serving.fetch import UrlFetcher
from deploy.streams import rules, source, webhook
from deploy.streams.stream_store import AlertRecord, StreamRecord, StreamState, StreamStore
from deploy.streams.windows import Window, Windower, pixels
from deploy.video.resize import frame_size

logger = logging.getLogger("ray.serve.vidserve.streams")

THREAD_STOP_TIMEOUT_S = 5.0
RULE_MAX_TOKENS = 4
NOMINAL_FPS = 30.0


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
    ) -> None:
        self.store = store
        self.router = router
        self.args = args
        self.settings = args.streams
        self.replica = replica
        self.metrics = metrics
        self.indexer = indexer
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


class StreamRunner:
    """One stream on this replica: its decoder thread and its windows at the model."""

    def __init__(self, watcher: StreamWatcher, record: StreamRecord) -> None:
        self._w = watcher
        self.record = record
        self._spec = record.spec
        settings = watcher.settings
        self._window_s = self._spec.window_s or settings.window_s
        self._count = self._spec.frames_per_window or settings.frames_per_window
        self._loop = asyncio.get_running_loop()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._decode, name=f"stream-{record.id}", daemon=True
        )
        self._in_flight = 0
        self._states = rules.load_states(record.rules_state, self._spec.rules)
        self._recording = asyncio.Lock()  # rules count windows in the order they are recorded
        self._size: tuple[int, int] | None = None
        self._connected = False  # frames came since the last (re)connection
        self.frames_decoded = 0  # every frame of the source, kept or not (bench/streams.py)

    # -- the decoder thread --

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _decode(self) -> None:
        settings, store = self._w.settings, self._w.store
        backoff, lost_before = settings.reconnect_initial_s, False
        while not self._stop.is_set():
            self._connected = False
            try:
                self._follow(lost_before)
            except (source.SourceRefused, InvalidRequest) as exc:
                logger.warning("stream %s failed: %s", self.record.id, exc)
                store.fail(self.record.id, {"code": exc.code, "message": str(exc)})
                return
            except source.SourceLost as exc:
                logger.info("stream %s: %s; reconnecting in %.1fs", self.record.id, exc, backoff)
            except Exception:  # anything else from a decoder: reconnect, never kill the replica
                logger.exception("stream %s: the decoder failed; reconnecting", self.record.id)
            if self._stop.is_set():
                return
            if self._connected:  # it was live: the waits start over
                backoff = settings.reconnect_initial_s
            lost_before = True
            store.set_state(self.record.id, self._w.replica, StreamState.RECONNECTING)
            self._stop.wait(backoff)
            backoff = min(backoff * 2, settings.reconnect_max_s)

    def _follow(self, reconnecting: bool) -> None:
        """Connect and window the frames until the source is lost (raises) or the stream is
        stopped. The window being filled is handed on either way."""
        settings = self._w.settings
        windower = Windower(self.record.created_at, self._window_s, self._count)
        try:
            opened = asyncio.run_coroutine_threadsafe(
                source.resolve(self._spec.url, settings, self._w.fetcher), self._loop
            ).result(timeout=settings.open_timeout_s * 2)
            for frame in source.frames(opened, settings, self._w.fetcher, self._stop):
                self.frames_decoded += 1
                if not self._connected:
                    self._connected = True
                    self._w.store.set_state(
                        self.record.id, self._w.replica, StreamState.LIVE, reconnected=reconnecting
                    )
                    if reconnecting:
                        self._w.metrics.reconnected()
                        logger.info("stream %s: source back", self.record.id)
                closed = windower.offer(time.time(), functools.partial(self._pixels, frame))
                if closed is not None:
                    self._hand_on(closed)
        finally:
            partial = windower.flush(time.time())
            if partial is not None:
                self._hand_on(partial)

    def _pixels(self, frame: Any) -> np.ndarray:
        if self._size is None:
            self._size = frame_size(
                (frame.height, frame.width), self._count, self._w.args.extraction
            )
        return pixels(frame, self._size)

    def _hand_on(self, window: Window) -> None:
        self._loop.call_soon_threadsafe(self._admit, window)

    # -- the event loop: windows at the model --

    def _admit(self, window: Window) -> None:
        if self._in_flight >= self._w.settings.max_windows_in_flight:
            self._w.metrics.window("dropped")
            self._loop.create_task(asyncio.to_thread(self._w.store.dropped, self.record.id))
            return
        self._in_flight += 1
        self._loop.create_task(self._process(window))

    async def _process(self, window: Window) -> None:
        try:
            await self._answer(window)
        except Exception:  # recorded as failed where it could be; never lost silently
            logger.exception("stream %s: window %d failed", self.record.id, window.index)
            self._w.metrics.window("failed")
        finally:
            self._in_flight -= 1

    async def _answer(self, window: Window) -> None:
        media = _media(window, self._window_s, f"stream-{self.record.id}-{window.index}")
        settings = self._w.settings
        text: str | None = None
        error: dict[str, Any] | None = None
        tokens = 0
        answers: dict[str, str | None] = {}
        try:
            async with asyncio.timeout(settings.model_timeout_s):
                caption = await self._w.router.answer(
                    InferenceRequest.ask(
                        self._spec.prompt or settings.default_prompt,
                        media,
                        GenerationParams(max_tokens=settings.caption_max_tokens, temperature=0.0),
                    )
                )
                text, tokens = caption.result.text, caption.result.completion_tokens
                for rule in self._spec.rules:
                    said = await self._w.router.answer(
                        InferenceRequest.ask(
                            rules.RULE_PROMPT.format(question=rule.question),
                            media,
                            GenerationParams(
                                max_tokens=RULE_MAX_TOKENS, temperature=0.0, choice=rules.CHOICES
                            ),
                        )
                    )
                    answers[rule.name] = rules.answer_of(said.result.text)
        except TimeoutError:
            error = {
                "code": "window_timeout",
                "message": f"the model took longer than {settings.model_timeout_s:g}s "
                "(streams.model_timeout_s)",
            }
        except VidserveError as exc:
            error = {"code": exc.code, "message": exc.message}
        await self._record(window, text, tokens, error, answers)

    async def _record(
        self,
        window: Window,
        text: str | None,
        tokens: int,
        error: dict[str, Any] | None,
        answers: dict[str, str | None],
    ) -> None:
        store, stream = self._w.store, self.record
        async with self._recording:
            fired = [
                rule
                for rule in self._spec.rules
                if error is None
                and rules.advance(rule, self._states[rule.name], answers[rule.name])
            ]
            now = time.time()
            alerts = [
                AlertRecord(
                    id=f"alert-{uuid.uuid4().hex[:20]}",
                    stream_id=stream.id,
                    owner=stream.owner,
                    rule=rule.name,
                    window_idx=window.index,
                    start_s=window.start_s,
                    end_s=window.end_s,
                    fired_at=now,
                    delivery="pending" if self._spec.webhook else "none",
                )
                for rule in fired
            ]
            lag = now - (stream.created_at + window.end_s)
            chunk = ChunkRecord(
                job_id=stream.id,
                index=window.index,
                start_s=window.start_s,
                end_s=window.end_s,
                text=text,
                error=error,
                tokens=tokens,
            )
            recorded = await asyncio.to_thread(
                store.record_window, stream, chunk, lag_s=lag,
                rules_state=rules.dump_states(self._states), alerts=alerts,
            )  # fmt: skip
        self._w.metrics.window("captioned" if error is None else "failed", lag)
        if not recorded:
            return
        for alert in alerts:
            logger.info(
                "stream %s: alert %s fired at window %d", stream.id, alert.rule, alert.window_idx
            )
            self._w.metrics.alert()
        if alerts and self._spec.webhook is not None:
            self._loop.create_task(self._w.deliver_due())
        if self._w.indexer is not None and text:
            await self._w.indexer(stream.id)


def _media(window: Window, window_s: float, frames_id: str) -> StoredFrames:
    """A window's frames as the engine takes them, with their true times in the window: the
    frame numbers are those times at a nominal rate (live frames have wall-clock times, not a
    file's frame numbers), and the window spans window_s of it (vllm_video_metadata)."""
    frames = np.stack(window.frames)
    rate = NOMINAL_FPS
    batch = FrameBatch.of(
        frames,
        kind=MediaKind.VIDEO,
        indices=[round(t * rate) for t in window.times_s],
        timestamps_s=list(window.times_s),
        source_fps=rate,
        duration_s=window_s,
        total_frames=max(1, round(window_s * rate)),
    )
    try:
        import ray

        if ray.is_initialized():  # once in the object store: the caption and each rule read it
            return StoredFrames(batch.meta, ray.put(batch.frames), frames_id)
    except ImportError:  # pragma: no cover - Ray is a dependency
        pass
    return StoredFrames.inline(batch, frames_id)
