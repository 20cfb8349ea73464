"""The daemon's settings: defaults, per-line files and tables, MUSC_* variables, checks, and `config show`."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from daemon.cli.musc_daemon import app
from daemon.cli.musc_online import app as musc_online_app
from daemon.config import DEFAULT_SOURCE, SCHEMA, ConfigError, DaemonConfig, default_toml, load_config
from musc_online.online.settings import OnlineSettings
from musc_online.transport import TransportSettings

from .inprocess import InProcessLine

NO_ENV: dict[str, str] = {}


def load(line: int = 3, config_file: Path | None = None, env: dict[str, str] = NO_ENV, **kwargs) -> DaemonConfig:
    """load_config with an empty environment, so the tests do not depend on the caller's variables."""
    return load_config(line, config_file, env, **kwargs)


def refused(*phrases: str, **kwargs) -> None:
    """load(**kwargs) raises a ConfigError whose message holds every phrase."""
    with pytest.raises(ConfigError) as caught:
        load(**kwargs)
    for phrase in phrases:
        assert phrase in str(caught.value)


def test_defaults_define_every_setting_and_feed_the_library(tmp_path):
    config = load(config_dir=tmp_path)
    defaults = tomllib.loads(default_toml())
    assert {f"{section}.{key}" for section, table in defaults.items() for key in table} == SCHEMA.keys()
    assert set(config.sources.values()) == {DEFAULT_SOURCE, "backbone efficientnet_lite0 default"}  # image_size
    written = tmp_path / "defaults.toml"
    written.write_text(default_toml())
    assert load(config_file=written, config_dir=tmp_path).as_dict()["online"] == config.as_dict()["online"]

    online = config.online
    assert isinstance(online, OnlineSettings)
    assert (online.window, online.admission, online.musc.r_list, online.thresholds.quantile) == (
        64,
        "ok",
        (1, 3, 5),
        0.95,
    )
    transport = config.transport_settings()
    assert isinstance(transport, TransportSettings)
    assert (transport.host, transport.frames_port, transport.curve) == ("127.0.0.1", 5580, None)
    assert config.http_port == 5583
    assert config.line_dir == Path.cwd() / "runs" / "lines" / "line-3"
    assert config.store_url == f"sqlite:///{config.line_dir / 'store.db'}"
    assert (config.state_dir.name, config.artifacts_dir.name) == ("state", "artifacts")
    assert config.model.layers == () and config.model.weights is None and config.store.url is None
    assert config.device().type in ("cpu", "cuda")


def test_a_cuda_device_without_a_gpu_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config = load(env={"MUSC_MODEL__DEVICE": "cuda:1"})
    with pytest.raises(
        ConfigError, match=r"model.device = \"cuda:1\" \(from env MUSC_MODEL__DEVICE\): .*no GPU is visible"
    ):
        config.device()
    assert load(env={"MUSC_MODEL__DEVICE": "auto"}).device() == torch.device("cpu")


def test_each_line_has_its_own_port_block_and_folder(tmp_path):
    one, two = load(1, config_dir=tmp_path), load(2, config_dir=tmp_path)
    ports = [
        {s.frames_port, s.decisions_port, s.control_port, c.http_port}
        for c, s in ((one, one.transport_settings()), (two, two.transport_settings()))
    ]
    assert ports == [{5560, 5561, 5562, 5563}, {5570, 5571, 5572, 5573}]
    assert one.line_dir != two.line_dir and one.store_url != two.store_url


def test_line_file_overrides_its_line_only(tmp_path):
    override = tmp_path / "line-3.toml"
    override.write_text("[online]\nwindow = 16\n[store]\nurl = 'postgresql://plant/inspection'\n")
    three, four = load(3, config_dir=tmp_path), load(4, config_dir=tmp_path)
    assert (three.online.window, three.store_url) == (16, "postgresql://plant/inspection")
    assert three.sources["online.window"] == f"line override {override}"
    assert four.online.window == 64 and four.store_url.startswith("sqlite:///")


