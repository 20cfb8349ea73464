import ast
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import musc_online
from musc_online.client import AnswerCollector, ControlClient, DecisionSubscriber, FrameSender
from musc_online.messages import control_reply, decision_message, parse_control_request, refusal_message
from musc_online.protocol import decode_frame, encode_frame
from musc_online.transport import (
    Context,
    CurveClientKeys,
    CurveServerKeys,
    DaemonSockets,
    TransportError,
    TransportSettings,
    bind_daemon,
    bind_frames,
    generate_keys,
    is_loopback,
    recv_parts,
    send_parts,
    start_authenticator,
)

EPHEMERAL = TransportSettings(frames_port=0, decisions_port=0, control_port=0)
IMAGE = np.arange(8 * 10 * 3, dtype=np.uint8).reshape(8, 10, 3)


@pytest.fixture
def ctx() -> Iterator[Context]:
    context = Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture
def daemon(ctx: Context) -> Iterator[DaemonSockets]:
    sockets = bind_daemon(ctx, EPHEMERAL)
    yield sockets
    sockets.close(linger_ms=0)


def _collect(sock, seconds: float) -> list[list[bytes]]:
    """Every message arriving on ``sock`` within ``seconds``."""
    deadline = time.monotonic() + seconds
    messages = []
    while (left := deadline - time.monotonic()) > 0:
        parts = recv_parts(sock, int(left * 1000) + 1)
        if parts is not None:
            messages.append(parts)
    return messages


def test_settings_give_each_line_its_own_port_block() -> None:
    line3 = TransportSettings.for_line(3)
    assert (line3.frames_port, line3.decisions_port, line3.control_port) == (5580, 5581, 5582)
    assert line3.frames_endpoint == "tcp://127.0.0.1:5580"
    assert TransportSettings.for_line(0, base_port=6000, host="::1").control_endpoint == "tcp://[::1]:6002"
    with pytest.raises(ValueError, match="outside"):
        TransportSettings.for_line(7000)
    with pytest.raises(ValueError, match="hwm"):
        TransportSettings(hwm=-1)


def test_frames_pushed_by_a_camera_arrive_whole_with_limits_set(ctx: Context, daemon: DaemonSockets) -> None:
    assert daemon.frames.maxmsgsize == EPHEMERAL.max_message_bytes
    assert daemon.control.maxmsgsize == EPHEMERAL.max_message_bytes
    assert daemon.frames.rcvhwm == daemon.decisions.sndhwm == EPHEMERAL.hwm
    assert daemon.settings.frames_port > 0 and daemon.frames.last_endpoint.startswith(b"tcp://127.0.0.1:")
    with FrameSender(daemon.settings, line=4, ctx=ctx) as sender:
        for encoding in ("png", "raw"):
            sender.send(IMAGE, camera="cam-a", frame_id=f"id-{encoding}", encoding=encoding, timestamp=5.0)
            header, image = decode_frame(recv_parts(daemon.frames, 2000))
            assert (header.line, header.camera, header.frame_id, header.encoding) == (
                4,
                "cam-a",
                f"id-{encoding}",
                encoding,
            )
            np.testing.assert_array_equal(image, IMAGE)


def test_an_oversize_message_costs_its_sender_the_connection_not_the_daemon(ctx: Context) -> None:
    sockets = bind_daemon(
        ctx, TransportSettings(frames_port=0, decisions_port=0, control_port=0, max_message_bytes=1000)
    )
    try:
        sender = FrameSender(sockets.settings, line=0, ctx=ctx)
        big = np.zeros((40, 40, 3), dtype=np.uint8)
        with pytest.raises(ValueError, match="over the daemon's max_message_bytes of 1000"):
            sender.send(big, camera="c", frame_id="big", encoding="raw")
        # Sent anyway: libzmq cuts the connection at the first oversize part; the message is never seen.
        sender.send_parts(encode_frame(big, line=0, camera="c", frame_id="big", encoding="raw"))
        assert _collect(sockets.frames, 0.5) == []
        sender.send(IMAGE[:2, :2], camera="c", frame_id="small", encoding="raw")  # reconnects, goes through
        header, _ = decode_frame(recv_parts(sockets.frames, 3000))
        assert header.frame_id == "small"
        sender.close()
    finally:
        sockets.close(linger_ms=0)


