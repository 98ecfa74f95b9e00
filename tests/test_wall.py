"""Composition: grid shapes, letterboxing, NO SIGNAL and STALE tiles, a fixed picture size."""

from __future__ import annotations

import argparse
import pathlib
import time

import cv2
import numpy as np
import pytest

from syncstream import Camera, ConfigError, SenderConfig, StreamGroup, SyncStreamError
from syncstream.cli.args import image_path_arg
from syncstream.frames import BGRImage, Frame, FrameSet
from syncstream.processors.output import ImageOutput
from syncstream.processors.overlay import draw_face_boxes, draw_latency, put_label
from syncstream.processors.wall import SideBySide, Wall, grid_shape, letterbox
from syncstream.senders import free_udp_port

NOW = 1_700_000_000.0


def _picture(value: int, size: tuple[int, int] = (320, 240)) -> BGRImage:
    image = np.full((size[1], size[0], 3), value, np.uint8)
    return image


def _frame(name: str, image: BGRImage, *, capture: float | None, seq: int = 0) -> Frame:
    return Frame(
        source=name,
        seq=seq,
        width=image.shape[1],
        height=image.shape[0],
        arrival_time=NOW,
        arrival_mono=1.0,
        capture_time=capture,
        image=image,
    )


def _set(frames: dict[str, Frame], missing: tuple[str, ...] = (), seq: int = 0) -> FrameSet:
    clock = "sender" if all(f.capture_time is not None for f in frames.values()) else "arrival"
    return FrameSet(
        seq=seq,
        frames=frames,
        missing=missing,
        skew=0.001,
        time=NOW - 0.1,
        clock=clock,
        emitted_time=NOW,
        emitted_mono=1.0,
    )


def _tile(image: BGRImage, wall: Wall, camera: str) -> BGRImage:
    x, y, w, h = wall.tile_rect(camera)
    return image[y : y + h, x : x + w]


@pytest.mark.parametrize(
    ("count", "shape"),
    [(1, (1, 1)), (2, (1, 2)), (3, (2, 2)), (4, (2, 2)), (5, (2, 3)), (9, (3, 3)), (16, (4, 4))],
)
def test_grid_is_as_square_as_possible(count: int, shape: tuple[int, int]) -> None:
    assert grid_shape(count) == shape


def test_grid_honours_columns_or_rows_and_refuses_too_small_grids() -> None:
    assert grid_shape(5, columns=5) == (1, 5)
    assert grid_shape(5, rows=1) == (1, 5)
    assert grid_shape(7, columns=2) == (4, 2)
    with pytest.raises(ConfigError, match="cannot hold"):
        grid_shape(7, rows=2, columns=3)
    with pytest.raises(ConfigError, match="at least one"):
        grid_shape(0)


def test_letterbox_keeps_aspect_and_centres_on_bars() -> None:
    out = np.zeros((270, 480, 3), np.uint8)
    rect = letterbox(_picture(200, (320, 240)), out)
    assert rect == (60, 0, 360, 270)  # 4:3 in 16:9: bars left and right
    assert out[:, :60].max() == 0 and out[:, 420:].max() == 0
    assert out[:, 60:420].min() == 200
    tall = np.zeros((100, 100, 3), np.uint8)
    assert letterbox(_picture(9, (200, 50)), tall) == (0, 37, 100, 25)


def test_wall_size_is_fixed_from_the_cameras_and_tile_size() -> None:
    wall = Wall(["a", "b", "c"], tile_size=(320, 180), gap=4)
    assert wall.grid == (2, 2)
    assert wall.size == (2 * 320 + 4, 2 * 180 + 4 + wall.bar_height)
    assert wall.tile_rect("c") == (0, 184, 320, 180)
    no_bar = Wall(["a"], tile_size=(320, 180), status_bar=False)
    assert no_bar.size == (320, 180)


