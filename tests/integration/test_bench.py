"""`jarag bench batching --quick` runs through real deployments and prints every figure."""

from __future__ import annotations

import re

import pytest

from serve.cli import main
from tests.integration.conftest import ServeCluster

pytestmark = pytest.mark.integration


def test_quick_batching_benchmark_prints_every_field(
    serve_cluster: ServeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "batching", "--quick"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"machine: .+, \d+ CPUs \(.+\), [\d.]+ GiB RAM", out)
    for package in ("python", "ray", "torch", "transformers", "sentence-transformers"):
        assert re.search(rf"versions: .*{package} \d", out), package
    assert "model: random BERT 'tiny'" in out
    assert re.search(r"load average \(1, 5, 15 min\): [\d. ]+ before, [\d. ]+ after", out)
    header = next(line for line in out.splitlines() if line.startswith("stage"))
    for column in ("concurrent", "batched req/s", "unbatched req/s", "p50 ms", "p95 ms"):
        assert column in header
    rows = [line for line in out.splitlines() if re.match(r"(Embedder|Reranker)\s+\d", line)]
    assert [(r.split()[0], int(r.split()[1])) for r in rows] == [
        (stage, level) for stage in ("Embedder", "Reranker") for level in (1, 8, 32)
    ]
    for row in rows:
        numbers = [float(n) for n in re.findall(r"\d+\.\d+", row)]
        assert len(numbers) == 9 and all(n > 0 for n in numbers), row
        assert row.rstrip().endswith("x")
    for stage in ("Embedder", "Reranker"):
        assert re.search(
            rf"engine alone, no Serve, {stage}: [\d.]+ ms per item \d+ at a time, "
            r"[\d.]+ ms per item \d+ at a time \([\d.]+x\)",
            out,
        ), stage
