"""TLS for the review station's tests: a self-signed certificate for 127.0.0.1 (openssl) and Debian's nginx as a
real TLS-terminating proxy on loopback, run as the test's own process with its own config and folder."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

NGINX, OPENSSL = Path("/usr/sbin/nginx"), shutil.which("openssl")
needs_nginx = pytest.mark.skipif(
    not (NGINX.exists() and OPENSSL), reason="needs Debian's nginx and openssl (apt-get install nginx openssl)"
)
needs_openssl = pytest.mark.skipif(not OPENSSL, reason="needs openssl (apt-get install openssl)")

NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            proxy_pass {upstream};
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-For $remote_addr;
        }}
    }}
}}
"""


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A fresh self-signed certificate and key for 127.0.0.1 (P-256, one day) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "cert.pem", folder / "key.pem"
    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key)]
    subject = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    subprocess.run(
        [str(OPENSSL), "req", "-x509", *new_key, "-days", "1", *subject, "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_listening(port: int, what: str, timeout_s: float = 15) -> None:
    """Wait until something accepts connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{what} did not listen on port {port} within {timeout_s} s")


@contextmanager
def nginx(folder: Path, upstream: str) -> Iterator[str]:
    """nginx terminating TLS on a free loopback port and passing to ``upstream`` (``http://127.0.0.1:P``) with
    X-Forwarded-Proto and X-Forwarded-For; yields its ``https://127.0.0.1:PORT`` base."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = self_signed(folder)
    port = free_port()
    conf = folder / "nginx.conf"
    conf.write_text(NGINX_CONF.format(folder=folder, port=port, cert=cert, key=key, upstream=upstream))
    log = open(folder / "nginx.out", "wb")  # noqa: SIM115 - closed below, after the process
    process = subprocess.Popen(
        [str(NGINX), "-p", str(folder), "-c", str(conf), "-e", str(folder / "error.log")],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_listening(port, f"nginx ({(folder / 'error.log')})")
        yield f"https://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