def test_each_camera_lands_in_its_tile_whatever_its_resolution() -> None:
    wall = Wall(["a", "b", "c", "d"], tile_size=(320, 240), labels=False)
    frames = {
        "a": _frame("a", _picture(50, (320, 240)), capture=NOW - 0.1),
        "b": _frame("b", _picture(100, (1280, 720)), capture=NOW - 0.1),
        "c": _frame("c", _picture(150, (160, 120)), capture=NOW - 0.1),
        "d": _frame("d", _picture(250, (240, 320)), capture=NOW - 0.1),
    }
    image = wall.compose(_set(frames))
    assert image.shape == (wall.size[1], wall.size[0], 3)
    for name, value in (("a", 50), ("b", 100), ("c", 150), ("d", 250)):
        tile = _tile(image, wall, name)
        assert tile[tile.shape[0] // 2, tile.shape[1] // 2].tolist() == [value] * 3
    b = _tile(image, wall, "b")  # 16:9 in 4:3: bars above and below
    assert b[0].max() == 0 and b[-1].max() == 0
    d = _tile(image, wall, "d")  # portrait: bars left and right
    assert d[:, 0].max() == 0 and d[:, -1].max() == 0


def test_missing_camera_gets_a_no_signal_tile_and_the_size_does_not_change() -> None:
    wall = Wall(["a", "b"], tile_size=(320, 240))
    full = wall.compose(_set({n: _frame(n, _picture(200), capture=NOW - 0.1) for n in ("a", "b")}))
    partial = wall.compose(
        _set({"a": _frame("a", _picture(200), capture=NOW - 0.1)}, missing=("b",), seq=1)
    )
    assert partial.shape == full.shape
    tile = _tile(partial, wall, "b")
    # the NO SIGNAL tile is dark grey with red text, not the camera's picture
    assert np.median(tile) == 48
    red = (tile[..., 2] > 150) & (tile[..., 0] < 100)
    assert red.sum() > 200
    assert np.median(_tile(partial, wall, "a")) == 200


def test_old_frames_are_marked_stale_and_fresh_ones_are_not() -> None:
    wall = Wall(["fresh", "old"], tile_size=(320, 240), stale_after=0.5)
    frames = {
        "fresh": _frame("fresh", _picture(120), capture=NOW - 0.1),
        "old": _frame("old", _picture(120), capture=NOW - 2.0),
    }
    image = wall.compose(_set(frames))

    def amber_border(tile: BGRImage) -> bool:
        edge = tile[:, 0]
        return bool(np.all(edge[:, 1] > 150) and np.all(edge[:, 2] > 200))

    assert amber_border(_tile(image, wall, "old"))
    assert not amber_border(_tile(image, wall, "fresh"))


def test_labels_are_drawn_on_tiles() -> None:
    plain = Wall(["a"], tile_size=(320, 240), labels=False, status_bar=False)
    labelled = Wall(["a"], tile_size=(320, 240), labels=True, status_bar=False)
    fs = _set({"a": _frame("a", _picture(128), capture=NOW - 0.1)})
    assert np.array_equal(plain.compose(fs), _picture(128))
    diff = cv2.absdiff(labelled.compose(fs), _picture(128)).max(axis=2)
    corners = [diff[:30, :60], diff[-30:, :100], diff[-30:, -80:]]  # name, clock, latency
    assert all(c.max() > 0 for c in corners)
    assert diff[100:140, 100:220].max() == 0  # the middle of the picture is untouched


def test_cameras_come_from_the_first_set_when_not_given() -> None:
    wall = Wall(tile_size=(160, 120))
    fs = _set({"x": _frame("x", _picture(1), capture=NOW)}, missing=("y",))
    wall(fs)
    assert wall.cameras == ("x", "y")
    latest = wall.output.latest()
    assert latest is not None and latest.frameset_seq == fs.seq
    assert latest.image.shape == (wall.size[1], wall.size[0], 3)


def test_side_by_side_is_one_row() -> None:
    side = SideBySide(["a", "b", "c"], tile_size=(160, 120), gap=0, status_bar=False)
    assert side.grid == (1, 3) and side.size == (480, 120)


def test_bad_wall_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="tile_size"):
        Wall(["a"], tile_size=(8, 8))
    with pytest.raises(ConfigError, match="unique"):
        Wall(["a", "a"])
    with pytest.raises(ConfigError, match="stale_after"):
        Wall(["a"], stale_after=0)


