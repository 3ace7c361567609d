"""The pretraining step reads back from the device only the masked-frame count M: one host sync per step.

On CUDA, torch.cuda.set_sync_debug_mode catches every read-back (scripts/gpu_checks/run.sh runs the step with it).
Here, on the CPU, the same strictness is checked by recording, with its call site, every op that makes the host
wait for an accelerator: `.item()` / `int()` / `bool()` (aten::_local_scalar_dense), ops whose output shape
depends on the data (nonzero, masked_select, unique, boolean indexing), `.cpu()`, `.tolist()`, `.numpy()`.
On the CPU some of them read CPU-resident tensors that stay on the CPU in a GPU run too (the data loader's
lengths); those call sites are listed below with the reason they cost no sync.
"""

import traceback
from pathlib import Path

import pytest
import torch
from model_fixtures import micro_config
from torch.utils._python_dispatch import TorchDispatchMode

from xlsr.model import Wav2Vec2ForPreTraining

SYNC_OPS = {"aten._local_scalar_dense", "aten.nonzero", "aten.masked_select", "aten._unique2", "aten.unique_dim",
            "aten.unique_consecutive", "aten.repeat_interleave", "aten.is_nonzero", "aten.equal"}
TORCH_DIR = str(Path(torch.__file__).parent)

# Call sites whose host reads cost no sync in a GPU run.
DELIBERATE = "mask_spans"  # the step's one sync: M, drawn on the device, fixes the shapes (pretraining.py)
ON_HOST_TENSORS = {
    "check_waveforms": "length values are checked only for lengths on the CPU (the data loader's)",
    "check_features": "frame lengths are checked only on the CPU (derived from the loader's lengths)",
    "padding_mask_if_padded": "decided on the host for CPU lengths only; device lengths always get a mask",
    "_layer0_steps": "decided on the host for CPU lengths only (group-norm CNN)",
}
CPU_ONLY_IN_TORCH = "one_hot("  # F.one_hot checks its indices with .item() on the CPU, not on CUDA


class HostReads(TorchDispatchMode):
    """Records (function, source line) of the innermost non-torch frame of every op that would sync a device."""

    def __init__(self):
        super().__init__()
        self.sites: list[tuple[str, str, str]] = []
        self._patched = {}

    def record(self, what: str) -> None:
        frame = next(f for f in reversed(traceback.extract_stack())
                     if not f.filename.startswith(TORCH_DIR) and f.name not in ("record", "wrapper", "__torch_dispatch__"))
        self.sites.append((what, frame.name, (frame.line or "").strip()))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket._qualified_op_name.replace("::", ".")
        bool_index = name == "aten.index" and any(isinstance(i, torch.Tensor) and i.dtype == torch.bool
                                                  for i in args[1] if i is not None)
        if name in SYNC_OPS or bool_index:
            self.record(name)
        return func(*args, **(kwargs or {}))

    def __enter__(self):
        for method in ("cpu", "tolist", "numpy"):
            original = getattr(torch.Tensor, method)
            self._patched[method] = original

            def wrapper(t, *a, _original=original, _method=method, **k):
                self.record(f"Tensor.{_method}")
                return _original(t, *a, **k)

            setattr(torch.Tensor, method, wrapper)
        return super().__enter__()

    def __exit__(self, *exc):
        for method, original in self._patched.items():
            setattr(torch.Tensor, method, original)
        return super().__exit__(*exc)


def unexplained(sites: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    return [s for s in sites if s[1] != DELIBERATE and s[1] not in ON_HOST_TENSORS and CPU_ONLY_IN_TORCH not in s[2]]


def test_the_recorder_sees_item_bool_and_boolean_indexing():
    x = torch.arange(6.0)
    with HostReads() as reads:
        x.sum().item()
        bool(x.any())
        x[x > 2].sum()
        x.cpu()
    assert [what for what, _, _ in reads.sites] == ["aten._local_scalar_dense", "aten._local_scalar_dense",
                                                    "aten.index", "Tensor.cpu"]
    assert all(site == "test_the_recorder_sees_item_bool_and_boolean_indexing" for _, site, _ in reads.sites)


@pytest.mark.parametrize("mode", ["layer_norm", "group_norm"])
@pytest.mark.parametrize("padded", [False, True])
def test_pretraining_step_has_one_host_sync(mode, padded):
    torch.manual_seed(0)
    config = micro_config(extractor_mode=mode, dropout=0.1, cross_sample_negatives=2, feature_penalty_weight=1.0)
    model = Wav2Vec2ForPreTraining(config).train()
    x = torch.randn(3, 6000)
    lengths = torch.tensor([6000, 4500, 3000]) if padded else None
    gen = torch.Generator().manual_seed(0)
    model(x, lengths, generator=gen).loss.backward()  # warm-up: lazy initialisation is not the step
    with HostReads() as reads:
        out = model(x, lengths, generator=gen)
        out.loss.backward()
    assert unexplained(reads.sites) == []
    deliberate = [what for what, site, _ in reads.sites if site == DELIBERATE]
    assert deliberate.count("Tensor.cpu") == 1, reads.sites  # one device -> host copy: the row counts of M
    assert set(deliberate) == {"Tensor.cpu", "aten._local_scalar_dense"}  # read on the host copy
