import itertools
import math
from dataclasses import replace

import pytest
import torch
from decode_fixtures import AB_WORD_ARPA, PHONE_LEXICON, best_path_score, frames

from xlsr.decode.beam import BeamSearchConfig, BeamSearchDecoder, decoder_for_lm, read_lexicon
from xlsr.decode.greedy import greedy_decode
from xlsr.errors import XlsrError
from xlsr.model.ctc import ctc_collapse
from xlsr.text.vocab import Vocabulary

EXHAUSTIVE = {"beam_size": 2000, "beam_threshold": 1e9}


def _brute_force(log_probs, silence=None):
    """Every frame path of a tiny (T, V) problem: best path per labeling, and summed probability.

    `silence`: a token that, on the first frames, is the decoder's initial silence, no token of the labeling."""
    T, V = log_probs.shape
    best_path, total = {}, {}
    for path in itertools.product(range(V), repeat=T):
        score = float(sum(log_probs[t, k] for t, k in enumerate(path)))
        lead = next((t for t, k in enumerate(path) if k != silence), T) if silence is not None else 0
        label = tuple(ctc_collapse((0,) * lead + path[lead:])[0])
        best_path[label] = max(best_path.get(label, -math.inf), score)
        prev = total.get(label, -math.inf)
        total[label] = max(prev, score) + math.log1p(math.exp(-abs(prev - score)))
    return best_path, total


@pytest.mark.parametrize("seed", range(40))
def test_beam_without_lm_equals_brute_force(seed):
    vocab = Vocabulary(["<blank>", "<unk>", "a", "b"], kind="phones")
    g = torch.Generator().manual_seed(seed)
    T = 1 + seed % 5
    logits = torch.randn(T, len(vocab), generator=g) * 2
    best_path, total = _brute_force(logits.log_softmax(-1))

    viterbi = BeamSearchDecoder(vocab, config=BeamSearchConfig(**EXHAUSTIVE)).decode(logits[None])[0]
    label = max(best_path, key=best_path.get)
    assert tuple(viterbi.token_ids) == label
    assert viterbi.score == pytest.approx(best_path[label], abs=1e-4)

    prefix = BeamSearchDecoder(vocab, config=BeamSearchConfig(**EXHAUSTIVE, log_add=True))
    hyp = prefix.decode(logits[None])[0]
    label = max(total, key=total.get)
    assert tuple(hyp.token_ids) == label
    assert hyp.score == pytest.approx(total[label], abs=1e-4)




PHONE_ARPA = """\\data\\
ngram 1=6
ngram 2=4

\\1-grams:
-2.0\t<unk>\t0
-99\t<s>\t-0.3
-1.0\t</s>\t0
-0.6\ta\t-0.3
-0.6\tb\t-0.3
-3.0\tc\t-0.3

\\2-grams:
-0.05\t<s> a
-0.05\ta b
-0.05\tb </s>
-0.5\tb a

\\end\\
"""


def test_units_lm_fixes_a_greedy_error(tmp_path):
    vocab = Vocabulary.build(["a b c"], kind="phones")
    lm = tmp_path / "phones.arpa"
    lm.write_text(PHONE_ARPA)
    # the acoustics slightly prefer "c" in the second slot; the LM knows "a b" is what is said
    logits = frames(vocab, ["a", "<blank>", {"c": 0.5, "b": 0.4}, "<blank>"])
    assert greedy_decode(logits, None, vocab)[0].text == "a c"
    no_lm = BeamSearchDecoder(vocab, config=BeamSearchConfig(lm_weight=0.0)).decode(logits)[0]
    assert no_lm.text == "a c"
    fused = BeamSearchDecoder(vocab, lm=lm, config=BeamSearchConfig(lm_weight=1.0))
    hyp = fused.decode(logits, timestamps=True)[0]
    assert hyp.text == "a b"
    assert hyp.timestamps == pytest.approx([0.0, 0.04])
    # the same LM with zero weight leaves the acoustic choice alone
    assert fused.reconfigure(lm_weight=0.0).decode(logits)[0].text == "a c"


WORD_ARPA = """\\data\\
ngram 1=5
ngram 2=3

\\1-grams:
-2.0\t<unk>\t0
-99\t<s>\t-0.3
-1.0\t</s>\t0
-0.3\tab\t-0.3
-2.5\tac\t-0.3

\\2-grams:
-0.05\t<s> ab
-0.1\tab </s>
-0.1\tab ab

\\end\\
"""


