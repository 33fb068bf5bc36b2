"""Frame sources: refusals name the frame and the value; resizing is explicit; time
stamps are kept and gaps (dropped frames) found; GIF and MP4 files round-trip."""

from __future__ import annotations

import importlib.util

import imageio.v3 as iio
import numpy as np
import pytest
from deltamtl.host.sources import (
    ArraySource,
    CameraSource,
    FolderSource,
    Frame,
    Preprocess,
    SourceError,
    VideoFileSource,
    check_frame,
    open_source,
)

from tests.helpers.streaming import random_walk


@pytest.mark.parametrize("frame, match", [
    (np.zeros((8, 8, 3), np.float32), "clip frame 3: dtype float32"),
    (np.zeros((8, 8, 4), np.uint8), "clip frame 3: 4 channels"),
    (np.zeros((8, 8), np.uint8), r"clip frame 3: shape \(8, 8\) has 2 dimensions"),
    (np.zeros((8, 9, 3), np.uint8), "clip frame 3: size 8x9, the model takes 8x8"),
])
def test_bad_frames_are_refused_by_name_and_value(frame: np.ndarray, match: str) -> None:
    with pytest.raises(SourceError, match=match):
        check_frame(frame, "clip frame 3", (8, 8))


def test_preprocess_is_explicit() -> None:
    wide = np.zeros((20, 40, 3), np.uint8)
    wide[:, 10:30] = 200  # the centre square: what a centre crop keeps
    fr = Frame(wide, 0, 0.0, name="wide.png")
    assert Preprocess((16, 16), "resize")(fr).shape == (16, 16, 3)
    cropped = Preprocess((16, 16), "crop")(fr)
    assert cropped.shape == (16, 16, 3) and cropped.min() == 200
    with pytest.raises(SourceError, match="wide.png: size 20x40, the model takes 16x16"):
        Preprocess((16, 16), "none")(fr)
    with pytest.raises(SourceError, match="resize mode 'stretch'"):
        Preprocess((16, 16), "stretch")


def test_time_stamps_kept_and_gaps_found() -> None:
    frames = random_walk(5)
    stamps = [0.0, 0.1, 0.2, 0.5, 0.6]  # frames at 0.3 and 0.4 s were dropped
    got = list(ArraySource(frames, fps=10, timestamps=stamps))
    assert [f.t for f in got] == stamps
    assert [f.gap for f in got] == [0, 0, 0, 2, 0]
    jitter = [0.0, 0.149, 0.251, 0.31, 0.4]  # a fraction of a period is not a drop
    assert [f.gap for f in ArraySource(frames, fps=10, timestamps=jitter)] == [0] * 5


def test_folder_numbers_are_frame_indices(tmp_path) -> None:
    frames = random_walk(4)
    for n, fr in zip((1, 2, 5, 6), frames, strict=True):
        iio.imwrite(tmp_path / f"frame_{n:04d}.png", fr)
    got = list(FolderSource(tmp_path))
    assert [f.index for f in got] == [0, 1, 4, 5]
    assert [f.gap for f in got] == [0, 0, 2, 0]
    assert np.array_equal(got[2].rgb, frames[2])
    (tmp_path / "frame_0009.png").write_bytes(b"not a png")
    with pytest.raises(Exception, match="frame_0009.png"):
        list(FolderSource(tmp_path))


def test_gif_and_mp4_files(tmp_path) -> None:
    frames = random_walk(6, size=32)
    iio.imwrite(tmp_path / "clip.gif", frames, extension=".gif", plugin="pillow", duration=50, loop=0)
    gif = VideoFileSource(tmp_path / "clip.gif")
    got = list(gif)
    assert gif.fps == pytest.approx(20.0)
    assert len(got) == 6 and got[0].rgb.shape == (32, 32, 3)
    assert [f.t for f in got] == pytest.approx([i / 20.0 for i in range(6)])
    iio.imwrite(tmp_path / "clip.mp4", frames, plugin="FFMPEG", fps=12, codec="libx264",
                macro_block_size=1, ffmpeg_log_level="error")
    mp4 = open_source(str(tmp_path / "clip.mp4"), (16, 16))
    got = list(mp4)
    assert mp4.fps == pytest.approx(12.0) and len(got) == 6 and all(f.gap == 0 for f in got)
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(SourceError, match="broken.mp4"):
        list(VideoFileSource(tmp_path / "broken.mp4"))


def test_bad_source_specs_are_named(tmp_path) -> None:
    with pytest.raises(SourceError, match="'nowhere.xyz': not a folder, a file"):
        open_source("nowhere.xyz", (16, 16))
    with pytest.raises(SourceError, match="synthetic:SEED"):
        open_source("synthetic:a", (16, 16))
    with pytest.raises(SourceError, match="no image files"):
        FolderSource(tmp_path)


@pytest.mark.skipif(importlib.util.find_spec("cv2") is not None, reason="OpenCV installed")
def test_camera_without_opencv_says_so() -> None:
    with pytest.raises(SourceError, match="OpenCV is not installed"):
        CameraSource(0)
