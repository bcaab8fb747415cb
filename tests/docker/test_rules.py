"""The Prometheus alerting rules and config: ``promtool check rules``, ``promtool check config``,
and ``promtool test rules`` scenarios in which each alert condition holds, and one in which it
does not."""
from __future__ import annotations

import subprocess

import pytest
import yaml

from ladsdin.stream.metrics import metric_names

from tests.prometheus import PROM_CONFIG, PROMETHEUS_SERIES, RULES, metric_names_in

REQUIRED = {"LadsdinWorkerDown", "LadsdinDLQRate", "LadsdinFrameSilent", "LadsdinOutboxBacklogGrowing", "LadsdinAlertLatencyHigh"}
W = 'instance="w1:9464", job="ladsdin-worker"'
#: alert -> (interval, eval_time, count-by labels, input series when it fires, input series when it must not)
SCENARIOS = {
    "LadsdinWorkerDown": ("1m", "5m", "instance",
                          {f"up{{{W}}}": "1 1 0 0 0 0"},
                          {f"up{{{W}}}": "1 1 1 1 1 1"}),
    "LadsdinNoWorker": ("1m", "5m", "",
                        {f"up{{{W}}}": "0 0 0 0 0 0"},
                        {f"up{{{W}}}": "0 0 0 1 1 1", 'up{instance="w2:9464", job="ladsdin-worker"}': "1 1 1 1 1 1"}),
    "LadsdinWorkerNotReady": ("1m", "5m", "instance",
                              {f"ladsdin_worker_ready{{{W}}}": "0 0 0 0 0 0"},
                              {f"ladsdin_worker_ready{{{W}}}": "0 0 1 1 1 1"}),
    "LadsdinWorkerStuck": ("1m", "40m", "instance",
                           {f"ladsdin_events_in_progress{{{W}}}": "1x40", f"ladsdin_event_started_timestamp_seconds{{{W}}}": "0x40"},
                           {f"ladsdin_events_in_progress{{{W}}}": "0x40", f"ladsdin_event_started_timestamp_seconds{{{W}}}": "0x40"}),
    # 10 events a minute, 1 rejected (10 %), against 0.2 a minute (2 %)
    "LadsdinDLQRate": ("1m", "60m", "",
                       {f"ladsdin_epochs_consumed_total{{{W}}}": "0+10x60", f'ladsdin_epochs_rejected_total{{reason="all_nan", {W}}}': "0+1x60"},
                       {f"ladsdin_epochs_consumed_total{{{W}}}": "0+50x60", f'ladsdin_epochs_rejected_total{{reason="all_nan", {W}}}': "0+1x60"}),
    # revisit 12 d; the last event at t=0 against one that keeps arriving daily
    "LadsdinFrameSilent": ("1d", "30d", "frame",
                           {f'ladsdin_frame_last_event_timestamp_seconds{{frame="F1", {W}}}': "0x30",
                            f'ladsdin_frame_revisit_seconds{{frame="F1", {W}}}': "1036800x30"},
                           {f'ladsdin_frame_last_event_timestamp_seconds{{frame="F1", {W}}}': "0+86400x30",
                            f'ladsdin_frame_revisit_seconds{{frame="F1", {W}}}': "1036800x30"}),
    "LadsdinOutboxBacklogGrowing": ("1m", "20m", "instance",
                                    {f"ladsdin_outbox_backlog_messages{{{W}}}": "1+1x20"},
                                    {f"ladsdin_outbox_backlog_messages{{{W}}}": "5x20"}),
    # every observation in (5, 10] s against every one under 1 s
    "LadsdinAlertLatencyHigh": ("1m", "40m", "",
                                {**{f'ladsdin_publish_to_alert_seconds_bucket{{le="{le}", {W}}}': "0x40" for le in ("1", "5")},
                                 **{f'ladsdin_publish_to_alert_seconds_bucket{{le="{le}", {W}}}': "0+10x40" for le in ("10", "+Inf")}},
                                {f'ladsdin_publish_to_alert_seconds_bucket{{le="{le}", {W}}}': "0+10x40" for le in ("1", "5", "10", "+Inf")}),
}


