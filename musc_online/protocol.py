"""The line daemon's wire format for frames (header and image payload), and the strict JSON it is built on.

Pure Python (no sockets) so the daemon, the client library and the tests share one strict parser.
Everything on the wire is JSON or image bytes; nothing received is ever unpickled. Decisions, refusals and
control requests are in ``messages``.
"""

from __future__ import annotations

import io
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
from PIL import Image

SCHEMA_VERSION = 1
SUPPORTED_SCHEMAS = (1,)
ENCODINGS = ("jpeg", "png", "raw")
RAW_DTYPES = ("uint8",)
RAW_CHANNELS = (1, 3, 4)
MAX_HEADER_BYTES = 4096
MAX_NAME_CHARS = 128
MAX_LINE = 2**31 - 1  # fits a SQL INTEGER column
DEFAULT_MAX_PIXELS = 50_000_000
JPEG_QUALITY = 95  # what cameras here send: high, yet lossy (a part's fine texture is smoothed)

ErrorCode = Literal[
    "bad_parts",
    "too_large",
    "bad_json",
    "missing_field",
    "bad_field",
    "unsupported_schema",
    "bad_encoding",
    "bad_payload",
    "unknown_command",
]
ERROR_CODES: tuple[ErrorCode, ...] = get_args(ErrorCode)

_HEADER_FIELDS = ("schema", "line", "camera", "frame_id", "timestamp", "encoding", "shape", "dtype")
_REQUIRED_FIELDS = ("schema", "line", "camera", "frame_id", "timestamp", "encoding")
_IDENTITY_FIELDS = ("line", "camera", "frame_id")
_MAGIC = {"jpeg": b"\xff\xd8\xff", "png": b"\x89PNG\r\n\x1a\n"}
_PIL_FORMATS = {"jpeg": "JPEG", "png": "PNG"}
_PIL_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr")  # 8-bit modes convert cleanly


