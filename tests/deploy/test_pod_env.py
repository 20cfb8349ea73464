"""A pod of the Kubernetes example starts with the environment the kubelet really gives it (docs/deploy.md).

The kubelet gives every pod started after a Service exists that Service's link variables, built from its name
(upper case, ``-`` as ``_``): ``MUSC_REVIEW_SERVICE_HOST``, ``MUSC_REVIEW_PORT=tcp://IP:8080`` and more for
``musc-review``. They share our ``MUSC_`` prefix, and a loader that refused them made every line and the station
exit 2 after a ``rollout restart``. These tests build those variables from the shipped Services by the kubelet's
own rule, add each container's ``env`` from its manifest, and load the settings and start a real daemon with them.
The manifests also turn service links off (``enableServiceLinks: false``); the loader must not depend on it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from daemon.config import load_config
from musc_online.client import ControlClient
from musc_online.transport import CurveClientKeys, TransportSettings, free_port_block, generate_keys

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (pip install PyYAML)")

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
LINE = 3
CLUSTER_IP = "10.96.12.34"
KEYS = "/etc/musc-online-keys"  # where line-3.yaml mounts the CURVE key Secrets that plant.toml names


def manifests() -> list[dict]:
    """Every object of the Kubernetes example."""
    return [
        document
        for path in sorted(KUBERNETES.glob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text())
        if document is not None
    ]


def service_links(service: dict, cluster_ip: str) -> dict[str, str]:
    """The variables the kubelet derives from one Service (its ``getServiceEnvVarMap`` and Docker-link rules)."""
    name = service["metadata"]["name"].upper().replace("-", "_")
    ports = service["spec"]["ports"]
    first = ports[0]
    variables = {
        f"{name}_SERVICE_HOST": cluster_ip,
        f"{name}_SERVICE_PORT": str(first["port"]),
        f"{name}_PORT": f"{first.get('protocol', 'TCP').lower()}://{cluster_ip}:{first['port']}",
    }
    for port in ports:
        protocol = port.get("protocol", "TCP")
        if "name" in port:
            variables[f"{name}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(port["port"])
        prefix = f"{name}_PORT_{port['port']}_{protocol}"
        variables[prefix] = f"{protocol.lower()}://{cluster_ip}:{port['port']}"
        variables[f"{prefix}_PROTO"] = protocol.lower()
        variables[f"{prefix}_PORT"] = str(port["port"])
        variables[f"{prefix}_ADDR"] = cluster_ip
    return variables


def kubelet_variables(headless_too: bool) -> dict[str, str]:
    """Link variables of every shipped Service the kubelet announces: those with a cluster IP (headless ones are
    skipped by the kubelet; ``headless_too`` gives them one, as a plant that exposes a line through a ClusterIP
    Service would)."""
    variables = {"KUBERNETES_SERVICE_HOST": CLUSTER_IP, "KUBERNETES_SERVICE_PORT": "443"}
    for document in manifests():
        if document["kind"] == "Service" and (headless_too or document["spec"].get("clusterIP") != "None"):
            variables |= service_links(document, CLUSTER_IP)
    return variables


def container_env(workload: str) -> dict[str, str]:
    """The literal ``env`` values of a workload's first container."""
    (document,) = [item for item in manifests() if item["metadata"]["name"] == workload and "template" in item["spec"]]
    container = document["spec"]["template"]["spec"]["containers"][0]
    return {item["name"]: item["value"] for item in container.get("env", []) if "value" in item}


def plant_toml(folder: Path, keys: Path | None = None) -> Path:
    """The config map's plant.toml, as the pods mount it (with the key Secrets mounted at ``keys`` if given)."""
    (document,) = [item for item in manifests() if item["kind"] == "ConfigMap"]
    path = folder / "plant.toml"
    path.write_text(document["data"]["plant.toml"].replace(KEYS, str(keys or KEYS)))
    return path


def pod_keys(folder: Path) -> CurveClientKeys:
    """The key Secrets of the line's pod, made in ``folder`` as docs/deploy.md makes them: the line's key pair and
    the pod's operator key (``line/``), operators' and cameras' public keys; returns the pod's operator identity."""
    server_public, _ = generate_keys(folder / "line", "server")
    operator_public, operator_secret = generate_keys(folder / "line", "operator")
    (folder / "operators").mkdir()
    (folder / "cameras").mkdir()
    (folder / "operators" / operator_public.name).write_bytes(operator_public.read_bytes())
    return CurveClientKeys(operator_secret, server_public)


def test_the_shipped_services_give_pods_musc_variables():
    """The premise: without this the other tests would prove nothing."""
    variables = kubelet_variables(headless_too=False)
    assert variables["MUSC_REVIEW_PORT"] == f"tcp://{CLUSTER_IP}:8080"
    assert "MUSC_REVIEW_SERVICE_HOST" in variables and "MUSC_REVIEW_PORT_8080_TCP_ADDR" in variables


@pytest.mark.parametrize("workload", ["musc-line-3", "musc-review"])
def test_a_pod_environment_loads_and_names_what_it_ignored(tmp_path, workload):
    links = kubelet_variables(headless_too=True)
    env = {**links, **container_env(workload), "MUSC_STORE__URL": f"sqlite:///{tmp_path / 'store.db'}"}
    config = load_config(LINE, plant_toml(tmp_path), env=env, config_dir=tmp_path)
    musc_links = sorted(name for name in links if name.startswith("MUSC_"))
    assert list(config.ignored_env) == musc_links
    assert config.online.window == 96  # the config map's [lines.3] table still applies
    assert not any(source.startswith("env MUSC_REVIEW") for source in config.sources.values())
    assert "MUSC_REVIEW_PORT" in config.show()


def test_a_setting_shaped_variable_naming_no_setting_is_still_refused(tmp_path):
    from daemon.config import ConfigError

    with pytest.raises(ConfigError, match=r"MUSC_REVIEW__PORT: no setting 'review\.port'.*sections: paths"):
        load_config(LINE, None, env={"MUSC_REVIEW__PORT": "8080"}, config_dir=tmp_path)


def test_every_pod_turns_service_links_off():
    pods = [item for item in manifests() if "template" in item.get("spec", {})]
    assert pods
    for item in pods:
        assert item["spec"]["template"]["spec"].get("enableServiceLinks") is False, item["metadata"]["name"]


def test_a_line_daemon_starts_with_a_pod_environment(tmp_path):
    """The real ``musc-daemon start --line 3 --config plant.toml`` with the kubelet's variables and the line pod's
    ``env``; only what cannot be here is replaced: the store (SQLite), the data folder, the GPU (CPU), the pod's
    IP (loopback, free ports), the backbone (a tiny test one) and the key Secrets (made here, as the docs say)."""
    operator = pod_keys(tmp_path / "keys")
    base_port = free_port_block(LINE)
    env = {
        **os.environ,
        **kubelet_variables(headless_too=True),
        **container_env("musc-line-3"),
        "MUSC_STORE__URL": f"sqlite:///{tmp_path / 'store.db'}",
        "MUSC_PATHS__DATA_DIR": str(tmp_path / "lines"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "MUSC_MODEL__DEVICE": "cpu",
        "MUSC_MODEL__BACKBONE": "test_random_vit",
        "MUSC_MODEL__IMAGE_SIZE": "64",
        "MUSC_TRANSPORT__HOST": "127.0.0.1",
        "MUSC_TRANSPORT__BASE_PORT": str(base_port),
    }
    command = [sys.executable, "-m", "daemon.cli.musc_daemon", "start", "--line", str(LINE), "--no-log-json"]
    log_path = tmp_path / "daemon.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [*command, "--config", str(plant_toml(tmp_path, tmp_path / "keys"))],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    try:
        status = _first_status(process, TransportSettings.for_line(LINE, base_port), log_path, operator)
        assert status["ok"], status
        assert "ignoring MUSC_ variables that are not settings: MUSC_LINE_3_PORT" in log_path.read_text()
    finally:
        process.terminate()
        assert process.wait(timeout=60) == 0, log_path.read_text()


def _first_status(
    process: subprocess.Popen, settings: TransportSettings, log_path: Path, keys: CurveClientKeys
) -> dict:
    """The daemon's first answer to ``status``, waiting while it starts; its log if it exits or stays silent."""
    deadline = time.monotonic() + 120
    with ControlClient(settings, keys=keys) as control:
        while time.monotonic() < deadline:
            assert process.poll() is None, f"daemon exited with {process.returncode}:\n{log_path.read_text()}"
            try:
                return control.call("status", timeout_ms=500)
            except TimeoutError:
                continue
    raise AssertionError(f"daemon did not answer within 120 s:\n{log_path.read_text()}")
