import io
import json
import math
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from musc_online.messages import (
    control_reply,
    control_request,
    decision_message,
    line_topic,
    parse_control_reply,
    parse_control_request,
    parse_decision_message,
    refusal_message,
)
from musc_online.protocol import ERROR_CODES, MAX_HEADER_BYTES, FrameHeader, ProtocolError, decode_frame, encode_frame

RNG_IMAGE = np.random.default_rng(7).integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
DROP = object()  # marks a header field to leave out


def _header(**changes: object) -> bytes:
    """A valid PNG frame header as JSON bytes, with fields replaced (or dropped with DROP)."""
    fields: dict[str, object] = {
        "schema": 1,
        "line": 3,
        "camera": "cam-1",
        "frame_id": "f-0001",
        "timestamp": 1_700_000_000.25,
        "encoding": "png",
    }
    fields.update(changes)
    return json.dumps({key: value for key, value in fields.items() if value is not DROP}).encode()


def _png(image: np.ndarray = RNG_IMAGE) -> bytes:
    return encode_frame(image, line=3, camera="cam-1", frame_id="f", encoding="png")[1]


def _jpeg(image: np.ndarray = RNG_IMAGE) -> bytes:
    return encode_frame(image, line=3, camera="cam-1", frame_id="f", encoding="jpeg")[1]


def _png_claiming_size(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height`` (CRC fixed up): a decompression bomb's calling card."""
    data = bytearray(_png())
    ihdr = 8 + 4  # signature, then the IHDR chunk's length field
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr : ihdr + 17])))
    return bytes(data)


def _png_16bit() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((4, 4), 1000, dtype=np.uint16)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("encoding", ["png", "jpeg", "raw"])
@pytest.mark.parametrize("channels", [None, 1, 3, 4])
def test_every_encoding_and_layout_round_trips_to_rgb(encoding: str, channels: int | None) -> None:
    rows, cols = np.indices((24, 32))
    rgba = np.stack([rows * 10, cols * 8, rows * 5 + cols * 3, 255 - cols], axis=2).astype(
        np.uint8
    )  # smooth: JPEG-able
    image = {None: rgba[:, :, 0], 1: rgba[:, :, :1], 3: rgba[:, :, :3], 4: rgba}[channels]
    parts = encode_frame(image, line=2, camera="top", frame_id="42", encoding=encoding, timestamp=12.5)
    header, decoded = decode_frame(parts)
    assert header == FrameHeader(
        line=2,
        camera="top",
        frame_id="42",
        timestamp=12.5,
        encoding=encoding,
        shape=image.shape if encoding == "raw" else None,
        dtype="uint8" if encoding == "raw" else None,
    )
    grey = channels in (None, 1)
    expected = np.repeat(rgba[:, :, :1], 3, axis=2) if grey else rgba[:, :, :3]
    assert decoded.shape == (24, 32, 3) and decoded.dtype == np.uint8 and decoded.flags.writeable
    error = np.abs(decoded.astype(int) - expected).mean()
    assert error < (3 if encoding == "jpeg" else 1e-9)


def test_header_round_trips_and_omits_raw_fields_for_images() -> None:
    header = FrameHeader(line=0, camera="c", frame_id="é-1", timestamp=1, encoding="jpeg")
    raw = header.to_bytes()
    assert FrameHeader.parse(raw) == header
    assert set(json.loads(raw)) == {"schema", "line", "camera", "frame_id", "timestamp", "encoding"}


