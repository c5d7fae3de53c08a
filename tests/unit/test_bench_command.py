from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from serve.cli import main
from serve.commands import bench

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_bench_extra_lists_the_pyproject_bench_packages() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extras = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    packages = {re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0] for spec in extras["bench"]}
    assert packages == set(bench.BENCH_EXTRA)


@pytest.mark.parametrize("missing", bench.BENCH_EXTRA)
def test_bench_run_stops_at_once_without_the_bench_extra(
    missing: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def launch(settings: object) -> int:
        raise AssertionError("the suite started without the bench extra")

    monkeypatch.setattr(bench, "launch", launch)
    monkeypatch.setitem(sys.modules, missing, None)  # import raises ImportError
    out = tmp_path / "results"

    assert main(["bench", "run", "--quick", "--out", str(out)]) == 2

    error = capsys.readouterr().err
    assert f"'{missing}'" in error
    assert "pip install 'ja-rag-serve[bench]'" in error
    assert not out.exists()
