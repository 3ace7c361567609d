"""Where a training run's model comes from: `--init` (any checkpoint `load_pretrained` reads, or a run folder)
or a preset with random weights, plus the run's `model` overrides of that architecture.

The encoder's weights are always taken; a pretraining run also takes the quantizer and projections when
`--init` has them, a fine-tuning run the CTC head when it keeps the checkpoint's vocabulary. For an MMS
checkpoint with per-language adapters, `target_lang` picks the language (the adapters and head loaded).

A run that resumes reads no weights of `--init`: its own checkpoint's replace them. What else `--init` gave the run
(architecture, CTC vocabulary and labels, MMS language) then comes from the config.json of `--init` when that is our
format, as for a fresh run; from the run's own checkpoint, which recorded it, when `--init` is a Hugging Face folder
or a fairseq file (there the architecture and vocabulary depend on the weight file) or no longer exists.
"""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from xlsr.config import coerce_fields
from xlsr.errors import CheckpointError, XlsrError
from xlsr.interop.adapters import fairseq_adapter_languages, hf_base_language, hf_languages
from xlsr.interop.fairseq import model_args, read_fairseq_checkpoint
from xlsr.interop.load import (
    checkpoint_path,
    detect_format,
    load_pretrained,
    read_checkpoint_config,
    resolve_run_folder,
)
from xlsr.interop.native import Loaded
from xlsr.interop.state_dict import load_state_dict_strict
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForPreTraining
from xlsr.model.config import PRESETS, check_override_keys

log = logging.getLogger(__name__)

# The Wav2Vec2Config fields a run may change on an --init checkpoint: how it is trained (dropouts, LayerDrop, masking,
# the CNN's gradient scale) and the pretraining objective (negatives, temperatures, loss weights). None of them
# changes a weight's shape or the model's computation at inference; every other field describes the architecture
# the weights were trained as (sizes, layer kinds, norm placement and eps, quantizer, adapters, input normalisation).
TRAINING_FIELDS = ("feature_grad_mult", "dropout", "attention_dropout", "activation_dropout", "dropout_input",
                   "dropout_features", "final_dropout", "layerdrop", "mask_prob", "mask_length", "min_masks",
                   "mask_channel_prob", "mask_channel_length", "latent_temp", "logit_temp", "num_negatives",
                   "cross_sample_negatives", "diversity_weight", "feature_penalty_weight")

# The sizes of a pretraining model's quantizer and final projections: a checkpoint without them (a CTC model, an
# encoder) leaves them to start from random weights (load_pretraining_weights), at any size.
QUANTIZER_FIELDS = ("final_dim", "codevector_dim", "num_codevector_groups", "num_codevectors_per_group")


@dataclass
class InitModel:
    """What `--init` gives a run: the architecture, the loaded model (None: random weights, a resume's, or let go once
    the run's model took its weights), its CTC vocabulary."""

    config: Wav2Vec2Config
    model: nn.Module | None = None  # as loaded: Wav2Vec2Model, Wav2Vec2ForPreTraining or Wav2Vec2ForCTC
    vocab_tokens: list[str] | None = None
    labels: str | None = None  # "phones"/"chars" of the checkpoint's vocabulary, when recorded
    source: str = "none"
    source_format: str | None = None  # "xlsr", "hf" or "fairseq": what `source` was read as
    language: str | None = None  # the MMS language whose adapters and head were loaded
    new_language: bool = False  # target_lang is not one `--init` has: its adapters and head start afresh
    # a resume: the run's checkpoint, found when `--init` was read; its weights replace those of `--init`, not read
    resumed_from: Path | None = None
    # the run's model took `model`'s weights and `model` was let go (release_weights): `pretrained` stays true
    weights_taken: bool = field(default=False, init=False)

    @property
    def without_quantizer(self) -> bool:
        """Whether `--init` was read (not a resume) and holds no quantizer: a CTC model, an encoder."""
        return self.model is not None and not isinstance(self.model, Wav2Vec2ForPreTraining)

    @property
    def pretrained(self) -> bool:
        """Whether the run's model is `--init`'s: its weights loaded, or (on resume) the run's checkpoint's."""
        return self.model is not None or self.weights_taken or self.resumed_from is not None

    def release_weights(self) -> None:
        """Let go of the loaded model once the run's model holds its weights: a copy of every weight, 4-8.6 GB per
        process for XLS-R 1B/2B, would otherwise stay for the whole run. `encoder` and `ctc_head` are None after."""
        if self.model is not None:
            self.model, self.weights_taken = None, True
            # now, not at some later collection: the model can sit in a reference cycle (torch imports modules
            # lazily as it is first built, and one of them keeps the frames that imported it, the build's among them)
            gc.collect()

    @property
    def encoder(self) -> nn.Module | None:
        """The loaded Wav2Vec2Model (ForPreTraining and ForCTC hold it as `.wav2vec2`)."""
        return None if self.model is None else getattr(self.model, "wav2vec2", self.model)

    @property
    def ctc_head(self) -> nn.Module | None:
        """The loaded CTC head (`lm_head`), if `--init` is a fine-tuned model."""
        return getattr(self.model, "lm_head", None)