def _rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def test_promtool_check_rules(prometheus_tools):
    done = subprocess.run([prometheus_tools.promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in done.stdout


def test_promtool_check_config_with_the_rules(prometheus_tools, tmp_path):
    cfg = yaml.safe_load(PROM_CONFIG.read_text())
    assert cfg["rule_files"] == ["/etc/prometheus/rules/*.rules.yml"]  # where compose mounts docker/prometheus/rules
    cfg["rule_files"] = [str(RULES.parent / "*.rules.yml")]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(cfg))
    done = subprocess.run([prometheus_tools.promtool, "check", "config", str(path)], capture_output=True, text=True)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "SUCCESS: 1 rule files found" in out and f"SUCCESS: {len(_rules())} rules found" in out
    # the committed file itself, as compose mounts it (its rule glob is empty outside the container)
    done = subprocess.run([prometheus_tools.promtool, "check", "config", str(PROM_CONFIG)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_issue_s_alerts_exist_and_name_defined_metrics():
    rules = {r["alert"]: r for r in _rules()}
    assert REQUIRED <= rules.keys()
    defined = metric_names() | PROMETHEUS_SERIES
    for name, r in rules.items():
        used = metric_names_in(r["expr"])
        assert used and used <= defined, f"{name}: {used - defined}"
        assert r["annotations"]["summary"] and r["annotations"]["description"] and r["labels"]["severity"]


def _case(alert: str, fires: bool) -> dict:
    interval, at, by, firing, quiet = SCENARIOS[alert]
    expr = next(r["expr"] for r in _rules() if r["alert"] == alert)
    series = firing if fires else quiet
    labels = {"instance": 'instance="w1:9464"', "frame": 'frame="F1"', "": ""}[by]
    expected = [{"labels": f"{{{labels}}}", "value": 1}] if fires else []
    return {"interval": interval, "input_series": [{"series": s, "values": v} for s, v in series.items()],
            "promql_expr_test": [{"expr": f"count by ({by}) ({expr})" if by else f"count({expr})", "eval_time": at, "exp_samples": expected}]}


def test_every_alert_fires_in_its_scenario_and_stays_quiet_otherwise(prometheus_tools, tmp_path):
    assert set(SCENARIOS) == {r["alert"] for r in _rules()}, "every rule needs a scenario"
    # promtool evaluates every rule at each evaluation_interval up to eval_time: one file per
    # interval keeps the 30-day scenario from being evaluated every minute
    for interval in sorted({v[0] for v in SCENARIOS.values()}):
        spec = {"rule_files": [str(RULES)], "evaluation_interval": interval,
                "tests": [_case(a, fires) for a, v in SCENARIOS.items() if v[0] == interval for fires in (True, False)]}
        path = tmp_path / f"rules_test_{interval}.yml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        done = subprocess.run([prometheus_tools.promtool, "test", "rules", str(path)], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


def test_a_firing_alert_renders_its_annotations(prometheus_tools, tmp_path):
    spec = {"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": [{"series": f"up{{{W}}}", "values": "1 1 0 0 0 0"}],
        "alert_rule_test": [{"eval_time": "5m", "alertname": "LadsdinWorkerDown", "exp_alerts": [{
            "exp_labels": {"severity": "critical", "instance": "w1:9464", "job": "ladsdin-worker"},
            "exp_annotations": {
                "summary": "LADSDIn worker w1:9464 is down",
                "description": "Prometheus cannot scrape w1:9464 for 2 minutes. Check the container (`docker compose ps worker`, "
                               "`docker compose logs worker`); a worker exits with status 75 on a Kafka or Redis failure and is restarted."}}]}]}]}
    path = tmp_path / "annotations_test.yml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    done = subprocess.run([prometheus_tools.promtool, "test", "rules", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("alert", ["LadsdinDLQRate"])
def test_a_wrong_expectation_fails(prometheus_tools, tmp_path, alert):
    """The scenario harness can fail: the quiet series, expected to fire, must be reported."""
    case = _case(alert, fires=False)
    case["promql_expr_test"][0]["exp_samples"] = [{"labels": "{}", "value": 1}]
    path = tmp_path / "wrong.yml"
    path.write_text(yaml.safe_dump({"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": [case]}))
    done = subprocess.run([prometheus_tools.promtool, "test", "rules", str(path)], capture_output=True, text=True)
    assert done.returncode != 0
