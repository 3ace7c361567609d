"""End-to-end pretraining throughput, data loading included: `xlsr pretrain` vs transformers in the same loop.

Both read the same manifests through the same xlsr data loader (α sampling, crops, worker processes) and
run the same update: forward, backward, clipping at norm 10, torch's fused AdamW (betas 0.9/0.98, eps 1e-6,
weight decay 0.01: xlsr's on weight matrices only, transformers' on every tensor), LR and Gumbel-temperature
schedules. xlsr runs through `xlsr.train.pretrain.pretrain` (its real Trainer, whose `build_optimizer` picks the
fused kernel); transformers' Wav2Vec2ForPreTraining runs in a plain loop written like its example script (masks
and negatives drawn on the host with its helpers), with the fused AdamW its Trainer uses by default with
torch >= 2.8 (`adamw_torch_fused`). Until 2026-12-06 this loop used its example script's per-tensor AdamW.
Reports audio-seconds per second and the share of each update spent waiting for data.

    python benchmarks/pretrain_throughput.py                      # synthesizes a small espeak-ng corpus
    python benchmarks/pretrain_throughput.py --data DIR --updates 20 --precision bf16
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from xlsr.rates import SAMPLE_RATE


def xlsr_run(args, data: Path, out: Path) -> dict:
    """Run xlsr's own pretraining and read its per-update timings from log.jsonl."""
    from xlsr.train.monitor import read_log
    from xlsr.train.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(data=str(data), out=str(out), preset=args.preset, max_updates=args.updates,
                         lr=args.lr, warmup_updates=max(1, args.updates // 10), max_tokens=args.max_tokens,
                         max_sample_size=args.max_sample_size, min_sample_size=args.min_sample_size,
                         num_workers=args.num_workers, precision=args.precision, device=args.device,
                         log_every=1, valid_every=0, save_every=0, progress=False, tensorboard=False,
                         seed=args.seed, model=_model_overrides(args))
    pretrain(cfg)
    recs = [r for r in read_log(out / "log.jsonl") if r.get("split") == "train"][args.warmup:]
    seconds = sum(r["seconds_per_update"] for r in recs)
    audio = sum(r["audio_s_per_s"] * r["seconds_per_update"] for r in recs)
    wait = sum(r["data_wait_share"] * r["seconds_per_update"] for r in recs)
    return {"updates": len(recs), "seconds": seconds, "audio": audio, "wait": wait}


def _model_overrides(args) -> dict:
    return {"num_negatives": args.negatives} if args.negatives else {}


def hf_run(args, data: Path) -> dict:
    """transformers' Wav2Vec2ForPreTraining in an equivalent loop over the same loader."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from pretrain_step import hf_config  # the config mapping shared with the step benchmark
    from transformers import Wav2Vec2ForPreTraining as HFPreTraining
    from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices, _sample_negative_indices

    from xlsr.data.batching import pretrain_loader
    from xlsr.data.manifest import read_split
    from xlsr.model import Wav2Vec2Config
    from xlsr.train.optimizer import fused_adamw_applies
    from xlsr.train.schedules import gumbel_temperature, polynomial_decay_lr

    torch.manual_seed(args.seed)
    cfg = Wav2Vec2Config.from_dict({**Wav2Vec2Config.preset(args.preset).to_dict(), **_model_overrides(args)})
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    model = HFPreTraining(hf_config(cfg)).to(device).train()
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01,
                            fused=fused_adamw_applies(params) or None)  # as xlsr's build_optimizer
    loader = pretrain_loader(read_split(data, "train"), max_tokens=args.max_tokens,
                             min_sample_size=args.min_sample_size, max_sample_size=args.max_sample_size,
                             alpha=0.5, seed=args.seed, num_workers=args.num_workers,
                             normalize=cfg.normalize_waveform)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
    epoch, batches = 0, iter(loader)
    totals = {"updates": 0, "seconds": 0.0, "audio": 0.0, "wait": 0.0}
    for update in range(args.updates):
        t0 = time.perf_counter()
        try:
            batch = next(batches)
        except StopIteration:
            epoch += 1
            loader.set_epoch(epoch)
            batches = iter(loader)
            batch = next(batches)
        wait = time.perf_counter() - t0
        for g in opt.param_groups:
            g["lr"] = polynomial_decay_lr(update, peak_lr=args.lr, warmup_updates=max(1, args.updates // 10),
                                          total_updates=args.updates)
        model.set_gumbel_temperature(gumbel_temperature(update, *cfg.latent_temp))
        x = batch.waveforms.to(device)
        B, S = x.shape
        T = int(model._get_feat_extract_output_lengths(S))
        mask = _compute_mask_indices((B, T), cfg.mask_prob, cfg.mask_length, min_masks=cfg.min_masks)
        negs = _sample_negative_indices((B, T), cfg.num_negatives, mask)
        mask_t = torch.as_tensor(mask, device=device)
        with autocast:
            out = model(x, mask_time_indices=mask_t, sampled_negative_indices=torch.as_tensor(negs, device=device))
        (out.loss / mask_t.sum()).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if update >= args.warmup:
            totals["updates"] += 1
            totals["seconds"] += time.perf_counter() - t0
            totals["wait"] += wait
            totals["audio"] += B * S / SAMPLE_RATE
    return totals


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="folder with <lang>/train.jsonl (default: synthesize --langs with espeak-ng)")
    p.add_argument("--langs", default="es,de,it")
    p.add_argument("--utts-per-lang", type=int, default=12)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--updates", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2, help="updates left out of the figures")
    p.add_argument("--max-tokens", type=int, default=128000)
    p.add_argument("--max-sample-size", type=int, default=32000)
    p.add_argument("--min-sample-size", type=int, default=16000)
    p.add_argument("--negatives", type=int, default=0, help="K (default: the preset's)")
    p.add_argument("--num-workers", type=int, default=1)
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    p.add_argument("--device", default="cpu")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-hf", action="store_true")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data) if args.data else Path(tmp) / "corpus"
        if not args.data:
            from xlsr.data.synth import synthesize_corpus

            synthesize_corpus(data, args.langs, args.utts_per_lang, seed=args.seed, workers=1,
                              show_progress=False)
        results = {"xlsr": xlsr_run(args, data, Path(tmp) / "run")}
        if not args.skip_hf:
            results["transformers"] = hf_run(args, data)

    print(f"\npreset={args.preset} precision={args.precision} device={args.device} threads={torch.get_num_threads()} "
          f"max_tokens={args.max_tokens} crop<={args.max_sample_size / SAMPLE_RATE:g}s workers={args.num_workers} "
          f"updates={args.updates} (first {args.warmup} not counted)")
    print(f"{'':>13}  {'s/update':>9}  {'audio-s/s':>9}  {'data wait':>9}")
    for name, r in results.items():
        n = max(r["updates"], 1)
        print(f"{name:>13}  {r['seconds'] / n:9.3f}  {r['audio'] / max(r['seconds'], 1e-9):9.1f}  "
              f"{r['wait'] / max(r['seconds'], 1e-9):9.1%}")
    if "transformers" in results:
        a, b = results["xlsr"], results["transformers"]
        speed = (a["audio"] / a["seconds"]) / (b["audio"] / b["seconds"]) if b["seconds"] else math.nan
        print(f"xlsr / transformers audio-s/s: {speed:.2f}x (same loader and crops; batch sizes follow α sampling)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
