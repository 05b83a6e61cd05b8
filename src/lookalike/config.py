"""Process-wide settings: GPU use (Turi's ``config.set_num_gpus``), the cores to use, the cache and data folders."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from lookalike.errors import InvalidArgument

_num_gpus = -1  # Turi's default: use a GPU when there is one


def set_num_gpus(num_gpus: int) -> None:
    """Choose the device for embedding, as in Turi Create.

    Parameters
    ----------
    num_gpus : int
        ``-1`` uses a GPU when ONNX Runtime has the CUDA provider, ``0`` uses
        the CPU only, ``1`` asks for one GPU (with a warning and the CPU when
        none is available).

    Examples
    --------
    >>> import lookalike as lk
    >>> lk.config.set_num_gpus(0)
    """
    global _num_gpus
    if isinstance(num_gpus, bool) or not isinstance(num_gpus, int) or num_gpus < -1:
        raise InvalidArgument(f"num_gpus must be -1 (all), 0 (CPU) or a positive count, got {num_gpus!r}")
    _num_gpus = num_gpus


def get_num_gpus() -> int:
    """The value last given to :func:`set_num_gpus` (default ``-1``)."""
    return _num_gpus


def cpu_count() -> int:
    """Cores this process may run on (its CPU affinity where the system has one, else every core)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def execution_providers() -> list[str]:
    """ONNX Runtime execution providers for the current GPU setting, best first."""
    import onnxruntime as ort

    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if _num_gpus == 0:
        return ["CPUExecutionProvider"]
    if has_cuda:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if _num_gpus > 0:
        warnings.warn(
            "set_num_gpus asked for a GPU but ONNX Runtime has no CUDA provider here "
            "(install onnxruntime-gpu on a machine with an NVIDIA GPU); using the CPU",
            RuntimeWarning,
            stacklevel=3,
        )
    return ["CPUExecutionProvider"]


def cache_dir() -> Path:
    """Folder for converted models and embedding caches.

    ``$LOOKALIKE_CACHE`` if set, else ``$XDG_CACHE_HOME/lookalike``, else
    ``~/.cache/lookalike``.
    """
    if os.environ.get("LOOKALIKE_CACHE"):
        return Path(os.environ["LOOKALIKE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lookalike"


def data_dir() -> Path:
    """Folder for what lookalike keeps for the user and must not be thrown away like a cache (undo manifests).

    ``$XDG_DATA_HOME/lookalike``, else ``~/.local/share/lookalike``.
    """
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "lookalike"
