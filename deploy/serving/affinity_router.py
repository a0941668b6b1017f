"""Cache affinity for the FrameExtractor: every request about one video goes to the replica
that holds its frames.

The ingress names the video in the call's `multiplexed_model_id` (its content digest for an
upload, a digest of the URL for a download): `affinity(handle, key)`. This Serve request router
ranks the running replicas by rendezvous (highest-random-weight) hashing of that key with each
replica's id:

    rank 1: the key's replica            a repeat finds its frames there (a cache hit)
    rank 2: every other replica          when the first is full or gone (a miss, decoded again)

Rendezvous hashing needs no shared state and no warm-up (the first repeat already hits, unlike
multiplexing's loaded-model reports, which reach the routers with a delay); adding or removing a
replica moves only the keys that belonged to it. Requests without a key (frame lists) are spread
by Serve's usual two random choices, least loaded first. Set in serve_config.yaml on the
FrameExtractor deployment: `request_router_config: {request_router_class:
deploy.serving.affinity_router:CacheAffinityRouter}`.

A leak of Ray 2.60 mended here: Serve's router indexes every pending request that carries a
`multiplexed_model_id` in a per-key queue and cleans that queue only on a lookup that
multiplexing's own router (MultiplexMixin) makes; a router without it (this one) never does, so
every routed request stayed referenced with its arguments, about 2.5 KB each (measured: the
ingress grew 2.4 MiB a minute in bench/chaos.py's soak). `_remove_pending_request_from_indices`
below also drops finished requests from that queue.
"""

from __future__ import annotations

import hashlib
import random
from collections import deque
from collections.abc import Sequence
from typing import Any

from ray.serve.handle import DeploymentHandle
from ray.serve.request_router import PendingRequest, RequestRouter, RunningReplica

ROUTER_CLASS = "deploy.serving.affinity_router:CacheAffinityRouter"


def affinity(handle: DeploymentHandle[Any], key: str) -> DeploymentHandle[Any]:
    """`handle`, its calls routed by `key` (an empty key: no preference)."""
    return handle.options(multiplexed_model_id=key) if key else handle


def url_key(url: str) -> str:
    """The affinity key of a URL: the same URL reaches the same extractor, whose cache (keyed
    by the downloaded content) then hits."""
    return "url:" + hashlib.sha256(url.encode()).hexdigest()[:32]


def _weight(key: str, replica_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{key}|{replica_id}".encode(), digest_size=8).digest())


def rank_for(key: str, replica_ids: Sequence[str]) -> list[str]:
    """`replica_ids` ordered by rendezvous weight for `key`, the chosen one first."""
    return sorted(replica_ids, key=lambda rid: _weight(key, rid), reverse=True)


class CacheAffinityRouter(RequestRouter):
    async def choose_replicas(
        self,
        candidate_replicas: list[RunningReplica],
        pending_request: PendingRequest | None = None,
    ) -> list[list[RunningReplica]]:
        if not candidate_replicas:
            return []
        key = pending_request.metadata.multiplexed_model_id if pending_request else ""
        if not key:
            return [random.sample(candidate_replicas, min(2, len(candidate_replicas)))]
        by_id = {r.replica_id.unique_id: r for r in candidate_replicas}
        ranked = [by_id[rid] for rid in rank_for(key, list(by_id))]
        return [ranked[:1], ranked[1:]] if len(ranked) > 1 else [ranked]

    def _remove_pending_request_from_indices(self, pending_request: PendingRequest) -> None:
        super()._remove_pending_request_from_indices(pending_request)
        prune_model_index(self, pending_request.metadata.multiplexed_model_id)


def prune_model_index(router: RequestRouter, key: str) -> None:
    """Drop `key`'s finished requests from the router's per-key queue (the queue itself once
    empty)."""
    index: dict[str, deque[PendingRequest]] | None = getattr(
        router, "_pending_requests_by_model_id", None
    )
    if not key or index is None or key not in index:
        return
    waiting = deque(request for request in index[key] if not request.future.done())
    if waiting:
        index[key] = waiting
    else:
        del index[key]
