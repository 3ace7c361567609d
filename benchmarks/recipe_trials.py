"""Fast pretraining trials for recipe search: an in-memory loop over a synthesized corpus (docs/pretrain_recipe.md).

Not the product path (that is `xlsr pretrain`, which benchmarks/pretrain_recipe.py runs): this loop keeps a
slice of the corpus in memory, draws random 2 s crops, and prints train/held-out contrastive accuracy, code
perplexity and loss every few updates, so that two one-thread trials can run side by side on a 2-core CPU
and show within minutes whether a setting leaves chance level and keeps its codebook.

    xlsr synth --out corpus --langs es,pt,fr,ro,ca,en,de,nl,sv,ru,pl,cs,fi,hu,tr --utts-per-lang 1000 --seed 1
    python benchmarks/recipe_trials.py --corpus corpus --name H --set extractor_mode='"group_norm"' \\
        --set conv_bias=false --set num_codevectors_per_group=16 --set mask_prob=0.5 --set mask_length=3 \\
        --set num_negatives=20 --set diversity_weight=0.5

Every trial starts from the `tiny` preset with dropout off, K = 50, V = 64, mask 0.65/10, τ (2, 0.5, 0.995);
`--set FIELD=JSON` changes any Wav2Vec2Config field, `--qstd` the quantizer's logit scale at init,
`--cnn-lr-scale` the CNN's learning rate relative to the rest.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import soundfile as sf
import torch

from xlsr import Wav2Vec2Config, Wav2Vec2ForPreTraining
from xlsr.data.manifest import read_manifest
from xlsr.train.schedules import gumbel_temperature, polynomial_decay_lr

DEFAULTS = dict(dropout=0.0, attention_dropout=0.0, dropout_input=0.0, dropout_features=0.0, num_negatives=50,
                num_codevectors_per_group=64, latent_temp=[2.0, 0.5, 0.995], mask_prob=0.65, mask_length=10)


def load_split(corpus: str, langs: list[str], split: str, per_lang: int, crop: int) -> list[np.ndarray]:
    """z-normed waveforms of the first `per_lang` utterances per language at least `crop` samples long."""
    out = []
    for lang in langs:
        for u in read_manifest(f"{corpus}/{lang}/{split}.jsonl")[:per_lang]:
            x, _ = sf.read(u.audio, dtype="float32")
            if len(x) >= crop:
                out.append((x - x.mean()) / (x.std() + 1e-5))
    return out


@torch.no_grad()
def held_out(model: Wav2Vec2ForPreTraining, batches: list[torch.Tensor]) -> tuple[float, float, float]:
    """(accuracy, code perplexity, contrastive bits per masked frame) with the same masks every time."""
    model.eval()
    gen = torch.Generator().manual_seed(123)
    outs = [model(x, generator=gen) for x in batches]
    model.train()
    n = len(outs)
    return (sum(float(o.accuracy) for o in outs) / n, sum(float(o.code_perplexity) for o in outs) / n,
            sum(float(o.contrastive_loss) / o.num_masked / math.log(2) for o in outs) / n)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", required=True, help="a folder written by `xlsr synth`")
    p.add_argument("--name", required=True, help="trial name; its records go to NAME.jsonl")
    p.add_argument("--langs", default="es,pt,fr,ro,ca,en,de,nl,sv,ru,pl,cs,fi,hu,tr")
    p.add_argument("--per-lang", type=int, default=150, help="training utterances per language kept in memory")
    p.add_argument("--updates", type=int, default=400)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=40)
    p.add_argument("--cnn-lr-scale", type=float, default=1.0)
    p.add_argument("--qstd", type=float, default=1.0, help="std of the quantizer's weight_proj at init (fairseq: 1)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=32000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--every", type=int, default=25, help="updates between records")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=JSON")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    langs = a.langs.split(",")
    train = load_split(a.corpus, langs, "train", a.per_lang, a.crop)
    valid = load_split(a.corpus, langs, "dev", 4, a.crop)
    batches = [torch.from_numpy(np.stack([v[:a.crop] for v in valid[i:i + 8]])) for i in range(0, len(valid), 8)]
    fields = {**Wav2Vec2Config.preset("tiny").to_dict(), **DEFAULTS}
    for item in a.set:
        key, _, value = item.partition("=")
        fields[key] = json.loads(value)
    cfg = Wav2Vec2Config.from_dict(fields)
    model = Wav2Vec2ForPreTraining(cfg)
    if a.qstd != 1.0:
        torch.nn.init.normal_(model.quantizer.weight_proj.weight, std=a.qstd)
    cnn = list(model.wav2vec2.feature_encoder.parameters())
    cnn_ids = {id(q) for q in cnn}
    rest = [q for q in model.parameters() if id(q) not in cnn_ids]
    opt = torch.optim.AdamW([{"params": rest, "scale": 1.0}, {"params": cnn, "scale": a.cnn_lr_scale}],
                            lr=a.lr, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01)
    rng = np.random.default_rng(0)
    print(f"{a.name}: {len(train)} training utterances ({sum(map(len, train)) / 16000 / 3600:.2f} h), "
          f"{len(valid)} held out; chance accuracy ~{1 / (cfg.num_negatives + 1):.3f}", flush=True)
    start, avg, nan = time.time(), {"acc": 0.0, "ppl": 0.0, "loss": 0.0}, 0
    with open(f"{a.name}.jsonl", "w") as log:
        for u in range(a.updates):
            lr = polynomial_decay_lr(u, peak_lr=a.lr, warmup_updates=a.warmup, total_updates=a.updates)
            for group in opt.param_groups:
                group["lr"] = lr * group["scale"]
            model.set_temperature(gumbel_temperature(u, *cfg.latent_temp))
            picks = rng.integers(0, len(train), a.batch)
            starts = [rng.integers(0, len(train[i]) - a.crop + 1) for i in picks]
            x = torch.from_numpy(np.stack([train[i][s:s + a.crop] for i, s in zip(picks, starts)]))
            out = model(x)
            if not torch.isfinite(out.loss):
                nan += 1
                continue
            (out.loss / out.num_masked).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            for key, value in (("acc", float(out.accuracy)), ("ppl", float(out.code_perplexity)),
                               ("loss", float(out.contrastive_loss.detach()) / out.num_masked / math.log(2))):
                avg[key] = 0.9 * avg[key] + 0.1 * value
            if (u + 1) % a.every == 0:
                acc, ppl, loss = held_out(model, batches)
                record = {"update": u + 1, "minutes": round((time.time() - start) / 60, 2),
                          "train_acc": round(avg["acc"], 3), "train_ppl": round(avg["ppl"], 1),
                          "valid_acc": round(acc, 3), "valid_ppl": round(ppl, 1), "valid_loss": round(loss, 3),
                          "neg_is_pos": round(float(out.neg_is_pos), 3), "nan": nan}
                print(json.dumps(record), flush=True)
                log.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
