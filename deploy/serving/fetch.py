"""Fetching a video (or image) by URL, safe against SSRF by default.

    url ─► scheme check ─► resolve host ONCE ─► every address public (or allowlisted)?
        ─► connect to that checked address (Host header and TLS SNI keep the name)
        ─► redirect? the same checks for the next hop (at most `max_redirects`)
        ─► stream the body: stop at `max_bytes` (413) or `timeout_s` for the whole download

Private, loopback, link-local (cloud metadata 169.254.169.254), multicast, reserved and
unspecified addresses are refused unless the host (`allow_hosts`) or the network (`allow_cidrs`)
is trusted in `url_fetch`. Because the connection goes to the address that was checked, a DNS
answer cannot change between the check and the connection. `file://` URLs work only inside
`url_fetch.local_dir`, with symlinks and `..` resolved before the check.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urljoin

import httpx

from deploy.config.settings import UrlFetchSettings
from deploy.core.errors import InvalidRequest, PayloadTooLarge, UnprocessableInput
from deploy.core.numbers import decimal

logger = logging.getLogger("ray.serve.vidserve.fetch")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
PROGRESS_LOG_EVERY_S = 5.0
DEFAULT_PORTS = {"http": 80, "https": 443}


class UrlNotAllowed(InvalidRequest):
    """The URL points somewhere vidserve will not fetch from (SSRF guard, scheme, local path)."""

    @classmethod
    def default_code(cls) -> str:
        return "url_not_allowed"


@dataclass(frozen=True)
class Target:
    """Where one hop connects: the checked address, and the name it stands for."""

    url: httpx.URL  # with the checked IP as host
    host_header: str
    server_name: str


def forbidden_reason(address: IPAddress) -> str | None:
    """Why an address may not be fetched from by default, or None when it is public."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return forbidden_reason(address.ipv4_mapped)
    for reason, flag in (
        ("loopback", address.is_loopback),
        ("link-local (cloud metadata lives here)", address.is_link_local),
        ("multicast", address.is_multicast),
        ("unspecified", address.is_unspecified),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
    ):
        if flag:
            return reason
    if not address.is_global:
        return "not globally routable"
    return None


