"""What an HF directory's side files say, read as transformers reads them: do_lower_case, the CTC loss settings,
preprocessor defaults, and one line (never a traceback) for a value of the wrong type."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from hf_fixtures import make_hf, padded_batch, transformers

from xlsr.cli.main import main
from xlsr.errors import CheckpointError
from xlsr.interop.huggingface import export_hf, import_hf
from xlsr.interop.native import load_checkpoint
from xlsr.model.ctc import ctc_best_path
from xlsr.text.vocab import Vocabulary

UPPER = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "E": 5, "H": 6, "L": 7, "O": 8, "[X]": 9, "A": 10}


def _ctc_dir(path, vocab=UPPER, seed=30, **tokenizer_kw):
    """An HF CTC directory with a Wav2Vec2CTCTokenizer; a head scaled up so that greedy paths vary."""
    (path / "v").mkdir(parents=True)
    (path / "v" / "vocab.json").write_text(json.dumps(vocab))
    tok = transformers.Wav2Vec2CTCTokenizer(str(path / "v" / "vocab.json"), **tokenizer_kw)
    hf = make_hf("Wav2Vec2ForCTC", "base_like", seed=seed, vocab_size=len(vocab), pad_token_id=tok.pad_token_id)
    with torch.no_grad():
        hf.lm_head.weight.mul_(8.0)
    hf.save_pretrained(path / "m")
    tok.save_pretrained(path / "m")
    return path / "m", hf, tok


def _transcripts(model, vocab: Vocabulary, x) -> list[str]:
    with torch.no_grad():
        out = model.eval()(x)
    return [vocab.decode(p) for p in ctc_best_path(out.logits, out.frame_lengths)]


# ---------------------------------------------------------------------------- do_lower_case
def test_do_lower_case_encodes_and_transcribes_as_transformers(tmp_path):
    d, hf, tok = _ctc_dir(tmp_path, do_lower_case=True)
    loaded = import_hf(d)
    assert loaded.vocab == ["<blank>", "<unk>", "<s>", "</s>", "|", "e", "h", "l", "o", "[X]", "a"]
    vocab = Vocabulary.from_dict(loaded.vocab, kind="chars")
    ours_of = {src: ours for ours, src in enumerate(loaded.metadata["head_rows_from"])}  # HF id → our id
    text = "hello hole a"
    assert vocab.encode(text, strict=True) == [ours_of[i] for i in tok(text).input_ids]
    x, _, _ = padded_batch(seed=30, lengths=(3200, 3200))
    with torch.no_grad():
        want = [tok.decode(p) for p in hf(x).logits.argmax(-1)]
    got = _transcripts(loaded.model, vocab, x)
    assert got == want and any(c in "ehloa" for c in "".join(want))  # lower case, as transformers writes it

    # Exported, the tokenizer has the lower-case tokens and no do_lower_case: the same text gives the same
    # labels and the model the same transcripts, in transformers and after importing it again.
    export_hf(loaded.model, tmp_path / "out", vocab=vocab)
    back_tok = transformers.Wav2Vec2CTCTokenizer.from_pretrained(tmp_path / "out")
    assert back_tok(text).input_ids == vocab.encode(text)
    back = transformers.Wav2Vec2ForCTC.from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        assert [back_tok.decode(p) for p in back(x).logits.argmax(-1)] == want
    again = import_hf(tmp_path / "out")
    assert again.vocab == loaded.vocab and _transcripts(again.model, vocab, x) == want


def test_do_lower_case_that_merges_tokens_is_one_line(tmp_path):
    d, _, _ = _ctc_dir(tmp_path, vocab={**UPPER, "a": 11, "E": 5}, do_lower_case=True)
    with pytest.raises(CheckpointError, match=r"tokenizer_config\.json: do_lower_case is true but vocab\.json has "
                                              r"tokens that differ only in case: 'a'$"):
        import_hf(d)


def test_without_do_lower_case_tokens_keep_their_case(tmp_path):
    d, _, tok = _ctc_dir(tmp_path, do_lower_case=False)
    loaded = import_hf(d)
    assert loaded.vocab[5:] == ["E", "H", "L", "O", "[X]", "A"]
    assert tok("HE").input_ids == [6, 5] and Vocabulary.from_dict(loaded.vocab, kind="chars").encode("HE") == [6, 5]


# ---------------------------------------------------------------------------- CTC loss settings
@pytest.mark.parametrize("reduction, zero_infinity", [("mean", True), ("sum", False)])
def test_ctc_loss_settings_xlsr_does_not_apply_are_said_and_kept(reduction, zero_infinity, tmp_path, caplog):
    hf = make_hf("Wav2Vec2ForCTC", "base_like", seed=31, pad_token_id=0, ctc_loss_reduction=reduction,
                 ctc_zero_infinity=zero_infinity)
    hf.save_pretrained(tmp_path / "hf")
    with caplog.at_level(logging.INFO, logger="xlsr.interop.huggingface"):
        loaded = import_hf(tmp_path / "hf")
    warned = [r.getMessage() for r in caplog.records if r.name == "xlsr.interop.huggingface"]
    # Whatever the directory says, the loss is xlsr's: transformers' with mean and zero_infinity.
    x, _, _ = padded_batch(seed=31, lengths=(3200, 3200))
    labels = torch.tensor([[3, 4, 5, 6], [5, 6, -100, -100]])
    hf.config.ctc_loss_reduction, hf.config.ctc_zero_infinity = "mean", True
    with torch.no_grad():
        want = hf.eval()(x, labels=labels).loss
        got = loaded.model.eval()(x, labels=labels.clamp(min=0)).loss
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-5)
    if reduction == "mean":
        assert not warned and "ignored_hf_config" not in loaded.metadata
        return
    assert loaded.metadata["ignored_hf_config"] == {"ctc_loss_reduction": "sum", "ctc_zero_infinity": False}
    assert len(warned) == 1 and "ctc_loss_reduction='sum', ctc_zero_infinity=False not applied" in warned[0]
    # `xlsr convert` keeps them in the checkpoint's metadata.
    assert main(["convert", str(tmp_path / "hf"), str(tmp_path / "ours"), "--to", "xlsr"]) == 0
    assert load_checkpoint(tmp_path / "ours").metadata["ignored_hf_config"]["ctc_loss_reduction"] == "sum"


def test_a_pretraining_model_has_no_ctc_loss_to_warn_about(tmp_path, caplog):
    make_hf("Wav2Vec2ForPreTraining", "base_like", ctc_loss_reduction="sum").save_pretrained(tmp_path)
    with caplog.at_level(logging.INFO, logger="xlsr.interop.huggingface"):
        assert "ignored_hf_config" not in import_hf(tmp_path).metadata
    assert not [r for r in caplog.records if r.name == "xlsr.interop.huggingface"]


# ---------------------------------------------------------------------------- preprocessor defaults
@pytest.mark.parametrize("preprocessor", [{}, {"do_normalize": False}, None])
def test_do_normalize_is_the_feature_extractors(preprocessor, tmp_path):
    make_hf("Wav2Vec2Model", "base_like").save_pretrained(tmp_path)  # group norm: no normalisation by convention
    if preprocessor is None:
        assert import_hf(tmp_path).config.normalize_waveform is False  # no feature extractor to follow
        return
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({
        "feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1, "sampling_rate": 16000,
        **preprocessor}))
    fe = transformers.Wav2Vec2FeatureExtractor.from_pretrained(tmp_path)
    assert import_hf(tmp_path).config.normalize_waveform is fe.do_normalize is ("do_normalize" not in preprocessor)


# ---------------------------------------------------------------------------- bad values: one line
def _edit(name, change):
    def go(d):
        path = d / name
        data = json.loads(path.read_text()) if path.is_file() else {}
        change(data)
        path.write_text(json.dumps(data))
    return go


BAD = {
    "feat_extract_norm": (_edit("config.json", lambda c: c.update(feat_extract_norm="batch")),
                          "config.json: feat_extract_norm='batch', expected 'group' or 'layer'"),
    "pad_token_id str": (_edit("config.json", lambda c: c.update(pad_token_id="x")),
                         "config.json: pad_token_id='x', expected an integer"),
    "pad_token_id list": (_edit("config.json", lambda c: c.update(pad_token_id=[0])),
                          "config.json: pad_token_id=[0], expected an integer"),
    "pad_token_id bool": (_edit("config.json", lambda c: c.update(pad_token_id=True)),
                          "config.json: pad_token_id=True, expected an integer"),
    "vocab id str": (_edit("vocab.json", lambda v: v.update(E="five")),
                     "vocab.json: token 'E' has id 'five', expected an integer"),
    "vocab id list": (_edit("vocab.json", lambda v: v.update(E=[5])),
                      "vocab.json: token 'E' has id [5], expected an integer"),
    "vocab id bool": (_edit("vocab.json", lambda v: v.update({"<s>": True})),
                      "vocab.json: token '<s>' has id True, expected an integer"),
    "added token id": (_edit("added_tokens.json", lambda a: a.update({"<x>": "11"})),
                       "added_tokens.json: token '<x>' has id '11', expected an integer"),
    "space token": (_edit("vocab.json", lambda v: v.update({" ": v.pop("A")})),
                    "vocab.json: token ' ' is empty or holds whitespace"),
    "do_lower_case str": (_edit("tokenizer_config.json", lambda c: c.update(do_lower_case="yes")),
                          "tokenizer_config.json: do_lower_case='yes', expected true or false"),
    "do_normalize str": (_edit("preprocessor_config.json", lambda p: p.update(do_normalize="false")),
                         "preprocessor_config.json: do_normalize='false', expected true or false"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_value_of_the_wrong_type_is_one_line_naming_file_and_field(case, tmp_path, capsys):
    d, _, _ = _ctc_dir(tmp_path)
    mutate, expected = BAD[case]
    mutate(d)
    assert main(["convert", str(d), str(tmp_path / "out"), "--to", "xlsr"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"xlsr: error: {d}/") and expected in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()
