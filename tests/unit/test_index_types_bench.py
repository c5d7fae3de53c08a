from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from serve.bench import index_types
from serve.cli import main
from serve.indexing.factory import nlist_for


def test_nlist_is_a_power_of_two_near_four_square_roots_and_trainable() -> None:
    assert nlist_for(1_000_000) == 4096
    assert nlist_for(5_300_000) == 8192
    assert nlist_for(100_000) == 1024
    assert nlist_for(3_000) == 64  # 256 would need 9,984 training points
    assert nlist_for(10) == 1


def test_clustered_vectors_are_unit_length_clustered_and_reproducible() -> None:
    settings = index_types.IndexBenchSettings(size=2_000, dim=64, clusters=8)
    first = np.concatenate(list(index_types.clustered_vectors(2_000, settings, 0, batch=300)))
    again = np.concatenate(list(index_types.clustered_vectors(2_000, settings, 0, batch=300)))
    queries = np.concatenate(list(index_types.clustered_vectors(50, settings, 1)))
    assert first.shape == (2_000, 64)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(first, again)
    assert not np.isin(queries, first).all(axis=1).any()
    # Nearest neighbours are much closer than random pairs (not uniform noise).
    similarities = queries @ first.T
    assert float(np.median(similarities.max(axis=1))) > 0.8
    assert abs(float(np.median(similarities))) < 0.3


def test_quick_run_reports_every_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "index.json"

    assert main(["bench", "index", "--quick", "--json", str(out)]) == 0

    printed = capsys.readouterr().out
    report = json.loads(out.read_text(encoding="utf-8"))
    quick = index_types.QUICK
    assert report["settings"]["size"] == quick.size
    assert report["nlist"] == nlist_for(quick.size)
    assert report["train_vectors"] == min(quick.train_size, quick.size)
    rows = report["results"]
    names = [r["name"] for r in rows]
    # One row per index type and operating point, each index built once.
    assert names == [
        "Flat",
        *["IVF-PQ + re-scoring"] * (len(quick.nprobes) * len(quick.k_factors)),
        "IVF-PQ alone",
        *["IVF-SQ8"] * len(quick.nprobes),
        *["HNSW32"] * len(quick.ef_searches),
    ]
    flat = rows[0]
    assert flat["recall_at_10"] == 1.0 and flat["speedup"] == 1.0
    assert flat["ram_bytes_per_vector"] >= quick.dim * 4
    refined = [r for r in rows if r["name"] == "IVF-PQ + re-scoring"]
    (alone,) = [r for r in rows if r["name"] == "IVF-PQ alone"]
    assert [r["search_parameters"] for r in refined] == [
        {"nprobe": n, "k_factor_rf": k} for n in quick.nprobes for k in quick.k_factors
    ]
    assert alone["search_parameters"] == {"nprobe": max(quick.nprobes)}
    assert alone["factory"] == refined[0]["factory"] and alone["disk_bytes_per_vector"] == 0
    for r in refined:
        assert r["factory"].endswith(",RFlat") and r["mmap"]
        assert r["disk_bytes_per_vector"] == quick.dim * 4
        # The codes (pq_m bytes) and ids stay in RAM; the full vectors do not.
        assert quick.pq_m <= r["ram_bytes_per_vector"] <= quick.pq_m + 8 + 1
        assert r["fixed_ram_mib"] > 0  # the IVF centroids and the PQ codebooks
    # Re-scoring the candidates of the widest probe beats the codes alone.
    assert refined[-1]["recall_at_10"] >= alone["recall_at_10"]
    assert [r["search_parameters"] for r in rows if r["name"] == "HNSW32"] == [
        {"efSearch": ef} for ef in quick.ef_searches
    ]
    # The verdict names the fastest row within the RAM and recall parts of the target.
    frugal = [
        r
        for r in rows
        if r["ram_bytes_per_vector"] <= index_types.TARGET_RAM_BYTES_PER_VECTOR
        and r["recall_at_10"] >= index_types.TARGET_RECALL
    ]
    if frugal:
        assert report["closest"] == max(frugal, key=lambda r: r["qps"])
        met = report["closest"]["speedup"] >= index_types.TARGET_SPEEDUP
        assert report["best"] == (report["closest"] if met else None)
        assert ("Target" in printed) and (("NOT met" in printed) != met)
    else:
        assert report["best"] is None and report["closest"] is None
        assert "no row meets" in printed
    for r in rows:
        assert r["build_s"] >= 0 and r["loaded_ram_mib"] >= 0
        assert 0 < r["p50_ms"] <= r["p99_ms"]
        assert r["qps"] > 0 and math.isclose(r["speedup"], r["qps"] / flat["qps"])
        assert 0.0 <= r["recall_at_10"] <= 1.0
        w = r["wikipedia"]
        assert w["passages"] == index_types.WIKIPEDIA_PASSAGES
        ratio = index_types.WIKIPEDIA_PASSAGES / quick.size
        assert math.isclose(
            w["ram_gib"],
            r["fixed_ram_mib"] / 2**10 + r["ram_bytes_per_vector"] * ratio * quick.size / 2**30,
        )
        assert r["fixed_ram_mib"] >= 0
        assert w["build_h"] >= 0 and w["p50_ms"] > 0 and w["qps"] > 0
        assert f"| {r['name']} | `{r['factory']}` |" in printed
    assert flat["wikipedia"]["qps"] == pytest.approx(flat["qps"] / ratio)


def test_recall_counts_the_exact_neighbours_found() -> None:
    truth = np.array([[1, 2], [3, 4]])
    found = np.array([[2, 9], [-1, -1]])
    assert index_types.recall(found, truth) == 0.25


def test_search_settings_are_comma_separated_positive_integers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["bench", "index", "--nprobe", "8,x"])
    assert "want integers separated by commas" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "index", "--ef-search", "0"])
    assert "at least 1" in capsys.readouterr().err
