"""What every CTC decoder returns: token strings, their ids, text, a score and frame times."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class Hypothesis:
    """One decoded utterance.

    `frames[k]` is the output frame where token k starts and `end_frames[k]` the frame after its last one (its run
    on the decoded path); `timestamps[k]` and `end_timestamps[k]` are those frames' times in seconds: frame f at
    f × the CNN's stride (0.02 s for the standard CNN), the start of the audio it hears (samples [320 f, 320 f + 400)
    at 16 kHz). All are None unless timestamps were asked for. `words` holds the lexicon words when a lexicon
    decoder produced them.
    """

    tokens: list[str]
    token_ids: list[int]
    text: str
    score: float = 0.0
    frames: list[int] | None = None
    timestamps: list[float] | None = None
    words: list[str] | None = field(default=None)
    end_frames: list[int] | None = None
    end_timestamps: list[float] | None = None

    def to_dict(self) -> dict:
        # JSON has no inf or nan (json.dumps would write `Infinity`, which JSON readers refuse): null stands for them
        out = {"text": self.text, "tokens": self.tokens, "score": self.score if math.isfinite(self.score) else None}
        if self.timestamps is not None:
            out["timestamps"] = self.timestamps
        if self.words is not None:
            out["words"] = self.words
        return out
