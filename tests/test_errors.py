"""One exception tree: every wrong call across the public API is a SyncStreamError whose
message names the field, and a failed group start names every failed camera."""

from __future__ import annotations

import inspect
import pickle
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncstream import (
    AuthenticationFailed,
    Camera,
    ConfigError,
    GroupConfig,
    GroupStartError,
    PreflightFailed,
    SenderConfig,
    SSHHost,
    StreamClosed,
    StreamGroup,
    SyncStreamError,
    UnsupportedSource,
    VideoStream,
    errors,
)
from syncstream.clock import unwrap_pts_time
from syncstream.config import ReaderSettings, StreamConfig
from syncstream.errors import SourceError
from syncstream.processors.base import ProcessorWorker
from syncstream.senders import free_udp_port
from syncstream.session_config import SessionConfig
from syncstream.sources.pyav import PyAVSource
from syncstream.sync import Aligner
from syncstream.testing.sshd import SshdServer
from tests.conftest import ssh_host

URL = "udp://127.0.0.1:9"
SMALL = SenderConfig(size=(160, 120), fps=15)

# (what is called, a word the message must hold: the field, or what it is about)
WRONG_CALLS: dict[str, tuple[Callable[[], object], str]] = {
    "stream stall_timeout": (lambda: VideoStream(URL, stall_timeout=-1), "stall_timeout"),
    "stream unknown option": (lambda: VideoStream(URL, stall_timout=1), "stall_timout"),  # type: ignore[call-arg]
    "camera name with a space": (lambda: Camera(name="a b", url=URL), "name"),
    "camera without url or sender": (lambda: Camera(name="a"), "needs a url or a sender"),
    "sender fps 0": (lambda: SenderConfig(fps=0), "fps"),
    "sender odd size": (lambda: SenderConfig(size=(161, 120)), "size"),
    "sender codec": (lambda: SenderConfig(codec="h265"), "codec"),  # type: ignore[arg-type]
    "ssh hostname": (lambda: SSHHost(hostname="-oProxyCommand=x"), "hostname"),
    "ssh target": (lambda: SSHHost.from_target("a@b:notaport"), "SSH target"),
    "group config sync": (lambda: GroupConfig(sync="fastest"), "sync"),  # type: ignore[arg-type]
    "group no cameras": (lambda: StreamGroup([]), "cameras"),
    "group repeated names": (
        lambda: StreamGroup([Camera(name="a", url=URL), Camera(name="a", url="udp://:8")]),
        "unique",
    ),
    "group option": (lambda: StreamGroup([URL], max_skew=-1), "max_skew"),
    "group unknown option": (lambda: StreamGroup([URL], max_skw=1), "max_skw"),  # type: ignore[call-arg]
    "group unknown role": (lambda: StreamGroup([URL]).add_processor(print, role="sub"), "sub"),
    "aligner no cameras": (lambda: Aligner([]), "at least one camera"),
    "aligner max_skew": (lambda: Aligner(["a"], max_skew=0), "max_skew"),
    "pts period": (lambda: unwrap_pts_time(1.0, 0.0, period=0), "period"),
    "worker on_error": (lambda: ProcessorWorker(print, on_error="ignore"), "on_error"),  # type: ignore[arg-type]
    "session validated in code": (
        lambda: SessionConfig.model_validate({"cameras": [], "wall": {"gap": -1}}),
        "cameras",
    ),
}


@pytest.mark.parametrize("case", list(WRONG_CALLS))
def test_every_wrong_call_is_a_syncstream_error_naming_the_field(case: str) -> None:
    call, word = WRONG_CALLS[case]
    try:
        call()
    except SyncStreamError as exc:
        assert isinstance(exc, ValueError)  # `except ValueError` keeps working
        assert word in str(exc)
    else:
        pytest.fail(f"{case}: no error raised")


def test_a_model_error_has_a_line_per_problem_and_lists_allowed_values() -> None:
    with pytest.raises(ConfigError) as caught:
        Camera.model_validate({"name": "x", "url": URL, "rtsp_transport": "quic", "bogus": 1})
    lines = str(caught.value).split("\n")
    assert lines[0] == "invalid Camera:"
    assert len(lines) == 3
    assert any("rtsp_transport" in line and "'udp'" in line for line in lines)
    assert any("bogus: unknown field; allowed:" in line for line in lines)


def test_a_model_error_never_shows_a_secret() -> None:
    with pytest.raises(ConfigError) as caught:
        SSHHost(hostname="cam", password=12345678, passphrase=["hunter2"])  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as url_error:
        Camera(name="x", url="rtsp://user:hunter2@cam/x", stall_timeout="rtsp://u:hunter2@cam/")  # type: ignore[arg-type]
    for error in (caught.value, url_error.value):
        text = str(error)
        assert "hunter2" not in text and "12345678" not in text, text
        assert error.__suppress_context__  # pydantic's error, which repeats the input, hidden
    assert "password" in str(caught.value) and "stall_timeout" in str(url_error.value)


