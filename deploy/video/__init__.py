"""Pure video code (no Ray, no HTTP): identify, sample, decode and resize frames.

container.py sniff ─► probe.py index ─► sampling.py strategy ─► plan.py seek/grab plan
    ─► decode.py (OpenCV reads, scene detection) / av_read.py (PyAV) ─► resize.py
images.py: images and frame lists; threads.py: the CPUs decoding uses; cache.py: the frame
cache; chunks.py: a long video as chunks.
"""

from deploy.video.decode import extract
from deploy.video.images import frames_from_images
from deploy.video.threads import use_cpus

__all__ = ["extract", "frames_from_images", "use_cpus"]
