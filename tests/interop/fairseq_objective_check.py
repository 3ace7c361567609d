"""Our pretraining objective against fairseq 0.12.2's, given the same weights, mask, distractors and Gumbel noise.

    python tests/interop/fairseq_objective_check.py tools/fairseq-ref OUT_DIR

prints one JSON object of differences (test_fairseq_reference.py asserts on it). Both sides get the same weights
(fairseq's model saved as its trainer saves it, read by xlsr.interop.fairseq.load_fairseq), no dropout, the same
time mask (fairseq's forward(mask_indices=), ours mask_time_indices=), the same within-utterance distractors
(fairseq's sample_negatives replaced, ours negative_indices=) and the same Gumbel noise (torch's gumbel_softmax
replaced for fairseq, xlsr.model.quantizer.gumbel_noise for ours). The loss on fairseq's side is its own
Wav2vecCriterion (infonce, loss_weights [0.1, 10]); gradients of every parameter are compared by name.

Masks are random on both sides, so their distribution is compared: the share of frames masked over 2000 seeded
draws of each of three batch shapes.

Left out on purpose: padded batches with the feature penalty (fairseq averages f(x)^2 over padded frames too, we
over valid frames) and padded batches of the group-norm CNN (ours normalises layer 0 over valid steps only); both
are documented differences, and pretraining batches are cropped, never padded.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fairseq_reference_check as ref  # noqa: E402  (its fairseq import, small configs and saving)

NO_DROPOUT = dict(dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, dropout_input=0.0,
                  dropout_features=0.0, encoder_layerdrop=0.0)
LOSS_WEIGHTS = [0.1, 10.0]
K = 10
WORK = Path(".")


def d(a: torch.Tensor, b: torch.Tensor) -> dict:
    a, b = a.detach().double(), b.detach().double()
    fin = torch.isfinite(a) & torch.isfinite(b)
    inf_same = bool((torch.isinf(a) == torch.isinf(b)).all())
    mad = (a[fin] - b[fin]).abs().max().item() if fin.any() else 0.0
    scale = a[fin].abs().max().item() if fin.any() else 0.0
    return {"max_abs": mad, "rel": mad / max(scale, 1e-30), "inf_pattern_equal": inf_same,
            "n_inf_fairseq": int(torch.isinf(a).sum()), "n_inf_ours": int(torch.isinf(b).sum())}


def scalar(a, b) -> dict:
    a, b = float(a), float(b)
    return {"fairseq": a, "ours": b, "abs": abs(a - b), "rel": abs(a - b) / max(abs(a), 1e-30)}


class Shared:
    """Indices / noise both sides use."""
    negs: torch.Tensor | None = None  # (B, M, K) within-row positions
    cross: torch.Tensor | None = None  # (B, M, Kc) flat indices into the B*M masked frames, or None
    noise: torch.Tensor | None = None  # (B*M, G, V) Gumbel samples


def patch_fairseq_negatives(fs_model):
    def sample_negatives(y, num, padding_count=None):
        bsz, tsz, fsz = y.shape
        idx = Shared.negs + (torch.arange(bsz).view(-1, 1, 1) * tsz)
        if Shared.cross is not None:  # the intended per-frame layout: K within, then Kc cross
            idx = torch.cat([idx, Shared.cross], dim=-1)
        negs = y.reshape(-1, fsz)[idx.reshape(-1)].view(bsz, num, idx.shape[-1], fsz).permute(2, 0, 1, 3)
        return negs, idx
    fs_model.sample_negatives = sample_negatives


_orig_gumbel_softmax = F.gumbel_softmax


def shared_gumbel_softmax(logits, tau=1, hard=False, eps=1e-10, dim=-1):
    """torch's gumbel_softmax body with the shared noise instead of a fresh draw."""
    gumbels = Shared.noise.reshape(logits.shape).to(logits.dtype)
    y_soft = ((logits + gumbels) / tau).softmax(dim)
    if hard:
        index = y_soft.max(dim, keepdim=True)[1]
        y_hard = torch.zeros_like(logits, memory_format=torch.legacy_contiguous_format).scatter_(dim, index, 1.0)
        return y_hard - y_soft.detach() + y_soft
    return y_soft


