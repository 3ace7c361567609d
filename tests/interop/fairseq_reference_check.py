"""Check our fairseq import and export against fairseq 0.12.2 itself; run in a process of its own.

    python tests/interop/fairseq_reference_check.py tools/fairseq-ref OUT_DIR

prints one JSON object: for each check, the largest absolute difference between fairseq's outputs and ours,
the outputs' scale, and for the quantizer the share of frames whose codewords agree. test_fairseq_reference.py
runs it (fairseq and its pinned omegaconf/hydra must not meet the test process's own omegaconf).

fairseq 0.12.2 runs on Python 3.11 once one thing is allowed again: its config dataclasses (and hydra
1.0.7's) use dataclass instances as field defaults, which Python 3.11 refuses as "mutable defaults"
(3.10 accepted them). `allow_dataclass_instance_defaults` gives those classes an identity hash before
dataclasses checks, which restores 3.10's behaviour for them and changes nothing else.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import warnings
from pathlib import Path

import torch


def allow_dataclass_instance_defaults() -> None:
    """Let a dataclass field default to an instance of another dataclass, as Python <= 3.10 did."""
    original = dataclasses._get_field

    def get_field(cls, name, annotation, *args):
        default = cls.__dict__.get(name, dataclasses.MISSING)
        if isinstance(default, dataclasses.Field):
            default = default.default
        if dataclasses.is_dataclass(default) and not isinstance(default, type) and type(default).__hash__ is None:
            type(default).__hash__ = object.__hash__
        return original(cls, name, annotation, *args)

    dataclasses._get_field = get_field


def import_fairseq(reference: Path):
    sys.path[:0] = [str(reference / "site"), str(reference / "fairseq")]
    allow_dataclass_instance_defaults()
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    import fairseq  # noqa: F401
    from fairseq import checkpoint_utils
    from fairseq.models.wav2vec.wav2vec2 import Wav2Vec2Config, Wav2Vec2Model
    from fairseq.models.wav2vec.wav2vec2_asr import Wav2Vec2CtcConfig, Wav2VecCtc
    from fairseq.tasks.audio_finetuning import AudioFinetuningConfig, AudioFinetuningTask
    from omegaconf import OmegaConf

    return dict(checkpoint_utils=checkpoint_utils, Wav2Vec2Config=Wav2Vec2Config, Wav2Vec2Model=Wav2Vec2Model,
                Wav2Vec2CtcConfig=Wav2Vec2CtcConfig, Wav2VecCtc=Wav2VecCtc, OmegaConf=OmegaConf,
                AudioFinetuningConfig=AudioFinetuningConfig, AudioFinetuningTask=AudioFinetuningTask)


# Two small networks of the two families: wav2vec 2.0 Base's (group-norm CNN, post-LN blocks) and
# XLSR's (layer-norm CNN with conv bias, pre-LN blocks, normalised waveforms).
SMALL = dict(encoder_layers=2, encoder_embed_dim=64, encoder_ffn_embed_dim=128, encoder_attention_heads=4,
             conv_feature_layers="[(32, 10, 5)] + [(32, 3, 2)] * 2 + [(32, 2, 2)]", conv_pos=16, conv_pos_groups=4,
             final_dim=32, latent_vars=20, latent_groups=2, quantize_targets=True)  # fmt: skip
FAMILIES = {
    "base": (dict(extractor_mode="default"), False),
    "xlsr": (dict(extractor_mode="layer_norm", layer_norm_first=True, conv_bias=True), True),
}
SYMBOLS = ["|", "a", "b", "c", "d"]


def perturb(model: torch.nn.Module, seed: int) -> None:
    """Move norms and heads away from their initial values (ones, zeros), so a swapped weight shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "proj" in name or "lm_head" in name:
                p.add_(0.2 * torch.randn(p.shape, generator=generator))


def diff(reference: torch.Tensor, ours: torch.Tensor) -> dict:
    return {"max_abs_diff": (reference - ours).abs().max().item(), "scale": reference.abs().max().item()}


def ctc_log_probs(fs, fs_model, waveforms) -> torch.Tensor:
    out = fs_model(source=waveforms, padding_mask=None)
    return fs_model.get_normalized_probs(out, log_probs=True).transpose(0, 1).float()  # (B, T, V)