def test_subscribers_get_their_own_lines_decisions_and_refusals_only(ctx: Context, daemon: DaemonSockets) -> None:
    subscribers = {line: DecisionSubscriber(daemon.settings, line, ctx=ctx) for line in (3, 30)}
    # Subscriptions take a moment to reach the publisher: probe until both subscribers hear their line.
    heard = dict.fromkeys(subscribers, False)
    deadline = time.monotonic() + 5
    while not all(heard.values()) and time.monotonic() < deadline:
        for line, subscriber in subscribers.items():
            send_parts(daemon.decisions, decision_message(line, {"probe": True}))
            heard[line] |= subscriber.receive(timeout_ms=20) is not None
    assert all(heard.values())
    send_parts(daemon.decisions, decision_message(3, {"frame_id": "a", "label": "ok"}))
    send_parts(daemon.decisions, refusal_message(3, {"frame_id": "b", "code": "bad_json"}))
    send_parts(daemon.decisions, decision_message(30, {"frame_id": "c", "label": "defect"}))
    received: dict[int, list[dict]] = {line: [] for line in subscribers}
    for line, subscriber in subscribers.items():
        while (message := subscriber.receive(timeout_ms=300)) is not None:
            received[line].append(message)
        subscriber.close()
    assert {m["topic"] for m in received[3]} == {"line.3.decision", "line.3.refusal"}
    assert {m["topic"] for m in received[30]} == {"line.30.decision"}
    assert [m["frame_id"] for m in received[3] if "probe" not in m] == ["a", "b"]
    assert [m["frame_id"] for m in received[30] if "probe" not in m] == ["c"]


def test_an_answer_collector_keeps_each_frames_first_answer_and_says_which_never_came(daemon: DaemonSockets) -> None:
    collector = AnswerCollector(daemon.settings, 3)  # returns once its subscription has settled
    sent_at = time.time()
    send_parts(daemon.decisions, decision_message(3, {"frame_id": "a", "label": "ok"}))
    send_parts(daemon.decisions, refusal_message(3, {"frame_id": "b", "code": "late"}))
    send_parts(daemon.decisions, refusal_message(3, {"frame_id": "a", "code": "duplicate_frame_id"}))
    messages = collector.wait_for_count(3, 5)
    assert [(m["frame_id"], m["topic"]) for m in messages] == [
        ("a", "line.3.decision"),
        ("b", "line.3.refusal"),
        ("a", "line.3.refusal"),
    ]
    assert all(sent_at <= m["arrived_at"] <= time.time() for m in messages)
    assert collector.arrived["a"][1]["label"] == "ok"  # the first answer of a repeated id
    started = time.monotonic()
    assert collector.wait_for(["a", "b", "c"], stall_s=0.3) == ["c"]
    assert time.monotonic() - started < 3
    collector.close()
    assert collector.closed


def _serve_control(sock, requests: int) -> threading.Thread:
    """Answer ``requests`` control requests on a REP socket, echoing the command and its args."""

    def serve() -> None:
        for _ in range(requests):
            parts = recv_parts(sock, 5000)
            if parts is None:
                return
            command, args = parse_control_request(parts)
            send_parts(sock, [control_reply(True, {"command": command, "args": args})])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_control_call_round_trips(ctx: Context, daemon: DaemonSockets) -> None:
    server = _serve_control(daemon.control, 2)
    with ControlClient(daemon.settings, ctx=ctx) as client:
        assert client.call("status") == {"ok": True, "result": {"command": "status", "args": {}}}
        assert client.call("pause", reason="lens cleaning")["result"]["args"] == {"reason": "lens cleaning"}
    server.join(timeout=5)


