"""The extractor's cache-affinity router: a video's requests go to one replica, others take
them when it is full or gone, and keys spread over the replicas."""

from __future__ import annotations

import asyncio
import importlib
from collections import Counter
from dataclasses import dataclass
from typing import Any

from deploy.serving.affinity_router import ROUTER_CLASS, CacheAffinityRouter, rank_for, url_key


@dataclass(frozen=True)
class _Id:
    unique_id: str


@dataclass(frozen=True)
class _Replica:
    """The part of Serve's RunningReplica the router reads."""

    replica_id: _Id


@dataclass
class _Metadata:
    multiplexed_model_id: str


@dataclass
class _Pending:
    metadata: _Metadata


def _choose(replicas: list[_Replica], key: str) -> list[list[str]]:
    router = CacheAffinityRouter.__new__(CacheAffinityRouter)  # no Serve state is needed
    pending: Any = _Pending(_Metadata(key))
    ranks = asyncio.run(router.choose_replicas(replicas, pending))  # type: ignore[arg-type]
    return [[r.replica_id.unique_id for r in rank] for rank in ranks]


REPLICAS = [_Replica(_Id(name)) for name in ("a1b2", "c3d4", "e5f6")]


def test_a_key_always_ranks_the_same_replica_first_and_every_other_one_after_it() -> None:
    first = _choose(REPLICAS, "digest-1")
    assert len(first) == 2
    assert len(first[0]) == 1
    assert sorted(first[0] + first[1]) == ["a1b2", "c3d4", "e5f6"]
    for _ in range(10):
        assert _choose(list(reversed(REPLICAS)), "digest-1") == first


def test_when_the_keys_replica_is_gone_the_next_in_its_order_takes_it() -> None:
    (chosen,), rest = _choose(REPLICAS, "digest-2")
    survivors = [r for r in REPLICAS if r.replica_id.unique_id != chosen]
    assert _choose(survivors, "digest-2")[0] == [rest[0]]


def test_removing_a_replica_moves_only_the_keys_it_held() -> None:
    keys = [f"video-{i}" for i in range(300)]
    ids = [r.replica_id.unique_id for r in REPLICAS]
    before = {k: rank_for(k, ids)[0] for k in keys}
    after = {k: rank_for(k, ids[:2])[0] for k in keys}
    moved = {k for k in keys if before[k] != after[k]}
    assert moved == {k for k in keys if before[k] == ids[2]}


def test_keys_spread_over_the_replicas() -> None:
    ids = [r.replica_id.unique_id for r in REPLICAS]
    counts = Counter(rank_for(f"video-{i}", ids)[0] for i in range(600))
    assert set(counts) == set(ids)
    assert min(counts.values()) > 140  # 200 each if even


def test_requests_without_a_key_get_two_random_choices() -> None:
    seen = set()
    for _ in range(40):
        (rank,) = _choose(REPLICAS, "")
        assert len(rank) == 2
        seen.update(rank)
    assert seen == {"a1b2", "c3d4", "e5f6"}


def test_one_replica_is_the_only_rank() -> None:
    assert _choose(REPLICAS[:1], "digest-3") == [["a1b2"]]
    assert _choose([], "digest-3") == []


def test_a_url_key_is_stable_and_names_no_path() -> None:
    key = url_key("https://example.com/private/clip.mp4?token=secret")
    assert key == url_key("https://example.com/private/clip.mp4?token=secret")
    assert key != url_key("https://example.com/private/other.mp4")
    assert "secret" not in key
    assert key.startswith("url:")


def test_serve_config_routes_the_extractor_with_this_router() -> None:
    from deploy.config.serve_config import Profile, load_config

    for profile in Profile:
        config = load_config(profile=profile)
        (extractor,) = [
            d for d in config["applications"][0]["deployments"] if d["name"] == "FrameExtractor"
        ]
        assert extractor["request_router_config"]["request_router_class"] == ROUTER_CLASS
    module, name = ROUTER_CLASS.split(":")
    assert getattr(importlib.import_module(module), name) is CacheAffinityRouter


@dataclass
class _RoutedMetadata:
    internal_request_id: str
    multiplexed_model_id: str


class _Routed:
    """What Serve's router indexes of a PendingRequest: its metadata and its future."""

    def __init__(self, number: int, key: str) -> None:
        self.metadata = _RoutedMetadata(f"request-{number}", key)
        self.future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()


def _route_many(router_class: type[Any], count: int) -> dict[str, Any]:
    """`count` requests about two videos, indexed and fulfilled the way Ray's router does
    (its own `_add_pending_request_to_indices` / `_remove_pending_request_from_indices`); the
    per-key index left behind."""
    from collections import defaultdict, deque

    async def run() -> dict[str, Any]:
        router = router_class.__new__(router_class)
        router._pending_requests_by_id = {}
        router._pending_requests_by_model_id = defaultdict(deque)
        for number in range(count):
            request = _Routed(number, f"video-{number % 2}")
            router._add_pending_request_to_indices(request)
            request.future.set_result("replica")
            router._remove_pending_request_from_indices(request)
        assert router._pending_requests_by_id == {}
        return dict(router._pending_requests_by_model_id)

    return asyncio.run(run())


async def rank_all(self: Any, candidate_replicas: list[Any], pending_request: Any = None) -> Any:
    return [candidate_replicas]


def test_routed_requests_are_not_kept_after_they_are_routed() -> None:
    """Ray 2.60's router keeps every request with a multiplexed_model_id in a per-key queue that
    only multiplexing's own router cleans (a leak of ~2.5 KB a request, seen in the soak); ours
    drops them once routed."""
    from ray.serve.request_router import RequestRouter

    # Serve's router with only the choice of replicas of ours: the index as Ray keeps it.
    plain = type("PlainRouter", (RequestRouter,), {"choose_replicas": rank_all})
    leaked = _route_many(plain, 200)
    assert sum(len(queue) for queue in leaked.values()) == 200, (
        "Ray's router no longer keeps routed requests: CacheAffinityRouter's mend can go"
    )
    assert _route_many(CacheAffinityRouter, 200) == {}
