"""The Grafana dashboards: valid (a round trip through grafana-foundation-sdk's typed model),
up to date with dashboards/build.py, and naming only metrics that stream/ defines."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from ladsdin.stream.metrics import metric_names

from tests.prometheus import DASHBOARDS, PROMETHEUS_SERIES, ROOT, metric_names_in, panel_targets

DEFINED = metric_names() | PROMETHEUS_SERIES


def _load(path):
    return json.loads(path.read_text())


def test_both_dashboards_exist_with_panels():
    assert [p.name for p in DASHBOARDS] == ["operations.json", "science.json"]
    for path in DASHBOARDS:
        d = _load(path)
        assert d["uid"].startswith("ladsdin-") and len(panel_targets(d)) >= 8, path.name


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_round_trips_through_the_grafana_sdk(path):
    sdk = pytest.importorskip("grafana_foundation_sdk", reason="grafana-foundation-sdk needs Python >= 3.11")
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.cog.plugins import register_default_plugins
    from grafana_foundation_sdk.models.dashboard import Dashboard

    assert sdk is not None
    register_default_plugins()
    original = _load(path)
    back = json.loads(JSONEncoder(sort_keys=True).encode(Dashboard.from_json(original)))
    # a key Grafana's schema does not know, or a value of the wrong type, would not survive
    assert back == original


def test_the_round_trip_catches_an_unknown_key():
    pytest.importorskip("grafana_foundation_sdk", reason="grafana-foundation-sdk needs Python >= 3.11")
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.cog.plugins import register_default_plugins
    from grafana_foundation_sdk.models.dashboard import Dashboard

    register_default_plugins()
    broken = _load(DASHBOARDS[0])
    broken["panels"][1]["gridPoz"] = broken["panels"][1].pop("gridPos")  # a typo
    assert json.loads(JSONEncoder(sort_keys=True).encode(Dashboard.from_json(broken))) != broken


def test_committed_dashboards_match_the_code():
    pytest.importorskip("grafana_foundation_sdk", reason="grafana-foundation-sdk needs Python >= 3.11")
    done = subprocess.run([sys.executable, str(ROOT / "dashboards" / "build.py"), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_panel_names_only_metrics_stream_defines(path):
    targets = panel_targets(_load(path))
    used = {name: title for title, _, expr in targets for name in metric_names_in(expr)}
    assert used, "no metric found: the extractor is broken"
    unknown = {n: t for n, t in used.items() if n not in DEFINED}
    assert not unknown, f"panels name metrics stream/metrics.py does not define: {unknown}"
    assert any(n.startswith("ladsdin_") for n in used)


def test_the_metric_check_can_fail():
    assert metric_names_in('sum by (frame) (rate(ladsdin_epochs_scored_totl{frame=~"$frame"}[$__rate_interval]))') == {"ladsdin_epochs_scored_totl"}
    assert "ladsdin_epochs_scored_totl" not in DEFINED
    assert metric_names_in('histogram_quantile(0.99, sum by (le, stage) (rate(ladsdin_stage_duration_seconds_bucket[5m]))) > 1e-9') == {
        "ladsdin_stage_duration_seconds_bucket"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_panels_use_the_provisioned_data_source_and_unique_ids(path):
    ds = yaml.safe_load((ROOT / "dashboards" / "provisioning" / "datasources" / "prometheus.yaml").read_text())["datasources"][0]
    d = _load(path)
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    for p in d["panels"]:
        if p["type"] in ("row", "text"):
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": ds["uid"]}, p["title"]
        assert p["targets"] and all(t["refId"] for t in p["targets"]), p["title"]
        assert 0 <= p["gridPos"]["x"] and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24, p["title"]


def test_science_dashboard_shows_ck_with_na_alerts_and_largest_area():
    exprs = " ".join(e for _, _, e in panel_targets(_load(ROOT / "dashboards" / "science.json")))
    for name in ("ladsdin_epoch_anomalous_pixels", "ladsdin_epoch_n_a_pixels", "ladsdin_alerts_emitted_total",
                 "ladsdin_epoch_largest_object_area_square_meters", "ladsdin_last_alert_epoch_timestamp_seconds"):
        assert name in exprs, name


def test_dashboard_provider_points_at_the_mounted_dashboards():
    provider = yaml.safe_load((ROOT / "dashboards" / "provisioning" / "dashboards" / "ladsdin.yaml").read_text())["providers"][0]
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"../dashboards:{provider['options']['path']}:ro" in mounts
    assert "../dashboards/provisioning:/etc/grafana/provisioning:ro" in mounts
