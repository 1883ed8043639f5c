"""Video clips as content: read (:mod:`.clip`), optical flow (:mod:`.flow`), the frame loop
(:mod:`.stylize`) and writing (:mod:`.encode`). Needs the ``video`` extra (PyAV, OpenCV).
"""

from nstd.video.clip import ANIMATED_EXTS, VIDEO_EXTS, ClipLimits, VideoError, is_clip_path, open_clip

__all__ = ["ANIMATED_EXTS", "VIDEO_EXTS", "ClipLimits", "VideoError", "is_clip_path", "open_clip"]