def test_word_lm_with_lexicon_fixes_a_greedy_error(tmp_path):
    vocab = Vocabulary.build(["ab ac"], kind="chars")
    lm = tmp_path / "words.arpa"
    lm.write_text(WORD_ARPA)
    lexicon = tmp_path / "words.txt"
    lexicon.write_text("ab\nac\n")
    logits = frames(vocab, ["a", {"c": 0.5, "b": 0.4}, "|", "a", "b", "<blank>", "|"])
    assert greedy_decode(logits, None, vocab)[0].text == "ac ab"
    fused = BeamSearchDecoder(vocab, lm=lm, lexicon=lexicon, config=BeamSearchConfig(lm_weight=1.0))
    hyp = fused.decode(logits)[0]
    assert hyp.text == "ab ab" and hyp.words == ["ab", "ab"]
    assert fused.reconfigure(lm_weight=0.0).decode(logits)[0].text == "ac ab"


def test_lexicon_restricts_words_without_lm():
    vocab = Vocabulary.build(["ab ac"], kind="chars")
    logits = frames(vocab, ["a", {"c": 0.5, "b": 0.4}, "|"])
    hyp = BeamSearchDecoder(vocab, lexicon=["ab"]).decode(logits)[0]
    assert hyp.text == "ab" and hyp.words == ["ab"]


def test_decoder_for_lm_reads_build_lm_sidecar(tmp_path):
    vocab = Vocabulary.build(["ab ac"], kind="chars")
    lm = tmp_path / "words.arpa"
    lm.write_text(WORD_ARPA)
    (tmp_path / "words.arpa.words.txt").write_text("ab\nac\n")
    (tmp_path / "words.arpa.json").write_text('{"units": "words", "order": 2, "words": "words.arpa.words.txt"}')
    decoder = decoder_for_lm(vocab, lm, config=BeamSearchConfig(lm_weight=1.0))
    assert decoder.uses_lexicon and set(decoder.lexicon) == {"ab", "ac"}


def test_bad_lm_files_give_one_line_errors(tmp_path):
    vocab = Vocabulary.build(["a b"], kind="phones")
    bad = tmp_path / "bad.arpa"
    bad.write_text("this is not\nan arpa file\n")
    with pytest.raises(XlsrError, match=r"bad\.arpa: not a KenLM") as info:
        BeamSearchDecoder(vocab, lm=bad)
    assert "\n" not in str(info.value)
    broken = tmp_path / "broken.arpa"
    broken.write_text("\\data\\\nngram 1=3\n\n\\1-grams:\n-1\ta\n")  # truncated
    with pytest.raises(XlsrError, match=r"broken\.arpa: cannot load") as info:
        BeamSearchDecoder(vocab, lm=broken, lexicon=None)
    assert "\n" not in str(info.value)
    with pytest.raises(XlsrError, match="missing.bin: no such"):
        BeamSearchDecoder(vocab, lm=tmp_path / "missing.bin")


def test_word_lm_without_lexicon_is_refused(tmp_path):
    vocab = Vocabulary.build(["ab ac"], kind="chars")
    lm = tmp_path / "words.arpa"
    lm.write_text(WORD_ARPA)
    with pytest.raises(XlsrError, match="units LM"):
        BeamSearchDecoder(vocab, lm=lm)


def test_read_lexicon_spellings(tmp_path):
    vocab = Vocabulary.build(["h ə l oʊ"], kind="phones")
    path = tmp_path / "lexicon.txt"
    path.write_text("hello h ə l oʊ\nhello h ɛ l oʊ\n", encoding="utf-8")
    assert read_lexicon(path, vocab) == {"hello": [["h", "ə", "l", "oʊ"], ["h", "ɛ", "l", "oʊ"]]}
    (tmp_path / "words.txt").write_text("hello\n")
    with pytest.raises(XlsrError, match="character vocabulary"):
        read_lexicon(tmp_path / "words.txt", vocab)


def test_decoder_for_lm_refuses_units_of_another_kind(tmp_path):
    vocab = Vocabulary.build(["ab ac"], kind="chars")
    lm = tmp_path / "phones.arpa"
    lm.write_text(PHONE_ARPA)
    (tmp_path / "phones.arpa.json").write_text('{"units": "phones", "order": 2, "words": null}')
    with pytest.raises(XlsrError, match="phones LM cannot decode a chars model"):
        decoder_for_lm(vocab, lm)


