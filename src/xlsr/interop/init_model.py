"""Where a training run's model comes from: `--init` (any checkpoint `load_pretrained` reads, or a run folder)
or a preset with random weights, plus the run's `model` overrides of that architecture.

The encoder's weights are always taken; a pretraining run also takes the quantizer and projections when
`--init` has them, a fine-tuning run the CTC head when it keeps the checkpoint's vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from xlsr.config import coerce_fields
from xlsr.errors import XlsrError
from xlsr.interop.load import load_pretrained, resolve_run_folder
from xlsr.interop.state_dict import load_state_dict_strict
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForPreTraining


@dataclass
class InitModel:
    """What `--init` gives a run: the architecture, the loaded model (None: random weights), its CTC vocabulary."""

    config: Wav2Vec2Config
    model: nn.Module | None = None  # as loaded: Wav2Vec2Model, Wav2Vec2ForPreTraining or Wav2Vec2ForCTC
    vocab_tokens: list[str] | None = None
    labels: str | None = None  # "phones"/"chars" of the checkpoint's vocabulary, when recorded
    source: str = "none"

    @property
    def pretrained(self) -> bool:
        return self.model is not None

    @property
    def encoder(self) -> nn.Module | None:
        """The loaded Wav2Vec2Model (ForPreTraining and ForCTC hold it as `.wav2vec2`)."""
        return None if self.model is None else getattr(self.model, "wav2vec2", self.model)

    @property
    def ctc_head(self) -> nn.Module | None:
        """The loaded CTC head (`lm_head`), if `--init` is a fine-tuned model."""
        return getattr(self.model, "lm_head", None)


def load_init(init: str | None, preset: str) -> InitModel:
    """Read `--init` (a run folder means its best, else last, checkpoint); None or "none": `preset`, random."""
    if init in (None, "", "none"):
        return InitModel(Wav2Vec2Config.preset(preset))
    path = resolve_run_folder(init)
    loaded = load_pretrained(path)
    return InitModel(loaded.config, loaded.model, loaded.vocab, (loaded.metadata or {}).get("labels"), str(path))


def apply_overrides(config: Wav2Vec2Config, overrides: dict) -> Wav2Vec2Config:
    """A validated copy of `config` with the run's `model` overrides; an unknown key or bad value is one XlsrError."""
    d = config.to_dict()
    unknown = sorted(set(overrides) - set(d))
    if unknown:
        raise XlsrError(f"model.{unknown[0]}: unknown Wav2Vec2Config field; allowed: {', '.join(sorted(d))}")
    d.update(coerce_fields(Wav2Vec2Config, dict(overrides), where="model."))
    out = Wav2Vec2Config.from_dict(d)
    out.validate()
    return out


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
