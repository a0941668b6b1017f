"""vidserve: a Ray Serve application that answers questions about videos with VLMs."""

import os as _os

# OpenCV reads its image-decoder pixel cap once, when it is loaded (before any setting can be
# read), so it is set here, before any module of the package imports cv2: to the default of
# extraction.max_source_pixels (8K). The header check (deploy/video/limits.py) enforces the
# configured value; this is the decoder's own second line. Raising max_source_pixels above it
# needs OPENCV_IO_MAX_IMAGE_PIXELS in the extractor's environment (docs/limits.md).
# An empty or non-numeric value makes OpenCV abort the process when it loads: replaced too.
if not _os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS", "").isdigit():
    _os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"] = str(7680 * 4320)