def test_phone_lexicon_without_word_boundary():
    vocab = Vocabulary.build(["h e l o w r d"], kind="phones")  # no `|`: the blank doubles as silence
    logits = frames(vocab, ["h", "e", "<blank>", "l", "o", "w", "e", {"l": 0.5, "r": 0.4}, "d"])
    assert greedy_decode(logits, None, vocab)[0].text == "h e l o w e l d"
    lexicon = {"hello": "h e l o", "world": "w e r d", "held": ["h", "e", "l", "d"]}
    hyp = BeamSearchDecoder(vocab, lexicon=lexicon).decode(logits)[0]
    assert hyp.words == ["hello", "world"] and hyp.text == "h e l o w e r d"




@pytest.mark.parametrize("tail", [[], ["<blank>", "<blank>"]])
def test_lexicon_finishes_the_last_word_without_a_final_boundary(tmp_path, tail):
    # this project's labels never end in `|`, so a model emits none after the last word
    vocab = Vocabulary.build(["ab ac"], kind="chars")
    lm = tmp_path / "words.arpa"
    lm.write_text(WORD_ARPA)
    logits = frames(vocab, ["a", "b", "|", "a", "c", *tail])
    decoder = BeamSearchDecoder(vocab, lm=lm, lexicon=["ab", "ac"],
                                config=BeamSearchConfig(lm_weight=1.0, word_score=0.5))
    hyp = decoder.decode(logits, timestamps=True)[0]
    assert hyp.words == ["ab", "ac"] and hyp.text == "ab ac"
    # both words and </s> get the LM (log10, as KenLM gives it): <s> ab, ab -> ac (backed off), ac -> </s>
    lm_log10 = -0.05 + (-0.3 - 2.5) + (-0.3 - 1.0)
    assert hyp.score == pytest.approx(best_path_score(logits) + lm_log10 + 2 * 0.5, abs=1e-3)
    T = logits.shape[1]
    assert len(hyp.timestamps) == len(hyp.tokens) == len(hyp.end_frames) and max(hyp.end_frames) <= T
    assert hyp.frames == [0, 1, 2, 3, 4]


def test_lexicon_without_lm_finishes_the_last_word():
    vocab = Vocabulary.build(["ab ac"], kind="chars")
    logits = frames(vocab, ["a", "b", "|", "a", {"c": 0.5, "b": 0.4}])
    hyp = BeamSearchDecoder(vocab, lexicon=["ab", "ac"]).decode(logits)[0]
    assert hyp.words == ["ab", "ac"] and hyp.score == pytest.approx(best_path_score(logits), abs=1e-3)


CHAR_ARPA = """\\data\\
ngram 1=6
ngram 2=2

\\1-grams:
-1.0\t<unk>\t0
-99\t<s>\t-0.3
-0.5\t</s>\t0
-0.4\ta\t-0.2
-0.6\tb\t-0.2
-0.7\t|\t-0.2

\\2-grams:
-0.1\ta |
-0.2\t| b

\\end\\
"""


@pytest.mark.parametrize("pause", [1, 3, 6])
def test_lexicon_free_word_score_counts_each_boundary_once(tmp_path, pause):
    vocab = Vocabulary.build(["a b"], kind="chars")
    logits = frames(vocab, ["a", *["|"] * pause, "b"])
    am = best_path_score(logits)
    hyp = BeamSearchDecoder(vocab, config=BeamSearchConfig(word_score=-1.0)).decode(logits)[0]
    assert hyp.text == "a b" and hyp.score == pytest.approx(am - 1.0, abs=1e-3)
    lm = tmp_path / "chars.arpa"
    lm.write_text(CHAR_ARPA)
    fused = BeamSearchDecoder(vocab, lm=lm, config=BeamSearchConfig(lm_weight=2.0, word_score=-1.0))
    # <s> a | b </s> in log10: (-0.3 - 0.4) + -0.1 + -0.2 + (-0.2 - 0.5)
    lm_log10 = -1.7
    assert fused.decode(logits)[0].score == pytest.approx(am + 2.0 * lm_log10 - 1.0, abs=1e-3)
    assert fused.reconfigure(word_score=0.0).decode(logits)[0].score == pytest.approx(am + 2.0 * lm_log10, abs=1e-3)
    assert fused.reconfigure(lm_weight=0.0, word_score=2.0).decode(logits)[0].score == pytest.approx(am + 2.0,
                                                                                                     abs=1e-3)


