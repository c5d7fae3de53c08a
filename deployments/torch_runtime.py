"""Device and dtype choices shared by the PyTorch-based engines (no Ray here)."""

from __future__ import annotations

from typing import Any, Literal

from deployments.extras import require

Device = Literal["auto", "cpu", "cuda"]
DType = Literal["auto", "float32", "float16", "bfloat16"]


def resolve_device(device: Device, purpose: str) -> str:
    """'cuda' when asked for (and present) or when 'auto' finds a GPU, else 'cpu'."""
    torch = require("torch", "models", purpose)
    available = bool(torch.cuda.is_available())
    if device == "cuda" and not available:
        raise RuntimeError(
            f"{purpose}: device is 'cuda' but PyTorch sees no CUDA GPU (CPU-only torch build, "
            "no GPU on this node, or the replica was given no num_gpus); set device: cpu or auto"
        )
    if device == "auto":
        return "cuda" if available else "cpu"
    return device


def torch_dtype(dtype: DType, device: str) -> Any:
    """The torch dtype to load weights in; 'auto' is float16 on GPU and float32 on CPU."""
    torch = require("torch", "models", "loading model weights")
    if dtype == "auto":
        return torch.float16 if device == "cuda" else torch.float32
    return getattr(torch, dtype)
