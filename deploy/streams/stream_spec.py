"""What a stream asks for: the body of POST /v1/streams, validated, and stored with the stream.

Limits that depend on the configuration (streams.max_rules, the URL schemes) are checked by the
API layer, which fills the defaults from `streams` settings before a spec is stored."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class AlertRule(BaseModel):
    """A yes/no question asked of every window; it fires after `consecutive` windows answered
    yes, once, and again only after a window answered no."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Names the rule in alerts: letters, digits, _ . - (64 at most).")
    question: str = Field(
        min_length=3,
        max_length=500,
        description="A yes/no question about what the window shows, e.g. 'Is there smoke?'",
    )
    consecutive: int = Field(
        default=1,
        ge=1,
        le=100,
        description="Windows in a row that must answer yes before the alert fires.",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                "a rule's name is 1-64 letters, digits, '_', '.' or '-', starting with a letter "
                "or digit"
            )
        return value


class Webhook(BaseModel):
    """Where fired alerts are POSTed, signed with `secret` (header X-Vidserve-Signature)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(description="An http(s) URL; the same SSRF guard as media URLs applies.")
    secret: str = Field(
        min_length=16,
        max_length=256,
        description="Shared secret of the HMAC-SHA256 signature (16 characters at least).",
    )


class StreamSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(
        min_length=1,
        max_length=2048,
        description="rtsp://, rtmp:// or an HLS playlist (http(s)://.../*.m3u8).",
    )
    name: str | None = Field(default=None, max_length=200, description="Shown in the library.")
    window_s: float | None = Field(default=None, ge=1.0, le=600.0)
    frames_per_window: int | None = Field(default=None, ge=1, le=32)
    prompt: str | None = Field(default=None, min_length=1, max_length=4000)
    rules: tuple[AlertRule, ...] = ()
    webhook: Webhook | None = None

    @field_validator("rules")
    @classmethod
    def _distinct_names(cls, rules: tuple[AlertRule, ...]) -> tuple[AlertRule, ...]:
        names = [rule.name for rule in rules]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"two rules share the name {twice[0]!r}: names must differ")
        return rules

    def public(self) -> dict[str, object]:
        """The spec as shown to its owner and kept in the library record: never the secret."""
        shown = self.model_dump(mode="json", exclude={"webhook"})
        if self.webhook is not None:
            shown["webhook"] = {"url": self.webhook.url}
        return shown