def test_overlay_helpers_draw_in_place() -> None:
    image = _picture(0, (200, 100))
    assert put_label(image, "hi") is image and image.max() > 0
    boxed = draw_face_boxes(
        _picture(0, (200, 100)), [(10, 10, 50, 50), (100, 10, 50, 50)], active=[False, True]
    )
    assert boxed[10, 30].tolist() == [255, 255, 255]  # white outline
    assert boxed[10, 120, 1] > 200 and boxed[10, 120, 0] < 100  # green: the active face
    assert draw_latency(_picture(0, (200, 100)), None).max() > 0


def test_output_readers_get_the_newest_picture() -> None:
    output = ImageOutput("x")
    assert output.latest() is None
    output.publish(_picture(1))
    second = output.publish(_picture(2))
    assert output.wait_newer(-1, timeout=0.1) is second
    assert output.wait_newer(0, timeout=0.1) is second
    with pytest.raises(TimeoutError):
        output.wait_newer(second.seq, timeout=0.05)
    output.close()
    with pytest.raises(RuntimeError, match="closed"):
        output.wait_newer(second.seq, timeout=1.0)


def test_wall_on_a_live_group_keeps_its_size_when_a_camera_stops() -> None:
    small = SenderConfig(size=(320, 240), fps=30.0)
    cams = [Camera(name=n, sender=small, port=free_udp_port()) for n in ("door", "hall", "yard")]
    wall = Wall(tile_size=(320, 180))
    with StreamGroup(cams, max_wait=0.3) as group:
        group.add_processor(wall)
        first = wall.output.wait_newer(-1, timeout=15.0)
        assert wall.cameras == ("door", "hall", "yard")
        group.senders["yard"].close()
        deadline = time.monotonic() + 10.0
        seen = first
        while time.monotonic() < deadline:
            seen = wall.output.wait_newer(seen.seq, timeout=5.0)
            if seen.frameset_seq >= 0 and np.median(_tile(seen.image, wall, "yard")) == 48:
                break
        stats = group.stats
    assert seen.image.shape == first.image.shape == (wall.size[1], wall.size[0], 3)
    assert np.median(_tile(seen.image, wall, "yard")) == 48  # NO SIGNAL
    door = _tile(seen.image, wall, "door")
    assert door.std() > 10  # ffmpeg's test pattern, not a blank tile
    assert stats.processors["wall"].processed > 0


def test_an_output_writes_its_newest_picture_to_a_file(tmp_path: pathlib.Path) -> None:
    output = ImageOutput("wall")
    with pytest.raises(SyncStreamError, match="no picture yet"):
        output.write(tmp_path / "early.png")
    output.publish(np.full((24, 32, 3), 90, np.uint8))
    output.publish(np.full((48, 64, 3), 200, np.uint8))
    assert output.write(tmp_path / "wall.png") == (64, 48)
    written = cv2.imread(str(tmp_path / "wall.png"))
    assert written.shape == (48, 64, 3) and int(written[0, 0, 0]) == 200  # the newest
    with pytest.raises(SyncStreamError, match="cannot write"):
        output.write(tmp_path / "missing" / "wall.png")


def test_a_picture_path_argument_needs_a_directory_and_a_known_type(
    tmp_path: pathlib.Path,
) -> None:
    assert image_path_arg(str(tmp_path / "view.png")) == str(tmp_path / "view.png")
    with pytest.raises(argparse.ArgumentTypeError, match="no directory"):
        image_path_arg(str(tmp_path / "missing" / "view.png"))
    with pytest.raises(argparse.ArgumentTypeError, match="image type"):
        image_path_arg(str(tmp_path / "view.notanimage"))
