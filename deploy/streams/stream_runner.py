"""One stream on a StreamIngest replica (deploy/streams/watcher.py holds them): its decoder
thread, and its windows at the model.

    decoder thread (_decode): resolve the URL (SSRF guard) -> frames (and sound) -> Windower ->
        a closed window goes to the event loop; source lost -> state reconnecting, waits
        streams.reconnect_initial_s doubling to reconnect_max_s, then again.
    event loop (_admit): a window finds streams.max_windows_in_flight of its stream's windows
        at the model -> dropped and counted; else heard (the Transcriber), captioned, its rules
        answered -> recorded (streams/stream_store.py), alerts fired, webhooks sent.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

import numpy as np

from deploy.core.errors import InvalidRequest, VidserveError
from deploy.core.messages import (
    FrameBatch,
    GenerationParams,
    InferenceRequest,
    MediaKind,
    StoredFrames,
)
from deploy.core.speech import AudioClip, Heard, Transcript
from deploy.jobs.records import ChunkRecord
from deploy.streams import rules, source
from deploy.streams.stream_store import AlertRecord, StreamRecord, StreamState
from deploy.streams.windows import Window, Windower, pixels
from deploy.video.resize import frame_size

if TYPE_CHECKING:
    from deploy.streams.watcher import StreamWatcher

logger = logging.getLogger("ray.serve.vidserve.streams")

RULE_MAX_TOKENS = 4
MIN_AUDIO_S = 0.5  # less sound than this in a window is not sent to the Transcriber
PROMPT_CHARS = 8_000  # of a window's transcript in its caption's prompt
NOMINAL_FPS = 30.0


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
            hearing = self._w.transcriber is not None
            items = source.frames(opened, settings, self._w.fetcher, self._stop, audio=hearing)
            for frame in items:
                if isinstance(frame, np.ndarray):  # sound between the frames
                    windower.hear(frame)
                    continue
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
            partial = windower.flush()
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
        transcript: str | None = None
        try:
            async with asyncio.timeout(settings.model_timeout_s):
                heard = await self._hear(window)
                lines = heard.transcript.lines() if heard.transcript else []
                transcript = "\n".join(lines) or None
                prompt = heard.prompt(self._spec.prompt or settings.default_prompt, PROMPT_CHARS)
                caption = await self._w.router.answer(
                    InferenceRequest.ask(
                        prompt,
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
        await self._record(window, (text, transcript, tokens), error, answers)

    async def _hear(self, window: Window) -> Heard:
        """What was said in the window (the Transcriber), when it has enough sound; a
        Transcriber that cannot answer now leaves the window captioned without it."""
        if self._w.transcriber is None or window.audio_s < MIN_AUDIO_S:
            return Heard()
        clip = AudioClip(
            np.concatenate(window.audio),
            start_s=window.start_s,
            duration_s=window.audio_s,
            source_duration_s=window.end_s,
        )
        try:
            transcript: Transcript = await self._w.transcriber.transcribe.remote(clip)
        except VidserveError as exc:  # loading, unavailable: said in the log, not fatal
            logger.info("stream %s: window %d not heard: %s", self.record.id, window.index, exc)
            return Heard(note=exc.message)
        return Heard(transcript)

    async def _record(
        self,
        window: Window,
        said: tuple[str | None, str | None, int],
        error: dict[str, Any] | None,
        answers: dict[str, str | None],
    ) -> None:
        text, transcript, tokens = said
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
                transcript=transcript,
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
