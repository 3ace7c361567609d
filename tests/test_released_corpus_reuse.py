"""A release build reuses a synthesised corpus only when synth.json says it is this recipe's corpus."""

import json

from xlsr.released import RELEASES
from xlsr.released.build import corpus_matches
from xlsr.released.recipes import RELEASE_SYNTH


def _record(recipe, **change):
    record = {"seed": recipe.synth_seed, "utts_per_lang": recipe.utts_per_lang,
              "languages": {lang: {} for lang in recipe.langs}, **RELEASE_SYNTH}
    return {**record, **change}


def _manifests(folder, recipe):
    for lang in recipe.langs:
        (folder / lang).mkdir(parents=True, exist_ok=True)
        for split in ("train", "dev", "test"):
            (folder / lang / f"{split}.jsonl").write_text("")


def test_a_corpus_of_another_seed_size_or_languages_is_not_reused(tmp_path):
    for recipe in RELEASES.values():
        (tmp_path / "synth.json").write_text(json.dumps(_record(recipe)))
        _manifests(tmp_path, recipe)
        assert corpus_matches(tmp_path, recipe)
        for change in ({"seed": recipe.synth_seed + 1}, {"utts_per_lang": recipe.utts_per_lang + 1},
                       {"languages": {lang: {} for lang in reversed(recipe.langs)} if len(recipe.langs) > 1
                        else {"xx": {}}}):
            (tmp_path / "synth.json").write_text(json.dumps(_record(recipe, **change)))
            assert not corpus_matches(tmp_path, recipe), (recipe.name, change)
    (tmp_path / "synth.json").write_text("{not json")
    assert not corpus_matches(tmp_path, recipe)
    (tmp_path / "synth.json").unlink()
    assert not corpus_matches(tmp_path, recipe)


def test_a_corpus_whose_record_is_right_but_a_manifest_is_gone_is_not_reused(tmp_path):
    # what a synth call stopped while rewriting a language leaves: its old record, its manifests withdrawn
    recipe = next(iter(RELEASES.values()))
    (tmp_path / "synth.json").write_text(json.dumps(_record(recipe)))
    _manifests(tmp_path, recipe)
    assert corpus_matches(tmp_path, recipe)
    (tmp_path / recipe.langs[-1] / "dev.jsonl").unlink()
    assert not corpus_matches(tmp_path, recipe)
