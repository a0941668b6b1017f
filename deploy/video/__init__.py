"""Pure video code (no Ray, no HTTP): identify, sample, decode and resize frames.

decode.py: container.py sniff ─► probe.py index ─► choose.py (sampling.py strategies, scene
    cuts) ─► read_plan.py seek/grab plan ─► frame_reader.py (OpenCV on capture.py) / av_read.py
    (PyAV) ─► resize.py
images.py: images and frame lists; limits.py: what decoding may cost; threads.py: the CPUs
decoding uses; cache.py: the frame cache; chunks.py: a long video as chunks.
"""

from deploy.video.decode import extract
from deploy.video.images import frames_from_images
from deploy.video.threads import use_cpus

__all__ = ["extract", "frames_from_images", "use_cpus"]
