"""An MMS language through `xlsr convert --to hf` and back: the MMS layout a run's RUN/adapter/ has, which
transformers loads with target_lang=LANG, with load_adapter(LANG) and with neither; a new language starting from
a directory without every adapter file; and the one-line messages about a directory's languages."""

from __future__ import annotations

import json

import pytest
import torch
from hf_fixtures import padded_batch
from mms_fixtures import ENG, FRA, transformers, write_mms_dir

from xlsr.cli.main import main
from xlsr.errors import CheckpointError
from xlsr.interop.init_model import load_init
from xlsr.interop.load import load_pretrained
from xlsr.interop.native import save_checkpoint


@pytest.fixture
def mms_dir(tmp_path):
    return write_mms_dir(tmp_path / "mms-1b-all", seed=80)


def _vocab(tokens: list[str]) -> dict[str, int]:
    return {t: i for i, t in enumerate(tokens)}


def test_convert_of_a_checkpoint_with_a_language_writes_the_mms_layout(mms_dir, tmp_path):
    # As an adapter run's checkpoint: our format, its metadata naming the language of its adapters and head.
    fra = load_pretrained(mms_dir, target_lang="fra")
    ours = tmp_path / "run-fra"
    save_checkpoint(ours, fra.model, vocab=fra.vocab, metadata={"target_lang": "fra", "labels": "chars"})
    dst = tmp_path / "hf-fra"
    assert main(["convert", str(ours), str(dst), "--to", "hf"]) == 0
    assert (dst / "adapter.fra.safetensors").is_file()
    assert list(json.loads((dst / "vocab.json").read_text())) == ["fra"]
    assert json.loads((dst / "tokenizer_config.json").read_text())["target_lang"] == "fra"

    x, _, _ = padded_batch(seed=81, lengths=(1600, 1600))
    with torch.no_grad():
        want = fra.model.eval()(x).logits  # rows in our order, as the export writes them
        by_target_lang = transformers.Wav2Vec2ForCTC.from_pretrained(dst, target_lang="fra",
                                                                     ignore_mismatched_sizes=True).eval()
        by_load_adapter = transformers.Wav2Vec2ForCTC.from_pretrained(dst).eval()
        as_is = by_load_adapter(x).logits  # no target_lang: the base weights, which are this language's
        by_load_adapter.load_adapter("fra")
        for ref in (by_target_lang(x).logits, by_load_adapter(x).logits, as_is):
            torch.testing.assert_close(ref, want, atol=1e-5, rtol=0)
        for lang in ("fra", None):  # xlsr reads it back, with and without the language named
            back = load_pretrained(dst, target_lang=lang)
            assert back.vocab == fra.vocab and back.metadata["target_lang"] == "fra"
            torch.testing.assert_close(back.model.eval()(x).logits, want, atol=1e-5, rtol=0)
    tokenizer = transformers.Wav2Vec2CTCTokenizer.from_pretrained(dst)  # tokenizer_config.json's target_lang
    assert tokenizer.convert_ids_to_tokens(list(range(1, len(fra.vocab)))) == fra.vocab[1:]
    with pytest.raises(CheckpointError, match=r"hf-fra/vocab\.json: no language 'eng'; available: fra$"):
        load_pretrained(dst, target_lang="eng")


def test_a_new_language_starts_from_the_bases_own_when_another_has_no_adapter_file(mms_dir):
    # vocab.json lists 'abi' (first in order) but its adapter file is not there: a new language needs only the base.
    vocab = json.loads((mms_dir / "vocab.json").read_text())
    (mms_dir / "vocab.json").write_text(json.dumps({"abi": _vocab(FRA), **vocab}))
    init = load_init(str(mms_dir), "tiny", "xyz", allow_new_language=True)
    assert init.language == "eng" and init.new_language and init.model is not None


def test_a_directory_of_the_bases_language_alone_needs_no_target_lang(mms_dir):
    (mms_dir / "vocab.json").write_text(json.dumps({"eng": _vocab(ENG)}))
    loaded = load_pretrained(mms_dir)
    assert loaded.metadata["target_lang"] == "eng" and loaded.vocab == load_pretrained(mms_dir, target_lang="eng").vocab


def test_a_directory_of_one_other_language_asks_for_it_in_one_grammatical_line(mms_dir):
    (mms_dir / "vocab.json").write_text(json.dumps({"fra": _vocab(FRA)}))  # the base holds 'eng', not listed
    adapter = (mms_dir / "adapter.fra.safetensors").read_bytes()
    (mms_dir / "adapter.fra.safetensors").unlink()  # and no adapter file: the base's weights are another language's
    with pytest.raises(CheckpointError, match=r"vocab\.json: holds 1 language; choose it with target_lang "
                                              r"\(--target-lang\): fra$"):
        load_pretrained(mms_dir)
    (mms_dir / "adapter.fra.safetensors").write_bytes(adapter)
    assert load_pretrained(mms_dir, target_lang="fra").metadata["target_lang"] == "fra"


def test_the_one_language_offered_with_its_adapter_file_needs_no_target_lang(mms_dir):
    # as a phone-label MMS export is: no tokenizer_config.json names the base's language, one language, its adapter
    (mms_dir / "vocab.json").write_text(json.dumps({"fra": _vocab(FRA)}))
    (mms_dir / "tokenizer_config.json").unlink(missing_ok=True)
    loaded = load_pretrained(mms_dir)
    chosen = load_pretrained(mms_dir, target_lang="fra")
    assert loaded.metadata["target_lang"] == "fra"
    assert torch.equal(loaded.model.lm_head.weight, chosen.model.lm_head.weight)


@pytest.mark.parametrize("lang", ["eng", "fra", None])
def test_a_language_entry_that_is_not_a_token_table_is_named(mms_dir, lang):
    (mms_dir / "vocab.json").write_text(json.dumps({"eng": _vocab(ENG), "fra": FRA}))
    with pytest.raises(CheckpointError) as exc:
        load_pretrained(mms_dir, target_lang=lang)
    assert str(exc.value) == (f"{mms_dir / 'vocab.json'}: keyed by language, but its entry for language 'fra' "
                              f"is a list, not an object of token ids")