_POSITIVE = [name for name in ("stall_timeout", "open_timeout", "reconnect_delay", "history")]


@settings(max_examples=60, deadline=None)
@given(
    field=st.sampled_from(_POSITIVE),
    value=st.one_of(
        st.integers(max_value=0),
        st.floats(max_value=0, allow_nan=False),
        st.just(float("nan")),
        st.text(max_size=5).filter(lambda text: not text.strip().lstrip("+").isdigit()),
        st.none(),
    ),
)
def test_invalid_values_are_config_errors_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=field):
        ReaderSettings.model_validate({field: value})


# -- a group start names every failed camera -----------------------------------------------


def test_group_start_names_ssh_sender_and_reader_failures_at_once(sshd: SshdServer) -> None:
    refused = ssh_host(sshd, key_filename=str(sshd.stranger_key))  # the host refuses the key
    cameras = [
        Camera(name="good", sender=SMALL, port=free_udp_port()),
        Camera(name="refused", sender=SMALL, port=free_udp_port(), host=refused),
        Camera(name="odd", url="gopher://camera/stream"),  # its reader cannot start
        Camera(
            name="no-ffmpeg",
            sender=SMALL.model_copy(update={"ffmpeg": "ffmpeg-absent"}),
            port=free_udp_port(),
        ),
    ]
    group = StreamGroup(cameras)
    with pytest.raises(GroupStartError) as caught:
        group.start()
    failures = caught.value.failures
    assert list(failures) == ["refused", "odd", "no-ffmpeg"]  # in the cameras' order
    assert isinstance(failures["refused"], AuthenticationFailed)
    assert isinstance(failures["odd"], UnsupportedSource)
    assert isinstance(failures["no-ffmpeg"], PreflightFailed)
    for name in failures:
        assert f"  {name}: " in str(caught.value)
    assert group.senders == {}  # the good camera's sender was stopped again
    with pytest.raises(StreamClosed):
        group.start()


def test_ffmpeg_refusing_a_file_is_a_source_error_naming_the_stream(tmp_path: Any) -> None:
    path = tmp_path / "noise.ts"
    path.write_bytes(b"no video in here\n" * 4096)
    source = PyAVSource(StreamConfig(url=str(path), name="noise"), str(path))
    with pytest.raises(SourceError, match=r"^noise: cannot open") as caught:
        source.open()
    assert isinstance(caught.value, SyncStreamError)
    assert caught.value.__cause__ is not None  # FFmpeg's own error, chained


# -- every error pickles (Ray sends them between processes) ----------------------------

ERRORS = sorted(
    (c for c in vars(errors).values() if inspect.isclass(c) and issubclass(c, SyncStreamError)),
    key=lambda c: c.__name__,
)
# the errors whose __init__ takes more than a message, and how to build one
BUILT: dict[type[SyncStreamError], Callable[[], SyncStreamError]] = {
    errors.SenderError: lambda: errors.SenderError(
        "ffmpeg exited", host="cam-host", returncode=1, stderr_tail=["no such file", "bye"]
    ),
    errors.PreflightFailed: lambda: errors.PreflightFailed(
        "no ffmpeg", host="cam-host", returncode=127, stderr_tail=["not found"]
    ),
    errors.GroupStartError: lambda: errors.GroupStartError(
        {
            "a": errors.PreflightFailed("no ffmpeg", host="h", stderr_tail=["x"]),
            "b": errors.UnsupportedSource("gopher://camera"),
        }
    ),
    errors.ProcessorError: lambda: errors.ProcessorError("wall failed", processor="wall"),
}


def _plain(value: Any) -> Any:
    """``value`` with each error as its type, args and attributes: comparable after a copy."""
    if isinstance(value, BaseException):
        return (type(value), value.args, _plain(vars(value)))
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__name__)
def test_every_error_pickles_with_its_message_and_attributes(cls: type[SyncStreamError]) -> None:
    own = [c for c in cls.__mro__ if c.__module__ == errors.__name__]
    if any("__init__" in vars(c) for c in own):  # its own __init__: BUILT says how to call it
        assert cls in BUILT, f"{cls.__name__} takes other arguments: add it to BUILT"
    error = BUILT[cls]() if cls in BUILT else cls(f"{cls.__name__}: something went wrong")
    error.add_note("while testing")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls
    assert str(copy) == str(error) and copy.args == error.args
    assert _plain(vars(copy)) == _plain(vars(error)) and copy.__notes__ == ["while testing"]
    if cls in BUILT:
        assert vars(error).keys() - {"__notes__"}  # attributes besides the message: checked
