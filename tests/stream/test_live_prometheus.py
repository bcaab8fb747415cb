"""A real Prometheus scrapes a running worker during a replay; every dashboard panel's PromQL
returns data, every alerting rule evaluates, and the science panels show the earthquake epoch.

Everything is real: the tansu broker and Valkey (embedded), the worker as its own process, the
Debian ``prometheus`` binary with the committed config (scrape interval cut to 1 s, the target
pointed at the worker) and rules."""
from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from ladsdin.models.simulation import simulate
from ladsdin.stream.embedded import EmbeddedBroker, EmbeddedRedis, free_port
from ladsdin.stream.metrics import epoch_timestamp
from ladsdin.ingest.cube import publish_cube
from ladsdin.stream.settings import Settings

from tests.e2e import start_worker, stop_process
from tests.prometheus import DASHBOARDS, PROM_CONFIG, RULES, panel_targets

pytestmark = pytest.mark.slow
HISTORY = 40
#: Grafana's variables as the panels would send them: every frame, a 1 min rate window.
GRAFANA_VARS = {"$__rate_interval": "1m", "$frame": ".*"}


def _http(url: str, timeout: float = 10.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return 0, repr(e)


def _wait(what: str, ok, timeout: float, *procs: tuple[subprocess.Popen, Path]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ok():
            return
        for proc, log in procs:
            assert proc.poll() is None, f"{proc.args[0]} exited ({proc.returncode}) waiting for {what}:\n{log.read_text()[-3000:]}"
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}:\n" + "\n".join(log.read_text()[-2000:] for _, log in procs))


def _prometheus_config(tmp: Path, worker_port: int) -> Path:
    """The committed config, with a 1 s scrape of the local worker and the committed rules."""
    cfg = yaml.safe_load(PROM_CONFIG.read_text())
    cfg["global"].update(scrape_interval="1s", evaluation_interval="1s")
    cfg["rule_files"] = [str(RULES)]
    job = next(j for j in cfg["scrape_configs"] if j["job_name"] == "ladsdin-worker")
    assert job["dns_sd_configs"][0]["port"] == Settings().metrics_port  # compose scrapes the settings' port
    job.pop("dns_sd_configs")
    job["static_configs"] = [{"targets": [f"127.0.0.1:{worker_port}"]}]
    cfg["scrape_configs"] = [job]
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _query(prom: str, expr: str) -> dict:
    status, body = _http(f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    answer = json.loads(body) if body.startswith("{") else {"status": "error", "error": body}
    answer["http"] = status
    return answer


def _scalar(prom: str, expr: str) -> float | None:
    res = _query(prom, expr).get("data", {}).get("result", [])
    return float(res[0]["value"][1]) if res else None


@pytest.fixture(scope="module")
def live(prometheus_tools, tmp_path_factory):
    """Broker, Valkey, a worker with metrics on a free port, and Prometheus scraping it; a
    48x48 Menyuan frame (earthquake in the scored epochs) and two bad events replayed."""
    tmp = tmp_path_factory.mktemp("live")
    cube, truth = simulate("menyuan", "A", n_lat=48, n_lon=48, n_epochs=60, seed=5, event_index=55, missing_fraction=0.0)
    procs: list[subprocess.Popen] = []
    with EmbeddedBroker() as broker, EmbeddedRedis() as redis_srv:
        port, prom_port = free_port(), free_port()
        s = Settings(kafka_bootstrap=broker.bootstrap, redis_url=redis_srv.url, data_root=tmp / "data", min_history_epochs=HISTORY,
                     seismic_area_km2=20.0, consumer_group="live-prometheus", device="cpu", threads=1, metrics_port=port,
                     metrics_host="127.0.0.1", health_interval_s=1.0)
        broker.create_topics(s.topics)
        wlog, plog = tmp / "worker.log", tmp / "prometheus.log"
        try:
            worker = start_worker(s, wlog)
            procs.append(worker)
            prom = subprocess.Popen([prometheus_tools.prometheus, f"--config.file={_prometheus_config(tmp, port)}",
                                     f"--storage.tsdb.path={tmp / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
                                    stdout=plog.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
            procs.append(prom)
            url = f"http://127.0.0.1:{prom_port}"
            watched = ((worker, wlog), (prom, plog))
            _wait("the worker's /ready", lambda: _http(f"http://127.0.0.1:{port}/ready")[0] == 200, 90, *watched)
            _wait("Prometheus ready", lambda: _http(f"{url}/-/ready")[0] == 200, 60, *watched)
            publish_cube(cube, s, broker.bootstrap)
            from kafka import KafkaProducer

            producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
            for bad in (b"{not json", b"[]"):
                producer.send(s.epochs_topic, key=b"bad", value=bad)
            producer.flush(30)
            producer.close()
            n_scored = cube.sizes["time"] - HISTORY
            _wait("Prometheus to see every epoch scored and both rejections",
                  lambda: _scalar(url, "sum(ladsdin_epochs_scored_total)") == n_scored
                  and _scalar(url, "sum(ladsdin_epochs_rejected_total)") == 2, 150, *watched)
            time.sleep(3)  # a few more scrapes after the last event, so every rate() has two samples
            yield {"url": url, "cube": cube, "truth": truth, "n_scored": n_scored, "settings": s, "worker_port": port}
        finally:
            for p in reversed(procs):
                stop_process(p)


def _panel_exprs() -> list[tuple[str, str, str]]:
    out = []
    for path in DASHBOARDS:
        for title, ref, expr in panel_targets(json.loads(path.read_text())):
            for var, value in GRAFANA_VARS.items():
                expr = expr.replace(var, value)
            assert "$" not in expr, f"{path.name} / {title}: unsubstituted variable in {expr}"
            out.append((f"{path.name} / {title} / {ref}", expr, path.name))
    return out


def test_every_dashboard_panel_returns_data(live):
    empty, failed = [], []
    exprs = _panel_exprs()
    assert len(exprs) >= 30
    for name, expr, _ in exprs:
        ans = _query(live["url"], expr)
        if ans.get("status") != "success":
            failed.append((name, expr, ans.get("error")))
        elif not ans["data"]["result"]:
            empty.append((name, expr))
    assert not failed, f"panel queries failed: {failed}"
    assert not empty, f"panel queries returned no data: {empty}"


def test_every_alerting_rule_evaluates_and_is_healthy(live):
    rules = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    for r in rules:
        ans = _query(live["url"], r["expr"])
        assert ans.get("status") == "success", f"{r['alert']}: {ans.get('error')}"

    def loaded() -> list[dict]:
        status, body = _http(f"{live['url']}/api/v1/rules")
        return [r for g in json.loads(body)["data"]["groups"] for r in g["rules"]] if status == 200 else []

    _wait("every rule evaluated", lambda: len(loaded()) == len(rules) and all(r.get("lastEvaluation", "").startswith("2") and
                                                                              not r["lastEvaluation"].startswith("0001") for r in loaded()), 30)
    got = loaded()
    assert sorted(r["name"] for r in got) == sorted(r["alert"] for r in rules)
    assert all(r["health"] == "ok" for r in got), [(r["name"], r.get("lastError")) for r in got if r["health"] != "ok"]
    firing = {r["name"] for r in got if r["state"] != "inactive"}
    assert "LadsdinWorkerDown" not in firing and "LadsdinNoWorker" not in firing


def test_science_panels_show_the_earthquake_epoch(live):
    url, truth, frame = live["url"], live["truth"], live["cube"].attrs["frame"]
    quake_ms = epoch_timestamp(truth.attrs["first_post_event"]) * 1000
    science = json.loads(next(p for p in DASHBOARDS if p.name == "science.json").read_text())
    stat = next(t for title, _, t in panel_targets(science) if title == "Epoch of the last alert").replace("$frame", ".*")
    res = _query(url, stat)["data"]["result"]
    assert [(r["metric"]["frame"], float(r["value"][1])) for r in res] == [(frame, quake_ms)]
    last_scored = _scalar(url, f'max by (frame) (ladsdin_last_scored_epoch_timestamp_seconds{{frame="{frame}"}})')
    assert last_scored == epoch_timestamp(str(live["cube"].time.values[-1])[:10])
    alerts = _scalar(url, f'sum(ladsdin_alerts_emitted_total{{frame="{frame}"}})')
    assert alerts is not None and alerts >= 1
    n_a = _scalar(url, f'max(ladsdin_epoch_n_a_pixels{{frame="{frame}"}})')
    assert n_a is not None and n_a > 0
    assert _scalar(url, f'max(ladsdin_epoch_largest_object_area_square_meters{{frame="{frame}"}})') is not None


def test_operations_panels_tell_the_story(live):
    url = live["url"]
    assert _scalar(url, 'sum(up{job="ladsdin-worker"})') == 1
    assert _scalar(url, 'sum(ladsdin_worker_ready{job="ladsdin-worker"})') == 1
    dlq = {r["metric"]["reason"]: float(r["value"][1]) for r in _query(url, "sum by (reason) (ladsdin_epochs_rejected_total)")["data"]["result"]}
    assert dlq["invalid_json"] == 1 and dlq["schema_violation"] == 1 and sum(dlq.values()) == 2
    assert _scalar(url, 'sum(ladsdin_epochs_processed_total{status="bootstrapped"})') == 1
    assert _scalar(url, 'sum(ladsdin_outbox_messages_published_total{topic="ladsdin.epoch-summaries.v1"})') == live["n_scored"]
    assert _scalar(url, 'sum(ladsdin_outbox_messages_published_total{topic="licsar.epochs.v1.dlq"})') == 2
    assert _scalar(url, "ladsdin_publish_to_alert_seconds_count") == live["n_scored"]