@pytest.mark.parametrize("seed", range(12))
def test_lexicon_free_word_score_equals_brute_force(seed):
    vocab = Vocabulary(["<blank>", "<unk>", "|", "a"], kind="chars")
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(3 + seed % 3, len(vocab), generator=g) * 2
    word_score = 1.5 if seed % 2 else -1.5
    boundary = vocab.index("|")
    # flashlight starts in silence (`|`): a `|` on the first frames is no word boundary, and not scored
    best_path, total = _brute_force(logits.log_softmax(-1), silence=boundary)
    best_path = {label: s + word_score * label.count(boundary) for label, s in best_path.items()}
    total = {label: s + word_score * label.count(boundary) for label, s in total.items()}

    def labeling(hyp):
        leading = hyp.token_ids[:1] == [boundary] and hyp.frames[0] == 0
        return tuple(hyp.token_ids[1:] if leading else hyp.token_ids)

    config = BeamSearchConfig(**EXHAUSTIVE, word_score=word_score)
    viterbi = BeamSearchDecoder(vocab, config=config).decode(logits[None], timestamps=True)[0]
    label = max(best_path, key=best_path.get)
    assert labeling(viterbi) == label and viterbi.score == pytest.approx(best_path[label], abs=1e-4)
    prefix = BeamSearchDecoder(vocab, config=replace(config, log_add=True)).decode(logits[None], timestamps=True)[0]
    label = max(total, key=total.get)
    assert labeling(prefix) == label and prefix.score == pytest.approx(total[label], abs=1e-4)


def test_word_score_without_boundary_token_warns(caplog):
    vocab = Vocabulary.build(["a b"], kind="phones")  # no `|`
    with caplog.at_level("WARNING", logger="xlsr.decode.beam"):
        BeamSearchDecoder(vocab, config=BeamSearchConfig(word_score=1.0))
    assert "no effect" in caplog.text


def test_units_lm_may_cover_part_of_a_multilingual_vocabulary(tmp_path):
    vocab = Vocabulary.union([Vocabulary.build(["a b"], kind="chars"),
                              Vocabulary.build(["пр ив ет как де ла"], kind="chars")])
    lm = tmp_path / "chars.arpa"
    lm.write_text(CHAR_ARPA)  # one language's units LM: a, b and |
    logits = frames(vocab, ["a", "|", "b"])
    assert BeamSearchDecoder(vocab, lm=lm).decode(logits)[0].text == "a b"
    (tmp_path / "chars.arpa.json").write_text('{"units": "chars", "order": 2, "words": null}')
    assert decoder_for_lm(vocab, lm).decode(logits)[0].text == "a b"


@pytest.mark.parametrize("settings", [{"beam_size_token": -1}, {"beam_size_token": 0}, {"beam_threshold": -1.0},
                                      {"beam_threshold": math.nan}, {"beam_threshold": math.inf},
                                      {"lm_weight": math.nan}, {"word_score": math.inf}])
def test_bad_beam_settings_are_one_line_errors(settings):
    with pytest.raises(XlsrError, match=f"^{next(iter(settings))}: must be") as info:
        BeamSearchConfig(**settings)
    assert "\n" not in str(info.value)
    vocab = Vocabulary.build(["a b"], kind="chars")
    with pytest.raises(XlsrError):
        BeamSearchDecoder(vocab).reconfigure(**settings)


def test_nan_logits_or_no_result_are_one_line_errors(monkeypatch):
    vocab = Vocabulary.build(["ab ac"], kind="chars")
    decoder = BeamSearchDecoder(vocab)
    with pytest.raises(XlsrError, match="NaN"):
        decoder.decode(torch.full((1, 3, len(vocab)), math.nan))
    monkeypatch.setattr(decoder, "_decoder", type("Empty", (), {"decode": lambda self, *args: []})())
    with pytest.raises(XlsrError, match="no hypothesis"):
        decoder.decode(torch.zeros(1, 3, len(vocab)))


@pytest.mark.parametrize("sidecar", ['[]', '"words"', '{"units": "words", "words": 5}', '{"units": 3}'])
def test_malformed_lm_sidecar_is_a_one_line_error(tmp_path, sidecar):
    vocab = Vocabulary.build(["ab ac"], kind="chars")
    lm = tmp_path / "words.arpa"
    lm.write_text(WORD_ARPA)
    (tmp_path / "words.arpa.json").write_text(sidecar)
    with pytest.raises(XlsrError, match=r"words\.arpa\.json: ") as info:
        decoder_for_lm(vocab, lm)
    assert "\n" not in str(info.value)


# -- phone lexicons: a word's last phone may be held, as any CTC token ------------------------------


