"""Encoded packets that MPEG-TS carries unchanged: which streams can be copied, and the
parameter sets a copied keyframe needs so that each segment decodes on its own."""

from __future__ import annotations

from ...sources.base import EncodedPacket

__all__ = ["COPYABLE_CODECS", "can_copy", "with_parameter_sets"]

#: Codecs whose packets go into MPEG-TS unchanged (H.264 and HEVC in Annex B form).
COPYABLE_CODECS = frozenset({"h264", "hevc", "mpeg2video", "mpeg1video"})
_START_CODES = (b"\0\0\1", b"\0\0\0\1")
#: NAL unit type of a sequence parameter set: H.264, HEVC.
_SPS_TYPE = {"h264": 7, "hevc": 33}


def can_copy(packet: EncodedPacket) -> bool:
    """True when ``packet``'s stream can go into MPEG-TS unchanged.

    H.264 and HEVC must be in Annex B form (start codes, as MPEG-TS and RTSP deliver
    them); MP4 and Matroska files hold length-prefixed units (avcC) and are encoded again.
    """
    codec = packet.format.codec
    if codec not in COPYABLE_CODECS:
        return False
    if codec in _SPS_TYPE:
        extradata = packet.format.extradata
        if extradata and not extradata.startswith(_START_CODES):
            return False
        return packet.data.startswith(_START_CODES)
    return True


def with_parameter_sets(packet: EncodedPacket) -> bytes:
    """The packet's bytes, with the SPS/PPS of the stream's setup put before a keyframe
    that lacks them (RTSP cameras send them once, out of band), so each segment decodes on
    its own."""
    data = packet.data
    sps = _SPS_TYPE.get(packet.format.codec)
    extradata = packet.format.extradata
    if sps is None or not packet.is_keyframe or not extradata.startswith(_START_CODES):
        return data
    return data if sps in _nal_types(data, packet.format.codec) else extradata + data


def _nal_types(data: bytes, codec: str) -> set[int]:
    types: set[int] = set()
    index = data.find(b"\0\0\1")
    while 0 <= index < len(data) - 3:
        header = data[index + 3]
        types.add(header & 0x1F if codec == "h264" else (header >> 1) & 0x3F)
        index = data.find(b"\0\0\1", index + 3)
    return types
