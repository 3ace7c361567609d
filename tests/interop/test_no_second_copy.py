"""Loading keeps one copy of the weights: they stay pages of the file (copy-on-write); saving streams them.

Memory itself is measured in benchmarks/load_large.py; these tests check the mechanism: after loading,
each weight's memory lies inside a mapping of the checkpoint file, writes to it never reach the file,
and the streaming safetensors writer produces what the safetensors library reads back.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from fairseq_fixtures import fairseq_model_cfg, fairseq_state
from hf_fixtures import make_hf, padded_batch
from safetensors import safe_open
from safetensors.torch import load_file

from xlsr.interop.load import load_pretrained
from xlsr.interop.native import save_checkpoint
from xlsr.interop.safetensors_file import write_safetensors


def _file_mappings(path: Path) -> list[tuple[int, int]]:
    """Address ranges of this process mapped from `path` (Linux /proc/self/maps)."""
    ranges = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and Path(parts[5]) == path.resolve():
            lo, hi = (int(a, 16) for a in parts[0].split("-"))
            ranges.append((lo, hi))
    return ranges


def _mapped_share(model: torch.nn.Module, path: Path) -> float:
    """Share of the model's parameter bytes that live in a mapping of `path`."""
    ranges = _file_mappings(path)
    total = inside = 0
    for p in model.parameters():
        ptr, size = p.data_ptr(), p.numel() * p.element_size()
        total += size
        inside += size if any(lo <= ptr and ptr + size <= hi for lo, hi in ranges) else 0
    return inside / total


needs_proc = pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc/self/maps")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@needs_proc
@pytest.mark.parametrize("source", ["hf", "xlsr", "fairseq"])
def test_weights_are_the_file_pages_and_writes_stay_private(source, tmp_path):
    hf = make_hf("Wav2Vec2ForPreTraining", "xlsr_like", seed=50)
    if source == "hf":
        hf.save_pretrained(tmp_path / "ckpt")
        src, weights = tmp_path / "ckpt", tmp_path / "ckpt" / "model.safetensors"
    elif source == "xlsr":
        save_checkpoint(tmp_path / "ckpt", load_pretrained(_save_hf(hf, tmp_path)).model)
        src, weights = tmp_path / "ckpt", tmp_path / "ckpt" / "model.safetensors"
    else:
        src = weights = tmp_path / "model.pt"
        torch.save({"cfg": {"model": fairseq_model_cfg("xlsr_like"), "task": {"normalize": True}},
                    "model": fairseq_state(hf, "xlsr_like", finetuned=False)}, src)  # fmt: skip
    before = _digest(weights)
    model = load_pretrained(src).model
    # Everything but what the loader makes itself (fairseq's mask_emb stand-in is in the file too).
    assert _mapped_share(model, weights) > 0.99
    x, _, _ = padded_batch(seed=50)
    with torch.no_grad():
        ref = hf.wav2vec2(x).last_hidden_state
        torch.testing.assert_close(model.wav2vec2(x).last_hidden_state, ref, atol=1e-4, rtol=0)
        for p in model.parameters():
            p.mul_(0.5)  # what an optimizer step does: in place
    assert _digest(weights) == before
    reloaded = load_pretrained(src).model
    with torch.no_grad():
        torch.testing.assert_close(reloaded.wav2vec2(x).last_hidden_state, ref, atol=1e-4, rtol=0)


def _save_hf(hf, tmp_path) -> Path:
    hf.save_pretrained(tmp_path / "hf_tmp")
    return tmp_path / "hf_tmp"


def test_fp16_checkpoint_becomes_an_fp32_model(tmp_path):
    hf = make_hf("Wav2Vec2ForCTC", "base_like", seed=51)
    hf.half().save_pretrained(tmp_path / "hf16")
    model = load_pretrained(tmp_path / "hf16").model
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    x, _, _ = padded_batch(seed=51)
    with torch.no_grad():
        want = hf.float()(x).logits
        torch.testing.assert_close(model(x).logits, want, atol=1e-4, rtol=0)


def test_streamed_file_reads_back_with_the_safetensors_library(tmp_path):
    g = torch.Generator().manual_seed(0)
    tensors = {
        "f32": torch.randn(3, 5, generator=g),
        "strided": torch.randn(6, 4, generator=g)[:, ::2],
        "bf16": torch.randn(7, generator=g).to(torch.bfloat16),
        "f16": torch.randn(2, 2, generator=g).half(),
        "i64": torch.arange(5),
        "flag": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
        "u8": torch.tensor([1, 2, 255], dtype=torch.uint8),
    }
    path = tmp_path / "t.safetensors"
    write_safetensors(path, tensors, metadata={"format": "pt"})
    back = load_file(str(path))
    assert sorted(back) == sorted(tensors)
    for name, t in tensors.items():
        assert back[name].dtype == t.dtype and back[name].shape == t.shape and torch.equal(back[name], t), name
    with safe_open(str(path), "pt") as f:
        assert f.metadata() == {"format": "pt"}
    header_len = int.from_bytes(path.read_bytes()[:8], "little")
    assert header_len % 8 == 0  # the data starts 8-byte aligned, as the format asks
