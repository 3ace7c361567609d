"""A lexicon as an LM over tokens, for flashlight's lexicon-free CTC search (vocabularies without `|`).

flashlight's lexicon decoder finishes a word on the first frame of its last token and may then only emit silence,
which is the blank here: a word's last token cannot be held for a second frame (as CTC lets any token be), so a word
ending in a held phone would be cut short or followed by an invented word. Here a word ends where the next word's
first token comes (or at the end), and holding, blanks and repeats are left to flashlight's lexicon-free CTC search,
which treats every token alike; `LexiconLM` scores the tokens as the lexicon and a word LM read them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from flashlight.lib.text.decoder import LM, LMState


class SpellingTrie:
    """Lexicon spellings as a trie of token ids (node 0 is the root), for `LexiconLM`.

    `lookahead[node]` is the best LM unigram (log10) of the words spelled through the node: a word being spelled
    is ranked by its best completion, as flashlight's trie smeared with max does."""

    def __init__(self):
        self.children: list[dict[int, int]] = [{}]
        self.words: list[list[int]] = [[]]
        self.lookahead: list[float] = [0.0]

    def insert(self, token_ids: list[int], word_id: int, unigram: float) -> None:
        node = 0
        for t in token_ids:
            if t not in self.children[node]:
                self.children[node][t] = len(self.children)
                self.children.append({})
                self.words.append([])
                self.lookahead.append(-math.inf)
            node = self.children[node][t]
            self.lookahead[node] = max(self.lookahead[node], unigram)
        if word_id not in self.words[node]:
            self.words[node].append(word_id)


