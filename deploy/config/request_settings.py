"""Configuration of what comes in: frame extraction (`extraction`), the HTTP guard (`http`),
URL fetching (`url_fetch`) and API keys (`auth`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator

from deploy.config.strict import StrictModel

MIN_API_KEY_CHARS = 16


class ExtractionSettings(StrictModel):
    """Frame extraction on CPU replicas: sampling defaults, limits and the pixel budget."""

    default_num_frames: int = Field(default=16, ge=1, description="Frames when none are asked.")
    max_num_frames: int = Field(default=64, ge=1, description="Most frames one request may ask.")
    max_fps: float = Field(
        default=4.0, gt=0, description="Highest sampling rate a request may ask."
    )
    max_upload_bytes: int = Field(
        default=512 * 1024 * 1024, ge=1024, description="Largest upload accepted (413 above it)."
    )
    cache_max_bytes: int = Field(
        default=512 * 1024 * 1024,
        ge=0,
        description="Frames kept per extractor replica for repeated questions (0: no cache).",
    )
    uniform_slack_s: float = Field(
        default=0.5,
        ge=0,
        le=5.0,
        description="Uniform sampling: how far (seconds) a frame may move from its exact place "
        "to one that is cheaper to decode (a keyframe, or nearer after one), never past half "
        "the gap to its neighbours; its true time is what is reported and sent. 0: exact "
        "places. On videos with a keyframe every 2 s this halves the frames decoded.",
    )
    scene_threshold: float = Field(
        default=0.2, gt=0, le=1, description="Scene sampling: mean frame difference of a cut."
    )
    scene_min_gap_s: float = Field(
        default=1.0, ge=0, description="Scene sampling: fewest seconds between chosen frames."
    )
    scene_analysis_fps: float = Field(
        default=4.0, gt=0, description="Scene sampling: frames per second compared for cuts."
    )
    patch_factor: int = Field(
        default=28,
        ge=1,
        description="Frame sides are multiples of this: the vision patch x spatial merge. "
        "Unset, the served model's (llm.model: 28 for Qwen2.x-VL, 32 for Qwen3-VL).",
    )
    min_pixels: int = Field(default=128 * 28 * 28, ge=1, description="Fewest pixels per frame.")
    max_pixels: int = Field(default=768 * 28 * 28, ge=1, description="Most pixels per frame.")
    total_pixels: int = Field(
        default=24576 * 28 * 28,
        ge=1,
        description="Pixel budget over all frames of a request; frames shrink to fit it.",
    )
    # Decoded-size limits: what a small file may cost to decode (video/limits.py). Checked from
    # the header before decoding and again while decoding.
    max_source_pixels: int = Field(
        default=7680 * 4320,
        ge=64 * 64,
        description="Most pixels (width x height) of a source image or video frame: 8K by "
        "default. A 1 MB PNG can declare 20000x20000 (1.2 GB decoded): 413 above this.",
    )
    max_duration_s: float = Field(
        default=3 * 3600.0,
        gt=0,
        description="Longest video accepted (413 above it): indexing reads every packet.",
    )
    max_source_frames: int = Field(
        default=3 * 3600 * 60,
        ge=1,
        description="Most frames in a video, or images in a frame list (413 above it): "
        "3 hours at 60 fps by default.",
    )
    max_decode_pixels: int = Field(
        default=20_000_000_000,
        ge=1,
        description="Decode work one request may cost: frames decoded x pixels per frame "
        "(about 10,000 1080p frames, some 40 s of a core). 413 above it: ask fewer frames or a "
        "shorter window.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ExtractionSettings:
        if self.default_num_frames > self.max_num_frames:
            raise ValueError(
                f"default_num_frames ({self.default_num_frames}) exceeds max_num_frames "
                f"({self.max_num_frames}): lower the first or raise the second"
            )
        if self.min_pixels > self.max_pixels:
            raise ValueError(
                f"min_pixels ({self.min_pixels}) exceeds max_pixels ({self.max_pixels})"
            )
        return self


class HttpSettings(StrictModel):
    """What one ingress replica lets in: body limits, memory in flight, slow clients
    (api/guard.py). Per replica: the worst case of a replica is stated from these
    (docs/limits.md)."""

    max_inflight_bytes: int = Field(
        default=3 * 1024 * 1024 * 1024,
        ge=1024 * 1024,
        description="Request bytes one ingress replica holds at once (bodies as declared or as "
        "they arrive, with what is made of them: a JSON body 3x, an upload 2x). A request "
        "that would pass it gets 503 overloaded with Retry-After at once, nothing buffered.",
    )
    max_inflight_bytes_per_client: int | None = Field(
        default=None,
        ge=1024 * 1024,
        description="Of max_inflight_bytes, what one client (its API key, else its address) "
        "may hold; past it 429 client_bytes_in_flight. Unset: one largest request's worth "
        "(a base64 JSON body of extraction.max_upload_bytes, counted 3x).",
    )
    retry_after_s: int = Field(
        default=2, ge=1, description="Retry-After (seconds) of a 503 overloaded or a 429."
    )
    readiness_cache_s: float = Field(
        default=1.0,
        ge=0,
        le=30,
        description="/readyz answers from one backend check for this long (one check at a "
        "time, however many probes): probes never fill the backends' slots.",
    )
    max_json_depth: int = Field(
        default=64,
        ge=4,
        le=512,
        description="Deepest nesting of arrays/objects in a JSON body (400 above it). A "
        "response_format schema is the deepest thing a client sends.",
    )
    min_body_bytes_per_s: int = Field(
        default=16 * 1024,
        ge=1,
        description="Slow-client guard: a body arriving slower than this over body_rate_window_s "
        "is cut with 408, so a trickling client cannot hold a slot.",
    )
    body_rate_window_s: float = Field(
        default=20.0, gt=0, description="Seconds over which min_body_bytes_per_s is measured."
    )
    spool_threshold_bytes: int = Field(
        default=1024 * 1024,
        ge=0,
        description="An uploaded file larger than this is spooled to a temporary file while "
        "the form is parsed, not kept in memory.",
    )


class UrlFetchSettings(StrictModel):
    """Fetching media by URL: caps, and the SSRF guard (private addresses refused by default)."""

    max_bytes: int = Field(
        default=512 * 1024 * 1024, ge=1024, description="Largest download; it stops there (413)."
    )
    timeout_s: float = Field(default=60.0, gt=0, description="Longest a whole download may take.")
    connect_timeout_s: float = Field(default=10.0, gt=0, description="Per connection attempt.")
    max_redirects: int = Field(default=3, ge=0, le=10, description="Redirects followed at most.")
    allow_hosts: tuple[str, ...] = Field(
        default=(),
        description="Trusted hosts (`name` or `name:port`) fetched even at private addresses.",
    )
    allow_cidrs: tuple[str, ...] = Field(
        default=(),
        description="Trusted networks (e.g. 10.20.0.0/16) fetched even though they are private.",
    )
    local_dir: Path | None = Field(
        default=None,
        description="Directory whose files `file://` URLs may name (a shared volume); unset: off.",
    )
    allowed_only: bool = Field(
        default=False,
        description="Connect to allow_hosts and allow_cidrs alone, public addresses refused too: "
        "a deployment that fetches media, streams and webhooks only from its own hosts (and "
        "the tests, which must never reach beyond loopback).",
    )

    @field_validator("allow_cidrs")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        import ipaddress

        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(
                    f"url_fetch.allow_cidrs: {cidr!r} is not a network like 10.0.0.0/8"
                ) from None
        return value


class AuthSettings(StrictModel):
    """Bearer-token API keys. None configured anywhere: the API is open (local use)."""

    api_keys: tuple[SecretStr, ...] = Field(
        default=(), description="Accepted keys (prefer api_keys_file or VIDSERVE_API_KEYS)."
    )
    api_keys_file: Path | None = Field(
        default=None,
        description="A file with one key per line ('#' comments), e.g. a mounted Secret; "
        "VIDSERVE_API_KEYS_FILE overrides.",
    )
    open_paths: tuple[str, ...] = Field(
        default=("/healthz", "/readyz", "/openapi.json", "/", "/static/*"),
        description="Paths answered without a key (`*` at the end: a prefix); the web page "
        "(`/`, `/static/`) holds no data, its API calls send the key typed into it.",
    )
    max_concurrent_per_key: int = Field(
        default=0,
        ge=0,
        description="Requests one API key may have in flight on one ingress replica; one more "
        "gets 429 with Retry-After (0: no limit). One client cannot take every slot.",
    )
    allow_open_network: bool = Field(
        default=False,
        description="Serve without API keys on a non-loopback address. Off: `vidserve run` "
        "binds 127.0.0.1 when no key is configured, and an ingress in a Kubernetes pod "
        "refuses to start without keys.",
    )

    @field_validator("api_keys")
    @classmethod
    def _long_enough(cls, value: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        for position, key in enumerate(value):
            if len(key.get_secret_value()) < MIN_API_KEY_CHARS:
                raise ValueError(
                    f"auth.api_keys[{position}] is shorter than {MIN_API_KEY_CHARS} characters; "
                    "use a random key such as `python -c 'import secrets; "
                    "print(secrets.token_urlsafe(32))'`"
                )
        return value
