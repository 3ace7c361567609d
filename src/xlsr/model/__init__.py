"""The wav2vec 2.0 / XLSR model: config and presets, encoder, quantizer, masking, losses, task heads."""

from xlsr.model.config import PRESETS, Wav2Vec2Config
from xlsr.model.ctc import CTCOutput, Wav2Vec2ForCTC
from xlsr.model.pretraining import PreTrainingOutput, Wav2Vec2ForPreTraining
from xlsr.model.wav2vec2 import Wav2Vec2Model, Wav2Vec2ModelOutput

__all__ = [
    "PRESETS",
    "Wav2Vec2Config",
    "Wav2Vec2Model",
    "Wav2Vec2ForPreTraining",
    "Wav2Vec2ForCTC",
    "Wav2Vec2ModelOutput",
    "PreTrainingOutput",
    "CTCOutput",
]
