"""Pure video code (no Ray): identify, sample, decode and resize frames."""

from deploy.video.decode import extract

__all__ = ["extract"]