def test_config_file_and_its_lines_table(tmp_path):
    config_file = tmp_path / "plant.toml"
    config_file.write_text(
        "[transport]\nhost = '0.0.0.0'\n[online]\nwindow = 48\n"
        "[lines.3.online]\nwindow = 24\n[lines.5.musc]\nr_list = [1]\n"
    )
    three = load(3, config_file, config_dir=tmp_path)
    assert (three.transport.host, three.online.window, three.musc.r_list) == ("0.0.0.0", 24, (1, 3, 5))
    assert three.sources["transport.host"] == f"file {config_file}"
    assert three.sources["online.window"] == f"line override {config_file} [lines.3]"
    five = load(5, config_file, config_dir=tmp_path)
    assert (five.online.window, five.musc.r_list) == (48, (1,))


def test_environment_wins_and_is_parsed_as_toml(tmp_path):
    (tmp_path / "line-3.toml").write_text("[online]\nwindow = 16\n")
    env = {
        "MUSC_ONLINE__WINDOW": "32",
        "MUSC_TRANSPORT__HOST": "0.0.0.0",
        "MUSC_MUSC__R_LIST": "[1,3]",
        "MUSC_HTTP__ENABLED": "false",
        "MUSC_MODEL__WEIGHTS": "7",  # a text setting keeps the text even when it reads as a number
        "PATH": "/usr/bin",
    }
    config = load(env=env, config_dir=tmp_path)
    assert (config.online.window, config.transport.host, config.musc.r_list) == (32, "0.0.0.0", (1, 3))
    assert config.http.enabled is False and config.model.weights == Path.cwd() / "7"
    assert config.sources["online.window"] == "env MUSC_ONLINE__WINDOW"


def test_curve_keys_reach_the_transport_by_role(tmp_path):
    env = {
        "MUSC_TRANSPORT__CURVE_SERVER_SECRET": "keys/daemon.key_secret",
        "MUSC_TRANSPORT__CURVE_OPERATOR_CLIENTS": "operators",
        "MUSC_TRANSPORT__CURVE_CAMERA_CLIENTS": "cameras",
    }
    curve = load(env=env, config_dir=tmp_path).transport_settings().curve
    assert curve is not None and curve.secret_file == Path.cwd() / "keys" / "daemon.key_secret"
    assert (curve.operator_clients_dir, curve.camera_clients_dir) == (Path.cwd() / "operators", Path.cwd() / "cameras")
    refused("curve_operator_clients", env={"MUSC_TRANSPORT__CURVE_SERVER_SECRET": "daemon.key_secret"})
    refused("curve_allowed_clients", env={**env, "MUSC_TRANSPORT__CURVE_ALLOWED_CLIENTS": "c"})


def test_unknown_keys_and_variables_are_refused_by_name(tmp_path):
    (tmp_path / "line-3.toml").write_text("[online]\nwindw = 16\n")
    refused("unknown key 'online.windw'", str(tmp_path / "line-3.toml"), config_dir=tmp_path)
    bad_section = tmp_path / "bad.toml"
    bad_section.write_text("[onlin]\nwindow = 16\n")
    refused("unknown section [onlin]", str(bad_section), config_file=bad_section)
    in_lines = tmp_path / "lines.toml"
    in_lines.write_text("[lines.7.online]\nwindw = 16\n")
    refused("unknown key 'online.windw'", "[lines.7]", config_file=in_lines)
    refused("MUSC_ONLINE__WINDW", env={"MUSC_ONLINE__WINDW": "32"})
    refused("MUSC_ONLIN__WINDOW", "sections: paths, transport", env={"MUSC_ONLIN__WINDOW": "32"})
    refused("does not exist", config_file=tmp_path / "missing.toml")