def build_pair(fs, family: str, extra: dict, seed: int, tag: str, loss_weights=LOSS_WEIGHTS):
    from xlsr.interop.fairseq import load_fairseq
    overrides, normalize = ref.FAMILIES[family]
    small = {**ref.SMALL, "num_negatives": K, **extra}
    torch.manual_seed(seed)
    fs_model = fs["Wav2Vec2Model"](fs["Wav2Vec2Config"](**small, **overrides, **NO_DROPOUT))
    ref.perturb(fs_model, seed)
    cfg = {"_name": None, "model": ref.model_args_as_saved(fs, fs_model.cfg),
           "task": {"_name": "audio_pretraining", "data": str(WORK), "normalize": normalize},
           "criterion": {"_name": "wav2vec", "infonce": True, "loss_weights": list(loss_weights)}}
    path = WORK / f"{tag}.pt"
    ref.save_like_fairseq(path, cfg, fs_model)
    loaded = load_fairseq(path)
    return fs_model, loaded.model, loaded.config


def run_case(fs, family, extra, seed, tag, lengths=None, train=False, num_updates=0, cross=0,
             loss_weights=LOSS_WEIGHTS):
    from fairseq.criterions.wav2vec_criterion import Wav2vecCriterion

    from xlsr.interop.fairseq import convert_state_dict
    from xlsr.model.masking import compute_mask_indices
    from xlsr.train.schedules import gumbel_temperature

    fs_model, ours, cfg = build_pair(fs, family, extra, seed, tag, loss_weights)
    patch_fairseq_negatives(fs_model)
    g = torch.Generator().manual_seed(seed + 100)
    B, S = 2, 8000
    wav = torch.randn(B, S, generator=g)
    if lengths is not None:
        for b, n in enumerate(lengths):
            wav[b, n:] = 0.0
        pad = torch.arange(S).unsqueeze(0) >= torch.tensor(lengths).unsqueeze(1)
        our_lengths = torch.tensor(lengths)
    else:
        pad, our_lengths = None, None
    with torch.no_grad():
        T = ours.wav2vec2.features(wav)[0].shape[1]
        frames = ours.wav2vec2.frame_lengths(our_lengths) if lengths is not None else torch.full((B,), T)
    mask = compute_mask_indices(frames, T, cfg.mask_prob, cfg.mask_length, cfg.min_masks, g)
    M = int(mask[0].sum())
    Shared.negs = torch.stack([torch.randint(0, M, (M, K), generator=g) for _ in range(B)])
    # force a few identical-index distractors (the positive itself) to exercise neg_is_pos
    Shared.negs[0, :3, 0] = torch.arange(3)
    Shared.cross = None
    if cross:
        Shared.cross = torch.randint(0, B * M, (B, M, cross), generator=g)
        Shared.cross[1, :2, 0] = M + torch.arange(2)  # the frame itself, as a cross negative
    GV = cfg.num_codevector_groups, cfg.num_codevectors_per_group
    Shared.noise = -torch.empty(B * M, *GV).exponential_(generator=g).log()

    import xlsr.model.quantizer as qmod
    qmod.gumbel_noise = lambda shape, like, gen: Shared.noise.reshape(shape).to(like.dtype)
    F.gumbel_softmax = shared_gumbel_softmax

    fs_model.train(train)
    ours.train(train)
    fs_model.quantizer.set_num_updates(num_updates)
    ours.set_temperature(gumbel_temperature(num_updates, *cfg.latent_temp))

    crit = Wav2vecCriterion(None, infonce=True, loss_weights=list(loss_weights))
    sample = {"net_input": {"source": wav, "padding_mask": pad, "mask_indices": mask}, "id": torch.arange(B)}
    fs_model.zero_grad()
    # criterion forward (runs model); keep net output by a hook on compute_preds
    store = {}
    orig_cp = fs_model.compute_preds

    def compute_preds(x, y, negatives):
        out = orig_cp(x, y, negatives)
        store["logits"] = out
        store["y"] = y
        return out
    fs_model.compute_preds = compute_preds
    orig_q = fs_model.quantizer.forward

    def qfwd(x, produce_targets=False):
        r = orig_q(x, produce_targets)
        store["q"] = r
        return r
    fs_model.quantizer.forward = qfwd
    fs_loss, sample_size, log = crit(fs_model, sample)
    fs_loss.backward()
    fs_grads = convert_state_dict({n: p.grad for n, p in fs_model.named_parameters() if p.grad is not None},
                                  "Wav2Vec2ForPreTraining", "grads")

    ours.zero_grad()
    import xlsr.model.pretraining as pmod
    orig_sn = pmod.sample_negatives
    if cross:  # ours takes explicit cross indices only through its sampler
        pmod.sample_negatives = lambda *a, **k: (Shared.negs, Shared.cross)
        out = ours(wav, our_lengths, mask_time_indices=mask)
        pmod.sample_negatives = orig_sn
    else:
        out = ours(wav, our_lengths, mask_time_indices=mask, negative_indices=Shared.negs)
    out.loss.backward()
    F.gumbel_softmax = _orig_gumbel_softmax

    fs_logits = store["logits"].permute(1, 2, 0)  # (1+K, B, M) -> (B, M, 1+K)
    q = store["q"]
    n = B * M
    fs_nce = float(log["loss_0"])
    fs_div = float(log["loss_1"])
    fs_pen = float(log.get("loss_2", 0.0))
    res = {
        "T": T, "M": M, "sample_size": scalar(sample_size, out.num_masked),
        "temperature": scalar(q["temp"], out.temperature),
        "logits": d(fs_logits, out.logits),
        "loss_total": scalar(fs_loss, out.loss),
        "infonce_sum": scalar(fs_nce, out.contrastive_loss),
        "diversity_weighted": scalar(fs_div, out.diversity_loss),
        "feature_pen_weighted": scalar(fs_pen, out.feature_penalty),
        "prob_perplexity": scalar(q["prob_perplexity"], out.prob_perplexity),
        "code_perplexity": scalar(q["code_perplexity"], out.code_perplexity),
        "accuracy": scalar(log["correct"] / log["count"], out.accuracy),
    }
    ours_params = dict(ours.named_parameters())
    grads = {}
    worst = (0.0, None)
    for name, gf in fs_grads.items():
        if name.endswith("k_proj.bias"):  # analytically zero (softmax is shift-invariant): noise vs noise
            continue
        p = ours_params.get(name)
        if p is None or p.grad is None:
            grads[name] = "missing on ours"
            continue
        go = p.grad.reshape(gf.shape)
        r = (gf - go).abs().max().item() / max(gf.abs().max().item(), 1e-30)
        if r > worst[0]:
            worst = (r, name)
    res["grad_worst_rel"] = {"rel": worst[0], "param": worst[1]}
    picks = ["wav2vec2.feature_encoder.conv_layers.0.conv.weight", "wav2vec2.encoder.layers.0.attention.q_proj.weight",
             "wav2vec2.encoder.layers.1.feed_forward.fc2.weight", "quantizer.weight_proj.weight",
             "quantizer.codevectors", "final_proj.weight", "project_q.weight", "wav2vec2.mask_embedding"]
    for name in picks:
        if name in fs_grads and name in ours_params:
            gf, go = fs_grads[name], ours_params[name].grad.reshape(fs_grads[name].shape)
            grads[name] = {"max_abs": (gf - go).abs().max().item(), "scale": gf.abs().max().item()}
        else:
            grads[name] = "name not found"
    res["grads"] = grads
    res["missing_grads"] = [k for k, v in grads.items() if isinstance(v, str)]
    return res


