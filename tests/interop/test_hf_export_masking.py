"""What an HF export's SpecAugment keys say: transformers applies config.json's mask_time_* / mask_feature_* whenever
it trains the model, fine-tuning included. A model without a CTC head is exported with transformers' fine-tuning
values there (as the hub's pretrained configs hold them) and its own pretraining masking under xlsr_config, which
xlsr reads back, also when it continues pretraining from the folder."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import soundfile as sf
import torch

from xlsr.cli.main import main
from xlsr.data.manifest import Utterance, write_manifest
from xlsr.interop.huggingface import export_hf, import_hf
from xlsr.interop.native import build_model, save_checkpoint
from xlsr.model import Wav2Vec2Config

transformers = pytest.importorskip("transformers")

SPEC_AUGMENT = ("mask_time_prob", "mask_time_length", "mask_time_min_masks", "mask_feature_prob",
                "mask_feature_length", "mask_feature_min_masks")
# our pretraining masking, every field other than transformers' default, and objective settings only xlsr_config holds
PRETRAINING = dict(mask_prob=0.6, mask_length=7, min_masks=1, mask_channel_prob=0.05, mask_channel_length=24,
                   latent_temp=(1.5, 0.3, 0.9999), feature_penalty_weight=3.0)


def _config(**overrides) -> Wav2Vec2Config:
    fields = dict(conv_layers=[(32, 10, 5), (32, 3, 2)], hidden_size=48, num_layers=1, num_heads=4, ffn_dim=96,
                  conv_pos=8, conv_pos_groups=4, final_dim=24, codevector_dim=20, num_codevectors_per_group=10,
                  extractor_mode="layer_norm", conv_bias=True, layer_norm_first=True, normalize_waveform=True)
    return Wav2Vec2Config(**{**fields, **overrides})


def _transformers_masks(config) -> dict:
    return {key: getattr(config, key) for key in SPEC_AUGMENT}


def test_a_pretraining_export_holds_transformers_fine_tuning_masks_and_reads_back_as_ours(tmp_path):
    cfg = _config(**PRETRAINING)
    folder = export_hf(build_model("Wav2Vec2ForPreTraining", cfg), tmp_path / "hf")
    # transformers fine-tunes it with its own defaults (0.05 over spans of 10), not 60% of the frames masked
    ctc = transformers.Wav2Vec2ForCTC.from_pretrained(folder, vocab_size=5)
    assert _transformers_masks(ctc.config) == _transformers_masks(transformers.Wav2Vec2Config())
    assert ctc.config.apply_spec_augment and ctc.config.mask_time_prob == 0.05
    _, info = transformers.Wav2Vec2ForPreTraining.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]  # masked_spec_embed included
    # xlsr reads back the model's own settings, every field
    assert import_hf(folder).config.to_dict() == cfg.to_dict()


def test_a_headless_model_is_exported_as_a_pretraining_model_is(tmp_path):
    cfg = _config(**PRETRAINING)
    folder = export_hf(build_model("Wav2Vec2Model", cfg), tmp_path / "hf")
    assert json.loads((folder / "config.json").read_text())["mask_time_prob"] == 0.05
    assert import_hf(folder).config.to_dict() == cfg.to_dict()


def test_a_ctc_models_own_masks_are_its_fine_tuning_ones_and_written_as_they_are(tmp_path):
    cfg = _config(mask_prob=0.3, mask_length=8, min_masks=1, mask_channel_prob=0.1, mask_channel_length=16)
    folder = export_hf(build_model("Wav2Vec2ForCTC", cfg, 5), tmp_path / "hf", vocab=["<blank>", "<unk>", "a", "b", "c"])
    hf = json.loads((folder / "config.json").read_text())
    assert [hf[key] for key in SPEC_AUGMENT] == [0.3, 8, 1, 0.1, 16, 0]
    assert import_hf(folder).config.to_dict() == cfg.to_dict()


def test_masks_transformers_changed_after_the_export_are_the_files_truth(tmp_path):
    folder = export_hf(build_model("Wav2Vec2ForPreTraining", _config(**PRETRAINING)), tmp_path / "hf")
    # transformers fine-tuned it and saved a CTC model: config.json keeps xlsr_config, the masks are transformers'
    ctc = transformers.Wav2Vec2ForCTC.from_pretrained(folder, vocab_size=5)
    ctc.save_pretrained(tmp_path / "ctc")
    assert "xlsr_config" in json.loads((tmp_path / "ctc" / "config.json").read_text())
    got = import_hf(tmp_path / "ctc").config
    assert (got.mask_prob, got.mask_length, got.mask_channel_prob, got.mask_channel_length) == (0.05, 10, 0.0, 10)
    # a mask key edited by hand in the pretraining folder: the keys as they now are, not the record
    hf = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**hf, "mask_time_prob": 0.2}))
    got = import_hf(folder).config
    assert (got.mask_prob, got.mask_length, got.mask_channel_length) == (0.2, 10, 10)


def test_convert_to_hf_says_where_the_pretraining_masks_went(tmp_path, capsys):
    save_checkpoint(tmp_path / "ours", build_model("Wav2Vec2ForPreTraining", _config(**PRETRAINING)))
    assert main(["convert", str(tmp_path / "ours"), str(tmp_path / "hf"), "--to", "hf"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == (
        f"{tmp_path / 'hf'}: config.json has transformers' SpecAugment values for fine-tuning (mask_time_prob 0.05, "
        "mask_time_length 10, mask_time_min_masks 2, mask_feature_prob 0.0, mask_feature_length 10) as the hub's "
        "pretrained configs do; this model's own masking (mask_prob 0.6, mask_length 7, min_masks 1, "
        "mask_channel_prob 0.05, mask_channel_length 24) is kept under xlsr_config, which xlsr reads back")
    # and back to xlsr: the model's own settings
    assert main(["convert", str(tmp_path / "hf"), str(tmp_path / "back"), "--to", "xlsr"]) == 0
    back = json.loads((tmp_path / "back" / "config.json").read_text())["model"]
    assert {k: back[k] for k in PRETRAINING} == {**PRETRAINING, "latent_temp": list(PRETRAINING["latent_temp"])}


def _corpus(root) -> str:
    rng = np.random.default_rng(0)
    for split in ("train", "dev"):
        utts = []
        for i in range(2):
            path = root / "aa" / f"{split}_{i}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, (0.3 * rng.standard_normal(12000)).astype(np.float32), 16000)
            utts.append(Utterance(audio=str(path), num_samples=12000, lang="aa", id=f"{split}_{i}"))
        write_manifest(root / "aa" / f"{split}.jsonl", utts)
    return str(root)


def test_continued_pretraining_from_an_export_keeps_its_recorded_settings(tmp_path, caplog):
    from xlsr.train.pretrain import PretrainConfig, PretrainTask

    cfg = _config(**PRETRAINING)
    torch.manual_seed(0)
    export_hf(build_model("Wav2Vec2ForPreTraining", cfg), tmp_path / "hf")

    def task(init):
        return PretrainTask(PretrainConfig(data=_corpus(tmp_path / "audio"), out=str(tmp_path / "run"),
                                           init=str(init), model={"layerdrop": 0.02}, num_workers=0, progress=False,
                                           tensorboard=False, device="cpu", max_tokens=64000, min_sample_size=8000,
                                           max_sample_size=16000, feature_health_frames=0))

    with caplog.at_level(logging.WARNING):
        got = task(tmp_path / "hf").model_cfg
    assert got.to_dict() == {**cfg.to_dict(), "layerdrop": 0.02}  # the record, and --model.* over it
    assert not [r for r in caplog.records if "is a Hugging Face model" in r.getMessage()]
    # also named by a file inside the folder
    assert task(tmp_path / "hf" / "config.json").model_cfg.to_dict() == got.to_dict()
    # an export written before the published layout: its HF keys hold the record's own masking; still our record
    hf = json.loads((tmp_path / "hf" / "config.json").read_text())
    earlier = dict(mask_time_prob=0.6, mask_time_length=7, mask_time_min_masks=1, mask_feature_prob=0.05,
                   mask_feature_length=24, mask_feature_min_masks=0)
    (tmp_path / "hf" / "config.json").write_text(json.dumps({**hf, **earlier}))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert task(tmp_path / "hf").model_cfg.to_dict() == got.to_dict()
    assert not [r for r in caplog.records if "is a Hugging Face model" in r.getMessage()]
    # a genuine transformers folder (no record of ours) still takes the preset's settings, and says so
    hf = json.loads((tmp_path / "hf" / "config.json").read_text())
    del hf["xlsr_config"]
    (tmp_path / "hf" / "config.json").write_text(json.dumps(hf))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        got = task(tmp_path / "hf").model_cfg
    assert got.mask_prob == Wav2Vec2Config.preset("tiny").mask_prob == 0.65
    assert [r for r in caplog.records if "is a Hugging Face model" in r.getMessage()]
