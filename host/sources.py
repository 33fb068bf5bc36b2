"""Frame sources for streaming: camera, video file, GIF, frame folder, synthetic video.

Every source yields :class:`Frame` objects: the RGB image exactly as decoded, the source's
own frame number, a time stamp in seconds and ``gap``, the number of frames missing
between this frame and the previous one (dropped frames). The keyframe scheduler forces a
keyframe after a gap (docs/streaming.md).

Fitting a frame to the model's input is a separate, explicit step (:class:`Preprocess`):
``resize`` (bilinear, aspect ratio not kept), ``crop`` (centre crop to the input's aspect
ratio, then resize) or ``none`` (the frame must already have the model's size). A frame of
the wrong size, dtype or channel count is refused with an error naming the frame and the
value; nothing is converted silently.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from deltamtl.model.data.io_utils import IMAGE_EXTS, read_image_rgb

RESIZE_MODES = ("resize", "crop", "none")
# A frame counts as late (frames dropped before it) when its time stamp is more than this
# many frame periods after the previous one: cameras and containers jitter by a fraction
# of a period, a dropped frame shifts the stamp by a whole one.
GAP_TOLERANCE = 1.5


class SourceError(ValueError):
    """A source that cannot be opened, or a frame it refuses (the message names it)."""


@dataclass
class Frame:
    """One decoded frame and where it sits in the source's time line."""

    rgb: np.ndarray  # uint8 [H, W, 3] as decoded (before Preprocess)
    index: int  # the source's frame number (a gap skips numbers)
    t: float  # time stamp, seconds from the source's start
    gap: int = 0  # frames missing between the previous frame and this one
    name: str = ""  # where it came from (file, "camera 0 frame 12"), for error messages