@pytest.mark.parametrize(
    ("parts", "code", "named"),
    [
        ([_header()], "bad_parts", "2 parts"),
        ([_header(), _png(), b""], "bad_parts", "2 parts"),
        ([_header(), "not bytes"], "bad_parts", "payload"),
        ([_header(camera="x" * 100, frame_id="y" * 100, pad="z" * MAX_HEADER_BYTES), _png()], "too_large", "header"),
        ([b"\xff\xfe{}", _png()], "bad_json", "UTF-8"),
        ([b"{schema: 1}", _png()], "bad_json", "JSON"),
        ([b"[1, 2]", _png()], "bad_json", "object"),
        ([b'{"schema": 1, "schema": 1}', _png()], "bad_json", "duplicate key 'schema'"),
        ([b"[" * 3000, _png()], "bad_json", "nests"),
        ([_header(schema=DROP), _png()], "missing_field", "schema"),
        ([_header(camera=DROP, timestamp=DROP), _png()], "missing_field", "'camera', 'timestamp'"),
        ([_header(schema="1"), _png()], "bad_field", "schema"),
        ([_header(schema=2), _png()], "unsupported_schema", "schema version 2"),
        ([_header(line=-1), _png()], "bad_field", "line"),
        ([_header(line=True), _png()], "bad_field", "line"),
        ([_header(line=2.0), _png()], "bad_field", "line"),
        ([_header(camera=""), _png()], "bad_field", "camera"),
        ([_header(camera="cam\n1"), _png()], "bad_field", "camera"),
        ([_header(camera="c" * 129), _png()], "bad_field", "camera"),
        ([_header(frame_id=17), _png()], "bad_field", "frame_id"),
        ([_header(timestamp=math.nan), _png()], "bad_field", "timestamp"),
        ([_header(timestamp=math.inf), _png()], "bad_field", "timestamp"),
        ([_header(timestamp=10**400), _png()], "bad_field", "timestamp"),
        ([_header(timestamp="now"), _png()], "bad_field", "timestamp"),
        ([_header(colour="red"), _png()], "bad_field", "colour"),
        ([_header(encoding="bmp"), _png()], "bad_encoding", "encoding"),
        ([_header(shape=[12, 16, 3]), _png()], "bad_field", "shape"),
        ([_header(encoding="raw"), RNG_IMAGE.tobytes()], "bad_field", "shape"),
        ([_header(encoding="raw", shape=[12, 16, 2], dtype="uint8"), b"\0" * 384], "bad_field", "shape"),
        ([_header(encoding="raw", shape=[12, 0], dtype="uint8"), b"\0"], "bad_field", "shape"),
        ([_header(encoding="raw", shape=[12, 16, 3], dtype="float32"), b"\0" * 2304], "bad_field", "dtype"),
        ([_header(encoding="raw", shape=[12, 16, 3], dtype="uint8"), b"\0" * 575], "bad_payload", "575 bytes"),
        ([_header(), b""], "bad_payload", "empty"),
        (
            [_header(encoding="jpeg"), _jpeg(np.tile(RNG_IMAGE, (8, 8, 1)))[:3000]],
            "bad_payload",
            "image file is truncated",
        ),
        ([_header(encoding="jpeg"), _png()], "bad_payload", "says 'jpeg' but the payload is png"),
        ([_header(), _jpeg()], "bad_payload", "says 'png' but the payload is jpeg"),
        ([_header(), b"GIF89a" + bytes(40)], "bad_payload", "not a JPEG or PNG"),
        ([_header(), _png()[:60]], "bad_payload", "png payload could not be decoded"),
        ([_header(), _png_16bit()], "bad_payload", "'I;16'"),
        ([_header(), _png_claiming_size(100_000, 100_000)], "too_large", "too large"),
        ([_header(), _png_claiming_size(8000, 8000)], "too_large", "8000x8000 pixels"),
    ],
)
def test_every_fault_raises_its_code_and_names_what_is_wrong(parts: list, code: str, named: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_frame(parts, max_pixels=10_000_000)
    assert caught.value.code == code
    assert named in caught.value.message
    assert str(caught.value).startswith(f"{code}: ")


def test_pixel_limit_applies_to_raw_and_images() -> None:
    for encoding in ("raw", "png", "jpeg"):
        parts = encode_frame(RNG_IMAGE, line=3, camera="c", frame_id="f", encoding=encoding)
        with pytest.raises(ProtocolError, match="12x16 pixels exceeds the limit of 100"):
            decode_frame(parts, max_pixels=100)


def test_refusal_names_the_frame_whenever_the_header_says_who_it_is() -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_frame([_header(encoding="jpeg"), _png()])
    assert caught.value.as_dict() == {
        "code": "bad_payload",
        "message": caught.value.message,
        "line": 3,
        "camera": "cam-1",
        "frame_id": "f-0001",
    }
    with pytest.raises(ProtocolError) as caught:
        decode_frame([_header(timestamp=math.nan, line=-5), _png()])
    assert caught.value.frame == {"camera": "cam-1", "frame_id": "f-0001", "line": -5}
    with pytest.raises(ProtocolError) as caught:
        decode_frame([b"garbage", _png()])
    assert caught.value.frame == {}


def test_encode_frame_rejects_what_it_cannot_send() -> None:
    with pytest.raises(ProtocolError, match="uint8"):
        encode_frame(RNG_IMAGE.astype(np.float32), line=0, camera="c", frame_id="f")
    with pytest.raises(ProtocolError, match="camera"):
        encode_frame(RNG_IMAGE, line=0, camera="", frame_id="f")
    with pytest.raises(ProtocolError, match="encoding"):
        encode_frame(RNG_IMAGE, line=0, camera="c", frame_id="f", encoding="webp")


def test_decision_and_refusal_messages_are_framed_by_line_and_kind() -> None:
    payload = {"frame_id": "f1", "score": np.float32(0.25), "threshold": math.nan, "map": np.arange(2)}
    topic, body = decision_message(3, payload)
    assert topic == b"line.3.decision"
    assert parse_decision_message([topic, body]) == (
        "line.3.decision",
        {"frame_id": "f1", "score": 0.25, "threshold": None, "map": [0, 1]},
    )
    assert refusal_message(3, {"code": "bad_json"})[0] == b"line.3.refusal"
    assert line_topic(3) == b"line.3."
    assert not b"line.30.decision".startswith(line_topic(3))
    for parts, code in [
        ([b"line.3.verdict", b"{}"], "bad_field"),
        ([b"line.03.decision", b"{}"], "bad_field"),
        ([b"line.3.decision", b"[]"], "bad_json"),
        ([b"line.3.decision"], "bad_parts"),
    ]:
        with pytest.raises(ProtocolError) as caught:
            parse_decision_message(parts)
        assert caught.value.code == code
    with pytest.raises(ValueError, match="kind"):
        line_topic(3, "verdict")


def test_control_requests_and_replies_round_trip_and_validate() -> None:
    raw = control_request("apply_corrections", corrections=[{"frame_id": "f1", "label": "ok"}])
    assert parse_control_request(raw) == ("apply_corrections", {"corrections": [{"frame_id": "f1", "label": "ok"}]})
    assert parse_control_request([b'{"command": "status"}']) == ("status", {})
    assert parse_control_reply(control_reply(True, {"fill": math.inf})) == {"ok": True, "result": {"fill": None}}
    assert parse_control_reply(control_reply(False, error="paused")) == {"ok": False, "error": "paused"}
    for raw, code, named in [
        (b"status", "bad_json", "JSON"),
        (b'{"args": {}}', "missing_field", "command"),
        (b'{"command": "format_disk"}', "unknown_command", "format_disk"),
        (b'{"command": 7}', "bad_field", "command"),
        (b'{"command": "status", "args": [1]}', "bad_field", "args"),
        (b'{"command": "status", "sudo": true}', "bad_field", "sudo"),
        ([b'{"command": "status"}', b"{}"], "bad_parts", "1 part"),
        (b"{" + b" " * (1 << 20) + b"}", "too_large", "control request"),
    ]:
        with pytest.raises(ProtocolError) as caught:
            parse_control_request(raw)
        assert (caught.value.code, named in caught.value.message) == (code, True), caught.value
    with pytest.raises(ProtocolError, match="unknown_command"):
        control_request("reboot")
    for raw in (b'{"ok": "yes"}', b'{"ok": true}', b'{"ok": false, "error": 3}'):
        with pytest.raises(ProtocolError, match="bad_field"):
            parse_control_reply(raw)
    with pytest.raises(ValueError, match="error message"):
        control_reply(False)
    with pytest.raises(ValueError, match="not an error"):
        control_reply(True, error="x")


def _fuzz_case(rng: np.random.Generator, images: dict[str, list[bytes]]) -> list:
    """One malformed (or, by chance, valid) frame message built from a valid one by random mutations."""
    encoding = str(rng.choice(list(images)))
    header, payload = images[encoding]
    for _ in range(int(rng.integers(1, 4))):
        mutation = int(rng.integers(0, 9))
        if mutation == 0:  # random header bytes
            header = rng.bytes(int(rng.integers(0, 300)))
        elif mutation == 1:  # a field set to a hostile value, dropped, or added
            try:
                fields = json.loads(header)
            except ValueError:
                fields = {}
            if not isinstance(fields, dict):
                fields = {}
            name = str(
                rng.choice(["schema", "line", "camera", "frame_id", "timestamp", "encoding", "shape", "dtype", "x"])
            )
            hostile = [None, True, -1, 0, 3, 2**70, 1.5, math.nan, "", "x" * 300, "\x00", "raw", "png", "jpeg"]
            hostile += [[], {}, [4, 4], [4, 4, 2], [0, 3], [2**40, 2**40, 3], "uint8", "float64", "\ud800"]
            if rng.random() < 0.2:
                fields.pop(name, None)
            else:
                fields[name] = hostile[int(rng.integers(len(hostile)))]
            header = json.dumps(fields).encode()
        elif mutation == 2:  # flipped header bytes
            flipped = bytearray(header)
            for index in rng.integers(0, max(len(flipped), 1), size=3):
                if flipped:
                    flipped[index] = int(rng.integers(0, 256))
            header = bytes(flipped)
        elif mutation == 3:  # truncated payload
            payload = payload[: int(rng.integers(0, len(payload) + 1))]
        elif mutation == 4:  # flipped payload bytes
            flipped = bytearray(payload)
            for index in rng.integers(0, max(len(flipped), 1), size=int(rng.integers(1, 8))):
                if flipped:
                    flipped[index] = int(rng.integers(0, 256))
            payload = bytes(flipped)
        elif mutation == 5:  # random payload
            payload = rng.bytes(int(rng.integers(0, 2000)))
        elif mutation == 6:  # another encoding's payload
            payload = images[str(rng.choice(list(images)))][1]
        elif mutation == 7:  # wrong number of parts
            return [header, payload, payload][: int(rng.choice([0, 1, 3]))]
        else:  # a well-formed message, left as is
            pass
    return [header, payload]


def test_fuzzed_frames_either_decode_or_raise_protocol_error() -> None:
    rng = np.random.default_rng(2024)
    images = {
        encoding: encode_frame(RNG_IMAGE, line=1, camera="cam", frame_id="f", encoding=encoding)
        for encoding in ("png", "jpeg", "raw")
    }
    outcomes: dict[str, int] = {}
    for _ in range(1500):
        parts = _fuzz_case(rng, images)
        try:
            header, image = decode_frame(parts)
        except ProtocolError as err:
            assert err.code in ERROR_CODES and err.message
            outcomes[err.code] = outcomes.get(err.code, 0) + 1
        else:
            assert isinstance(header, FrameHeader)
            assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
            outcomes["decoded"] = outcomes.get("decoded", 0) + 1
    assert sum(outcomes.values()) == 1500
    assert {"decoded", "bad_json", "bad_field", "bad_payload", "bad_parts"} <= set(outcomes)
