"""Pure video code (no Ray): identify, sample, decode and resize frames."""

from deploy.video.decode import extract, frames_from_images, use_cpus

__all__ = ["extract", "frames_from_images", "use_cpus"]
