"""A release build reuses a synthesised corpus only when synth.json says it is this recipe's corpus."""

import json

from xlsr.released import RELEASES
from xlsr.released.build import corpus_matches
from xlsr.released.recipes import RELEASE_SYNTH


def _record(recipe, **change):
    record = {"seed": recipe.synth_seed, "utts_per_lang": recipe.utts_per_lang,
              "languages": {lang: {} for lang in recipe.langs}, **RELEASE_SYNTH}
    return {**record, **change}


def test_a_corpus_of_another_seed_size_or_languages_is_not_reused(tmp_path):
    for recipe in RELEASES.values():
        (tmp_path / "synth.json").write_text(json.dumps(_record(recipe)))
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