def test_control_call_times_out_naming_the_endpoint_then_recovers(ctx: Context, daemon: DaemonSockets) -> None:
    client = ControlClient(daemon.settings, ctx=ctx)
    with pytest.raises(TimeoutError, match=f"daemon at {daemon.settings.control_endpoint} did not answer 'status'"):
        client.call("status", timeout_ms=100)
    server = _serve_control(daemon.control, 2)  # first the abandoned request, then the new one
    assert client.call("snapshot", timeout_ms=3000)["result"]["command"] == "snapshot"
    client.close()
    server.join(timeout=5)


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    """A daemon key pair, an operator's, a camera's and an intruder's, and the role folders of public keys."""
    server_public, server_secret = generate_keys(tmp_path / "daemon", "daemon")
    for name in ("operator", "camera", "intruder"):
        generate_keys(tmp_path / "clients", name)
    for role in ("operator", "camera"):
        (tmp_path / f"{role}s").mkdir()
        shutil.copy(tmp_path / "clients" / f"{role}.key", tmp_path / f"{role}s")
    assert server_secret.stat().st_mode & 0o777 == 0o600
    return {
        "server_public": server_public,
        "server_secret": server_secret,
        **{name: tmp_path / "clients" / f"{name}.key_secret" for name in ("operator", "camera", "intruder")},
        "operators": tmp_path / "operators",
        "cameras": tmp_path / "cameras",
    }


def _curve(keys: dict[str, Path], host: str = "127.0.0.1") -> TransportSettings:
    curve = CurveServerKeys(
        keys["server_secret"], operator_clients_dir=keys["operators"], camera_clients_dir=keys["cameras"]
    )
    return TransportSettings(host=host, frames_port=0, decisions_port=0, control_port=0, curve=curve)


def _client(keys: dict[str, Path], name: str) -> CurveClientKeys:
    return CurveClientKeys(keys[name], keys["server_public"])


def test_curve_lets_listed_clients_push_frames_and_keeps_everyone_else_out(ctx: Context, keys: dict[str, Path]) -> None:
    sockets = bind_daemon(ctx, _curve(keys))
    try:
        senders = {
            name: FrameSender(sockets.settings, line=1, keys=_client(keys, name), ctx=ctx)
            for name in ("operator", "camera", "intruder")
        }
        senders["plain"] = FrameSender(sockets.settings, line=1, ctx=ctx)
        for camera, sender in senders.items():
            sender.send(IMAGE, camera, "f1", encoding="raw")
        first = recv_parts(sockets.frames, 5000)  # the CURVE handshake and ZAP check come first
        cameras = [decode_frame(parts)[0].camera for parts in [first, *_collect(sockets.frames, 0.5)]]
        assert sorted(cameras) == ["camera", "operator"]
        for sender in senders.values():
            sender.close(linger_ms=0)  # the refused ones still hold their frame
    finally:
        sockets.close(linger_ms=0)


def test_a_camera_key_gets_no_answer_from_control_and_an_operator_key_does(ctx: Context, keys: dict[str, Path]) -> None:
    sockets = bind_daemon(ctx, _curve(keys))
    server = _serve_control(sockets.control, 1)
    try:
        for name in ("camera", "intruder"):  # refused at the handshake: the request never reaches the daemon
            with (
                ControlClient(sockets.settings, keys=_client(keys, name), ctx=ctx) as client,
                pytest.raises(TimeoutError),
            ):
                client.call("shutdown", timeout_ms=1000)
        with ControlClient(sockets.settings, keys=_client(keys, "operator"), ctx=ctx) as client:
            assert client.call("shutdown", timeout_ms=5000)["result"]["command"] == "shutdown"
        server.join(timeout=5)
        # Both roles follow decisions.
        subscribers = [
            DecisionSubscriber(sockets.settings, 1, keys=_client(keys, n), ctx=ctx) for n in ("camera", "operator")
        ]
        heard = [False, False]
        deadline = time.monotonic() + 5
        while not all(heard) and time.monotonic() < deadline:
            send_parts(sockets.decisions, decision_message(1, {"probe": True}))
            heard = [h or s.receive(timeout_ms=20) is not None for h, s in zip(heard, subscribers, strict=True)]
        assert heard == [True, True]
        for subscriber in subscribers:
            subscriber.close()
    finally:
        sockets.close(linger_ms=0)


