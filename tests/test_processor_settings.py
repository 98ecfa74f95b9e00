"""One settings model per processor: the constructor and the session file share its limits."""

from __future__ import annotations

import inspect
import pathlib
from typing import Any

import pytest
from pydantic import BaseModel

from syncstream import Camera, ConfigError, StreamGroup
from syncstream.processors import Recorder, SpeakerDetector, Wall, WebView
from syncstream.processors.recorder import RecorderOptions
from syncstream.processors.speaker import SpeakerOptions
from syncstream.processors.wall import WallOptions
from syncstream.processors.web import WebViewOptions
from syncstream.senders import free_udp_port
from syncstream.session import Session
from syncstream.session_config import (
    RecordSettings,
    SpeakerSettings,
    WallSettings,
    WebSettings,
    load_session_config,
)

PROCESSORS: list[tuple[Any, type[BaseModel], type[BaseModel]]] = [
    (Wall, WallOptions, WallSettings),
    (SpeakerDetector, SpeakerOptions, SpeakerSettings),
    (Recorder, RecorderOptions, RecordSettings),
    (WebView, WebViewOptions, WebSettings),
]


@pytest.mark.parametrize(("processor", "options", "table"), PROCESSORS)
def test_a_processors_keywords_are_its_options_and_its_session_table(
    processor: Any, options: type[BaseModel], table: type[BaseModel]
) -> None:
    parameters = inspect.signature(processor).parameters
    for name, field in options.model_fields.items():
        assert name in parameters, name
        assert field.default == parameters[name].default, name
    assert issubclass(table, options)  # the session file's table is the same model
    extra = set(table.model_fields) - set(options.model_fields)
    assert extra <= {"enabled", "directory"}, extra


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: Wall(["a"], tile_size=(5000, 5000)), "tile_size"),
        (lambda: Wall(["a"], gap=65), "gap"),
        (lambda: Wall(["a"], columns=17), "columns"),
        (lambda: SpeakerDetector(view_size=(8, 8)), "view_size"),
        (lambda: SpeakerDetector(role="Main stream"), "role"),
        (lambda: Recorder("unused", flush_interval=-1.0), "flush_interval"),
        (lambda: WebView({"a": Wall(["a"])}, max_clients=2000), "max_clients"),
    ],
)
def test_values_beyond_a_files_limits_are_refused_in_code(make: Any, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        make()


@pytest.mark.parametrize(
    ("table", "field"),
    [
        ("[wall]\ntile_size = [5000, 5000]\n", "tile_size"),
        ("[speaker]\nview_size = [8, 8]\n", "view_size"),
        ("[speaker]\non_threshold = 0.1\noff_threshold = 0.2\n", "off_threshold"),
        ('[record]\ndirectory = "rec"\nqueue_size = 0\n', "queue_size"),
    ],
)
def test_values_refused_in_code_are_refused_in_a_file(
    table: str, field: str, tmp_path: pathlib.Path
) -> None:
    path = tmp_path / "session.toml"
    path.write_text(f'[[cameras]]\nname = "a"\nurl = "udp://127.0.0.1:9001"\n{table}')
    with pytest.raises(ConfigError, match=field):
        load_session_config(path)


def test_a_session_whose_processors_refuse_fails_before_any_camera_starts(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "session.toml"
    cameras = "".join(
        f'[[cameras]]\nname = "{name}"\nurl = "udp://127.0.0.1:{free_udp_port()}"\n'
        for name in ("a", "b")
    )
    path.write_text(cameras + "[wall]\ncolumns = 1\nrows = 1\n")  # one tile, two cameras
    session = Session.from_file(path)
    with pytest.raises(ConfigError, match="cannot hold 2 cameras"):
        session.start()
    assert session.group.streams == {}  # no camera was started
    session.close()


def test_the_built_in_processors_have_short_consistent_names(tmp_path: pathlib.Path) -> None:
    wall = Wall()
    camera = Camera(name="a", url=f"udp://127.0.0.1:{free_udp_port()}")
    group = StreamGroup([camera])
    try:
        for processor in (wall, SpeakerDetector(), Recorder(tmp_path / "rec"), WebView(wall)):
            group.add_processor(processor)
        group.add_processor(Wall(name="lobby"))
        group.add_processor(Wall())  # a second of a name gets a number
        names = list(group.stats.processors)
    finally:
        group.close()
    assert names == ["wall", "speaker", "recorder", "web", "lobby", "wall#2"]
