"""The engine throughput command: its FLOP count, its peak lookup, and a run without Ray."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from serve.bench.engine_throughput import dense_bf16_peak_tflops, encoder_flops
from serve.bench.random_models import ENCODER_SHAPES, EncoderShape
from serve.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_encoder_flops_equal_pytorchs_count_of_a_bert_pass() -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from torch.utils.flop_counter import FlopCounterMode

    shape = EncoderShape(hidden_size=64, layers=3, heads=4, intermediate_size=256)
    config = transformers.BertConfig(
        vocab_size=100,
        hidden_size=shape.hidden_size,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        intermediate_size=shape.intermediate_size,
        attn_implementation="eager",  # attention as plain matmuls, which the counter sees
    )
    model = transformers.BertModel(config, add_pooling_layer=False).eval()
    ids = torch.randint(5, 100, (3, 96))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(input_ids=ids, attention_mask=torch.ones_like(ids))
    assert counter.get_total_flops() == 3 * encoder_flops(shape, 96)


def test_ruri_large_at_256_tokens_is_about_161_gflop() -> None:
    # BERT-large: ~302M parameters outside the embeddings, 2 FLOPs each per token,
    # plus attention's products.
    flops = encoder_flops(ENCODER_SHAPES["ruri-large"], 256)
    assert 2 * 302e6 * 256 < flops < 1.1 * 2 * 302e6 * 256
    assert round(flops / 1e9) == 161


@pytest.mark.parametrize(
    ("name", "peak"),
    [
        ("NVIDIA H200", 989.0),
        ("NVIDIA H200 NVL", 835.0),
        ("NVIDIA H100 80GB HBM3", 989.0),
        ("NVIDIA H100 PCIe", 756.0),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("NVIDIA L4", 121.0),
        ("NVIDIA L40S", 362.0),
        ("NVIDIA GeForce RTX 4090", None),
        ("CPU (AMD EPYC)", None),
    ],
)
def test_peak_of_known_gpus(name: str, peak: float | None) -> None:
    assert dense_bf16_peak_tflops(name) == peak


def test_runs_without_ray_and_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "engines.json"
    script = (
        "import sys; sys.modules['ray'] = None\n"  # any import of Ray fails
        "from serve.bench.engine_throughput import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    args = ["--shape", "tiny", "--text-tokens", "48", "--batch-sizes", "1", "4"]
    args += ["--seconds", "0.2", "--device", "cpu", "--dtype", "float32"]
    args += ["--peak-tflops", "2", "--json", str(out)]
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "peak: 2 TFLOP/s (given)" in done.stdout
    rows = [
        line.split()
        for line in done.stdout.splitlines()
        if line.startswith(("Embedder", "Reranker"))
    ]
    assert [(r[0], r[1]) for r in rows] == [
        ("Embedder", "1"),
        ("Embedder", "4"),
        ("Reranker", "1"),
        ("Reranker", "4"),
    ]
    figures = json.loads(out.read_text())
    assert figures["peak_tflops"] == 2.0
    flops = encoder_flops(ENCODER_SHAPES["tiny"], 48)
    for point in figures["points"]:
        assert point["batches"] >= 1 and point["seconds"] >= 0.2
        rate = point["batches"] * point["batch_size"] / point["seconds"]
        assert point["passages_per_s"] == pytest.approx(rate)
        assert point["flops_per_text"] == flops
        assert point["tflops"] == pytest.approx(rate * flops / 1e12)
        assert point["share_of_peak"] == pytest.approx(point["tflops"] / 2)


def test_a_text_length_beyond_the_models_positions_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["bench", "engines", "--shape", "tiny", "--text-tokens", "200", "--device", "cpu"]
    assert main(args) == 2
    assert "--text-tokens 200 exceeds the 'tiny' shape's 128 positions" in capsys.readouterr().err


def test_asking_for_a_gpu_where_there_is_none_is_a_clear_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["bench", "engines", "--shape", "tiny", "--text-tokens", "32"]) == 2
    assert "--device cuda: PyTorch sees no CUDA GPU here" in capsys.readouterr().err
