"""``jarag bench autoscale --quick``'s measurement, on the suite's cluster."""

from __future__ import annotations

import dataclasses
import io

import pytest

from serve.bench.autoscale import DRIVEN, QUICK, run
from serve.ops.local_cluster import LocalCluster
from tests.support import REPO

pytestmark = pytest.mark.cluster


def test_quick_run_reports_scale_up_scale_down_and_latency(cluster: LocalCluster) -> None:
    out = io.StringIO()
    settings = dataclasses.replace(QUICK, serve_config=REPO / "serve_config.yaml")
    report = run(settings, out, cluster=cluster)
    text = out.getvalue()
    print(text)
    stages = {stage.deployment: stage for stage in report.stages}
    for name in DRIVEN:
        stage = stages[name]
        assert stage.peak > stage.initial == 1, stage
        assert stage.first_added_s is not None and 0 < stage.first_added_s < 60, stage
        assert stage.settings["upscale_delay_s"] == 1.0
        # Back at its minimum, either before the load ended or measured after it.
        assert stage.at_end == stage.initial or stage.scaled_down_s is not None, stage
    assert stages["Generator"].peak == stages["Generator"].initial == 1
    before, during, after = report.phases
    assert before.ok and during.ok and after.ok
    assert all(phase.failed == 0 for phase in report.phases)
    assert after.concurrency > before.concurrency
    assert "machine:" in text and "versions:" in text
    assert "step -> first added serving" in text and "p99 ms" in text
    assert set(report.nodes) == set(DRIVEN) and all(report.nodes.values())
