"""Alert webhooks: a JSON POST signed with the stream's shared secret, sent only to an address
the SSRF guard allows (checked at each delivery, connected to by address, no redirects).

Signature, as Stripe and GitHub do it: the header `X-Vidserve-Signature: t=<unix time>,v1=<hex>`
where hex = HMAC-SHA256(secret, "<t>.<body bytes>"). A receiver recomputes it and refuses a `t`
too far from its clock (a replayed delivery); `verify` below is that check.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from deploy.core.errors import VidserveError
from deploy.serving.fetch import UrlFetcher

SIGNATURE_HEADER = "X-Vidserve-Signature"
EVENT_HEADER = "X-Vidserve-Event"


def sign(secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify(secret: str, header: str, body: bytes, tolerance_s: float = 300.0) -> bool:
    """Whether `header` signs `body` with `secret`, made within `tolerance_s` of now."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (ValueError, KeyError):
        return False
    if abs(time.time() - timestamp) > tolerance_s:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))


@dataclass(frozen=True)
class Delivered:
    ok: bool
    error: str | None = None


async def deliver(
    fetcher: UrlFetcher, url: str, secret: str, payload: dict[str, Any], timeout_s: float
) -> Delivered:
    """POST `payload` to `url`, signed; ok on a 2xx. Never raises: what went wrong is `error`."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    try:
        target = await fetcher.target(url, param="webhook.url")
    except VidserveError as exc:  # refused by the guard, or unresolvable: said, retried later
        return Delivered(False, f"{type(exc).__name__}: {exc}")
    headers = {
        "Host": target.host_header,
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(secret, body, int(time.time())),
        EVENT_HEADER: str(payload.get("type", "alert")),
        "User-Agent": "vidserve-webhook",
    }
    try:
        async with httpx.AsyncClient(
            follow_redirects=False, timeout=timeout_s, trust_env=False
        ) as client:
            response = await client.post(
                target.url,
                content=body,
                headers=headers,
                extensions={"sni_hostname": target.server_name},
            )
    except httpx.HTTPError as exc:
        return Delivered(False, f"{type(exc).__name__}: {exc}")
    if 200 <= response.status_code < 300:
        return Delivered(True)
    return Delivered(False, f"HTTP {response.status_code}")
