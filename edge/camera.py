"""Live classification from a camera: a Raspberry Pi camera (picamera2) or any OpenCV video device.

Frame sources are plain iterators of RGB uint8 arrays, so :func:`run_camera` can be driven by a test's
generator as well as by :func:`camera_frames`.

    >>> classifier = Classifier(DEFAULT_BUNDLE)
    >>> run_camera(classifier, camera_frames(device=0), interval=1.0)   # Ctrl-C to stop
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from edge.classifier import Classifier, Prediction
from edge.errors import SkinlesionError

log = logging.getLogger(__name__)

FRAME_SIZE = (640, 480)  # (w, h): enough for a 224 px centre crop, cheap to capture on a Pi
WINDOW = "skinlesion"


def camera_frames(device: int = 0, size: tuple[int, int] = FRAME_SIZE) -> Iterator[np.ndarray]:
    """RGB frames from picamera2 when it is installed (Raspberry Pi camera), else OpenCV ``device``.

    Raises:
        SkinlesionError: Neither picamera2 nor OpenCV is installed, or the device cannot be opened.
    """
    try:
        import picamera2  # noqa: F401, PLC0415 - optional, only on Raspberry Pi OS
    except ImportError:
        return opencv_frames(device, size)
    return picamera2_frames(size)


def picamera2_frames(size: tuple[int, int] = FRAME_SIZE) -> Iterator[np.ndarray]:
    """RGB frames from the Raspberry Pi camera; the camera is released when the iterator is closed."""
    from picamera2 import Picamera2  # noqa: PLC0415 - optional dependency

    camera = Picamera2()
    # picamera2's "BGR888" is [R, G, B] in memory (its names follow DRM's little-endian convention).
    camera.configure(camera.create_preview_configuration(main={"size": size, "format": "BGR888"}))
    camera.start()
    try:
        while True:
            yield camera.capture_array()
    finally:
        camera.stop()
        camera.close()


def opencv_frames(device: int = 0, size: tuple[int, int] = FRAME_SIZE) -> Iterator[np.ndarray]:
    """RGB frames from an OpenCV video device; the device is released when the iterator is closed."""
    try:
        import cv2  # noqa: PLC0415 - optional dependency
    except ImportError as error:
        raise SkinlesionError(
            "no camera library: install picamera2 (Raspberry Pi OS: sudo apt install "
            "python3-picamera2) or OpenCV (pip install opencv-python-headless)"
        ) from error
    capture = cv2.VideoCapture(device)
    if not capture.isOpened():
        raise SkinlesionError(
            f"cannot open camera device {device}; check that it is connected and not in "
            "use (ls /dev/video*), or pass --device N"
        )
    capture.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
    capture.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
    capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # classify the newest frame, not one queued seconds ago
    return _opencv_iterator(cv2, capture, device)


def run_camera(
    classifier: Classifier,
    frames: Iterable[np.ndarray],
    *,
    interval: float = 1.0,
    limit: int | None = None,
    tta: bool = False,
    show: bool = False,
    out: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Classifies frames and prints one line per frame until the source ends, ``limit`` or Ctrl-C.

    Args:
        classifier: The classifier to run.
        frames: RGB uint8 HxWx3 arrays.
        interval: Least seconds between two classified frames (frames are pulled only when needed).
        limit: Stop after this many frames (None: run until the source ends or Ctrl-C).
        tta: Test-time augmentation per frame.
        show: Show frames with the prediction drawn on them in an OpenCV window when one can open.
        out: Where result lines go.
        sleep: Injected for tests.

    Returns:
        0: Ctrl-C, the end of the source and the frame limit all count as a clean exit.
    """
    iterator = iter(frames)
    out(
        f"model {classifier.model_path} ({classifier.variant or 'bare file'}) on "
        f"{classifier.interpreter_name}; Ctrl-C to stop"
    )
    window = _open_window() if show else None
    count = 0
    try:
        while limit is None or count < limit:
            started = time.monotonic()
            try:
                frame = next(iterator)
            except StopIteration:
                break
            count += 1
            prediction = classifier.classify(frame, tta=tta)
            out(format_frame(count, prediction))
            if window is not None and not window(frame, prediction):
                break
            remaining = interval - (time.monotonic() - started)
            if remaining > 0 and (limit is None or count < limit):
                sleep(remaining)
    except KeyboardInterrupt:
        out(f"stopped after {count} frames")
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()  # releases the camera inside the generator's finally
        if window is not None:
            _close_windows()
    return 0


def format_frame(index: int, prediction: Prediction) -> str:
    """One result line: frame number, top class, malignant probability, abstain reason."""
    top = prediction.top
    line = f"frame {index}: {top.display_name} ({top.label}) {top.score:.0%}"
    if prediction.malignant_probability is not None:
        line += f"  malignant {prediction.malignant_probability:.0%}"
    if prediction.abstained:
        line += f"  [not sure: {prediction.abstain_reason}]"
    return line


def _opencv_iterator(cv2, capture, device: int) -> Iterator[np.ndarray]:  # noqa: ANN001 - cv2 is optional
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                raise SkinlesionError(f"camera device {device} stopped delivering frames")
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


def _open_window() -> Callable[[np.ndarray, Prediction], bool] | None:
    """A function drawing a frame with its prediction (False when the user pressed q), or None."""
    try:
        import cv2  # noqa: PLC0415 - optional dependency
    except ImportError:
        log.warning("--show needs OpenCV (pip install opencv-python); printing results only")
        return None
    has_display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    if sys.platform.startswith("linux") and not has_display:
        log.warning("--show: no display (DISPLAY is not set); printing results only")
        return None

    def draw(frame: np.ndarray, prediction: Prediction) -> bool:
        image = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
        top = prediction.top
        text = "not sure" if prediction.abstained else f"{top.display_name} {top.score:.0%}"
        cv2.putText(image, text, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2, cv2.LINE_AA)
        cv2.imshow(WINDOW, image)
        return (cv2.waitKey(1) & 0xFF) != ord("q")

    return draw


def _close_windows() -> None:
    import cv2  # noqa: PLC0415 - only reached when a window was opened

    cv2.destroyAllWindows()