@pytest.mark.parametrize(
    ("text", "phrases"),
    [
        ("[online]\nwindow = 0", ["online.window = 0", "must be at least 1"]),
        ("[online]\nadmission = 'maybe'", ['online.admission = "maybe"', "must be one of ok, all"]),
        ("[transport]\nbase_port = 70000", ["transport.base_port = 70000", "must be in [0, 65535]"]),
        ("[musc]\nr_list = 'abc'", ['musc.r_list = "abc"', "must be a list of integers"]),
        ("[musc]\nr_list = [1, 2]", ["musc.r_list", "positive odd"]),
        ("[model]\ndevice = 'gpu'", ["model.device", "auto, cpu, cuda or cuda:N"]),
        ("[pipeline]\nmax_age_ms = true", ["pipeline.max_age_ms", "must be a number"]),
        ("[thresholds]\nlow_margin = 4.0", ["thresholds.low_margin = 4.0 (from file", "at least low_margin"]),
        (
            "[online]\ncalibration_scores = 4",
            ["online.calibration_scores = 4 (from file", "min_scores = 8 (from default"],
        ),
        ("[thresholds]\nmin_scores = 40", ["thresholds.min_scores = 40 (from file", "at least thresholds.min_scores"]),
    ],
)
def test_bad_values_in_a_file_are_refused_naming_key_and_source(tmp_path, text, phrases):
    config_file = tmp_path / "bad.toml"
    config_file.write_text(text + "\n")
    refused(*phrases, f"file {config_file}", config_file=config_file)


def test_musc_variables_that_are_not_settings_are_ignored_and_shown(tmp_path):
    """Only MUSC_<SECTION>__<KEY> names settings; others (Kubernetes service links, MUSC_TORCH_SPEC) are left alone."""
    env = {"MUSC_REVIEW_PORT": "tcp://10.0.0.1:8080", "MUSC_TORCH_SPEC": "torch", "MUSC_ONLINE__WINDOW": "32"}
    config = load(env=env, config_dir=tmp_path)
    assert config.online.window == 32
    assert config.ignored_env == ("MUSC_REVIEW_PORT", "MUSC_TORCH_SPEC")
    assert "# ignored, not MUSC_<SECTION>__<KEY> settings: MUSC_REVIEW_PORT, MUSC_TORCH_SPEC" in config.show()
    assert config.as_dict()["ignored_env"] == ["MUSC_REVIEW_PORT", "MUSC_TORCH_SPEC"]


def test_bad_values_in_the_environment_name_the_variable():
    message = 'transport.base_port = "abc" (from env MUSC_TRANSPORT__BASE_PORT): must be an integer'
    refused(message, env={"MUSC_TRANSPORT__BASE_PORT": "abc"})
    refused("online.window = -3 (from env MUSC_ONLINE__WINDOW): must be at least 1", env={"MUSC_ONLINE__WINDOW": "-3"})
    refused("transport.base_port", "ports 65534..65537", line=0, env={"MUSC_TRANSPORT__BASE_PORT": "65534"})
    refused("line must be a non-negative integer", line=-1)


def test_show_is_toml_that_names_each_non_default_source(tmp_path):
    config = load(env={"MUSC_ONLINE__WINDOW": "32"}, config_dir=tmp_path)
    text = config.show()
    assert "window = 32  # env MUSC_ONLINE__WINDOW" in text
    assert '# frames_endpoint = "tcp://127.0.0.1:5580"' in text
    assert tomllib.loads(text) == {
        k: v for k, v in config.as_dict().items() if k not in ("line", "derived", "sources", "ignored_env")
    }


def test_config_show_command(monkeypatch):
    monkeypatch.setenv("MUSC_ONLINE__WINDOW", "32")
    runner = CliRunner()
    result = runner.invoke(app, ["config", "show", "--line", "3"])
    assert result.exit_code == 0, result.output
    assert "window = 32  # env MUSC_ONLINE__WINDOW" in result.stdout
    assert 'decisions_endpoint = "tcp://127.0.0.1:5581"' in result.stdout

    as_json = json.loads(runner.invoke(app, ["config", "show", "--line", "4", "--json"]).stdout)
    assert as_json["derived"]["http_port"] == 5593 and as_json["sources"]["online.window"].startswith("env")

    monkeypatch.setenv("MUSC_ONLINE__WINDOW", "0")
    bad = runner.invoke(app, ["config", "show", "--line", "3"])
    assert bad.exit_code == 2
    assert bad.stderr.strip() == "config error: online.window = 0 (from env MUSC_ONLINE__WINDOW): must be at least 1"