def mask_shares(draws: int = 2000) -> dict:
    """Mean share of valid frames masked (after require_same_masks) by fairseq's compute_mask_indices and ours,
    and their difference in standard errors; pretraining's settings (0.65, 10, at least 2 spans), seeded both sides."""
    import numpy as np
    from fairseq.data.data_utils import compute_mask_indices as fairseq_masks

    from xlsr.model.masking import compute_mask_indices

    np.random.seed(0)
    generator = torch.Generator().manual_seed(0)
    settings = {"T49_B8": [49] * 8, "T99_B8": [99] * 8, "T499_B4_padded": [499, 399, 299, 249]}
    out = {}
    for name, lengths in settings.items():
        T, lens = max(lengths), np.array(lengths)
        padding = torch.from_numpy(np.arange(T)[None] >= lens[:, None])
        padded = bool(padding.any())
        shares = {"fairseq": [], "ours": []}
        for _ in range(draws):
            theirs = fairseq_masks((len(lengths), T), padding if padded else None, 0.65, 10, min_masks=2,
                                   require_same_masks=True)
            ours = compute_mask_indices(torch.tensor(lengths), T, 0.65, 10, 2, generator).numpy()
            shares["fairseq"].append((theirs.sum(1) / lens).mean())
            shares["ours"].append((ours.sum(1) / lens).mean())
        mean = {side: float(np.mean(v)) for side, v in shares.items()}
        se = np.hypot(*(np.std(v) / np.sqrt(draws) for v in shares.values()))
        out[name] = {**mean, "diff_in_se": (mean["ours"] - mean["fairseq"]) / se}
    return out