def load_init(init: str | None, preset: str, target_lang: str | None = None, *, allow_new_language: bool = False,
              resume_from: Path | None = None) -> InitModel:
    """Read `--init` (a run folder means its best, else last, checkpoint); None or "none": `preset`, random.

    `target_lang` picks an MMS checkpoint's language. With `allow_new_language`, a language the checkpoint
    lacks loads another instead (starting_language: its base weights; the caller starts fresh adapters and head)
    and `new_language` is set; the loaded vocabulary, another language's, is then not offered.
    `resume_from`: the run's own checkpoint, when the run resumes; no weights of `--init` are read (module docstring).
    """
    if init in (None, "", "none"):
        return InitModel(Wav2Vec2Config.preset(preset))
    if resume_from is not None and resumes_from_record(init):
        return recorded_init(init, resume_from)
    path = resolve_run_folder(init)
    lang = target_lang
    if allow_new_language and target_lang is not None:
        languages = checkpoint_languages(path)
        if target_lang not in languages:
            lang = starting_language(path, languages)
    # a run trains the encoder of a classification model too (its head left out, said): it has no use for the head
    loaded = (load_pretrained(path, target_lang=lang, encoder_of_classifier=True) if resume_from is None
              else _described(path, lang))
    language = (loaded.metadata or {}).get("target_lang")
    if allow_new_language and target_lang is not None and language != target_lang:
        return InitModel(loaded.config, loaded.model, None, None, str(path), loaded.source_format, language,
                         new_language=True, resumed_from=resume_from)
    labels = (loaded.metadata or {}).get("labels")
    return InitModel(loaded.config, loaded.model, loaded.vocab, labels, str(path), loaded.source_format, language,
                     resumed_from=resume_from)


def resumes_from_record(init: str | None) -> bool:
    """Whether a resumed run takes what `--init` gave it from its own checkpoint's record rather than from `--init`:
    a Hugging Face folder, a fairseq file, or an `--init` no longer there (module docstring). The value a `--model.*`
    override replaced is then nowhere to be read back."""
    if init in (None, "", "none"):
        return False
    return not (Path(init).exists() and detect_format(checkpoint_path(init)) == "xlsr")


def recorded_init(init: str, checkpoint: Path) -> InitModel:
    """What `--init` gave the run whose checkpoint is `checkpoint`, as that checkpoint records it (no file of `--init`
    read): the architecture (with the run's `model` overrides, which the run applies again and the run-folder check
    compares), the CTC vocabulary and its labels, the MMS language."""
    checkpoint = Path(checkpoint)
    data = read_checkpoint_config(checkpoint)
    metadata = data.get("metadata") or {}
    if not Path(init).exists():
        log.info("%s no longer exists; the run resumes from %s, which holds its model", init, checkpoint)
    return InitModel(_model_config(data, checkpoint), None, data.get("vocab"), metadata.get("labels"),
                     metadata.get("init") or str(init), None, metadata.get("target_lang"), resumed_from=checkpoint)


def _described(path: Path, target_lang: str | None) -> Loaded:
    """What `load_pretrained` gives for our checkpoint at `path`, read from its config.json alone (`model` None)."""
    path = checkpoint_path(path)
    data = read_checkpoint_config(path)
    metadata = data.get("metadata") or {}
    held = metadata.get("target_lang")
    if target_lang is not None and held != target_lang:
        raise CheckpointError(f"{path}: no language {target_lang!r}; available: {held or 'none'}")
    return Loaded(None, _model_config(data, path), data.get("vocab"), "xlsr", metadata)


def _model_config(data: dict, checkpoint: Path) -> Wav2Vec2Config:
    """The Wav2Vec2Config in a config.json of ours (`data`, read from the directory `checkpoint`)."""
    try:
        return Wav2Vec2Config.from_dict(data.get("model") or {})
    except (TypeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"{checkpoint / 'config.json'}: bad model config ({exc})") from None


def checkpoint_languages(path: str | Path) -> list[str]:
    """The languages a checkpoint's MMS adapters are named for (empty when none are named), without building it."""
    path = checkpoint_path(path)  # as load_pretrained reads it
    fmt = detect_format(path)
    if fmt == "hf":
        return hf_languages(path)[0]
    if fmt == "xlsr":
        lang = (read_checkpoint_config(path).get("metadata") or {}).get("target_lang")
        return [lang] if lang else []
    ckpt = read_fairseq_checkpoint(path)
    stacked = [v for k, v in ckpt["model"].items() if k.endswith(".adapter_layer.W_a")]
    if not stacked:
        return []
    try:
        _, pre_task, _ = model_args(ckpt)  # the task as load_fairseq reads it: fine-tuning's over pretraining's
    except CheckpointError:
        return []  # load_pretrained reports what is wrong with the file, naming it
    cfg = ckpt.get("cfg") if isinstance(ckpt.get("cfg"), dict) else {}
    task = cfg.get("task") if isinstance(cfg.get("task"), dict) else ckpt.get("args") or {}
    return fairseq_adapter_languages({**pre_task, **task}, stacked[0].shape[0]) or []


