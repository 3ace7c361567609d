"""CTC fine-tuning step and inference throughput: xlsr vs transformers' Wav2Vec2ForCTC, side by side.

Both models are built from the same configuration (the `base` preset by default: what users fine-tune;
transformers' config derived with interop.hf_config.config_to_hf) with the same fine-tuning setup: CNN
frozen, fp32 (or both under bf16 autocast: --dtype bf16), CTC mean reduction with zero_infinity, same masks probabilities.
Each model steps with the optimizer its own trainer builds by default (`--optimizer default`): xlsr's
`build_optimizer` and transformers' Trainer's `adamw_torch_fused` (its default with torch >= 2.8), both torch's
fused AdamW; `--optimizer loop` gives both torch's per-tensor Adam, as before 2026-12-05. The two models' steps
(and then their inference calls) are interleaved, --repeat times after one warm-up, and the median is printed
with the ratio. `--compile` runs both models through torch.compile. Then the CPU real-time factor of
`xlsr transcribe` (load + batch + greedy decode) on synthetic audio.

    .venv/bin/python benchmarks/finetune_infer.py [--preset base] [--batch 8] [--seconds 4] [--repeat 5]
        [--threads 2] [--vocab 40] [--compile] [--cpu-time] [--optimizer default|loop]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from timing import interleaved_medians


def build_optimizer_for(name: str, model: torch.nn.Module, kind: str, lr: float = 1e-5) -> torch.optim.Optimizer:
    """The fine-tuning optimizer of library `name`: its trainer's default (`kind` "default") or torch's
    per-tensor Adam for both ("loop"). Weight decay 0, as transformers' TrainingArguments default."""
    params = [q for q in model.parameters() if q.requires_grad]
    if kind == "loop":
        return torch.optim.Adam(params, lr=lr)
    if name == "xlsr":
        from xlsr.train.optimizer import build_optimizer
        from xlsr.train.trainer_config import TrainerConfig

        return build_optimizer(model, TrainerConfig(lr=lr, weight_decay=0.0, adam_betas=(0.9, 0.999), adam_eps=1e-8))
    return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, fused=True)


def build_pair(preset: str, vocab: int):
    from transformers import Wav2Vec2Config as HFConfig
    from transformers import Wav2Vec2ForCTC as HFForCTC

    from xlsr.interop.hf_config import config_to_hf
    from xlsr.model import Wav2Vec2Config, Wav2Vec2ForCTC

    cfg = Wav2Vec2Config.preset(preset)
    cfg.mask_prob, cfg.mask_channel_prob, cfg.layerdrop = 0.3, 0.1, 0.0
    ours = Wav2Vec2ForCTC(cfg, vocab)
    ours.freeze_feature_encoder()
    hf_cfg = config_to_hf(cfg, "Wav2Vec2ForCTC", vocab)
    hf_cfg.update(ctc_loss_reduction="mean", ctc_zero_infinity=True, pad_token_id=0, mask_time_prob=0.3,
                  mask_time_length=cfg.mask_length, mask_feature_prob=0.1,
                  mask_feature_length=cfg.mask_channel_length, layerdrop=0.0)
    hf_cfg = {k: v for k, v in hf_cfg.items() if k not in ("architectures", "model_type", "xlsr_config")}
    theirs = HFForCTC(HFConfig(**hf_cfg))
    theirs.freeze_feature_encoder()
    return cfg, ours, theirs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="base")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--repeat", "--steps", dest="repeat", type=int, default=5,
                   help="timed calls of each model (interleaved); the median is printed")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--vocab", type=int, default=40)
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32",
                   help="bf16: both models' calls under CPU bf16 autocast (CTC and softmax stay fp32 in both)")
    p.add_argument("--compile", action="store_true", help="torch.compile both models (compiled in the warm-up)")
    p.add_argument("--cpu-time", action="store_true",
                   help="CPU seconds of this process instead of wall-clock (a shared machine; use --threads 1)")
    p.add_argument("--optimizer", choices=("default", "loop"), default="default",
                   help="default: each library's default (fused AdamW in both); loop: torch's per-tensor Adam in both")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    clock = time.process_time if args.cpu_time else time.perf_counter

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.dtype == "bf16")

    cfg, ours, theirs = build_pair(args.preset, args.vocab)
    B, S = args.batch, int(args.seconds * 16000)
    x = torch.randn(B, S)
    lengths = torch.full((B,), S)
    labels = torch.randint(1, args.vocab, (B, int(args.seconds * 12)))
    audio = B * args.seconds
    steps, infers = {}, {}
    for name, model in (("xlsr", ours), ("transformers", theirs)):
        opt = build_optimizer_for(name, model, args.optimizer)
        run = torch.compile(model) if args.compile else model

        def step(run=run, model=model, opt=opt, name=name):
            model.train()
            with autocast():
                if name == "xlsr":
                    loss = run(x, lengths, labels).loss
                else:
                    loss = run(x, attention_mask=torch.ones(B, S, dtype=torch.long), labels=labels).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        def infer(run=run, model=model, name=name):
            model.eval()
            with torch.inference_mode(), autocast():
                run(x, lengths) if name == "xlsr" else run(x)

        steps[name], infers[name] = step, infer
    t_step = interleaved_medians(steps, args.repeat, clock=clock)
    t_inf = interleaved_medians(infers, args.repeat, clock=clock)
    print(f"preset {args.preset}, batch {B} x {args.seconds:g} s, {args.threads} thread(s), {args.dtype}, CNN frozen, "
          f"median of {args.repeat} interleaved calls, {'CPU' if args.cpu_time else 'wall'} time, "
          f"compile={args.compile}, optimizer={args.optimizer}")
    print(f"{'impl':<13} {'step s':>8} {'train audio s/s':>16} {'infer s':>8} {'infer audio s/s':>16}")
    for name in steps:
        print(f"{name:<13} {t_step[name]:>8.3f} {audio / t_step[name]:>16.1f} {t_inf[name]:>8.3f} "
              f"{audio / t_inf[name]:>16.1f}")
    print(f"speed-up xlsr / transformers: fine-tuning step {t_step['transformers'] / t_step['xlsr']:.2f}x, "
          f"inference {t_inf['transformers'] / t_inf['xlsr']:.2f}x")

    # Real-time factor of the whole transcription path (audio I/O, batching, greedy decoding).
    import soundfile as sf

    from xlsr.decode.transcribe import load_ctc_model, transcribe_files
    from xlsr.interop.native import save_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        tokens = ["<blank>", "<unk>"] + [f"p{i}" for i in range(args.vocab - 2)]
        ckpt = save_checkpoint(Path(tmp) / "ckpt", ours, vocab=tokens, metadata={"labels": "phones"})
        rng = np.random.default_rng(0)
        files = []
        for k in range(B):
            f = Path(tmp) / f"{k}.wav"
            sf.write(f, (0.1 * rng.standard_normal(S)).astype(np.float32), 16000)
            files.append(f)
        ctc = load_ctc_model(ckpt, precision=args.dtype)
        transcribe_files(ctc, files[:1], show_progress=False)  # warm-up
        t = time.perf_counter()
        transcribe_files(ctc, files, show_progress=False)
        elapsed = time.perf_counter() - t
    print(f"xlsr transcribe: {audio:.0f} s of audio in {elapsed:.2f} s -> real-time factor {elapsed / audio:.3f} ({args.dtype}, "
          f"{args.threads} CPU thread(s))")


if __name__ == "__main__":
    main()
