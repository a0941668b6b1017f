"""Job videos on disk: where they go, the quotas and the free-space floor they are checked
against, and their removal (DELETE, cancel, retention).

Only files under `<jobs.data_dir>/media` are the service's: a `file://` job reads the user's
own file in place, and that is never deleted. Blocking (file system): call it in a thread.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import BinaryIO

from deploy.config.settings import JobsSettings
from deploy.core.errors import InsufficientStorage, TooManyRequests

logger = logging.getLogger("ray.serve.vidserve.jobs")

# How often (bytes written) a download checks the disk's free space again.
FREE_SPACE_CHECK_BYTES = 16 * 1024 * 1024


class JobMedia:
    def __init__(self, settings: JobsSettings) -> None:
        self._settings = settings
        self.folder = settings.resolved_data_dir() / "media"

    def owns(self, source: str) -> bool:
        return Path(source).resolve().is_relative_to(self.folder.resolve())

    def remove(self, source: str) -> None:
        """Delete a job's video if it is the service's (a missing one is fine)."""
        if not self.owns(source):
            return
        try:
            Path(source).unlink(missing_ok=True)
        except OSError as exc:  # kept, and said: the next sweep tries again
            logger.warning("could not delete the job video %s: %s", source, exc)

    def check_room(self, incoming: int) -> None:
        """507 when `incoming` more bytes would leave less than jobs.min_free_bytes free."""
        self.folder.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.folder).free
        if free - incoming < self._settings.min_free_bytes:
            raise InsufficientStorage(
                f"the jobs disk has {free / 2**30:.1f} GiB free; new jobs need "
                f"{self._settings.min_free_bytes / 2**30:.1f} GiB to stay free "
                "(jobs.min_free_bytes): retry later, or delete finished jobs",
                details={"retry_after_s": 60},
            )

    def check_quota(self, active: int, kept: int, incoming: int = 0) -> None:
        """429 when a key is past jobs.max_active_jobs_per_key or would pass
        jobs.max_media_bytes_per_key with `incoming` more bytes."""
        settings = self._settings
        if active >= settings.max_active_jobs_per_key:
            raise TooManyRequests(
                f"this API key has {active} jobs queued or running, the most "
                f"jobs.max_active_jobs_per_key allows; wait for one to finish or cancel one",
                code="too_many_jobs",
                details={"retry_after_s": 30},
            )
        if kept + incoming > settings.max_media_bytes_per_key:
            raise TooManyRequests(
                f"this API key keeps {kept / 2**20:.1f} MiB of job videos; with this one "
                f"({incoming / 2**20:.1f} MiB) it would pass jobs.max_media_bytes_per_key "
                f"({settings.max_media_bytes_per_key / 2**20:.1f} MiB): DELETE finished jobs "
                "to free it",
                code="storage_quota_exceeded",
            )


class QuotaSink:
    """A download's destination: each piece written to disk as it arrives (nothing held in
    memory), the key's remaining quota and the free-space floor checked as it grows."""

    def __init__(self, out: BinaryIO, media: JobMedia, active: int, kept: int) -> None:
        self._out = out
        self._media = media
        self._active = active
        self._kept = kept
        self.size = 0
        self._checked_at = 0

    def write(self, piece: bytes) -> None:
        self.size += len(piece)
        # The job itself is not active yet: quota as if it were one more.
        self._media.check_quota(self._active, self._kept, self.size)
        if self.size - self._checked_at >= FREE_SPACE_CHECK_BYTES:
            self._checked_at = self.size
            self._media.check_room(0)
        self._out.write(piece)