def check_frame(rgb: object, name: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """``rgb`` as a uint8 [H, W, 3] array, or :class:`SourceError` naming ``name`` and the value.

    ``size`` (H, W), when given, must match exactly.
    """
    a = np.asarray(rgb)
    if a.dtype != np.uint8:
        raise SourceError(f"{name}: dtype {a.dtype}, expected uint8 RGB")
    if a.ndim != 3:
        raise SourceError(f"{name}: shape {a.shape} has {a.ndim} dimensions, expected (H, W, 3)")
    if a.shape[2] != 3:
        raise SourceError(f"{name}: {a.shape[2]} channels (shape {a.shape}), expected 3 (RGB)")
    if size is not None and a.shape[:2] != tuple(size):
        raise SourceError(f"{name}: size {a.shape[0]}x{a.shape[1]}, the model takes "
                          f"{size[0]}x{size[1]} (choose --resize resize or crop)")
    return a


@dataclass(frozen=True)
class Preprocess:
    """Fit decoded frames to the model's input size (H, W), explicitly."""

    size: tuple[int, int]
    mode: str = "resize"

    def __post_init__(self) -> None:
        if self.mode not in RESIZE_MODES:
            raise SourceError(f"resize mode {self.mode!r}: choose one of {', '.join(RESIZE_MODES)}")
        if len(self.size) != 2 or min(self.size) < 1:
            raise SourceError(f"model input size {self.size!r}: expected (H, W) >= 1")

    def __call__(self, frame: Frame) -> np.ndarray:
        a = check_frame(frame.rgb, frame.name or f"frame {frame.index}")
        h, w = self.size
        if self.mode == "none" or a.shape[:2] == (h, w):
            return check_frame(a, frame.name or f"frame {frame.index}", self.size)
        if self.mode == "crop":
            # largest centred window with the model's aspect ratio
            fh, fw = a.shape[:2]
            scale = min(fh / h, fw / w)
            ch, cw = max(1, round(h * scale)), max(1, round(w * scale))
            y0, x0 = (fh - ch) // 2, (fw - cw) // 2
            a = a[y0:y0 + ch, x0:x0 + cw]
        from PIL import Image

        return np.asarray(Image.fromarray(np.ascontiguousarray(a)).resize((w, h), Image.BILINEAR))


def _with_gaps(frames: Iterator[tuple[int, float, np.ndarray, str]], fps: float) -> Iterator[Frame]:
    """Attach ``gap``: from time stamps when ``fps`` > 0 (a frame more than GAP_TOLERANCE
    periods after the previous one), else from frame numbers that skip (frame folders)."""
    prev_index: int | None = None
    prev_t = 0.0
    for index, t, rgb, name in frames:
        gap = 0
        if prev_index is not None:
            if fps > 0:
                periods = (t - prev_t) * fps
                gap = max(0, int(round(periods)) - 1) if periods > GAP_TOLERANCE else 0
            else:
                gap = max(0, index - prev_index - 1)
        yield Frame(rgb=rgb, index=index, t=t, gap=gap, name=name)
        prev_index, prev_t = index, t


class FrameSource:
    """Base: iterate to get :class:`Frame` objects; ``fps`` is the nominal rate."""

    description = "source"
    fps: float = 10.0

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the device or file (cameras); sources that hold nothing do nothing."""


class ArraySource(FrameSource):
    """Frames already in memory (the synthetic clip, a notebook's array, tests).

    ``timestamps`` (seconds) default to ``index / fps``; a stamp further than one period
    from the previous one marks dropped frames, as a camera would.
    """

    def __init__(self, frames: np.ndarray | Sequence[np.ndarray], fps: float = 10.0,
                 timestamps: Sequence[float] | None = None, description: str = "array") -> None:
        self.frames = frames
        self.fps = float(fps)
        if timestamps is not None and len(timestamps) != len(frames):
            raise SourceError(f"{description}: {len(timestamps)} time stamps for {len(frames)} frames")
        self.timestamps = timestamps
        self.description = description

    def __len__(self) -> int:
        return len(self.frames)

    def __iter__(self) -> Iterator[Frame]:
        def raw() -> Iterator[tuple[int, float, np.ndarray, str]]:
            for i, fr in enumerate(self.frames):
                t = float(self.timestamps[i]) if self.timestamps is not None else i / self.fps
                # the frame number follows the time stamp so a late frame also skips numbers
                index = int(round(t * self.fps))
                yield index, t, check_frame(fr, f"{self.description} frame {i}"), f"{self.description} frame {i}"

        return _with_gaps(raw(), self.fps)


class SyntheticSource(ArraySource):
    """A clip from the synthetic renderer (model/data/synthetic.py), or several clips
    concatenated (a hard scene cut at each join)."""

    def __init__(self, seeds: Sequence[int], frames: int, size: tuple[int, int],
                 fps: float = 10.0, **render: object) -> None:
        from deltamtl.model.data.synthetic import render_clip

        clips = [render_clip(int(s), int(frames), size[0], size[1], **render) for s in seeds]
        self.clips = clips
        self.cuts = [i * int(frames) for i in range(1, len(clips))]
        super().__init__(np.concatenate([c.rgb for c in clips]), fps=fps,
                         description=f"synthetic seeds {list(seeds)}")


def _trailing_number(p: Path) -> int | None:
    m = re.search(r"(\d+)\D*$", p.stem)
    return int(m.group(1)) if m else None


class FolderSource(FrameSource):
    """Image files of a folder in natural order. When every name ends in a number
    (frame_0007.png) that number is the frame index, so missing numbers are dropped frames."""

    def __init__(self, folder: str | Path, fps: float = 10.0) -> None:
        self.folder = Path(folder)
        files = [p for p in self.folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS]
        if not files:
            raise SourceError(f"frame folder {self.folder}: no image files ({', '.join(IMAGE_EXTS)})")
        numbers = [_trailing_number(p) for p in files]
        self.numbered = all(n is not None for n in numbers) and len(set(numbers)) == len(numbers)
        key = (lambda p: _trailing_number(p)) if self.numbered else (lambda p: p.name)
        self.files = sorted(files, key=key)
        self.fps = float(fps)
        self.description = f"frame folder {self.folder}"

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self) -> Iterator[Frame]:
        def raw() -> Iterator[tuple[int, float, np.ndarray, str]]:
            first = _trailing_number(self.files[0]) if self.numbered else 0
            for i, f in enumerate(self.files):
                index = (_trailing_number(f) - first) if self.numbered else i
                yield index, index / self.fps, check_frame(read_image_rgb(f, str(f)), str(f)), str(f)

        return _with_gaps(raw(), 0.0)  # numbers carry the gaps; no real time stamps


class VideoFileSource(FrameSource):
    """A video file (MP4, AVI, ... through imageio-ffmpeg) or an animated GIF (imageio's
    pillow plugin). Time stamps come from the container (GIF frame durations) when present."""

    def __init__(self, path: str | Path, fps: float | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise SourceError(f"video {self.path}: no such file")
        self.description = f"video {self.path}"
        self.gif = self.path.suffix.lower() == ".gif"
        self.fps = float(fps) if fps else self._probe_fps()

    def _probe_fps(self) -> float:
        import imageio.v3 as iio

        try:
            meta = iio.immeta(self.path, **({} if self.gif else {"plugin": "FFMPEG"}))
        except Exception as e:  # noqa: BLE001 -- any decoder failure is reported the same way
            raise SourceError(f"video {self.path}: cannot read ({type(e).__name__}: {e}); video "
                              "containers need imageio-ffmpeg (a dependency of deltamtl)") from e
        if self.gif:
            ms = float(meta.get("duration") or 100.0)
            return 1000.0 / ms if ms > 0 else 10.0
        return float(meta.get("fps") or 10.0)

    def __iter__(self) -> Iterator[Frame]:
        import imageio.v3 as iio

        def raw() -> Iterator[tuple[int, float, np.ndarray, str]]:
            kwargs = {"plugin": "pillow", "mode": "RGB"} if self.gif else {"plugin": "FFMPEG"}
            t = 0.0
            try:
                for i, fr in enumerate(iio.imiter(self.path, **kwargs)):
                    name = f"{self.path} frame {i}"
                    yield int(round(t * self.fps)), t, check_frame(fr, name), name
                    t += 1.0 / self.fps
            except SourceError:
                raise
            except Exception as e:  # noqa: BLE001 -- decoder errors of any plugin
                raise SourceError(f"video {self.path}: cannot decode ({type(e).__name__}: {e})") from e

        return _with_gaps(raw(), self.fps)


class CameraSource(FrameSource):
    """A camera through OpenCV (``pip install opencv-python-headless``); time stamps are
    the host's monotonic clock, so frames the camera or the host dropped show as gaps."""

    def __init__(self, device: int = 0, fps: float | None = None, max_frames: int | None = None) -> None:
        try:
            import cv2
        except ImportError as e:
            raise SourceError("camera source: OpenCV is not installed (pip install "
                              "opencv-python-headless), or stream a file, folder or synthetic clip") from e
        self.cv2 = cv2
        self.cap = cv2.VideoCapture(int(device))
        if not self.cap.isOpened():
            raise SourceError(f"camera {device}: cannot open the device")
        self.device = int(device)
        self.fps = float(fps or self.cap.get(cv2.CAP_PROP_FPS) or 30.0)
        self.max_frames = max_frames
        self.description = f"camera {device}"

    def __iter__(self) -> Iterator[Frame]:
        def raw() -> Iterator[tuple[int, float, np.ndarray, str]]:
            t0 = time.monotonic()
            i = 0
            while self.max_frames is None or i < self.max_frames:
                ok, bgr = self.cap.read()
                if not ok:
                    return
                t = time.monotonic() - t0
                name = f"camera {self.device} frame {i}"
                yield int(round(t * self.fps)), t, check_frame(bgr[..., ::-1].copy(), name), name
                i += 1

        return _with_gaps(raw(), self.fps)

    def close(self) -> None:
        self.cap.release()


def open_source(spec: str, size: tuple[int, int], frames: int | None = None,
                fps: float | None = None) -> FrameSource:
    """The source a command-line ``--source`` names.

    * ``synthetic:SEED[,SEED...]`` a rendered clip (several seeds: concatenated, a scene cut
      at each join) of ``frames`` frames each (default 32) at the model's size;
    * ``camera:N`` OpenCV camera N;
    * a folder of images, a ``.gif``, or any video file imageio-ffmpeg reads.
    """
    if spec.startswith("synthetic"):
        _, _, rest = spec.partition(":")
        try:
            seeds = [int(s) for s in rest.split(",")] if rest else [0]
        except ValueError:
            raise SourceError(f"source {spec!r}: expected synthetic:SEED[,SEED...] with integer seeds") from None
        return SyntheticSource(seeds, frames or 32, size, fps=fps or 10.0)
    if spec.startswith("camera"):
        _, _, dev = spec.partition(":")
        if dev and not dev.isdigit():
            raise SourceError(f"source {spec!r}: expected camera:N with a device number")
        return CameraSource(int(dev or 0), fps=fps, max_frames=frames)
    p = Path(spec)
    if p.is_dir():
        return FolderSource(p, fps=fps or 10.0)
    if p.is_file():
        return VideoFileSource(p, fps=fps)
    raise SourceError(f"source {spec!r}: not a folder, a file, synthetic:SEED or camera:N")
