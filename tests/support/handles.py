"""A stand-in for a deployment's handle with Serve's calling surface (`.options(...)`,
`handle.<method>.remote(...)` returning a response that is awaited and cancellable), every
call answered by one coroutine function: for tests of what the ingress does with a stage's
answer or failure."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any


class Response:
    def __init__(self, work: Awaitable[Any]) -> None:
        self._work = work

    def __await__(self) -> Any:
        return self._work.__await__()

    def cancel(self) -> None:
        pass


class AnsweringHandle:
    def __init__(self, answer: Callable[[], Awaitable[Any]]) -> None:
        self._answer = answer

    def options(self, **_: object) -> AnsweringHandle:
        return self

    def __getattr__(self, method: str) -> Any:
        answer = self._answer

        class _Method:
            def remote(self, *args: object, **kwargs: object) -> Response:
                return Response(answer())

        return _Method()