class ProtocolError(ValueError):
    """A message that breaks the wire format: a stable machine ``code`` and a message naming what is wrong.

    ``frame`` holds whatever identity (line, camera, frame_id) could be read, so a refusal can name the frame.
    """

    def __init__(self, code: ErrorCode, message: str, frame: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.frame = dict(frame or {})

    def as_dict(self) -> dict[str, Any]:
        """The error as a JSON-ready dict (code, message, and the frame's identity where known)."""
        return {"code": self.code, "message": self.message, **self.frame}


def show(value: Any) -> str:
    """A short repr of a received value for error messages (never echo a whole hostile payload)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_NAME_CHARS and value.isprintable()


def _check_schema(schema: Any) -> None:
    if not is_int(schema):
        raise ProtocolError("bad_field", f"field 'schema' must be an integer, got {show(schema)}")
    if schema not in SUPPORTED_SCHEMAS:
        raise ProtocolError(
            "unsupported_schema", f"schema version {schema} is not supported (supported: {list(SUPPORTED_SCHEMAS)})"
        )


def _json_safe(value: Any) -> Any:
    """Plain JSON types from dicts, lists, tuples and numpy values, with NaN and infinities as null."""
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    if isinstance(value, np.ndarray | np.generic):
        return _json_safe(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON that is always valid JSON: NaN and infinities become null, numpy values plain."""
    return json.dumps(_json_safe(value), allow_nan=False, ensure_ascii=False, separators=(",", ":")).encode()


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        keys = [key for key, _ in pairs]
        duplicate = next(key for key in keys if keys.count(key) > 1)
        raise ProtocolError("bad_json", f"duplicate key {show(duplicate)} in JSON object")
    return result


def load_object(raw: bytes | bytearray | memoryview, what: str, limit: int) -> dict[str, Any]:
    """Parse ``raw`` as one UTF-8 JSON object of at most ``limit`` bytes, or raise ProtocolError."""
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise ProtocolError("bad_parts", f"{what} must be bytes, got {type(raw).__name__}")
    if len(raw) > limit:
        raise ProtocolError("too_large", f"{what} is {len(raw)} bytes; the limit is {limit}")
    try:
        value = json.loads(bytes(raw).decode("utf-8"), object_pairs_hook=_reject_duplicates)
    except UnicodeDecodeError as err:
        raise ProtocolError("bad_json", f"{what} is not UTF-8 ({err.reason} at byte {err.start})") from None
    except RecursionError:
        raise ProtocolError("bad_json", f"{what} nests too deeply") from None
    except ProtocolError as err:
        raise ProtocolError(err.code, f"{what}: {err.message}") from None
    except ValueError as err:  # JSONDecodeError, or an integer with too many digits
        raise ProtocolError("bad_json", f"{what} is not valid JSON ({err})") from None
    if not isinstance(value, dict):
        raise ProtocolError("bad_json", f"{what} must be a JSON object, got {type(value).__name__}")
    return value


@dataclass(frozen=True, kw_only=True)
class FrameHeader:
    """The first part of a frame message: who sent which frame when, and how its payload is encoded.

    Construction validates every field, so a header that exists is a valid one (on either side of the wire).
    """

    schema: int = SCHEMA_VERSION
    line: int
    camera: str
    frame_id: str
    timestamp: float  # seconds since the Unix epoch, taken by the camera
    encoding: str
    shape: tuple[int, ...] | None = None  # raw only: (H, W) or (H, W, C), row-major
    dtype: str | None = None  # raw only: "uint8"

    def __post_init__(self) -> None:
        _check_schema(self.schema)
        if not (is_int(self.line) and 0 <= self.line <= MAX_LINE):
            raise ProtocolError(
                "bad_field", f"field 'line' must be an integer in [0, {MAX_LINE}], got {show(self.line)}"
            )
        for name in ("camera", "frame_id"):
            value = getattr(self, name)
            if not _is_name(value):
                raise ProtocolError(
                    "bad_field",
                    f"field {name!r} must be a non-empty printable string of at most {MAX_NAME_CHARS} characters, "
                    f"got {show(value)}",
                )
        if not _is_finite_number(self.timestamp):
            raise ProtocolError(
                "bad_field", f"field 'timestamp' must be a finite number of seconds, got {show(self.timestamp)}"
            )
        if self.encoding not in ENCODINGS:
            raise ProtocolError(
                "bad_encoding", f"field 'encoding' must be one of {ENCODINGS}, got {show(self.encoding)}"
            )
        if self.encoding == "raw":
            self._check_raw_layout()
        elif self.shape is not None or self.dtype is not None:
            raise ProtocolError(
                "bad_field", f"fields 'shape' and 'dtype' belong to raw frames only, not {self.encoding!r}"
            )

    def _check_raw_layout(self) -> None:
        shape = self.shape
        if not (
            isinstance(shape, tuple)
            and len(shape) in (2, 3)
            and all(is_int(size) and size > 0 for size in shape)
            and (len(shape) == 2 or shape[2] in RAW_CHANNELS)
        ):
            raise ProtocolError(
                "bad_field",
                f"field 'shape' of a raw frame must be [height, width] or [height, width, channels] with positive "
                f"sizes and channels in {RAW_CHANNELS}, got {show(shape)}",
            )
        if self.dtype not in RAW_DTYPES:
            raise ProtocolError(
                "bad_field", f"field 'dtype' of a raw frame must be one of {RAW_DTYPES}, got {show(self.dtype)}"
            )

    def identity(self) -> dict[str, Any]:
        """Line, camera and frame id: what a decision or refusal uses to name this frame."""
        return {"line": self.line, "camera": self.camera, "frame_id": self.frame_id}

    def to_bytes(self) -> bytes:
        """The header as compact UTF-8 JSON (shape and dtype only for raw frames)."""
        fields = {name: getattr(self, name) for name in _HEADER_FIELDS}
        if self.encoding != "raw":
            del fields["shape"], fields["dtype"]
        raw = dumps(fields)
        if len(raw) > MAX_HEADER_BYTES:  # only reachable with very long non-ASCII names
            raise ProtocolError("too_large", f"header is {len(raw)} bytes; the limit is {MAX_HEADER_BYTES}")
        return raw

    @classmethod
    def parse(cls, raw: bytes | bytearray | memoryview) -> FrameHeader:
        """Validate and parse a received header; any fault raises ProtocolError naming the field."""
        fields = load_object(raw, "header", MAX_HEADER_BYTES)
        identity = {
            name: fields[name]
            for name in _IDENTITY_FIELDS
            if (name == "line" and is_int(fields.get(name))) or (name != "line" and _is_name(fields.get(name)))
        }
        try:
            # The schema decides what the other fields mean, so it is checked before them.
            if "schema" not in fields:
                raise ProtocolError("missing_field", "header lacks the required field 'schema'")
            _check_schema(fields["schema"])
            unknown = sorted(set(fields) - set(_HEADER_FIELDS))
            if unknown:
                raise ProtocolError(
                    "bad_field", f"header has unknown field(s) {unknown}; known: {list(_HEADER_FIELDS)}"
                )
            missing = [name for name in _REQUIRED_FIELDS if name not in fields]
            if missing:
                raise ProtocolError("missing_field", f"header lacks the required field(s) {missing}")
            if isinstance(fields.get("shape"), list):
                fields["shape"] = tuple(fields["shape"])
            return cls(**fields)
        except ProtocolError as err:
            err.frame = identity
            raise


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1), (H, W, 3) or (H, W, 4) uint8 -> a fresh C-contiguous (H, W, 3) RGB array."""
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return np.array(image[:, :, :3], order="C")


def _decode_raw(header: FrameHeader, payload: bytes, max_pixels: int) -> np.ndarray:
    assert header.shape is not None  # guaranteed by FrameHeader validation
    height, width = header.shape[:2]
    if height * width > max_pixels:
        raise ProtocolError("too_large", f"raw frame of {height}x{width} pixels exceeds the limit of {max_pixels}")
    expected = math.prod(header.shape) * np.dtype(header.dtype).itemsize
    if len(payload) != expected:
        raise ProtocolError(
            "bad_payload",
            f"raw payload has {len(payload)} bytes; shape {list(header.shape)} {header.dtype} needs {expected}",
        )
    return _as_rgb(np.frombuffer(payload, dtype=header.dtype).reshape(header.shape))


def _sniff(payload: bytes) -> str:
    return next((name for name, magic in _MAGIC.items() if payload.startswith(magic)), "not a JPEG or PNG image")


def _decode_image(header: FrameHeader, payload: bytes, max_pixels: int) -> np.ndarray:
    found = _sniff(payload)
    if found != header.encoding:
        raise ProtocolError("bad_payload", f"header says {header.encoding!r} but the payload is {found}")
    try:
        with Image.open(io.BytesIO(payload), formats=[_PIL_FORMATS[header.encoding]]) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise ProtocolError(
                    "too_large", f"{header.encoding} image of {height}x{width} pixels exceeds the limit of {max_pixels}"
                )
            if image.mode not in _PIL_MODES:
                raise ProtocolError(
                    "bad_payload", f"{header.encoding} pixel mode {image.mode!r} is not supported; send 8-bit images"
                )
            image.load()
            return np.array(image.convert("RGB"))
    except ProtocolError:
        raise
    except Image.DecompressionBombError as err:
        raise ProtocolError("too_large", f"{header.encoding} image is too large to decode ({err})") from None
    except Exception as err:  # any decoder failure on untrusted bytes is the sender's fault, not ours
        raise ProtocolError(
            "bad_payload", f"{header.encoding} payload could not be decoded ({type(err).__name__}: {err})"
        ) from None


def decode_frame(
    parts: Sequence[bytes | bytearray | memoryview], max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[FrameHeader, np.ndarray]:
    """Validate a received [header, payload] message and decode its image to RGB uint8 (H, W, 3).

    Grey becomes three equal channels and alpha is dropped. Any fault raises ProtocolError.
    """
    if len(parts) != 2:
        raise ProtocolError("bad_parts", f"a frame message has 2 parts [header, payload], got {len(parts)}")
    header = FrameHeader.parse(parts[0])
    payload = parts[1]
    try:
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise ProtocolError("bad_parts", f"payload must be bytes, got {type(payload).__name__}")
        payload = bytes(payload)
        if not payload:
            raise ProtocolError("bad_payload", "payload is empty")
        if header.encoding == "raw":
            return header, _decode_raw(header, payload, max_pixels)
        return header, _decode_image(header, payload, max_pixels)
    except ProtocolError as err:
        err.frame = header.identity()
        raise


def encode_frame(
    image: np.ndarray,
    *,
    line: int,
    camera: str,
    frame_id: str,
    encoding: str = "png",
    timestamp: float | None = None,
    jpeg_quality: int = JPEG_QUALITY,
) -> list[bytes]:
    """Build the [header, payload] message for a uint8 image of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)
    (the payload: ``encode_image``, or the raw pixels; the daemon drops alpha on decoding anyway)."""
    if not (
        isinstance(image, np.ndarray)
        and image.dtype == np.uint8
        and (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in RAW_CHANNELS))
        and image.size > 0
    ):
        raise ProtocolError(
            "bad_payload",
            f"image must be a non-empty uint8 array of shape (H, W) or (H, W, C) with C in {RAW_CHANNELS}, got "
            + (f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__),
        )
    raw = encoding == "raw"
    header = FrameHeader(
        line=line,
        camera=camera,
        frame_id=frame_id,
        timestamp=time.time() if timestamp is None else timestamp,
        encoding=encoding,
        shape=tuple(image.shape) if raw else None,
        dtype="uint8" if raw else None,
    )
    payload = np.ascontiguousarray(image).tobytes() if raw else encode_image(image, encoding, jpeg_quality)
    return [header.to_bytes(), payload]


def encode_image(image: np.ndarray, encoding: str = "png", jpeg_quality: int = JPEG_QUALITY) -> bytes:
    """The bytes of a uint8 image as a camera sends it, in ``encoding`` "jpeg" or "png" (a frame's payload, or a
    file holding exactly what the line would receive). JPEG cannot carry alpha, so RGBA goes as RGB."""
    pixels = image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image
    if encoding == "jpeg" and pixels.ndim == 3 and pixels.shape[2] == 4:
        pixels = pixels[:, :, :3]
    buffer = io.BytesIO()
    options = {"quality": jpeg_quality} if encoding == "jpeg" else {"compress_level": 1}
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format=_PIL_FORMATS[encoding], **options)
    return buffer.getvalue()
