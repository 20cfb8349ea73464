"""The line daemon's messages besides frames: decisions and refusals (PUB), control requests and replies (REP).

Built on the strict JSON of ``protocol``: nothing received is ever unpickled.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from musc_online.protocol import MAX_LINE, ProtocolError, dumps, is_int, load_object, show

MAX_CONTROL_BYTES = 1 << 20
MESSAGE_KINDS = ("decision", "refusal")
CONTROL_COMMANDS = (
    "status",
    "pause",
    "resume",
    "reload_judges",
    "apply_corrections",
    "snapshot",
    "shutdown",
    "judges",
    "band",
)

_TOPIC = re.compile(r"line\.(0|[1-9][0-9]*)\.(decision|refusal)")


def line_topic(line: int, kind: str | None = None) -> bytes:
    """The PUB topic of a line's messages: ``b"line.3.decision"``, or the prefix ``b"line.3."`` for all kinds.

    The trailing dot keeps a subscription to line 3 from matching line 30.
    """
    if not (is_int(line) and 0 <= line <= MAX_LINE):
        raise ValueError(f"line must be an integer in [0, {MAX_LINE}], got {line!r}")
    if kind is not None and kind not in MESSAGE_KINDS:
        raise ValueError(f"kind must be one of {MESSAGE_KINDS}, got {kind!r}")
    return f"line.{line}.{kind or ''}".encode()


def decision_message(line: int, payload: dict[str, Any]) -> list[bytes]:
    """[topic, JSON] announcing the decision for one frame on ``line.<N>.decision``."""
    return [line_topic(line, "decision"), dumps(payload)]


def refusal_message(line: int, payload: dict[str, Any]) -> list[bytes]:
    """[topic, JSON] announcing that a frame was refused (and why) on ``line.<N>.refusal``."""
    return [line_topic(line, "refusal"), dumps(payload)]


def parse_decision_message(parts: Sequence[bytes]) -> tuple[str, dict[str, Any]]:
    """Validate a received decision or refusal message; returns (topic, payload)."""
    if len(parts) != 2:
        raise ProtocolError("bad_parts", f"a decision message has 2 parts [topic, JSON], got {len(parts)}")
    topic = bytes(parts[0]).decode("ascii", errors="replace")
    if not _TOPIC.fullmatch(topic):
        raise ProtocolError("bad_field", f"topic {show(topic)} is not line.<N>.decision or line.<N>.refusal")
    return topic, load_object(parts[1], f"{topic} payload", MAX_CONTROL_BYTES)


def _check_command(command: Any) -> None:
    if not isinstance(command, str):
        raise ProtocolError("bad_field", f"field 'command' must be a string, got {show(command)}")
    if command not in CONTROL_COMMANDS:
        raise ProtocolError("unknown_command", f"unknown command {show(command)}; known: {list(CONTROL_COMMANDS)}")


def control_request(command: str, **args: Any) -> bytes:
    """The JSON body of a control request: ``{"command": ..., "args": {...}}``."""
    _check_command(command)
    return dumps({"command": command, "args": args})


def _one_part(message: bytes | bytearray | memoryview | Sequence[bytes], what: str) -> bytes | bytearray | memoryview:
    """The body of a single-part message, given as bytes or as the list ``recv_multipart`` returns."""
    if isinstance(message, bytes | bytearray | memoryview):
        return message
    if len(message) != 1:
        raise ProtocolError("bad_parts", f"a {what} has 1 part, got {len(message)}")
    return message[0]


def parse_control_request(raw: bytes | bytearray | memoryview | Sequence[bytes]) -> tuple[str, dict[str, Any]]:
    """Validate a received control request (bytes or a list of parts); returns (command, args)."""
    request = load_object(_one_part(raw, "control request"), "control request", MAX_CONTROL_BYTES)
    unknown = sorted(set(request) - {"command", "args"})
    if unknown:
        raise ProtocolError("bad_field", f"control request has unknown field(s) {unknown}; known: ['command', 'args']")
    if "command" not in request:
        raise ProtocolError("missing_field", "control request lacks the required field 'command'")
    _check_command(request["command"])
    args = request.get("args", {})
    if not isinstance(args, dict):
        raise ProtocolError("bad_field", f"field 'args' must be a JSON object, got {show(args)}")
    return request["command"], args


def control_reply(ok: bool, result: Any = None, error: str | None = None) -> bytes:
    """The JSON body of a control reply: ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``."""
    if ok and error is not None:
        raise ValueError("a successful reply carries a result, not an error")
    if not ok and not (isinstance(error, str) and error):
        raise ValueError("a failed reply needs an error message")
    return dumps({"ok": True, "result": result} if ok else {"ok": False, "error": error})


def parse_control_reply(raw: bytes | bytearray | memoryview | Sequence[bytes]) -> dict[str, Any]:
    """Validate a received control reply (bytes or a list of parts); returns it (``ok``, ``result`` or ``error``)."""
    reply = load_object(_one_part(raw, "control reply"), "control reply", MAX_CONTROL_BYTES)
    ok = reply.get("ok")
    if not isinstance(ok, bool):
        raise ProtocolError("bad_field", f"field 'ok' of a control reply must be true or false, got {show(ok)}")
    expected = {"ok", "result"} if ok else {"ok", "error"}
    if set(reply) != expected:
        raise ProtocolError(
            "bad_field", f"control reply with ok={ok} must have fields {sorted(expected)}, got {sorted(reply)}"
        )
    if not ok and not isinstance(reply["error"], str):
        raise ProtocolError(
            "bad_field", f"field 'error' of a control reply must be a string, got {show(reply['error'])}"
        )
    return reply
