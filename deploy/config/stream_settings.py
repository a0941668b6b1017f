"""Configuration of live streams (`streams`): the StreamIngest deployment that watches RTSP,
RTMP and HLS sources, captions them in rolling windows and evaluates alert rules."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from deploy.config.strict import StrictModel

DEFAULT_WINDOW_PROMPT = (
    "Describe what happens in these frames from a live camera, in one or two sentences."
)


class StreamsSettings(StrictModel):
    """Live streams: POST /v1/streams, one decoder a stream on the StreamIngest replicas."""

    enabled: bool = Field(
        default=True,
        description="Deploy StreamIngest and serve /v1/streams. Off: the routes answer 404 "
        "and no stream decoder runs anywhere.",
    )
    schemes: tuple[Literal["rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "file"], ...] = Field(
        default=("rtsp", "rtsps", "rtmp", "rtmps", "http", "https"),
        description="URL schemes a stream may use (http/https: an HLS .m3u8 playlist). "
        "'file' (a local video played at its own speed, inside url_fetch.local_dir) is "
        "for tests and demos.",
    )
    rtsp_transport: Literal["tcp", "udp"] = Field(
        default="tcp",
        description="How RTP reaches the decoder from an RTSP source: tcp (interleaved on the "
        "RTSP connection: through NAT and firewalls) or udp.",
    )
    window_s: float = Field(
        default=10.0, ge=1.0, le=600.0, description="Default seconds of stream a window covers."
    )
    frames_per_window: int = Field(
        default=4, ge=1, le=32, description="Default frames of a window shown to the model."
    )
    max_streams_per_replica: int = Field(
        default=8,
        ge=1,
        le=256,
        description="Decoders one StreamIngest replica holds; more streams wait for a replica "
        "with room (scale StreamIngest in serve_config.yaml).",
    )
    max_streams_per_key: int = Field(
        default=16, ge=1, description="Streams one API key may have at once (429 past it)."
    )
    lease_s: float = Field(
        default=15.0,
        ge=2.0,
        description="A replica holds each of its streams for this long and renews the hold "
        "every lease_s / 3; a replica that dies loses them after at most lease_s, and another "
        "replica resumes them within lease_s + claim_interval_s.",
    )
    claim_interval_s: float = Field(
        default=2.0, gt=0, le=60.0, description="How often a replica looks for streams to take."
    )
    max_windows_in_flight: int = Field(
        default=1,
        ge=1,
        le=16,
        description="Windows of one stream at the model at once; a window that finds them all "
        "busy is dropped and counted (the decoder never falls behind real time).",
    )
    open_timeout_s: float = Field(
        default=10.0, gt=0, description="Connecting to a source and reading its first frames."
    )
    stall_s: float = Field(
        default=10.0,
        gt=0,
        description="A source that sends nothing for this long is lost: reconnect.",
    )
    reconnect_initial_s: float = Field(
        default=0.5, gt=0, description="The first wait before reconnecting to a lost source."
    )
    reconnect_max_s: float = Field(
        default=10.0, gt=0, description="Waits double up to this while the source stays away."
    )
    caption_max_tokens: int = Field(default=96, ge=1, description="A window's caption length.")
    default_prompt: str = Field(default=DEFAULT_WINDOW_PROMPT, min_length=1)
    model_timeout_s: float = Field(
        default=120.0, gt=0, description="A window's caption or rule that takes longer fails."
    )
    max_rules: int = Field(default=8, ge=0, le=64, description="Alert rules a stream may have.")
    webhook_timeout_s: float = Field(default=5.0, gt=0, description="One webhook delivery.")
    webhook_attempts: int = Field(
        default=5, ge=1, le=20, description="Deliveries of an alert tried before it is failed."
    )
    webhook_backoff_s: float = Field(
        default=1.0, gt=0, description="The wait after a failed delivery, doubled each time."
    )
    max_events_per_key: int = Field(
        default=8, ge=1, description="GET /v1/streams/{id}/events streams one key holds open."
    )

    @model_validator(mode="after")
    def _waits_ordered(self) -> StreamsSettings:
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError(
                f"streams.reconnect_max_s ({self.reconnect_max_s:g}) is below "
                f"streams.reconnect_initial_s ({self.reconnect_initial_s:g}): raise the first"
            )
        return self