def main() -> None:
    global WORK
    reference, WORK = Path(sys.argv[1]), Path(sys.argv[2])
    torch.set_num_threads(1)
    fs = ref.import_fairseq(reference)
    results = {}
    cases = {  # tag: (family, config overrides, seed, lengths (None: unpadded), training, updates[, cross, weights])
        "base_eval": ("base", {"feature_grad_mult": 0.1}, 1, None, False, 0),
        "base_train_gumbel": ("base", {"feature_grad_mult": 0.1}, 1, None, True, 0),
        "xlsr_eval": ("xlsr", {}, 2, None, False, 0),
        "xlsr_train_gumbel_u5000": ("xlsr", {}, 2, None, True, 5000),
        "xlsr_eval_small_codebook": ("xlsr", {"latent_vars": 3}, 4, None, False, 0),
        "xlsr_train_small_codebook": ("xlsr", {"latent_vars": 3}, 4, None, True, 0),
        "xlsr_train_cross_negatives": ("xlsr", {"cross_sample_negatives": 4}, 6, None, True, 0, 4),
        "xlsr_train_padded_no_penalty": ("xlsr", {}, 3, [8000, 6000], True, 0, 0, [0.1, 0.0]),
        # one weight: fairseq's criterion uses it for both extra losses, and a checkpoint saying so must load so
        "xlsr_train_one_weight": ("xlsr", {}, 7, None, True, 0, 0, [0.5]),
    }
    for tag, (family, extra, seed, lengths, train, u, *rest) in cases.items():
        results[tag] = run_case(fs, family, extra, seed, tag, lengths, train, u, *rest)
    # the temperature schedule: fairseq's quantizer.set_num_updates against ours (train/schedules.py)
    from fairseq.modules.gumbel_vector_quantizer import GumbelVectorQuantizer

    from xlsr.train.schedules import gumbel_temperature
    worst = 0.0
    for temp in ((2.0, 0.5, 0.999995), (2.0, 0.1, 0.999995), (1.0, 0.25, 0.9999)):
        quantizer = GumbelVectorQuantizer(dim=8, num_vars=4, temp=temp, groups=2, combine_groups=False, vq_dim=8,
                                          time_first=True)
        for u in (0, 1, 2, 10, 1000, 50_000, 138_629, 277_258, 400_000, 1_000_000):
            quantizer.set_num_updates(u)
            worst = max(worst, abs(quantizer.curr_temp - gumbel_temperature(u, *temp)))
    results["temperature_schedule"] = {"max_abs": worst}
    results["mask_share"] = mask_shares()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