class LexiconLM(LM):
    """Lexicon decoding as an LM over tokens, for flashlight's lexicon-free search.

    The state of a token prefix is the set of its readings as lexicon words, (trie node of the word being
    spelled, word LM state) -> (score, words), the score being lm_weight × LM log10 + word_score per word (or
    unk_score per <unk>, which, as in flashlight, is a prefix of a spelling that is no word). A token scores the
    change of the best reading's score plus the look-ahead of its partial word, so a hypothesis' scores add up to
    its best reading's once `finish` ends the last word (a hypothesis inside a word gets `unfinished_score`).
    Readings are pruned as hypotheses are: the best `max_readings` within `threshold` of the best.

    flashlight asks for every token after every hypothesis, so the readings after a token are only worked out
    when the search extends it; its score needs just the best one (`_next_values`). The search runs a frame at a
    time, and `next_frame` drops the states that no hypothesis holds any more: memory stays bounded by the beam,
    whatever the length of the audio."""

    def __init__(self, trie: SpellingTrie, lm, *, lm_weight: float, word_score: float, unk_score: float,
                 unk_id: int, max_readings: int, threshold: float, unfinished_score: float, blank_id: int,
                 tokens_per_frame: int | None):
        LM.__init__(self)
        self.trie, self.lm, self.lm_weight = trie, lm, lm_weight
        self.word_score, self.unk_score, self.unk_id = word_score, unk_score, unk_id
        self.max_readings, self.threshold, self.unfinished_score = max_readings, threshold, unfinished_score
        self.blank_id, self.tokens_per_frame = blank_id, tokens_per_frame  # the search's (beam_size_token)
        self._states: dict[LMState, _State] = {}   # the states hypotheses may hold on this frame
        self._touched: dict[LMState, _State] = {}  # those asked about or handed out on it
        self._steps: dict[int, list[tuple[int, float]]] = {}  # node -> (token, lm_weight × look-ahead after it)
        # after a token that spells no lexicon word: a state of its own, so that the hypotheses on any other state
        # hold its last token or a blank (`next_frame`); the search drops them (-inf) unless it has no others
        self._dead = LMState(), _State(blank_id, -math.inf, readings={}, ends=[], next_values={})

    # -- flashlight's LM interface ------------------------------------------------------------------
    def start(self, start_with_nothing):
        # a new utterance: the last one's states are no longer asked for
        state = LMState()
        readings = self._first_readings()
        self._states = {state: _State(self.blank_id, self._value(readings), readings=readings)}
        self._touched = dict([self._dead])
        return state

    def score(self, state, token_index):
        # flashlight asks again on every frame a hypothesis holds its token or a blank: answers are kept
        here = self._touched[state] = self._states[state]
        answer = here.answers.get(token_index)
        if answer is None:
            answer = here.answers[token_index] = self._answer(state, here, token_index)
        child, score, record = answer
        if record is not None:
            self._touched[child] = record
        return child, score

    def _answer(self, state, here: _State, token: int) -> tuple[LMState, float, _State | None]:
        if here.next_values is None:
            self._expand(here)
            here.next_values = self._next_values(here)
        value = here.next_values.get(token)
        if value is None:  # no lexicon word is spelled this way
            return self._dead[0], -math.inf, None
        # a state of its own, not state.child(token): flashlight's states keep every child they made
        return LMState(), value - here.value, _State(token, value, source=(here.readings, here.ends))

    def finish(self, state):
        here = self._states[state]
        self._expand(here)
        best, _ = self._finished(here.readings, here.ends)
        return state, (best - here.value if best > -math.inf else self.unfinished_score)

    def next_frame(self, log_probs: torch.Tensor) -> None:
        """Drop the states that no hypothesis holds after the frame just decoded (its (V,) `log_probs`).

        flashlight asks about a hypothesis' state when it emits a new token: one of the frame's `tokens_per_frame`
        best but the blank and (unless a blank came between) its last token. With 3 or more tokens per frame it asks
        about every hypothesis, so the next frame's hypotheses hold only states asked about or handed out on this
        one; with fewer, the states whose hypotheses it may have extended without asking are kept as well."""
        kept = self._touched
        tried = min(self.tokens_per_frame or len(log_probs), len(log_probs))
        if tried < 3:
            quiet = self._quiet_tokens(log_probs, tried)
            for state, here in self._states.items():
                if quiet is None or here.token in quiet:
                    kept.setdefault(state, here)
        self._states, self._touched = kept, dict([self._dead])

    def _quiet_tokens(self, log_probs: torch.Tensor, tried: int) -> set[int] | None:
        """The last tokens of hypotheses flashlight may have extended without asking (None: any)."""
        top = (log_probs >= log_probs.topk(tried).values[-1]).nonzero().flatten().tolist()
        emitted = set(top) - {self.blank_id}
        if len(top) > tried or not emitted:  # a tie flashlight broke its own way, or only the blank was tried
            return None
        return emitted if len(emitted) == 1 else set()

    def forget(self) -> None:
        """Drop the last utterance's states."""
        self._states, self._touched = {}, {}

    # -- readings -----------------------------------------------------------------------------------
    def best_reading(self, token_ids: list[int]) -> tuple[list[int], bool]:
        """The word ids of the best reading of a token sequence, and whether its last word is whole."""
        readings = self._first_readings()
        for t in token_ids:
            following = self._step(readings, t, self._word_ends(readings))
            if not following:
                break
            readings = following
        best, words = self._finished(readings, self._word_ends(readings))
        if best == -math.inf:
            words = max(readings.values(), key=lambda r: r[0])[1]
        out = []
        while words is not None:
            words, word = words[1], words[0]
            out.append(word)
        return out[::-1], best > -math.inf

    def _expand(self, here: _State) -> None:
        if here.readings is None:
            readings, ends = here.source
            here.readings, here.source = self._step(readings, here.token, ends), None
        if here.ends is None:
            here.ends = self._word_ends(here.readings)

    def _first_readings(self) -> dict:
        return {(0, self.lm.start(False) if self.lm is not None else None): (0.0, None)}

    def _value(self, readings: dict) -> float:
        look = self.trie.lookahead
        return max(s + self.lm_weight * look[node] for (node, _), (s, _) in readings.items())

    def _word_ends(self, readings: dict) -> list[tuple]:
        """(score, LM state, words) of each reading with its word ended: the words that can end at its node."""
        ends = []
        for (node, lm_state), (s, words) in readings.items():
            ids = self.trie.words[node]
            if not ids and node != 0 and self.unk_score > -math.inf:
                ids = [self.unk_id]
            for w in ids:
                lm_state_after, log10 = self.lm.score(lm_state, w) if self.lm is not None else (None, 0.0)
                bonus = self.unk_score if w == self.unk_id else self.word_score
                ends.append((s + self.lm_weight * log10 + bonus, lm_state_after, (w, words)))
        return ends

    def _next_values(self, here: _State) -> dict[int, float]:
        """The best reading's value after each token that can follow (as `_value(_step(...))`, without the step)."""
        best_at: dict[int, float] = {}  # node -> best score of a reading there (a word ended: the root)
        for (node, _), (s, _) in here.readings.items():
            if s > best_at.get(node, -math.inf):
                best_at[node] = s
        if here.ends:
            ended = max(e[0] for e in here.ends)
            if ended > best_at.get(0, -math.inf):
                best_at[0] = ended
        values: dict[int, float] = {}
        for node, s in best_at.items():
            for t, look in self._steps_from(node):
                v = s + look
                if v > values.get(t, -math.inf):
                    values[t] = v
        return values

    def _steps_from(self, node: int) -> list[tuple[int, float]]:
        steps = self._steps.get(node)
        if steps is None:
            look = self.trie.lookahead
            steps = self._steps[node] = [(t, self.lm_weight * look[c]) for t, c in self.trie.children[node].items()]
        return steps

    def _step(self, readings: dict, token: int, ends: list[tuple]) -> dict:
        """The readings after one more token: it continues the word being spelled, or starts the next one."""
        children, look, weight = self.trie.children, self.trie.lookahead, self.lm_weight
        out: dict = {}
        for (node, lm_state), (s, words) in readings.items():
            child = children[node].get(token)
            if child is not None and ((child, lm_state) not in out or s > out[child, lm_state][0]):
                out[child, lm_state] = (s, words)
        first = children[0].get(token)
        if first is not None:
            for s, lm_state, words in ends:
                if (first, lm_state) not in out or s > out[first, lm_state][0]:
                    out[first, lm_state] = (s, words)
        if len(out) > 1:
            ranked = sorted(out.items(), key=lambda kv: -(kv[1][0] + weight * look[kv[0][0]]))
            floor = ranked[0][1][0] + weight * look[ranked[0][0][0]] - self.threshold
            out = dict(kv for kv in ranked[: self.max_readings] if kv[1][0] + weight * look[kv[0][0]] >= floor)
        return out

    def _finished(self, readings: dict, ends: list[tuple]) -> tuple[float, tuple | None]:
        """The best score of a reading whose last word is whole, with </s>, and its words (-inf if none)."""
        best, best_words = -math.inf, None
        ended = [(s, lm_state, words) for (node, lm_state), (s, words) in readings.items() if node == 0]
        for s, lm_state, words in ended + ends:
            score = s + self.lm_weight * (self.lm.finish(lm_state)[1] if self.lm is not None else 0.0)
            if score > best:
                best, best_words = score, words
        return best, best_words


@dataclass(eq=False, slots=True)
class _State:
    """What `LexiconLM` keeps of a state: the token that made it (the blank for the first), its best reading's
    value, its readings (worked out from its parent's `source` when first needed), the values after each token
    that can follow, and the answers given to flashlight (token -> its state, score and record)."""

    token: int
    value: float
    source: tuple | None = None
    readings: dict | None = None
    ends: list | None = None
    next_values: dict | None = None
    answers: dict = field(default_factory=dict)