def test_the_shipped_defaults_file_is_the_schema_rendered():
    shipped = Path(__file__).resolve().parents[2] / "config" / "default.toml"
    assert shipped.read_text() == default_toml(), "run `musc-daemon config defaults > config/default.toml`"


def test_show_hides_the_store_password():
    config = load(env={"MUSC_STORE__URL": "postgresql+psycopg://musc:s3cret@db.plant:5432/musc"})
    assert "s3cret" not in config.show() and "s3cret" not in json.dumps(config.as_dict())
    assert 'url = "postgresql+psycopg://musc:***@db.plant:5432/musc"' in config.show()
    assert config.store_url.endswith("musc:s3cret@db.plant:5432/musc")  # the daemon itself still has it


def test_an_unset_image_size_is_the_backbones_own_and_config_show_says_where_it_came_from(tmp_path, monkeypatch):
    vit = {"MUSC_MODEL__BACKBONE": "ViT-L-14-336"}
    config = load(env=vit, config_dir=tmp_path)
    assert config.model.image_size == 518  # as `musc-online eval --backbone ViT-L-14-336` runs it, not 256
    assert config.sources["model.image_size"] == "backbone ViT-L-14-336 default"
    for key, value in vit.items():
        monkeypatch.setenv(key, value)
    shown = CliRunner().invoke(app, ["config", "show", "--line", "3"])
    assert "image_size = 518  # backbone ViT-L-14-336 default" in shown.stdout, shown.output

    explicit = load(env={**vit, "MUSC_MODEL__IMAGE_SIZE": "336"}, config_dir=tmp_path)
    assert (explicit.model.image_size, explicit.sources["model.image_size"]) == (336, "env MUSC_MODEL__IMAGE_SIZE")
    line_file = tmp_path / "line-3.toml"
    line_file.write_text('[model]\nbackbone = "dinov2_vitb14"\nimage_size = 448\n')
    assert load(config_dir=tmp_path).model.image_size == 448
    line_file.write_text('[model]\nbackbone = "dino_vitb8"\nimage_size = ""\n')  # empty: the backbone's own
    assert load(config_dir=tmp_path).model.image_size == 512


def test_eval_and_the_daemon_run_a_backbone_at_the_same_size_when_none_is_set(tmp_path):
    for folder, count in (("good", 3), ("spot", 1)):
        (tmp_path / "parts" / folder).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(np.full((48, 48, 3), 100 + 40 * i, np.uint8)).save(tmp_path / "parts" / folder / f"{i}.png")
    report = tmp_path / "eval.json"
    options = ["--layout", "folder", "--backbone", "efficientnet_lite0", "--device", "cpu", "--json", str(report)]
    evaluated = CliRunner().invoke(musc_online_app, ["eval", "--root", str(tmp_path / "parts"), *options])
    assert evaluated.exit_code == 0, evaluated.output
    line = InProcessLine(tmp_path / "lines", **{"model.backbone": "efficientnet_lite0", "model.image_size": ""})
    try:
        assert line.daemon.scorer.backbone.image_size == json.loads(report.read_text())["settings"]["image_size"] == 320
    finally:
        line.stop()


def test_show_says_whether_the_configured_backbones_weights_are_here(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    paper = load(config_dir=tmp_path, env={"MUSC_MODEL__BACKBONE": "ViT-L-14-336"}).show()
    assert '# backbone_weights = "ABSENT: `musc-online weights fetch ViT-L-14-336`' in paper
    assert '# backbone_weights = "present: ' in load(config_dir=tmp_path).show()  # efficientnet_lite0, packaged