def _arpa_log10(arpa: str, words) -> float:
    """log10 P(<s> words </s>) with standard back-off: an ARPA scorer of our own, to check KenLM's use."""
    probs, backoffs = {}, {}
    for line in arpa.splitlines():
        parts = line.split("\t")
        if len(parts) >= 2:
            probs[tuple(parts[1].split())] = float(parts[0])
            if len(parts) > 2:
                backoffs[tuple(parts[1].split())] = float(parts[2])
    order = max(map(len, probs))
    total, history = 0.0, ("<s>",)
    for word in [*words, "</s>"]:
        word = word if (word,) in probs else "<unk>"
        context = history[-(order - 1):]
        while context + (word,) not in probs:  # back off: the context's weight, then a shorter context
            total += backoffs.get(context, 0.0)
            context = context[1:]
        total += probs[context + (word,)]
        history += (word,)
    return total


def _readings(tokens, lexicon):
    """Every way to read a token sequence as lexicon words, their spellings one after another."""
    if not tokens:
        return [[]]
    return [[word, *rest] for word, spelling in lexicon.items() if tokens[: len(spelling)] == spelling
            for rest in _readings(tokens[len(spelling):], lexicon)]


@pytest.mark.parametrize("seed", range(12))
def test_phone_lexicon_without_word_boundary_equals_brute_force(tmp_path, seed):
    # without `|` a word ends where the next starts; its last phone may span several frames
    vocab = Vocabulary(["<blank>", "<unk>", "a", "b", "c"], kind="phones")
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2 + seed % 4, len(vocab), generator=g) * 2
    use_lm = seed % 2 == 1
    lm_weight, word_score = [(1.0, 0.0), (0.5, 1.0), (2.0, -0.5)][seed % 3]
    lm = tmp_path / "words.arpa"
    lm.write_text(AB_WORD_ARPA)

    def best_reading(words_lists):
        return max((lm_weight * _arpa_log10(AB_WORD_ARPA, words) * use_lm + word_score * len(words)
                    for words in words_lists), default=-math.inf)

    best_path, total = _brute_force(logits.log_softmax(-1))
    for log_add, acoustic in ((False, best_path), (True, total)):
        expected = {label: s + best_reading(_readings([vocab.tokens[i] for i in label], PHONE_LEXICON))
                    for label, s in acoustic.items()}
        label = max(expected, key=expected.get)
        config = BeamSearchConfig(**EXHAUSTIVE, lm_weight=lm_weight, word_score=word_score, log_add=log_add)
        decoder = BeamSearchDecoder(vocab, lm=lm if use_lm else None, lexicon=PHONE_LEXICON, config=config)
        hyp = decoder.decode(logits[None])[0]
        assert tuple(hyp.token_ids) == label and hyp.score == pytest.approx(expected[label], abs=1e-4)
        # words: a best reading of the labeling (readings may tie)
        assert best_reading([hyp.words]) == pytest.approx(best_reading(_readings(hyp.tokens, PHONE_LEXICON)))


@pytest.mark.parametrize("spec, words", [(["a", "b", "b"], ["ab"]), (["a", "b", "b", "<blank>"], ["ab"]),
                                         (["c", "a", "b", "b", "c"], ["c", "ab", "c"]),
                                         (["a", "a", "b", "b", "<blank>", "b"], ["ab", "b"])])
def test_phone_lexicon_holds_a_words_last_phone(spec, words):
    vocab = Vocabulary.build(["a b c"], kind="phones")  # no `|`
    logits = frames(vocab, spec)
    hyp = BeamSearchDecoder(vocab, lexicon={"ab": "a b", "b": "b", "c": "c"}).decode(logits)[0]
    assert hyp.words == words and hyp.score == pytest.approx(best_path_score(logits), abs=1e-3)


