"""CTC beam search through flashlight-text, optionally fused with a KenLM n-gram LM.

Two modes (issue 5, user need 9):
- lexicon-free: hypotheses are any token sequence. An LM here is a *units* LM whose "words" are the
  vocabulary's tokens (phones, or characters with `|`), as `build_lm(..., units=...)` makes.
- lexicon: hypotheses are sequences of lexicon words, each spelled in the vocabulary's tokens
  (characters, or phones from a lexicon file). The LM is then a word LM. With `|` in the
  vocabulary every spelling ends in `|` (the model's labels put one between words), and this
  project's labels do not end in `|`, so the model emits none after the last word: one frame on
  which only `|` is possible is appended, so that the last word is finished (and scored) too.
  Without `|`, a word ends where the next one starts; flashlight's lexicon decoder cannot hold a
  word's last token then (`xlsr.decode.lexicon_lm` says why), so the lexicon is an LM over tokens for its
  lexicon-free search instead.

Scores: acoustic log-probabilities (natural log, log-softmax of the logits) + lm_weight × LM
log-prob (log10, as KenLM gives it; fairseq's and flashlight's convention) + word_score per word:
per lexicon word, or lexicon-free per `|` emitted (a `|` held over several frames counts once; a
vocabulary without `|` has no words there, and word_score has no effect).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from flashlight.lib.text.decoder import (
    LM,
    CriterionType,
    LexiconDecoder,
    LexiconDecoderOptions,
    LexiconFreeDecoder,
    LexiconFreeDecoderOptions,
    SmearingMode,
    Trie,
    ZeroLM,
)
from flashlight.lib.text.decoder.kenlm import KenLM
from flashlight.lib.text.dictionary import Dictionary

from xlsr.decode.greedy import as_logits_tensor
from xlsr.decode.hypothesis import Hypothesis
from xlsr.decode.lexicon_lm import LexiconLM, SpellingTrie
from xlsr.decode.lm import read_lm_info, sidecar_path
from xlsr.decode.lm_file import arpa_unigrams, check_lm_file, is_kenlm_binary, kenlm_binary_unigram_count
from xlsr.errors import XlsrError
from xlsr.model.ctc import ctc_segments
from xlsr.rates import FRAME_STRIDE_S
from xlsr.text.vocab import UNK, WORD_BOUNDARY, Vocabulary

log = logging.getLogger(__name__)

# flashlight keeps every frame's hypotheses, so memory grows with beam x frames (a beam of 1,000 held 1.6 GB over 8 s
# of random logits with 29 tokens). Decoding recipes use beams of hundreds to ~1,500; 1e9 would exhaust any machine.
MAX_BEAM_SIZE = 10_000
_C_INT_MAX = 2**31 - 1  # flashlight's option fields are C ints
# The most |lm_weight| and |word_score| allowed. Recipes use values within ±5; a weight of 100 already leaves the
# model's own scores no say. Within it a hypothesis's score stays far from overflow however long the audio (10 h
# holds some 5e5 words; even at a log10 probability of -99 each, |score| < 1e14); a weight such as 1e300
# overflowed it to inf, which JSON has no way to write.
MAX_SCORE_WEIGHT = 1e6
# Log-probability of every token but `|` on the frame appended after a lexicon decode's last frame.
_NOT_BOUNDARY = -1e4


@dataclass
class BeamSearchConfig:
    """Beam search settings (names as in flashlight / fairseq's `--lm-weight --word-score`)."""

    beam_size: int = 50            # hypotheses kept per frame
    beam_size_token: int | None = None  # tokens tried per frame; None = all
    beam_threshold: float = 25.0   # drop hypotheses this far below the best
    lm_weight: float = 2.0         # fairseq's default for KenLM decoding
    word_score: float = 0.0        # lexicon: added per word; lexicon-free: per `|` emitted
    unk_score: float = -math.inf   # lexicon: score of out-of-lexicon words (-inf: never)
    log_add: bool = False          # True: merge equal hypotheses by log-sum-exp (prefix search)
    nbest: int = 1

    def __post_init__(self) -> None:
        if self.beam_size < 1:
            raise XlsrError(f"beam size: must be at least 1, got {self.beam_size}")
        if self.beam_size > MAX_BEAM_SIZE:
            raise XlsrError(f"beam size: must be at most {MAX_BEAM_SIZE:,} (the decoder's memory grows with it), "
                            f"got {self.beam_size}")
        if self.beam_size_token is not None and not 1 <= self.beam_size_token <= _C_INT_MAX:
            raise XlsrError(f"beam_size_token: must be between 1 and {_C_INT_MAX} (None: all tokens), "
                            f"got {self.beam_size_token}")
        if not (math.isfinite(self.beam_threshold) and self.beam_threshold >= 0):
            raise XlsrError(f"beam_threshold: must be a finite number >= 0, got {self.beam_threshold}")
        for name in ("lm_weight", "word_score"):
            check_score_weight(name, getattr(self, name))
        if math.isnan(self.unk_score) or self.unk_score == math.inf:
            raise XlsrError(f"unk_score: must be a number or -inf, got {self.unk_score}")
        if self.nbest < 1:
            raise XlsrError(f"nbest: must be at least 1, got {self.nbest}")


def check_score_weight(name: str, value: float) -> None:
    """XlsrError naming `name` unless `value` (an LM weight or word score) is finite and within ±MAX_SCORE_WEIGHT."""
    if not (math.isfinite(value) and abs(value) <= MAX_SCORE_WEIGHT):
        raise XlsrError(f"{name}: must be a finite number between {-MAX_SCORE_WEIGHT:g} and {MAX_SCORE_WEIGHT:g} "
                        f"(recipes use values within ±5; past the bound a hypothesis's score can overflow to inf), "
                        f"got {value:g}")


# -- lexicons -----------------------------------------------------------------------------------
Lexicon = dict[str, list[list[str]]]  # word -> spellings, each a list of vocabulary tokens


def spell(word: str, vocab: Vocabulary) -> list[str]:
    """A word's spelling in a character vocabulary: its letters, then the word boundary `|`."""
    if vocab.kind != "chars":
        raise XlsrError("lexicon: words can only be spelled automatically with a character vocabulary; "
                        "give a lexicon file with lines 'word phone phone ...', or decode with an LM over the "
                        "model's own units (`xlsr lm build --units phones`)")
    tokens = vocab.tokenize(word)
    return tokens + [WORD_BOUNDARY] if vocab.word_boundary_id is not None else tokens


def lexicon_from_words(words: Iterable[str], vocab: Vocabulary) -> Lexicon:
    """Spell each distinct word in the vocabulary's characters."""
    return {w: [spell(w, vocab)] for w in sorted(set(words)) if w != WORD_BOUNDARY}


def read_lexicon(path: str | Path, vocab: Vocabulary) -> Lexicon:
    """Read `word tok tok ...` lines (several lines per word = several spellings) or a word list.

    A line holding only a word (e.g. the `.words.txt` that `build_lm` writes) is spelled in the
    vocabulary's characters.
    """
    path = Path(path)
    if path.is_dir():
        raise XlsrError(f"{path}: is a folder, not a lexicon file")
    try:
        # utf-8-sig: a byte-order mark (Windows editors write one) would otherwise be part of the first word
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        raise XlsrError(f"{path}: no such lexicon file") from None
    except UnicodeDecodeError:
        raise XlsrError(f"{path}: lexicon is not UTF-8 text") from None
    lexicon: Lexicon = {}
    for number, line in enumerate(lines, 1):
        parts = line.split()
        if not parts:
            continue
        word, spelling = parts[0], parts[1:]
        if not spelling and vocab.kind != "chars":
            raise XlsrError(f"{path}: line {number}: {word!r} has no spelling, and words can only be spelled "
                            "automatically with a character vocabulary; give lines 'word phone phone ...', or decode "
                            "with an LM over the model's own units (`xlsr lm build --units phones`)")
        lexicon.setdefault(word, []).append(spelling if spelling else spell(word, vocab))
    if not lexicon:
        raise XlsrError(f"{path}: lexicon is empty")
    return lexicon


def _lexicon(source, vocab: Vocabulary) -> Lexicon:
    if isinstance(source, (str, Path)):
        return read_lexicon(source, vocab)
    if isinstance(source, Mapping):
        # word -> "t t t", [t, t, t] or several of those
        def spellings(sp) -> list[list[str]]:
            if isinstance(sp, str):
                return [sp.split()]
            if sp and not isinstance(sp[0], str):
                return [s.split() if isinstance(s, str) else list(s) for s in sp]
            return [list(sp)]
        return {w: spellings(sp) for w, sp in source.items()}
    return lexicon_from_words(source, vocab)


# -- LM files -----------------------------------------------------------------------------------
def tokens_known_to_lm(lm, token_ids: list[int], unk_id: int) -> list[bool]:
    """Whether a loaded KenLM knows each token: KenLM scores a word it does not know as <unk>, in every context
    (after <s>, with no context, and before </s>), so a token scoring as `unk_id` does there is unknown to it."""
    begin, nothing = lm.start(False), lm.start(True)

    def scores(i: int) -> tuple[float, float, float]:
        after_begin, p_begin = lm.score(begin, i)
        return p_begin, lm.score(nothing, i)[1], lm.finish(after_begin)[1]

    unknown = scores(unk_id)
    return [scores(i) != unknown for i in token_ids]


@contextlib.contextmanager
def _c_stderr_into(file) -> Iterator[None]:
    """The process's standard error (fd 2, where C++ code prints) written into `file` while inside."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        os.dup2(file.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _load_kenlm(path: Path, dictionary):
    try:
        # KenLM draws a progress bar of an ARPA file's loading on stderr, and some lines before an error: not the
        # user's terminal's business (the error is our one line below)
        with tempfile.TemporaryFile() as chatter, _c_stderr_into(chatter):
            return KenLM(str(path), dictionary)
    except RuntimeError as exc:
        # KenLM's message is several lines (source location first); the last one says what is wrong.
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable"
        raise XlsrError(f"{path}: cannot load the language model ({reason})") from None


# -- the decoder --------------------------------------------------------------------------------
class BeamSearchDecoder:
    """CTC beam search over a vocabulary, with an optional KenLM and an optional lexicon.

    `lm`: ARPA or KenLM binary file, or None. `lexicon`: None (lexicon-free), a lexicon/word-list
    file, a mapping word → spelling(s), or an iterable of words. Build once, call `decode` often;
    `reconfigure(lm_weight=..., word_score=...)` reuses the loaded LM for weight sweeps.
    """

    def __init__(self, vocab: Vocabulary, *, lm: str | Path | None = None, lexicon=None,
                 config: BeamSearchConfig | None = None, frame_stride_s: float = FRAME_STRIDE_S):
        self.vocab = vocab
        self.config = config or BeamSearchConfig()
        self.frame_stride_s = frame_stride_s
        self.lm_path = check_lm_file(lm) if lm is not None else None
        # Without `|` the blank doubles as the silence token; sil_score then never applies.
        self._sil = vocab.word_boundary_id if vocab.word_boundary_id is not None else vocab.blank_id
        self.lexicon: Lexicon | None = None
        self._trie = None              # flashlight's lexicon trie (vocabularies with `|`)
        self._spellings = None         # our own (vocabularies without `|`: LexiconLM)
        self._words: list[str] = []
        self._warned_no_words = False
        if lexicon is None:
            if self.lm_path is not None:
                self._check_units_lm(self.lm_path)
            self._lm = _load_kenlm(self.lm_path, Dictionary(vocab.tokens)) if self.lm_path else ZeroLM()
            if self.lm_path is not None:
                self._check_units_lm(self.lm_path, self._lm)
        else:
            if self.lm_path is not None:
                self._check_word_lm(self.lm_path)
            source = str(lexicon) if isinstance(lexicon, (str, Path)) else "lexicon"
            self.lexicon = self._known_spellings(_lexicon(lexicon, vocab), source)
            self._words = [*self.lexicon, UNK]
            self._lm = _load_kenlm(self.lm_path, Dictionary(self._words)) if self.lm_path else ZeroLM()
            # Each word's spelling goes into a trie scored by its LM unigram, smeared (max) so that
            # partial words are ranked by their best completion.
            if vocab.word_boundary_id is not None:
                trie = self._trie = Trie(len(vocab), self._sil)
            else:
                trie = self._spellings = SpellingTrie()
            start = self._lm.start(False)
            unigrams = []
            for word_id, word in enumerate(self._words[:-1]):
                _, unigram = self._lm.score(start, word_id)
                unigrams.append(unigram)
                for spelling in self.lexicon[word]:
                    trie.insert([vocab.index(t) for t in spelling], word_id, unigram)
            if self._trie is not None:
                self._trie.smear(SmearingMode.MAX)
            if self.lm_path is not None:
                self._check_lexicon_in_lm(unigrams, source)
        self._decoder = self._build_decoder()

    @property
    def uses_lexicon(self) -> bool:
        return self.lexicon is not None

    def _known_spellings(self, lexicon: Lexicon, source: str = "lexicon") -> Lexicon:
        """Drop spellings with tokens outside the vocabulary (saying so) and repeated ones; fail if no word is left.

        With `|` in the vocabulary every spelling ends in `|`, as `spell` makes them: the model puts `|` between
        words, and a word's last phone is then inside the word, where it may be held for several frames. A spelling
        given twice would be two paths to one word, which `log_add` would count twice."""
        boundary = self.vocab.word_boundary_id is not None
        kept, dropped = {}, {}
        for word, spellings in lexicon.items():
            good = []
            for s in spellings:
                unknown = [t for t in s if t not in self.vocab]
                if unknown or not s:
                    dropped.setdefault(word, unknown[0] if unknown else "")
                    continue
                s = s if not boundary or s[-1] == WORD_BOUNDARY else [*s, WORD_BOUNDARY]
                if s not in good:
                    good.append(s)
            if good:
                kept[word] = good
                dropped.pop(word, None)
        if dropped:
            examples = ", ".join(f"{w!r} has {t!r}" if t else repr(w) for w, t in list(dropped.items())[:4])
            advice = ("a word LM's words must be spelled as the model's labels are: build it from normalized text "
                      "(xlsr data normalize-text)")
            if not kept:
                raise XlsrError(f"{source}: none of its {len(dropped)} words can be spelled with the model's "
                                f"vocabulary (e.g. {examples}); {advice}")
            log.warning("%s: %d of %d words cannot be spelled with the model's vocabulary and are left out, so "
                        "they can never be decoded (e.g. %s); %s", source, len(dropped), len(lexicon), examples, advice)
        return kept

    def _check_lexicon_in_lm(self, unigrams: list[float], source: str) -> None:
        """Refuse a word LM that knows none of the lexicon's words (built from another language's text, say): each
        would score as <unk>. A word scoring as <unk> does after <s> is asked about further (`tokens_known_to_lm`)
        only when all of them do, so this costs nothing for an LM that knows the words."""
        start = self._lm.start(False)
        unknown = self._lm.score(start, len(self._words) - 1)[1]
        if any(u != unknown for u in unigrams):
            return
        if not any(tokens_known_to_lm(self._lm, list(range(len(unigrams))), len(self._words) - 1)):
            lexicon = "the lexicon" if source == "lexicon" else f"lexicon {source}"
            raise XlsrError(f"{self.lm_path}: none of the {len(unigrams)} words of {lexicon} is a word of this LM "
                            "(each would score as <unk>): it was built from other text; build it from text in the "
                            "lexicon's language and spelling (xlsr lm build)")

    def _check_units_lm(self, path: Path, loaded=None) -> None:
        """Catch a word LM passed without a lexicon: most of a units LM's "words" are vocabulary tokens; and a units
        LM (so says build_lm's sidecar) of other labels than the model's: it knows none of its tokens but `|`.

        An ARPA file's words are read from its 1-grams, before the slow load (`loaded` None); a binary's count is
        in its header, and which tokens it knows is asked of the `loaded` model. A units LM may know only some of
        the tokens (one language's LM with a multilingual model)."""
        info = read_lm_info(path)
        if not is_kenlm_binary(path):
            if loaded is not None:
                return  # checked before loading
            words = arpa_unigrams(path) - {"<s>", "</s>", UNK}
            n_words, known = len(words), {w for w in words if w in self.vocab}
        elif loaded is None:
            return  # a binary is asked once loaded
        else:
            unigrams = kenlm_binary_unigram_count(path)
            n_words = unigrams - 3 if unigrams is not None else None  # less <s>, </s> and <unk>
            ids = [i for i, t in enumerate(self.vocab.tokens) if t not in (UNK, "<s>", "</s>")]
            known = {self.vocab.tokens[i] for i, k in zip(ids, tokens_known_to_lm(loaded, ids, self.vocab.unk_id)) if k}
        if info is not None and info["units"] != "words":
            if not known - {WORD_BOUNDARY}:
                but = " but `|`" if known else ""
                raise XlsrError(f"{path}: this {info['units']} LM knows none of the model's tokens{but}: it was built "
                                "from another model's labels (another language or alphabet); build one from this "
                                f"model's labels (xlsr lm build --units {info['units']})")
            return  # build_lm says it is a units LM
        tokens = len(known)
        if n_words is None and tokens == 0:
            raise XlsrError(f"{path}: none of the model's vocabulary tokens is a word of this LM, so it is not a "
                            "units LM; lexicon-free decoding needs one (xlsr lm build --units phones|chars), or pass "
                            "a lexicon to decode with a word LM")
        if n_words and tokens <= n_words / 2:
            raise XlsrError(f"{path}: only {tokens} of this LM's {n_words} words are tokens of the model's "
                            "vocabulary, so it is not a units LM; lexicon-free decoding needs one (xlsr lm build "
                            "--units phones|chars), or pass a lexicon to decode with a word LM")

    def _check_word_lm(self, path: Path) -> None:
        """Refuse a units LM (per build_lm's sidecar) with a lexicon: every lexicon word would be <unk> to it."""
        info = read_lm_info(path)
        if info is not None and info["units"] != "words":
            raise XlsrError(f"{path}: a {info['units']} LM (so says {sidecar_path(path).name}) scores tokens, not "
                            "lexicon words; decode with it without a lexicon, or build a word LM (xlsr lm build "
                            "--units words) to use a lexicon")

    def _build_decoder(self):
        c = self.config
        beam_token = c.beam_size_token or len(self.vocab)
        lm_weight = c.lm_weight if self.lm_path is not None else 0.0
        if self._spellings is not None:
            self._scored_lm = LexiconLM(
                self._spellings, self._lm if self.lm_path is not None else None, lm_weight=lm_weight,
                word_score=c.word_score, unk_score=c.unk_score, unk_id=len(self._words) - 1,
                max_readings=c.beam_size, threshold=c.beam_threshold, unfinished_score=_NOT_BOUNDARY,
                blank_id=self.vocab.blank_id, tokens_per_frame=c.beam_size_token)
            opts = LexiconFreeDecoderOptions(
                beam_size=c.beam_size, beam_size_token=beam_token, beam_threshold=c.beam_threshold,
                lm_weight=1.0, sil_score=0.0, log_add=c.log_add, criterion_type=CriterionType.CTC)
            return LexiconFreeDecoder(opts, self._scored_lm, self._sil, self.vocab.blank_id, [])
        if self._trie is None:
            # flashlight's sil_score is added on every frame of `|`; the word score goes into the LM's score
            # instead, which is asked for only when a token is emitted (a slower Python callback, so only if needed).
            self._scored_lm = self._lm
            if c.word_score and self._sil != self.vocab.blank_id:
                self._scored_lm, lm_weight = WordScoreLM(self._lm, lm_weight, self._sil, c.word_score), 1.0
            elif c.word_score and not self._warned_no_words:
                log.warning("word score: the vocabulary has no word boundary `|`, so lexicon-free decoding has no "
                            "words to score; the word score has no effect")
                self._warned_no_words = True
            opts = LexiconFreeDecoderOptions(
                beam_size=c.beam_size, beam_size_token=beam_token, beam_threshold=c.beam_threshold,
                lm_weight=lm_weight, sil_score=0.0, log_add=c.log_add, criterion_type=CriterionType.CTC)
            return LexiconFreeDecoder(opts, self._scored_lm, self._sil, self.vocab.blank_id, [])
        opts = LexiconDecoderOptions(
            beam_size=c.beam_size, beam_size_token=beam_token, beam_threshold=c.beam_threshold,
            lm_weight=lm_weight, word_score=c.word_score, unk_score=c.unk_score, sil_score=0.0,
            log_add=c.log_add, criterion_type=CriterionType.CTC)
        return LexiconDecoder(opts, self._trie, self._lm, self._sil, self.vocab.blank_id,
                              len(self._words) - 1, [], False)

    def reconfigure(self, **changes) -> BeamSearchDecoder:
        """Change beam/LM weights in place (the LM and lexicon stay loaded); returns self."""
        self.config = replace(self.config, **changes)
        self._decoder = self._build_decoder()
        return self

    # -- decoding ---------------------------------------------------------------------------------
    def decode(self, logits, frame_lengths=None, *, timestamps: bool = False) -> list[Hypothesis]:
        """Best hypothesis per row of logits (B,T,V) with frame lengths (B,)."""
        return [nbest[0] for nbest in self.decode_nbest(logits, frame_lengths, timestamps=timestamps)]

    def decode_nbest(self, logits, frame_lengths=None, *, timestamps: bool = False
                     ) -> list[list[Hypothesis]]:
        """Up to `config.nbest` hypotheses per row, best first."""
        logits, lengths = as_logits_tensor(logits, frame_lengths)
        if logits.shape[-1] != len(self.vocab):
            raise XlsrError(f"logits: {logits.shape[-1]} classes but the vocabulary has "
                            f"{len(self.vocab)} tokens")
        if bool(logits.isnan().any()):
            raise XlsrError("logits: NaN values (the model's output is broken); beam search needs numbers")
        emissions = logits.log_softmax(-1)
        return [self._decode_one(emissions[b, : int(lengths[b])].contiguous(), timestamps)
                for b in range(emissions.shape[0])]

    def _decode_one(self, emissions: torch.Tensor, timestamps: bool) -> list[Hypothesis]:
        T, V = emissions.shape
        if T == 0:
            return [Hypothesis([], [], "", 0.0, [] if timestamps else None, [] if timestamps else None)]
        # Lexicon words spelled with `|` end only on a `|`; the frame appended here finishes the last one.
        closing = self._trie is not None and self._sil != self.vocab.blank_id
        if closing:
            emissions = with_final_boundary(emissions, self._sil)
        if self._spellings is not None:
            results = self._decode_frame_by_frame(emissions)
        else:
            results = self._decoder.decode(emissions.data_ptr(), emissions.shape[0], V)
        if not results:
            raise XlsrError("beam search: no hypothesis came back (are the logits NaN?)")
        hyps: dict[tuple[int, ...], Hypothesis] = {}
        for r in sorted(results, key=lambda r: -r.score):
            # r.tokens is the frame path with one sentinel step before and after the frames; the appended
            # frame (at T + 1) is no frame of the audio. A hypothesis that could not end a word there paid for it.
            ids, starts, ends = ctc_segments(r.tokens[1: T + 1], self.vocab.blank_id)
            score = float(r.score)
            if closing and r.tokens[T + 1] != self._sil:
                score -= _NOT_BOUNDARY
            # flashlight starts in silence: `|` on the first frames is no token to it (no LM or word score)
            key = tuple(ids[1:] if ids[:1] == [self._sil] and starts[0] == 0 else ids)
            if key in hyps:
                if self.config.log_add:  # the same labeling reached through different end states
                    hyps[key].score = _logaddexp(hyps[key].score, score)
                continue
            tokens = [self.vocab.tokens[i] for i in ids]
            words = [self._words[w] for w in r.words if w >= 0] if self._trie is not None else None
            if self._spellings is not None:
                word_ids, finished = self._scored_lm.best_reading(ids)
                words = [self._words[w] for w in word_ids]
                if not finished:  # no reading ends in a whole word; it paid for that, as in `LexiconLM.finish`
                    score -= _NOT_BOUNDARY
            hyps[key] = Hypothesis(
                tokens=tokens, token_ids=ids, text=self.vocab.join(tokens), score=score,
                frames=starts if timestamps else None,
                timestamps=[round(s * self.frame_stride_s, 6) for s in starts] if timestamps else None,
                words=words, end_frames=ends if timestamps else None,
                end_timestamps=[round(e * self.frame_stride_s, 6) for e in ends] if timestamps else None)
        if self._spellings is not None:
            self._scored_lm.forget()
        ranked = sorted(hyps.values(), key=lambda h: -h.score)
        return ranked[: self.config.nbest]


    def _decode_frame_by_frame(self, emissions: torch.Tensor) -> list:
        """flashlight's `decode`, one frame at a time, so that `LexiconLM` can drop the states no hypothesis holds."""
        T, V = emissions.shape
        frame_bytes = V * emissions.element_size()
        # LexiconLM's records make no reference cycles and die a frame or two after they are made, yet enough live
        # through two young collections that Python's cycle collector would scan the whole heap every few frames
        # (a third of the time with a 20,000-word lexicon): it is paused meanwhile.
        collecting = gc.isenabled()
        gc.disable()
        try:
            self._decoder.decode_begin()
            for t in range(T):
                self._decoder.decode_step(emissions.data_ptr() + t * frame_bytes, 1, V)
                self._scored_lm.next_frame(emissions[t])
            self._decoder.decode_end()
            return self._decoder.get_all_final_hypothesis()
        finally:
            if collecting:
                gc.enable()


def with_final_boundary(emissions: torch.Tensor, boundary_id: int) -> torch.Tensor:
    """(T, V) log-probabilities and one more frame on which only the word boundary is possible."""
    frame = torch.full((1, emissions.shape[1]), _NOT_BOUNDARY, dtype=emissions.dtype)
    frame[0, boundary_id] = 0.0
    return torch.cat([emissions, frame]).contiguous()


class WordScoreLM(LM):
    """A flashlight LM: `lm`'s log-probabilities × `weight`, plus `word_score` each time the word boundary is
    emitted. flashlight asks an LM for a token's score only when the token is emitted, not on the frames that
    hold it, so a pause of several frames of `|` gets one word score."""

    def __init__(self, lm, weight: float, boundary_id: int, word_score: float):
        LM.__init__(self)
        self.lm, self.weight, self.boundary_id, self.word_score = lm, weight, boundary_id, word_score

    def start(self, start_with_nothing):
        return self.lm.start(start_with_nothing)

    def score(self, state, token_index):
        state, score = self.lm.score(state, token_index)
        return state, self.weight * score + (self.word_score if token_index == self.boundary_id else 0.0)

    def finish(self, state):
        state, score = self.lm.finish(state)
        return state, self.weight * score


def _logaddexp(a: float, b: float) -> float:
    hi, lo = max(a, b), min(a, b)
    return hi + math.log1p(math.exp(lo - hi)) if lo > -math.inf else hi


def decoder_for_lm(vocab: Vocabulary, lm: str | Path | None, *, lexicon=None,
                   config: BeamSearchConfig | None = None, frame_stride_s: float = FRAME_STRIDE_S
                   ) -> BeamSearchDecoder:
    """A decoder for an LM built by `build_lm`: its sidecar says units LM (lexicon-free) or word LM
    (lexicon from the LM's word list, unless `lexicon` is given). LMs without a sidecar are used
    lexicon-free unless a lexicon is passed. `frame_stride_s`: the model's seconds per frame (timestamps)."""
    if lm is not None and lexicon is None:
        info = read_lm_info(lm)
        if info is not None and info["units"] == "words":
            if not info["words"]:
                raise XlsrError(f"{sidecar_path(lm)}: a word LM needs its word list ('words')")
            lexicon = Path(lm).parent / info["words"]
        elif info is not None and info["units"] != vocab.kind:
            raise XlsrError(f"{lm}: a {info['units']} LM cannot decode a {vocab.kind} model")
    return BeamSearchDecoder(vocab, lm=lm, lexicon=lexicon, config=config, frame_stride_s=frame_stride_s)


def beam_search_decode(logits, frame_lengths=None, vocab: Vocabulary | None = None, *,
                       lm: str | Path | None = None, lexicon=None, timestamps: bool = False,
                       **config) -> list[Hypothesis]:
    """One-shot beam search (builds a BeamSearchDecoder; reuse one for many batches)."""
    if vocab is None:
        raise XlsrError("beam search: a vocabulary is needed")
    decoder = decoder_for_lm(vocab, lm, lexicon=lexicon, config=BeamSearchConfig(**config))
    return decoder.decode(logits, frame_lengths, timestamps=timestamps)
