"""`xlsr synth --out DIR` into a folder where a file stands in the way of one synth writes (or a folder in the way of
a file): refused in one line naming it, before any audio is rendered, and nothing of the user's is touched."""

import pytest

from xlsr.data.synth import synthesize_corpus
from xlsr.errors import XlsrError

KW = dict(speakers_per_lang=3, words_per_utt=(1, 2), augment="none", show_progress=False)


def _snapshot(folder) -> dict[str, bytes | None]:
    return {p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() else None) for p in folder.rglob("*")}


@pytest.mark.parametrize("in_the_way, what", [
    ("es", "is a file where synth writes a folder"),
    ("es/audio", "is a file where synth writes a folder"),
    ("synth.json/", "is a folder where synth writes a file"),
])
def test_a_file_or_folder_in_the_way_is_refused_before_anything_is_written(tmp_path, in_the_way, what):
    out = tmp_path / "mine"
    path = out / in_the_way.rstrip("/")
    if in_the_way.endswith("/"):
        (path / "notes").mkdir(parents=True)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("the user's\n")
    before = _snapshot(out)
    with pytest.raises(XlsrError) as exc:
        synthesize_corpus(out, ["it", "es"], 3, **KW)  # it first: the old code rendered it before it met es
    assert str(exc.value) == (f"--out {out}: {in_the_way.rstrip('/')} {what}; move it, or synthesize into another "
                              f"folder")
    assert _snapshot(out) == before


def test_words_per_utterance_above_the_cap_are_refused_before_anything_is_written(tmp_path):
    from xlsr.data.synth.corpus import MAX_WORDS_PER_UTT

    with pytest.raises(XlsrError) as info:
        synthesize_corpus(tmp_path / "c", "es", 3, speakers_per_lang=3, words_per_utt=(4, 1_000_000),
                          show_progress=False)
    assert str(info.value) == (f"--words-per-utt: at most {MAX_WORDS_PER_UTT} words an utterance (over a minute of "
                               f"speech), got 4-1000000")
    assert not (tmp_path / "c").exists()
