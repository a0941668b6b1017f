"""Durable state of live streams, in the jobs database (schema: jobs/schema.py, version 4).

A stream is a row of `streams` plus its library record: a job of task 'stream' with the same
id, whose chunks are the stream's windows (so they are searched, asked about and deleted like
any video's). Leases say which StreamIngest replica decodes a stream, as for jobs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from deploy.core.jobs import JobState
from deploy.jobs.records import ChunkRecord, JobRecord
from deploy.jobs.schema import STREAM_TASK
from deploy.jobs.store import Store
from deploy.streams.stream_spec import StreamSpec


class StreamState(StrEnum):
    STARTING = "starting"  # waiting for a replica, or connecting for the first time
    LIVE = "live"  # frames arriving
    RECONNECTING = "reconnecting"  # the source went away; trying again with backoff
    STOPPED = "stopped"  # DELETE /v1/streams/{id}
    FAILED = "failed"  # the source can never work (not a video, refused): `error` says why

    @property
    def active(self) -> bool:
        return self in ACTIVE


ACTIVE = (StreamState.STARTING, StreamState.LIVE, StreamState.RECONNECTING)
_ACTIVE_VALUES = tuple(state.value for state in ACTIVE)
_IN_ACTIVE = f"state IN ({', '.join('?' for _ in ACTIVE)})"


@dataclass(frozen=True)
class StreamRecord:
    id: str
    owner: str
    spec: StreamSpec
    state: StreamState
    error: dict[str, Any] | None
    created_at: float
    updated_at: float
    lease_owner: str | None
    reconnects: int
    windows: int
    dropped: int
    lag_s: float | None
    next_window: int
    rules_state: str | None


@dataclass(frozen=True)
class AlertRecord:
    id: str
    stream_id: str
    owner: str
    rule: str
    window_idx: int
    start_s: float
    end_s: float
    fired_at: float
    delivery: str  # none (no webhook) | pending | delivered | failed
    attempts: int = 0
    next_attempt_at: float | None = None
    last_error: str | None = None


_STREAM_COLUMNS = (
    "id, owner, spec, state, error, created_at, updated_at, lease_owner, reconnects, windows, "
    "dropped, lag_s, next_window, rules_state"
)
_ALERT_COLUMNS = (
    "id, stream_id, owner, rule, window_idx, start_s, end_s, fired_at, delivery, attempts, "
    "next_attempt_at, last_error"
)


def _stream_of(row: Sequence[Any]) -> StreamRecord:
    return StreamRecord(
        id=row[0],
        owner=row[1],
        spec=StreamSpec.model_validate_json(row[2]),
        state=StreamState(row[3]),
        error=json.loads(row[4]) if row[4] else None,
        created_at=row[5],
        updated_at=row[6],
        lease_owner=row[7],
        reconnects=int(row[8]),
        windows=int(row[9]),
        dropped=int(row[10]),
        lag_s=row[11],
        next_window=int(row[12]),
        rules_state=row[13],
    )


def _alert_of(row: Sequence[Any]) -> AlertRecord:
    keys = [name.strip() for name in _ALERT_COLUMNS.split(",")]
    values = dict(zip(keys, row, strict=True))
    values["attempts"] = int(values["attempts"])
    return AlertRecord(**values)


class StreamStore:
    """The streams' queries, over the jobs `Store` (its database and its chunks)."""

    def __init__(self, store: Store) -> None:
        self.jobs = store
        self._db = store.db

    def _tx(self) -> Any:
        return self._db.tx()

    def _run(self, cursor: Any, statement: str, params: Sequence[Any] = ()) -> Any:
        return self._db.run(cursor, statement, params)

    # -- streams --

    def create(self, stream_id: str, owner: str, spec: StreamSpec) -> None:
        now = time.time()
        self.jobs.create_job(
            JobRecord(
                id=stream_id,
                owner=owner,
                task=STREAM_TASK,
                state=JobState.RUNNING,
                video=spec.name or spec.url,
                source=spec.url,
                spec=spec.public(),
                created_at=now,
                updated_at=now,
            )
        )
        with self._tx() as cur:
            self._run(
                cur,
                "INSERT INTO streams (id, owner, url, spec, state, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [stream_id, owner, spec.url, spec.model_dump_json(), "starting", now, now],
            )

    def get(self, stream_id: str, owner: str | None = None) -> StreamRecord | None:
        query = f"SELECT {_STREAM_COLUMNS} FROM streams WHERE id = ?"
        params: list[Any] = [stream_id]
        if owner is not None:
            query += " AND owner = ?"
            params.append(owner)
        with self._tx() as cur:
            row = self._run(cur, query, params).fetchone()
        return _stream_of(row) if row else None

    def list_streams(self, owner: str, limit: int) -> list[StreamRecord]:
        with self._tx() as cur:
            rows = self._run(
                cur,
                f"SELECT {_STREAM_COLUMNS} FROM streams WHERE owner = ? "
                "ORDER BY created_at DESC, id DESC LIMIT ?",
                [owner, limit],
            ).fetchall()
        return [_stream_of(row) for row in rows]

    def active_count(self, owner: str) -> int:
        with self._tx() as cur:
            row = self._run(
                cur,
                f"SELECT COUNT(*) FROM streams WHERE owner = ? AND {_IN_ACTIVE}",
                [owner, *_ACTIVE_VALUES],
            ).fetchone()
        return int(row[0])

    def count_by_state(self) -> dict[str, int]:
        with self._tx() as cur:
            rows = self._run(cur, "SELECT state, COUNT(*) FROM streams GROUP BY state").fetchall()
        return {state: int(count) for state, count in rows}

    def stop(self, stream_id: str, owner: str) -> StreamRecord | None:
        """Stop `owner`'s stream (its replica lets go within streams.claim_interval_s); its
        windows stay in the library, its record a finished job. None when unknown."""
        with self._tx() as cur:
            self._run(
                cur,
                "UPDATE streams SET state = ?, updated_at = ?, lease_owner = NULL, "
                f"lease_until = NULL WHERE id = ? AND owner = ? AND {_IN_ACTIVE}",
                ["stopped", time.time(), stream_id, owner, *_ACTIVE_VALUES],
            )
        self.jobs.finish(stream_id, JobState.SUCCEEDED)
        return self.get(stream_id, owner)

    def fail(self, stream_id: str, error: dict[str, Any]) -> None:
        with self._tx() as cur:
            self._run(
                cur,
                "UPDATE streams SET state = ?, error = ?, updated_at = ?, lease_owner = NULL, "
                f"lease_until = NULL WHERE id = ? AND {_IN_ACTIVE}",
                ["failed", json.dumps(error), time.time(), stream_id, *_ACTIVE_VALUES],
            )
        self.jobs.finish(stream_id, JobState.FAILED, error=error)

    def set_state(
        self, stream_id: str, replica: str, state: StreamState, *, reconnected: bool = False
    ) -> bool:
        """The decoder's state (live / reconnecting); False when `replica` no longer holds it."""
        with self._tx() as cur:
            changed = self._run(
                cur,
                "UPDATE streams SET state = ?, updated_at = ?, reconnects = reconnects + ? "
                f"WHERE id = ? AND lease_owner = ? AND {_IN_ACTIVE}",
                [state.value, time.time(), int(reconnected), stream_id, replica, *_ACTIVE_VALUES],
            ).rowcount
        return bool(changed)

    # -- leases --

    def claim(self, replica: str, lease_s: float, limit: int) -> list[str]:
        """Active streams nobody holds (new, or their replica died), oldest first, now held by
        `replica`."""
        now = time.time()
        claimed: list[str] = []
        with self._tx() as cur:
            rows = self._run(
                cur,
                f"SELECT id FROM streams WHERE {_IN_ACTIVE} AND "
                "(lease_until IS NULL OR lease_until < ?) ORDER BY created_at, id LIMIT ?",
                [*_ACTIVE_VALUES, now, limit],
            ).fetchall()
            for (stream_id,) in rows:
                if self._run(
                    cur,
                    "UPDATE streams SET lease_owner = ?, lease_until = ? WHERE id = ? AND "
                    "(lease_until IS NULL OR lease_until < ?)",
                    [replica, now + lease_s, stream_id, now],
                ).rowcount:
                    claimed.append(stream_id)
        return claimed

    def renew(self, replica: str, stream_ids: Sequence[str], lease_s: float) -> list[str]:
        """Extend `replica`'s leases; the ids it no longer holds (stopped, deleted, taken)."""
        lost = []
        with self._tx() as cur:
            for stream_id in stream_ids:
                kept = self._run(
                    cur,
                    "UPDATE streams SET lease_until = ? WHERE id = ? AND lease_owner = ? AND "
                    f"{_IN_ACTIVE}",
                    [time.time() + lease_s, stream_id, replica, *_ACTIVE_VALUES],
                ).rowcount
                if not kept:
                    lost.append(stream_id)
        return lost

    def release(self, replica: str, stream_ids: Sequence[str]) -> None:
        with self._tx() as cur:
            for stream_id in stream_ids:
                self._run(
                    cur,
                    "UPDATE streams SET lease_owner = NULL, lease_until = NULL "
                    "WHERE id = ? AND lease_owner = ?",
                    [stream_id, replica],
                )

    # -- windows and alerts --

    def record_window(
        self,
        stream: StreamRecord,
        window: ChunkRecord,
        *,
        lag_s: float,
        rules_state: str | None,
        alerts: Sequence[AlertRecord] = (),
    ) -> bool:
        """Keep a window (a chunk of the stream's record, indexed for search), the rules' state
        and the alerts it fired; False when that window was recorded already (a resume)."""
        if not self.jobs.record_chunk(window, stream.owner):
            return False
        with self._tx() as cur:
            self._run(
                cur,
                "UPDATE streams SET windows = windows + 1, lag_s = ?, rules_state = ?, "
                "next_window = CASE WHEN next_window > ? THEN next_window ELSE ? END, "
                "updated_at = ? WHERE id = ?",
                [lag_s, rules_state, window.index, window.index + 1, time.time(), stream.id],
            )
            for alert in alerts:
                self._run(
                    cur,
                    f"INSERT INTO alerts ({_ALERT_COLUMNS}) VALUES "
                    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        alert.id,
                        alert.stream_id,
                        alert.owner,
                        alert.rule,
                        alert.window_idx,
                        alert.start_s,
                        alert.end_s,
                        alert.fired_at,
                        alert.delivery,
                        alert.attempts,
                        alert.next_attempt_at,
                        alert.last_error,
                    ],
                )
        return True

    def dropped(self, stream_id: str, count: int = 1) -> None:
        with self._tx() as cur:
            self._run(
                cur, "UPDATE streams SET dropped = dropped + ? WHERE id = ?", [count, stream_id]
            )

    def windows(self, stream_id: str, after: int = -1) -> list[ChunkRecord]:
        return self.jobs.chunks(stream_id, after)

    def alerts(self, stream_id: str, limit: int = 100) -> list[AlertRecord]:
        with self._tx() as cur:
            rows = self._run(
                cur,
                f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE stream_id = ? "
                "ORDER BY window_idx, rule LIMIT ?",
                [stream_id, limit],
            ).fetchall()
        return [_alert_of(row) for row in rows]

    def due_deliveries(self, stream_ids: Sequence[str], limit: int = 20) -> list[AlertRecord]:
        """Alerts of these streams whose webhook delivery is due."""
        if not stream_ids:
            return []
        marks = ", ".join("?" for _ in stream_ids)
        with self._tx() as cur:
            rows = self._run(
                cur,
                f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE delivery = 'pending' AND "
                f"stream_id IN ({marks}) AND (next_attempt_at IS NULL OR next_attempt_at <= ?) "
                "ORDER BY fired_at LIMIT ?",
                [*stream_ids, time.time(), limit],
            ).fetchall()
        return [_alert_of(row) for row in rows]

    def delivery(
        self, alert_id: str, state: str, error: str | None, next_attempt_at: float | None
    ) -> None:
        with self._tx() as cur:
            self._run(
                cur,
                "UPDATE alerts SET delivery = ?, attempts = attempts + 1, last_error = ?, "
                "next_attempt_at = ? WHERE id = ?",
                [state, error, next_attempt_at, alert_id],
            )
