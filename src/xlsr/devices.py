"""The one place a device name (`--device auto|cpu|cuda|cuda:N`) becomes a torch.device."""

from __future__ import annotations

import torch

from xlsr.errors import XlsrError


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' → this rank's GPU when CUDA is available, else CPU; a device this machine lacks is one XlsrError."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device("cuda", local_rank) if name == "cuda" else torch.device(name)
    except RuntimeError:
        device = None
    # torch knows more types (meta, mps, xpu, ...), but training, autocast and decoding here are written for
    # cpu and cuda only: another type would pass this check and fail deep inside the run, blaming something else
    if device is None or device.type not in ("cpu", "cuda"):
        raise XlsrError(f"device: {name!r} is not a device (cpu, cuda, cuda:N or auto)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise XlsrError(f"device: {name!r} asked for, but this torch ({torch.__version__}) sees no CUDA GPU; "
                        f"use --device cpu or auto")
    return device


_OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)  # torch.OutOfMemoryError: 2.5+


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` is an allocation failure: a GPU's OutOfMemoryError, or the CPU allocator's RuntimeError."""
    return isinstance(exc, _OUT_OF_MEMORY) or (isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc))