def starting_language(path: str | Path, languages: list[str]) -> str | None:
    """The language of `path`'s (`languages`) whose weights a new language starts from, its adapters and head then
    replaced: a Hugging Face MMS directory's base language when it offers it, as its base weights hold it and no
    adapter file is needed; else the first listed."""
    path = checkpoint_path(path)
    if detect_format(path) == "hf" and hf_base_language(path) in languages:
        return hf_base_language(path)
    return languages[0] if languages else None


def apply_overrides(config: Wav2Vec2Config, overrides: dict, *, from_checkpoint: bool = False,
                    fresh: tuple[str, ...] = ()) -> Wav2Vec2Config:
    """A validated copy of `config` with the run's `model` overrides; an unknown key or bad value is one XlsrError.

    When `config` is an `--init` checkpoint's (`from_checkpoint`), only TRAINING_FIELDS, and the `fresh` fields
    (the sizes of parts the checkpoint does not hold, which start from random weights: QUANTIZER_FIELDS for a
    pretraining run from a CTC checkpoint), may take another value: any other changes the weights' shapes or what
    they compute, and loading them would then fail blaming the checkpoint ("shapes contradict the config") for what
    the command line asked.
    """
    check_override_keys(overrides)
    d = config.to_dict()
    typed = coerce_fields(Wav2Vec2Config, dict(overrides), where="model.")
    d.update(typed)
    try:
        out = Wav2Vec2Config.from_dict(d)  # validated as it is built
    except XlsrError as exc:  # a field named as the run's settings name it (config.yaml, --model.*)
        message = str(exc)
        raise XlsrError("model." + message.removeprefix("Wav2Vec2Config.") if message.startswith("Wav2Vec2Config.")
                        else message) from None
    if from_checkpoint:
        for key in typed:  # compared in canonical form (conv_layers as tuples): the same value given again is fine
            if key not in (*TRAINING_FIELDS, *fresh) and getattr(out, key) != getattr(config, key):
                raise XlsrError(f"model.{key}: the --init checkpoint has {getattr(config, key)!r}, not "
                                f"{getattr(out, key)!r}; with --init only {', '.join((*TRAINING_FIELDS, *fresh))} "
                                f"can be overridden")
    return out


# What decides which preset a checkpoint is a copy of: its layer kinds and sizes (not the training fields).
_SHAPE_FIELDS = ("conv_layers", "extractor_mode", "hidden_size", "num_layers", "num_heads", "ffn_dim",
                 "layer_norm_first")


def presets_shaped_like(config: Wav2Vec2Config) -> list[str]:
    """The presets whose CNN and Transformer have `config`'s layer kinds and sizes (e.g. large, xlsr-53,
    xls-r-300m for an XLS-R 300M folder), in PRESETS order."""
    shape = [getattr(config, k) for k in _SHAPE_FIELDS]
    return [name for name in PRESETS if [getattr(Wav2Vec2Config.preset(name), k) for k in _SHAPE_FIELDS] == shape]


def pretraining_fields_from(config: Wav2Vec2Config, preset: str) -> tuple[Wav2Vec2Config, dict]:
    """`config` with the TRAINING_FIELDS of `preset`: (the new config, {field: (config's value, preset's)} changed).

    For continuing pretraining from a Hugging Face folder: its config.json holds transformers' settings for
    fine-tuning (mask_time_prob 0.05-0.075, LayerDrop 0.1, dropouts 0.1, no τ_min of its own), not the ones the
    model was pretrained with; the architecture stays the checkpoint's.
    """
    ref = Wav2Vec2Config.preset(preset)
    changed = {k: (getattr(config, k), getattr(ref, k)) for k in TRAINING_FIELDS if getattr(config, k) != getattr(ref, k)}
    d = config.to_dict()
    d.update({k: ref.to_dict()[k] for k in changed})
    return Wav2Vec2Config.from_dict(d), changed


def load_encoder(encoder: nn.Module, init: InitModel) -> None:
    """Copy the `--init` encoder's weights into `encoder` (a Wav2Vec2Model); a mismatch is one CheckpointError."""
    load_state_dict_strict(encoder, init.encoder.state_dict(), init.source)


def load_pretraining_weights(model: Wav2Vec2ForPreTraining, init: InitModel) -> bool:
    """Copy `--init` into a pretraining model: all of a pretraining checkpoint, else the encoder alone (the
    quantizer and projections keep their random weights). Whether the quantizer came from `--init`."""
    if isinstance(init.model, Wav2Vec2ForPreTraining):
        load_state_dict_strict(model, init.model.state_dict(), init.source)
        return True
    load_encoder(model.wav2vec2, init)
    return False