def fairseq_pretraining(fs, family: str, seed: int):
    overrides, normalize = FAMILIES[family]
    torch.manual_seed(seed)
    model = fs["Wav2Vec2Model"](fs["Wav2Vec2Config"](**SMALL, **overrides))
    perturb(model, seed)
    return model.eval(), normalize


def model_args_as_saved(fs, config) -> dict:
    saved = fs["OmegaConf"].to_container(fs["OmegaConf"].structured(config), resolve=True, enum_to_str=True)
    return {**saved, "_name": "wav2vec2"}


def save_like_fairseq(path: Path, cfg: dict, model: torch.nn.Module) -> None:
    """The entries fairseq 0.12's Trainer.state_dict writes (cfg as plain containers)."""
    torch.save({"args": None, "cfg": cfg, "model": model.state_dict(), "criterion": None,
                "optimizer_history": [{"criterion_name": "X", "optimizer_name": "FairseqAdam",
                                       "lr_scheduler_state": {}, "num_updates": 3}],
                "task_state": {}, "extra_state": {"train_iterator": {"epoch": 1}}}, path)  # fmt: skip


def check_import(fs, work: Path, waveforms: torch.Tensor) -> dict:
    """fairseq's own models, saved as its trainer saves them, read by xlsr.interop.fairseq."""
    from xlsr.interop.fairseq import load_fairseq

    results = {}
    for family in FAMILIES:
        fs_model, normalize = fairseq_pretraining(fs, family, seed=1)
        cfg = {"_name": None, "model": model_args_as_saved(fs, fs_model.cfg),
               "task": {"_name": "audio_pretraining", "data": str(work), "normalize": normalize},
               "criterion": {"_name": "wav2vec", "loss_weights": [0.1, 10]}}  # fmt: skip
        path = work / f"fairseq_{family}.pt"
        save_like_fairseq(path, cfg, fs_model)
        loaded = load_fairseq(path)
        ours = loaded.model.eval()
        with torch.no_grad():
            reference = fs_model(waveforms, mask=False, features_only=True)["x"]
            results[f"import/{family}/encoder"] = diff(reference, ours.wav2vec2(waveforms).last_hidden_state)
            results[f"import/{family}/codewords"] = codeword_agreement(fs_model, ours, waveforms)
        results[f"import/{family}/normalize"] = {"equal": loaded.config.normalize_waveform == normalize}

        # the fine-tuned form: wav2vec_ctc with the pretraining config nested as w2v_args
        folder = work / f"fairseq_{family}_ctc"
        folder.mkdir()
        (folder / "dict.ltr.txt").write_text("".join(f"{s} 5\n" for s in SYMBOLS))
        task = fs["AudioFinetuningTask"].setup_task(fs["AudioFinetuningConfig"](data=str(folder), labels="ltr",
                                                                                 normalize=normalize))
        w2v_args = {"model": cfg["model"], "task": {**cfg["task"], "data": str(folder)}}
        ctc_cfg = fs["Wav2Vec2CtcConfig"](w2v_args=fs["OmegaConf"].create(w2v_args), normalize=normalize,
                                          data=str(folder), final_dropout=0.0)
        torch.manual_seed(2)
        fs_ctc = fs["Wav2VecCtc"].build_model(ctc_cfg, task)
        perturb(fs_ctc, seed=2)
        fs_ctc.eval()
        saved_model = {k: v for k, v in dataclasses.asdict(ctc_cfg).items() if k != "w2v_args"}
        saved_model.update(_name="wav2vec_ctc", w2v_args=w2v_args, max_update=100, ddp_backend="legacy_ddp")
        save_like_fairseq(folder / "checkpoint.pt", {"_name": None, "model": saved_model, "task": {
            "_name": "audio_finetuning", "data": str(folder), "labels": "ltr", "normalize": normalize}}, fs_ctc)
        loaded = load_fairseq(folder / "checkpoint.pt")
        with torch.no_grad():
            reference = ctc_log_probs(fs, fs_ctc, waveforms)
            ours = torch.log_softmax(loaded.model.eval()(waveforms).logits, -1)
        rows = [0 if t == "<blank>" else task.target_dictionary.index(t) for t in loaded.vocab]
        results[f"import/{family}/ctc_log_probs"] = diff(reference[..., rows], ours)
        results[f"import/{family}/ctc_vocab"] = {"tokens": loaded.vocab}
    return results