@pytest.mark.parametrize("tokens_per_frame", [1, 2, None])
def test_phone_lexicon_search_keeps_only_the_states_hypotheses_hold(tmp_path, monkeypatch, tokens_per_frame):
    # the token LM drops, frame by frame, the states no hypothesis holds: as many for 300 frames as for 60, and
    # the same answer as a search that keeps every state (a state dropped too early would be a KeyError)
    from xlsr.decode.lexicon_lm import LexiconLM
    vocab = Vocabulary(["<blank>", "<unk>", "a", "b", "c"], kind="phones")
    lm = tmp_path / "words.arpa"
    lm.write_text(AB_WORD_ARPA)
    g = torch.Generator().manual_seed(0)
    spoken = torch.tensor([0, 2, 3, 4])[torch.randint(0, 4, (300,), generator=g)]  # blank, a, b, c
    logits = torch.randn(300, len(vocab), generator=g) * 0.5
    logits[torch.arange(300), spoken] += 4.0
    config = BeamSearchConfig(beam_size=8, beam_size_token=tokens_per_frame, lm_weight=0.5, unk_score=-5.0)
    decoder = BeamSearchDecoder(vocab, lm=lm, lexicon={**PHONE_LEXICON, "c": ["c"]}, config=config)
    held, next_frame = [], LexiconLM.next_frame

    def counted(self, log_probs):
        next_frame(self, log_probs)
        held.append(len(self._states))

    monkeypatch.setattr(LexiconLM, "next_frame", counted)
    short = decoder.decode(logits[None, :60])[0]
    most_short, held = max(held), []
    pruned = decoder.decode(logits[None])[0]
    assert max(held) <= max(most_short, 8 * len(vocab))

    def keep_all(self, log_probs):
        self._states = {**self._states, **self._touched}

    monkeypatch.setattr(LexiconLM, "next_frame", keep_all)
    kept = decoder.decode(logits[None])[0]
    assert math.isfinite(pruned.score) and short.words
    assert (pruned.token_ids, pruned.words, pruned.score) == (kept.token_ids, kept.words, kept.score)


def test_phone_lexicon_spellings_end_in_the_vocabularys_word_boundary():
    # phone spellings from a lexicon file have no `|`; the model puts one between words, as after characters
    vocab = Vocabulary.build(["h e l o | w r d"], kind="phones")
    logits = frames(vocab, ["h", "e", "<blank>", "l", "o", "o", "|", "w", "e", "r", "d", "d"])
    lexicon = {"hello": "h e l o", "world": "w e r d", "held": "h e l d"}
    decoder = BeamSearchDecoder(vocab, lexicon=lexicon)
    assert decoder.lexicon["hello"] == [["h", "e", "l", "o", "|"]]
    hyp = decoder.decode(logits)[0]
    assert hyp.words == ["hello", "world"] and hyp.score == pytest.approx(best_path_score(logits), abs=1e-3)


def test_lexicon_words_the_vocabulary_cannot_spell_are_named(caplog):
    vocab = Vocabulary.build(["the cat sat"], kind="chars")
    with caplog.at_level("WARNING", logger="xlsr.decode.beam"):
        decoder = BeamSearchDecoder(vocab, lexicon=["The", "cat", "sat."])
    assert set(decoder.lexicon) == {"cat"}
    assert "2 of 3 words" in caplog.text and "'The' has 'T'" in caplog.text
    assert "xlsr data normalize-text" in caplog.text
    with pytest.raises(XlsrError, match=r"lexicon: none of its 2 words can be spelled .*normalize-text") as info:
        BeamSearchDecoder(vocab, lexicon=["The", "Cat"])
    assert "\n" not in str(info.value)


def test_units_lm_with_a_lexicon_is_refused(tmp_path):
    vocab = Vocabulary.build(["a b c"], kind="phones")
    lm = tmp_path / "phones.arpa"
    lm.write_text(PHONE_ARPA)
    (tmp_path / "phones.arpa.json").write_text('{"units": "phones", "order": 2, "words": null}')
    for make in (lambda: BeamSearchDecoder(vocab, lm=lm, lexicon={"ab": "a b"}),
                 lambda: decoder_for_lm(vocab, lm, lexicon={"ab": "a b"})):
        with pytest.raises(XlsrError, match=r"phones\.arpa: a phones LM .* scores tokens, not lexicon words") as info:
            make()
        assert "\n" not in str(info.value)


def test_loading_an_arpa_lm_prints_nothing_but_our_one_line(tmp_path, capfd):
    vocab = Vocabulary.build(["a b"], kind="phones")
    lm = tmp_path / "phones.arpa"
    lm.write_text(PHONE_ARPA)
    BeamSearchDecoder(vocab, lm=lm)
    assert capfd.readouterr().err == ""  # KenLM's progress bar of the ARPA's loading, drawn on fd 2, is not shown
    broken = tmp_path / "broken.arpa"
    broken.write_text(PHONE_ARPA[: len(PHONE_ARPA) // 2])
    with pytest.raises(XlsrError, match=r"broken\.arpa: cannot load the language model \("):
        BeamSearchDecoder(vocab, lm=broken)
    assert capfd.readouterr().err == ""  # nor the lines KenLM writes before its error
