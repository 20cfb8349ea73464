"""With CURVE keys configured, only listed publishers get frames into the daemon."""

import contextlib
import time

import numpy as np
import pytest

from musc_online.client import FrameSender
from musc_online.synthetic import synthetic_product
from musc_online.transport import CurveClientKeys, generate_keys

from .conftest import LINE, DaemonProcess


@pytest.mark.slow
def test_unknown_publisher_is_refused_and_a_listed_one_gets_through(tmp_path):
    keys = tmp_path / "keys"
    allowed = tmp_path / "allowed"
    server_public, server_secret = generate_keys(keys, "daemon")
    camera_public, camera_secret = generate_keys(keys, "camera")
    _, stranger_secret = generate_keys(tmp_path / "stranger", "stranger")
    allowed.mkdir()
    (allowed / camera_public.name).write_bytes(camera_public.read_bytes())
    camera = CurveClientKeys(camera_secret, server_public)
    daemon = DaemonProcess(
        tmp_path / "lines",
        {
            "MUSC_TRANSPORT__CURVE_SERVER_SECRET": str(server_secret),
            "MUSC_TRANSPORT__CURVE_ALLOWED_CLIENTS": str(allowed),
        },
        keys=camera,
    ).start()
    rng = np.random.default_rng(0)
    stranger_keys = CurveClientKeys(stranger_secret, server_public)
    with FrameSender(daemon.settings, line=LINE, keys=stranger_keys, send_timeout_ms=2000) as stranger:
        # The handshake is refused: the frame either waits for a peer that never comes (the send times out) or
        # is queued on the refused connection and discarded with it. Either way it never reaches the daemon.
        with contextlib.suppress(TimeoutError):
            stranger.send(synthetic_product(rng, 96), camera="stranger", frame_id="s0", encoding="png")
        time.sleep(1.5)
        assert daemon.call("status")["result"]["counts"]["received"] == 0
        with FrameSender(daemon.settings, line=LINE, keys=camera) as listed:
            for i in range(3):
                listed.send(synthetic_product(rng, 96), camera="cam-1", frame_id=f"c{i}", encoding="png")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and daemon.call("status")["result"]["counts"]["decided"] < 3:
                time.sleep(0.2)
        counts = daemon.call("status")["result"]["counts"]
        assert counts["received"] == 3 and counts["decided"] == 3
        stranger.close(linger_ms=0)
    assert daemon.stop() == 0