class UrlFetcher:
    def __init__(self, settings: UrlFetchSettings, max_bytes: int | None = None) -> None:
        self._settings = settings
        self._max_bytes = min(max_bytes or settings.max_bytes, settings.max_bytes)
        self._cidrs = [ipaddress.ip_network(c, strict=False) for c in settings.allow_cidrs]
        self._hosts = {h.lower() for h in settings.allow_hosts}

    async def fetch(self, url: str) -> bytes:
        """The body at `url`, or a 4xx saying why not."""
        pieces: list[bytes] = []
        await self.fetch_into(url, pieces.append)
        return b"".join(pieces)

    async def fetch_into(self, url: str, write: Callable[[bytes], object]) -> int:
        """The body at `url` handed to `write` piece by piece as it arrives (a file's write:
        nothing is held in memory); its size. `write` may raise to stop the download."""
        try:
            async with asyncio.timeout(self._settings.timeout_s):
                return await self._fetch(url, write)
        except TimeoutError:
            raise UnprocessableInput(
                f"downloading {url} took longer than {self._settings.timeout_s:g}s "
                "(url_fetch.timeout_s)",
                param="url",
                code="url_timeout",
            ) from None

    async def _fetch(self, url: str, write: Callable[[bytes], object]) -> int:
        current = url
        timeout = httpx.Timeout(self._settings.timeout_s, connect=self._settings.connect_timeout_s)
        async with httpx.AsyncClient(follow_redirects=False, timeout=timeout, trust_env=False) as c:
            for _ in range(self._settings.max_redirects + 1):
                parsed = self._parse(current)
                if parsed.scheme == "file":
                    data = await asyncio.to_thread(self._read_local, parsed)
                    write(data)
                    return len(data)
                target = await self._target(parsed)
                try:
                    async with c.stream(
                        "GET",
                        target.url,
                        headers={"Host": target.host_header},
                        extensions={"sni_hostname": target.server_name},
                    ) as response:
                        if response.is_redirect and "location" in response.headers:
                            current = urljoin(current, response.headers["location"])
                            continue
                        if response.status_code >= 400:
                            raise UnprocessableInput(
                                f"{url} answered HTTP {response.status_code}",
                                param="url",
                                code="url_fetch_failed",
                            )
                        return await self._read_body(response, url, write)
                except httpx.TimeoutException:
                    raise TimeoutError from None
                except httpx.HTTPError as exc:
                    raise UnprocessableInput(
                        f"could not download {url}: {type(exc).__name__}: {exc}",
                        param="url",
                        code="url_fetch_failed",
                    ) from None
        raise UnprocessableInput(
            f"{url} redirected more than {self._settings.max_redirects} times "
            "(url_fetch.max_redirects)",
            param="url",
            code="too_many_redirects",
        )

    def _parse(self, url: str) -> httpx.URL:
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError):
            raise InvalidRequest(f"{url!r} is not a URL", param="url", code="invalid_url") from None
        if parsed.scheme not in ("http", "https", "file"):
            raise UrlNotAllowed(
                f"URL scheme {parsed.scheme or 'none'!r} is not allowed; use http, https"
                + (" or file" if self._settings.local_dir else ""),
                param="url",
            )
        if parsed.scheme != "file" and not parsed.host:
            raise InvalidRequest(f"{url!r} has no host", param="url", code="invalid_url")
        return parsed

    async def target(self, url: str, param: str = "url") -> Target:
        """Where an http(s) request to `url` connects (its checked address), or UrlNotAllowed:
        for callers that make their own request (webhooks)."""
        parsed = self._parse(url)
        if parsed.scheme == "file":
            raise UrlNotAllowed("a file:// URL cannot take a request", param=param)
        return await self._target(parsed, param)

    async def checked_address(self, host: str, port: int, param: str = "url") -> str:
        """The address `host` resolves to, once, after the SSRF checks (any protocol: RTSP,
        RTMP): connect to it, not to the name, so DNS cannot answer differently later."""
        host = host.lower()
        trusted_host = host in self._hosts or f"{host}:{port}" in self._hosts
        addresses = await self._resolve(host, port, param)
        for address in addresses:
            reason = forbidden_reason(address)
            if reason is None and self._settings.allowed_only:
                reason = "public (url_fetch.allowed_only: trusted hosts alone)"
            if reason and not trusted_host and not any(address in n for n in self._cidrs):
                raise UrlNotAllowed(
                    f"{host} resolves to {address}, a {reason} address; vidserve does not "
                    "connect to such addresses (trust it in url_fetch.allow_hosts or "
                    "url_fetch.allow_cidrs)",
                    param=param,
                )
        return str(addresses[0])

    async def _target(self, url: httpx.URL, param: str = "url") -> Target:
        port = url.port or DEFAULT_PORTS[url.scheme]
        host = url.host.lower()
        chosen = await self.checked_address(host, port, param)
        netloc = host if url.port is None else f"{host}:{url.port}"
        if ":" in host:  # an IPv6 literal keeps its brackets in the Host header
            netloc = f"[{host}]" if url.port is None else f"[{host}]:{url.port}"
        return Target(url=url.copy_with(host=chosen), host_header=netloc, server_name=host)

    @staticmethod
    async def _resolve(host: str, port: int, param: str = "url") -> list[IPAddress]:
        try:
            return [ipaddress.ip_address(host)]
        except ValueError:
            pass
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except socket.gaierror:
            raise UnprocessableInput(
                f"the host {host!r} cannot be resolved", param=param, code="url_fetch_failed"
            ) from None
        addresses: list[IPAddress] = []
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if address not in addresses:
                addresses.append(address)
        return addresses

    async def _read_body(
        self, response: httpx.Response, url: str, write: Callable[[bytes], object]
    ) -> int:
        declared = decimal(response.headers.get("content-length"))
        if declared is not None and declared > self._max_bytes:
            raise self._too_large(url)
        total = f" of {declared / 2**20:.1f} MiB" if declared is not None else ""
        size = 0
        started = last_log = time.monotonic()
        # Decoded bytes (gzip and the like undone), so the cap also bounds a compression bomb.
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self._max_bytes:
                raise self._too_large(url)
            write(chunk)
            if time.monotonic() - last_log >= PROGRESS_LOG_EVERY_S:
                last_log = time.monotonic()
                logger.info("downloading %s: %.1f MiB%s", url, size / 2**20, total)
        logger.info(
            "downloaded %s: %.1f MiB in %.2fs", url, size / 2**20, time.monotonic() - started
        )
        return size

    def _too_large(self, url: str) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"{url} is larger than {self._max_bytes} bytes (url_fetch.max_bytes)", param="url"
        )

    def local_path(self, url: str) -> Path:
        """The file a `file://` URL names, inside url_fetch.local_dir (else refused)."""
        return self._local_path(self._parse(url))

    def _local_path(self, url: httpx.URL) -> Path:
        base = self._settings.local_dir
        if base is None:
            raise UrlNotAllowed(
                "file:// URLs are off; set url_fetch.local_dir to a directory to allow files "
                "inside it",
                param="url",
            )
        if url.host not in ("", "localhost"):
            raise UrlNotAllowed(f"file URL with host {url.host!r}: only local files", param="url")
        root = base.expanduser().resolve()
        # Containment first, so that a refused path says nothing about what exists outside.
        path = Path(unquote(url.path)).resolve()
        if not path.is_relative_to(root):
            raise UrlNotAllowed(
                f"{unquote(url.path)} is not inside url_fetch.local_dir ({root}); paths and "
                "symlinks that leave it are refused",
                param="url",
            )
        if not path.is_file():
            raise UnprocessableInput(
                f"no such file in url_fetch.local_dir: {unquote(url.path)}",
                param="url",
                code="url_fetch_failed",
            )
        return path

    def _read_local(self, url: httpx.URL) -> bytes:
        path = self._local_path(url)
        if path.stat().st_size > self._max_bytes:
            raise self._too_large(str(url))
        return path.read_bytes()
