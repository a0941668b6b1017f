"""Calling a deployment through its handle: a timeout, and Ray's failures as typed errors.

Every call from the ingress to another deployment goes through `call_stage` (or `next_item`
for a streamed answer), so a client sees one of our errors (with its status) and never a hang or
a Ray traceback:

    our own error raised in the replica    -> itself (e.g. a 400 from the engine)
    any other exception in the replica     -> EngineError           `<stage>_failed`       500
    no answer within timeout_s             -> BackendTimeout        `<stage>_timeout`      504
    the deployment's queue is full         -> ServiceUnavailable    `<stage>_overloaded`   503
    the deployment failed to deploy        -> ServiceUnavailable    `<stage>_not_deployed` 503
    the replica died during the request    -> ServiceUnavailable    `<stage>_replica_died` 503
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, RayServeException
from ray.serve.handle import DeploymentResponse, DeploymentResponseGenerator

from deploy.core.errors import (
    BackendTimeout,
    EngineError,
    Failure,
    Overloaded,
    Refusal,
    ServiceUnavailable,
    VidserveError,
)

T = TypeVar("T")


async def call_stage(
    response: DeploymentResponse[Any] | DeploymentResponseGenerator[Any],
    *,
    stage: str,
    timeout_s: float,
) -> Any:
    """Await one deployment call; typed errors come through (raised, or answered as a
    `Refusal`), Ray's failures become 5xx."""
    with _ray_errors(stage, timeout_s, response.cancel):
        result = await asyncio.wait_for(_await(response), timeout=timeout_s)  # type: ignore[arg-type]
    if isinstance(result, Refusal):
        raise result.error
    return result


async def next_item(
    stream: DeploymentResponse[Any] | DeploymentResponseGenerator[Any],
    *,
    stage: str,
    timeout_s: float,
) -> Any:
    """The next item of a streaming call (StopAsyncIteration at its end), errors as above;
    `timeout_s` bounds the wait for this one item."""
    if not isinstance(stream, DeploymentResponseGenerator):
        raise TypeError("next_item needs a handle called with .options(stream=True)")
    with _ray_errors(stage, timeout_s, stream.cancel):
        return await asyncio.wait_for(stream.__anext__(), timeout=timeout_s)


@contextmanager
def _ray_errors(stage: str, timeout_s: float, cancel: Callable[[], None]) -> Iterator[None]:
    try:
        yield
    except TimeoutError:
        cancel()
        raise BackendTimeout(
            f"the {stage} stage did not answer within {timeout_s:g}s", code=f"{stage}_timeout"
        ) from None
    except RayTaskError as exc:
        if isinstance(exc.cause, VidserveError):
            raise exc.cause from None
        raise EngineError(
            f"the {stage} replica failed: {type(exc.cause).__name__}: {exc.cause}",
            code=f"{stage}_failed",
        ) from None
    except BackPressureError:
        # Refused at once by the handle (max_queued_requests): the ingress adds Retry-After.
        raise Overloaded(
            f"the {stage} stage is overloaded: its queue is full (max_queued_requests)",
            code=f"{stage}_overloaded",
            failure=Failure.OVERLOADED,
        ) from None
    except DeploymentUnavailableError:
        raise ServiceUnavailable(
            f"the {stage} deployment is not deployed (it failed to start)",
            code=f"{stage}_not_deployed",
            failure=Failure.NOT_DEPLOYED,
        ) from None
    except (RayActorError, RayServeException) as exc:
        raise ServiceUnavailable(
            f"the {stage} replica died while handling the request ({type(exc).__name__})",
            code=f"{stage}_replica_died",
            failure=Failure.REPLICA_DIED,
        ) from None


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable
