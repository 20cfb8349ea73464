"""Offline checks of the deployment units in ``deploy/`` (docs/deploy.md), with no systemd, cluster or network.

- systemd: ``systemd-analyze verify`` accepts both units. It needs ExecStart's binary to exist, so it runs on
  copies whose binary is this Python (arguments, specifiers and ``User=musc`` kept); any line it prints about
  the units fails the test, except that the user or group ``musc`` does not exist on this machine. Skipped
  when systemd-analyze is not installed. The facts the units promise (restart policy, no PrivateDevices, ...)
  are checked on the files themselves.
- plant.env.example: every ``MUSC_*`` variable in it, commented or not, is a setting the daemon accepts.
- Kubernetes: every manifest loads with PyYAML and is valid against the official schemas of one Kubernetes
  version (``kubernetes-validate``, strict: unknown fields are errors; skipped when it is not installed);
  the line's ports, GPU, probes, ``--line 3``, volume and Secret match the daemon's own settings and each other.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.config import load_config
from musc_online.transport import line_ports

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "deploy" / "systemd"
KUBERNETES = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.30"  # the schemas the manifests are checked against
LINE = 3  # the line the example manifests run

# What systemd-analyze may say about this machine rather than the units: the service user is not created here.
ENVIRONMENT_MESSAGES = re.compile(
    r"\b(user|group)\W+musc\W+(not found|does not exist|doesn't exist|is unknown|unknown)"
    r"|\b(resolve|look up|find|determine)\W+(user|group)\W+musc\b"
    r"|failed to determine (user|group) credentials",  # systemd's wording at start time; musc is the only user
    re.IGNORECASE,
)


# ----------------------------------------------------------------------------------------------------- systemd
def unit_settings(path: Path) -> dict[str, list[str]]:
    """``Section.Key`` -> its values in order (systemd allows a key several times); comments dropped."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        settings.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return settings


def one(settings: dict[str, list[str]], key: str) -> str:
    values = settings.get(key, [])
    assert len(values) == 1, f"{key}: expected one value, found {values}"
    return values[0]


def test_daemon_unit_promises():
    unit = unit_settings(SYSTEMD / "musc-daemon@.service")
    command = one(unit, "Service.ExecStart").split()
    assert command[0].endswith("/bin/musc-daemon") and command[0].startswith("/")
    assert command[1:4] == ["start", "--line", "%i"]
    assert one(unit, "Service.User") == one(unit, "Service.Group") == "musc"
    assert one(unit, "Service.Type") in ("simple", "exec")
    assert one(unit, "Service.Restart") == "on-failure"
    assert one(unit, "Service.RestartPreventExitStatus") == "2"  # configuration errors are not retried
    assert one(unit, "Service.KillSignal") == "SIGTERM"
    assert int(one(unit, "Service.TimeoutStopSec")) >= 60  # time to drain and save
    assert one(unit, "Service.EnvironmentFile") == "/etc/musc-online/plant.env"
    assert one(unit, "Service.WorkingDirectory") == "/etc/musc-online"  # config/line-N.toml lives under it
    assert "MUSC_PATHS__DATA_DIR=/var/lib/musc-online/lines" in unit["Service.Environment"]
    assert one(unit, "Service.StateDirectory") == "musc-online"
    assert one(unit, "Service.CapabilityBoundingSet") == ""
    assert one(unit, "Service.NoNewPrivileges") == "yes"
    assert one(unit, "Service.ProtectSystem") == "strict"
    assert "AF_INET" in one(unit, "Service.RestrictAddressFamilies").split()
    assert "Service.PrivateDevices" not in unit, "PrivateDevices=yes hides /dev/nvidia*"
    assert one(unit, "Service.SyslogIdentifier") == "musc-daemon-%i"


def test_review_unit_promises():
    unit = unit_settings(SYSTEMD / "musc-review.service")
    command = one(unit, "Service.ExecStart").split()
    assert command[0].endswith("/bin/musc-online")
    assert command[1:] == ["review", "--web", "--host", "0.0.0.0", "--port", "8080"]
    assert one(unit, "Service.EnvironmentFile") == "/etc/musc-online/plant.env"
    assert one(unit, "Service.RestartPreventExitStatus") == "2"
    assert "Service.ReadWritePaths" not in unit  # it only reads the daemons' pictures


@pytest.mark.parametrize(
    ("unit_file", "verified_as"),
    [("musc-daemon@.service", "musc-daemon@3.service"), ("musc-review.service", "musc-review.service")],
)
def test_systemd_analyze_verify(tmp_path, unit_file, verified_as):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd)")
    text = (SYSTEMD / unit_file).read_text()
    text, count = re.subn(r"^ExecStart=\S+", f"ExecStart={sys.executable}", text, flags=re.MULTILINE)
    assert count == 1
    (tmp_path / unit_file).write_text(text)
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(tmp_path / verified_as)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    printed = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    stem = unit_file.removesuffix(".service").rstrip("@")
    about_unit = [line for line in printed if stem in line or str(tmp_path) in line]
    unexpected = [line for line in about_unit if not ENVIRONMENT_MESSAGES.search(line)]
    report = f"systemd-analyze verify {verified_as} (rc {result.returncode}):\n" + "\n".join(printed)
    assert not unexpected, report
    # A failure must be explained by the one thing this machine lacks; lines about other units are ignored.
    assert result.returncode == 0 or about_unit, report


def test_plant_env_example_names_real_settings(tmp_path):
    variables = {}
    for raw in (SYSTEMD / "plant.env.example").read_text().splitlines():
        match = re.fullmatch(r"#?(MUSC_\w+)=(.*)", raw.strip())
        if match:
            variables[match[1]] = match[2]
    assert "MUSC_STORE__URL" in variables and "MUSC_PATHS__DATA_DIR" in variables
    config = load_config(LINE, None, env=variables, config_dir=tmp_path)  # an unknown MUSC_X__Y is refused
    assert not config.ignored_env, f"not MUSC_<SECTION>__<KEY> settings: {config.ignored_env}"
    assert config.store_url.startswith("postgresql+psycopg://")
    assert str(config.line_dir) == f"/var/lib/musc-online/lines/line-{LINE}"


# -------------------------------------------------------------------------------------------------- Kubernetes
def load_manifests() -> list[tuple[str, dict]]:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (pip install PyYAML)")
    documents = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document is not None:
                documents.append((path.name, document))
    return documents


@pytest.fixture(scope="module")
def manifests() -> dict[tuple[str, str], dict]:
    """(kind, name) -> the object, from every file under deploy/kubernetes."""
    objects = {}
    for _, document in load_manifests():
        key = (document["kind"], document["metadata"]["name"])
        assert key not in objects, f"{key} is defined twice"
        objects[key] = document
    return objects


def test_manifests_load_as_kubernetes_objects(manifests):
    assert {kind for kind, _ in manifests} == {"Secret", "ConfigMap", "StatefulSet", "Service", "Deployment"}
    for (kind, name), document in manifests.items():
        assert document["apiVersion"] == ("apps/v1" if kind in ("StatefulSet", "Deployment") else "v1"), name


def test_manifests_match_the_official_schemas():
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is not installed (pip install kubernetes-validate)"
    )
    problems = []
    for file_name, document in load_manifests():
        where = f"{file_name}: {document['kind']}/{document['metadata']['name']}"
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            field = ".".join(str(part) for part in error.absolute_path)
            problems.append(f"{where}: {field}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            problems.append(f"{where}: {error.message}")
    assert not problems, f"not valid Kubernetes {KUBERNETES_VERSION} objects:\n" + "\n".join(problems)


def container(workload: dict) -> dict:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(workload: dict, manifests: dict) -> dict[str, str]:
    """The variables a workload's container gets: its Secrets (envFrom) and its own env list."""
    env = {}
    for source in container(workload).get("envFrom", []):
        secret = manifests[("Secret", source["secretRef"]["name"])]
        env.update(secret["stringData"])
    env.update({item["name"]: item["value"] for item in container(workload).get("env", [])})
    return env


def test_line_statefulset_runs_line_3_on_a_gpu_with_its_ports_and_probes(manifests, tmp_path):
    line = manifests[("StatefulSet", f"musc-line-{LINE}")]
    spec, pod = line["spec"], line["spec"]["template"]["spec"]
    daemon = container(line)
    args = daemon.get("command", []) + daemon["args"]
    assert args[0] == "musc-daemon" and args[1] == "start"
    assert args[args.index("--line") + 1] == str(LINE)
    assert spec["replicas"] == 1
    assert int(daemon["resources"]["limits"]["nvidia.com/gpu"]) == 1
    assert pod["terminationGracePeriodSeconds"] >= 60

    # The daemon's own loader, given the ConfigMap's plant.toml and the pod's environment, agrees with the ports.
    config_path = Path(args[args.index("--config") + 1])
    plant = manifests[("ConfigMap", "musc-plant")]["data"][config_path.name]
    mounts = {mount["name"]: mount for mount in daemon["volumeMounts"]}
    config_volume = next(volume for volume in pod["volumes"] if volume.get("configMap", {}).get("name") == "musc-plant")
    assert mounts[config_volume["name"]]["mountPath"] == str(config_path.parent)
    (tmp_path / config_path.name).write_text(plant)
    config = load_config(LINE, tmp_path / config_path.name, env=env_of(line, manifests), config_dir=tmp_path)
    assert config.transport.host == "0.0.0.0"  # probes come from the kubelet, not loopback

    # Off loopback only with CURVE keys (the daemon refuses to start without): every key file and folder that
    # plant.toml names is a Secret volume, mounted read-only and readable by the daemon's group (fsGroup).
    server, client = config.transport.server_keys(), config.transport.client_keys()
    assert server is not None and server.camera_clients_dir is not None and client is not None
    secrets = {volume["name"]: volume["secret"] for volume in pod["volumes"] if "secret" in volume}
    for path in (server.secret_file, server.operator_clients_dir, server.camera_clients_dir, client.secret_file):
        (mount,) = [m for m in mounts.values() if path.is_relative_to(m["mountPath"]) and m["name"] in secrets]
        assert mount["readOnly"] is True, path
        assert secrets[mount["name"]].get("defaultMode", 0o644) & 0o040, f"{path} is not group-readable"
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
    ports = sorted(port["containerPort"] for port in daemon["ports"])
    assert ports == list(line_ports(LINE)) == [5580, 5581, 5582, 5583]
    assert config.http_port == 5583
    probes = {name: daemon[name]["httpGet"] for name in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert {probe["port"] for probe in probes.values()} == {config.http_port}
    assert probes["livenessProbe"]["path"] == probes["startupProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == "/readyz"
    # Model loading happens before the HTTP port opens: the startup probe must allow minutes, not seconds.
    startup = daemon["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300

    # The line's folder is the persistent volume; the root filesystem is read-only and the user is not root.
    (claim,) = spec["volumeClaimTemplates"]
    assert mounts[claim["metadata"]["name"]]["mountPath"] == str(config.line_dir)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert daemon["securityContext"]["readOnlyRootFilesystem"] is True

    # The headless Service names the pod and exposes the same four ports.
    service = manifests[("Service", spec["serviceName"])]
    assert service["spec"]["clusterIP"] == "None"
    assert sorted(port["port"] for port in service["spec"]["ports"]) == ports
    assert service["spec"]["selector"].items() <= pod_labels(line).items()


def pod_labels(workload: dict) -> dict[str, str]:
    labels = workload["spec"]["template"]["metadata"]["labels"]
    assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items()
    return labels


def test_review_station_shares_the_store_secret_and_reads_the_line_volume(manifests):
    line = manifests[("StatefulSet", f"musc-line-{LINE}")]
    review = manifests[("Deployment", "musc-review")]
    (secret,) = [name for kind, name in manifests if kind == "Secret"]
    assert "MUSC_STORE__URL" in manifests[("Secret", secret)]["stringData"]
    for workload in (line, review):
        refs = [source["secretRef"]["name"] for source in container(workload)["envFrom"]]
        assert secret in refs, f"{workload['metadata']['name']} does not read the Secret {secret}"
    assert review["spec"]["replicas"] == 1
    station = container(review)
    assert station["command"] + station["args"] == [
        "musc-online",
        "review",
        "--web",
        "--host",
        "0.0.0.0",
        "--port",
        "8080",
    ]
    assert [port["containerPort"] for port in station["ports"]] == [8080]
    assert manifests[("Service", "musc-review")]["spec"]["ports"][0]["port"] == 8080
    # Pictures are found at the path the daemon recorded: the line's claim, read-only, at the same mount path.
    assert env_of(review, manifests)["MUSC_PATHS__DATA_DIR"] == env_of(line, manifests)["MUSC_PATHS__DATA_DIR"]
    claim = f"{line['spec']['volumeClaimTemplates'][0]['metadata']['name']}-{line['metadata']['name']}-0"
    (volume,) = [v for v in review["spec"]["template"]["spec"]["volumes"] if "persistentVolumeClaim" in v]
    assert volume["persistentVolumeClaim"] == {"claimName": claim, "readOnly": True}
    line_mount = next(m for m in container(line)["volumeMounts"] if m["name"] == "data")
    (review_mount,) = [m for m in station["volumeMounts"] if m["name"] == volume["name"]]
    assert review_mount["mountPath"] == line_mount["mountPath"] and review_mount["readOnly"] is True