def test_sockets_off_loopback_need_curve_keys(ctx: Context, keys: dict[str, Path]) -> None:
    assert is_loopback("127.0.0.2") and is_loopback("::1") and is_loopback("localhost")
    assert is_loopback("[::1]") and not is_loopback("")  # a bracketed IPv6 host; "" binds every interface
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.7") and not is_loopback("line3.plant")
    for host in ("0.0.0.0", "::"):
        with pytest.raises(TransportError, match=f"refusing to bind the line's sockets to {host} without CURVE keys"):
            bind_daemon(ctx, TransportSettings(host=host, frames_port=0, decisions_port=0, control_port=0))
        with pytest.raises(TransportError, match="without CURVE keys"):
            bind_frames(ctx, TransportSettings(host=host, frames_port=0))
    sockets = bind_daemon(ctx, _curve(keys, host="0.0.0.0"))  # with keys it may
    sockets.close(linger_ms=0)


def test_curve_refuses_to_run_open(ctx: Context, keys: dict[str, Path], tmp_path: Path) -> None:
    settings = _curve(keys)
    with pytest.raises(TransportError, match="no ZAP authenticator"):
        bind_frames(ctx, settings)
    missing = TransportSettings(curve=CurveServerKeys(keys["server_secret"], keys["operators"], tmp_path / "nowhere"))
    with pytest.raises(TransportError, match=r"camera clients folder \S*nowhere does not exist"):
        start_authenticator(ctx, missing)
    public_only = TransportSettings(frames_port=0, curve=CurveServerKeys(keys["server_public"], keys["operators"]))
    with pytest.raises(TransportError, match="holds no secret key"):
        start_authenticator(ctx, public_only)


def test_only_transport_imports_zmq_and_nothing_unpickles() -> None:
    package = Path(musc_online.__file__).parent
    sources = {path.relative_to(package).as_posix(): path for path in package.rglob("*.py")}
    for name, path in sources.items():
        tree = ast.parse(path.read_text())
        imported = {
            alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
        }
        imported |= {
            node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
        }
        called = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
        zmq_allowed = name in ("transport/curve.py", "transport/sockets.py")
        assert "zmq" not in imported or zmq_allowed, name
        if name in ("protocol.py", "client.py") or name.startswith("transport/"):
            assert not imported & {"pickle", "marshal", "shelve"} and not called & {"recv_pyobj", "recv_serialized"}, (
                name
            )


def test_the_examples_in_docs_protocol_run(daemon: DaemonSockets, tmp_path: Path, monkeypatch, capsys) -> None:
    text = (Path(musc_online.__file__).parents[1] / "docs" / "protocol.md").read_text()
    keys_example, client_example = [block.split("```")[0] for block in text.split("```python\n")[1:]]
    monkeypatch.chdir(tmp_path)
    exec(keys_example, {})
    assert (tmp_path / "keys" / "client" / "camera-top.key_secret").is_file()

    def stand_in_daemon() -> None:
        header, _ = decode_frame(recv_parts(daemon.frames, 5000))
        send_parts(daemon.decisions, decision_message(header.line, {"frame_id": header.frame_id, "label": "ok"}))

    thread = threading.Thread(target=stand_in_daemon, daemon=True)
    thread.start()
    assert "TransportSettings.for_line(3)" in client_example
    exec(client_example.replace("TransportSettings.for_line(3)", "bound"), {"bound": daemon.settings})
    thread.join(timeout=5)
    assert capsys.readouterr().out.strip() == str({"frame_id": "0001", "label": "ok", "topic": "line.3.decision"})