def codeword_agreement(fs_model, ours, waveforms) -> dict:
    """Share of frames whose (group-wise) codewords agree: fairseq's quantize() against our quantizer."""
    _, reference = fs_model.quantize(waveforms)  # (B, T, G) indices, hard choice in eval
    features, _ = ours.wav2vec2.features(waveforms)
    z = ours.wav2vec2.feature_norm(features)
    codes = ours.quantizer.codes(z.reshape(-1, z.shape[-1])).view(*reference.shape)
    return {"agree": (reference == codes).all(-1).float().mean().item()}


def check_export(fs, work: Path, waveforms: torch.Tensor) -> dict:
    """Our models written by export_fairseq, rebuilt by fairseq's load_model_ensemble_and_task."""
    from xlsr.interop.fairseq_export import export_fairseq
    from xlsr.interop.native import build_model
    from xlsr.model import Wav2Vec2Config
    from xlsr.text.vocab import Vocabulary

    results = {}
    load = fs["checkpoint_utils"].load_model_ensemble_and_task
    for family, normalize in (("base", False), ("xlsr", True)):
        cfg = Wav2Vec2Config(conv_layers=[(32, 10, 5), (32, 3, 2), (32, 3, 2), (32, 2, 2)], hidden_size=64,
                             num_layers=2, num_heads=4, ffn_dim=128, conv_pos=16, conv_pos_groups=4, final_dim=32,
                             codevector_dim=32, num_codevectors_per_group=20, normalize_waveform=normalize,
                             **({"extractor_mode": "layer_norm", "layer_norm_first": True, "conv_bias": True}
                                if family == "xlsr" else {}))  # fmt: skip
        torch.manual_seed(3)
        ours = build_model("Wav2Vec2ForPreTraining", cfg)
        perturb(ours, seed=3)
        ours.eval()
        folder = export_fairseq(ours, work / f"export_{family}")
        (fs_model,), _, task = load([str(folder / "checkpoint.pt")])
        fs_model.eval()
        with torch.no_grad():
            reference = fs_model(waveforms, mask=False, features_only=True)["x"]
            results[f"export/{family}/encoder"] = diff(reference, ours.wav2vec2(waveforms).last_hidden_state)
            results[f"export/{family}/codewords"] = codeword_agreement(fs_model, ours, waveforms)
        results[f"export/{family}/normalize"] = {"equal": bool(task.cfg.normalize) == normalize}

        vocab = Vocabulary.build(["ab cd", "dc ba"], kind="chars")
        torch.manual_seed(4)
        ctc = build_model("Wav2Vec2ForCTC", cfg, len(vocab))
        perturb(ctc, seed=4)
        ctc.eval()
        folder = export_fairseq(ctc, work / f"export_{family}_ctc", vocab=vocab)
        (fs_ctc,), _, task = load([str(folder / "checkpoint.pt")])
        fs_ctc.eval()
        with torch.no_grad():
            reference = ctc_log_probs(fs, fs_ctc, waveforms)
            ours_log_probs = torch.log_softmax(ctc(waveforms).logits, -1)
        rows = [0 if t == "<blank>" else task.target_dictionary.index(t) for t in vocab.tokens]
        results[f"export/{family}/ctc_log_probs"] = diff(reference[..., rows], ours_log_probs)
        others = [i for i in range(reference.shape[-1]) if i not in rows]
        results[f"export/{family}/ctc_other_rows"] = {"max_log_prob": reference[..., others].max().item()}
        results[f"export/{family}/ctc_dictionary"] = {
            "symbols": [task.target_dictionary[i] for i in range(len(task.target_dictionary))]}
    return results


def main() -> None:
    reference, work = Path(sys.argv[1]), Path(sys.argv[2])
    work.mkdir(parents=True, exist_ok=True)  # the README's command names a WORKDIR that need not exist yet
    torch.set_num_threads(1)
    fs = import_fairseq(reference)
    waveforms = torch.randn(2, 8000, generator=torch.Generator().manual_seed(0))
    results = {**check_import(fs, work, waveforms), **check_export(fs, work, waveforms)}
    print(json.dumps(results))


if __name__ == "__main__":
    main()
