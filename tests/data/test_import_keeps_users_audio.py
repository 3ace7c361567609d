"""An import that writes audio replaces DIR/<lang>/audio/<split> only where the writer made it: a folder that holds
anything else (the user's recordings), or files the import itself lists where they lie, is refused before the first
file is written; a killed import's audio waits, the folder kept, until the user has moved its files."""

import io
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from _reimport_kills import Killed, corpus, hidden, import_audio
from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet

from xlsr.cli.main import main
from xlsr.data import import_writer
from xlsr.data.import_lhotse import import_lhotse
from xlsr.data.import_writer import ImportWriter
from xlsr.data.manifest import Utterance
from xlsr.errors import XlsrError

OLD = {f"clip_{i}": (4000, 4000) for i in range(3)}  # id: (num_samples listed, samples in the file it lists)
NEW = {f"clip_{i}": (8000, 8000) for i in range(2)}


def _recording(path, seconds: float = 0.5) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.random.default_rng(7).uniform(-0.4, 0.4, int(seconds * 16000)).astype(np.float32), 16000)


def _import_refs(out, files: dict[str, Path], split: str = "train") -> None:
    """An import that references `files` ({id: path}) where they lie, writing no audio (folder, fairseq)."""
    with ImportWriter(out, source="src", unit="rows") as writer:
        for utt_id, path in files.items():
            writer.add(Utterance(audio=str(path), num_samples=sf.info(str(path)).frames, lang="en", id=utt_id), split)
        writer.finish()


@pytest.mark.parametrize("listed", [False, True])
def test_an_import_writing_audio_over_the_users_own_folder_is_refused_before_it_writes(tmp_path, listed):
    out = tmp_path / "data"
    own = out / "en" / "audio" / "train" / "mine.wav"  # put there by hand, or imported where it lies (`listed`)
    _recording(own)
    if listed:
        _import_refs(out, {"mine": own})
    manifest = (out / "en" / "train.jsonl").read_bytes() if listed else None
    with pytest.raises(XlsrError) as caught:
        import_audio(out)
    assert str(caught.value) == (f"{own.parent}: holds files that are not an import's audio (folders 0000, 0001, ... "
                                 f"of .flac), and importing audio into it would replace them; move them elsewhere, "
                                 f"or import into another --out")
    assert sorted(p.name for p in own.parent.iterdir()) == ["mine.wav"] and sf.info(str(own)).frames == 8000
    assert hidden(out) == []  # nothing staged
    if listed:
        assert (out / "en" / "train.jsonl").read_bytes() == manifest
    else:
        assert not (out / "en" / "train.jsonl").exists()
    shutil.move(own.parent, tmp_path / "moved")  # the way out: the files moved, the import goes through
    import_audio(out)
    assert corpus(out) == OLD and (tmp_path / "moved" / "mine.wav").is_file()


def test_a_lhotse_import_of_recordings_that_lie_in_the_folder_it_would_replace_is_refused(tmp_path):
    out = tmp_path / "data"
    wav = out / "en" / "audio" / "train" / "talk.wav"  # the source recording, inside the folder
    _recording(wav, 2.0)
    recordings = RecordingSet.from_recordings([Recording.from_file(wav, recording_id="talk")])
    supervisions = SupervisionSet.from_segments(  # segments: written as FLAC into audio/train
        [SupervisionSegment(f"s{i}", "talk", i * 1.0, 1.0, text="hello", language="en") for i in range(2)])
    recordings.to_file(tmp_path / "recordings.jsonl.gz")
    supervisions.to_file(tmp_path / "supervisions.jsonl.gz")
    with pytest.raises(XlsrError, match=f"^{out / 'en' / 'audio' / 'train'}: holds files that are not an import's"):
        import_lhotse([tmp_path / "recordings.jsonl.gz", tmp_path / "supervisions.jsonl.gz"], out, lang="en",
                      show_progress=False)
    assert sf.info(str(wav)).frames == 32000 and sorted(p.name for p in wav.parent.iterdir()) == ["talk.wav"]
    assert not (out / "en" / "train.jsonl").exists() and hidden(out) == []


def test_a_multilingual_hf_import_is_refused_whole_not_its_rows_skipped(tmp_path, capsys):
    # one language's folder is the user's: its rows are no bad items (skipped within --max-bad-share, the rest
    # committed); the import stops, one line, nothing written
    out = tmp_path / "data"
    own = out / "en" / "audio" / "train" / "mine.wav"
    _recording(own)
    flac = io.BytesIO()
    sf.write(flac, np.zeros(8000, np.float32), 16000, format="FLAC")
    audio = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    rows = pa.table({"audio": pa.array([{"bytes": flac.getvalue(), "path": f"{i}.flac"} for i in range(3)], audio),
                     "sentence": ["hola", "adios", "hello"], "locale": ["es", "es", "en"]})
    pq.write_table(rows, tmp_path / "train.parquet")
    code = main(["data", "import", "hf", "--src", str(tmp_path / "train.parquet"), "--out", str(out),
                 "--max-bad-share", "0.5"])
    last = capsys.readouterr().err.splitlines()[-1]  # after the progress bar
    assert code == 2 and last.startswith(f"xlsr: error: {own.parent}: holds files that are not an import's audio")
    assert own.is_file() and sorted(p.name for p in out.rglob("*")) == ["audio", "en", "mine.wav", "train"]


@pytest.mark.parametrize("written_first", [False, True])
def test_an_import_listing_files_in_the_folder_its_audio_replaces_is_refused(tmp_path, written_first):
    # e.g. lhotse cuts of an earlier import's FLACs: the whole files referenced, segments written as FLAC
    out = tmp_path / "data"
    import_audio(out)
    listed = (out / "en" / "audio" / "train" / "0000" / "clip_2.flac").resolve()
    manifest = (out / "en" / "train.jsonl").read_bytes()
    with pytest.raises(XlsrError) as caught, ImportWriter(out, source="src", unit="cuts") as writer:
        for step in ("written", "listed") if written_first else ("listed", "written"):
            if step == "listed":
                writer.add(Utterance(audio=str(listed), num_samples=4000, lang="en", id="ref"), "train")
            else:
                path = writer.write_audio(np.zeros(8000, np.float32), writer.unique_id("clip_2", "en", "train"),
                                          "en", "train")
                writer.add(Utterance(audio=str(path), num_samples=8000, lang="en", id="clip_2"), "train")
        writer.finish()
    assert str(caught.value) == (f"{listed}: this import lists it where it lies, in {out / 'en' / 'audio' / 'train'}, "
                                 f"which it replaces with the audio it writes; copy the files it lists there elsewhere "
                                 f"first, or import into another --out")
    assert corpus(out) == OLD and (out / "en" / "train.jsonl").read_bytes() == manifest and hidden(out) == []


def test_a_killed_imports_audio_waits_while_its_folder_holds_the_users_files(tmp_path, monkeypatch):
    out = tmp_path / "data"
    import_audio(out)

    def killed(*args):
        raise Killed
    # killed right after its commit, before its audio took the split's name (no handler of the writer runs)
    monkeypatch.setattr(import_writer, "settle_audio", killed)
    monkeypatch.setattr(ImportWriter, "__exit__", lambda self, *exc: self._lock.__exit__(None, None, None))
    with pytest.raises(Killed):
        import_audio(out, 2, seconds=0.5)
    monkeypatch.undo()
    final = out / "en" / "audio" / "train"
    shutil.rmtree(final)
    own = final / "mine.wav"  # the user's recordings there meanwhile (or left by a version that did not check)
    _recording(own)
    with pytest.raises(XlsrError, match=f"^{final}: holds files that are not an import's audio .*, and the audio "
                                        f"{out / 'en' / 'train.jsonl'} lists, in {final.parent / '.train.importing'}, "
                                        f"is to replace them; move them elsewhere"):
        import_audio(out, 1, split="dev")
    assert own.is_file() and corpus(out) == NEW  # the new corpus, read from where its audio waits
    shutil.move(final, tmp_path / "moved")
    import_audio(out, 1, split="dev")  # settles it now
    assert corpus(out) == NEW and hidden(out) == [] and (tmp_path / "moved" / "mine.wav").is_file()
    assert '"audio": "audio/train/0000/clip_0.flac"' in (out / "en" / "train.jsonl").read_text()


def test_a_folder_an_earlier_version_set_aside_is_kept_unless_it_held_only_its_audio(tmp_path):
    # earlier versions renamed whatever audio/<split> held to .<split>.replaced while swapping their audio in
    out = tmp_path / "data"
    import_audio(out, 2, seconds=0.5)
    aside = out / "en" / "audio" / ".train.replaced"
    _recording(aside / "mine.wav")
    with pytest.raises(XlsrError, match=f"^{aside}: files an earlier version of xlsr set aside from "
                                        f"{aside.parent / 'train'} while importing audio there, not only its audio; "
                                        f"move them elsewhere$"):
        import_audio(out, 1, split="dev")
    assert (aside / "mine.wav").is_file() and corpus(out) == NEW
    shutil.move(aside / "mine.wav", tmp_path / "mine.wav")
    (aside / "0000").mkdir()
    (aside / "0000" / "clip_0.flac").write_bytes(b"its own audio")
    import_audio(out, 1, split="dev")
    assert corpus(out) == NEW and hidden(out) == []


def test_what_a_file_browser_leaves_beside_an_imports_audio_does_not_stop_a_reimport(tmp_path):
    import_audio(tmp_path, count=3)
    folder = tmp_path / "en" / "audio" / "train"
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (folder / "0000" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (folder / "0000" / "._clip_0.flac").write_bytes(b"\0\5\26\7")
    (folder / "0000" / "Thumbs.db").write_bytes(b"\xd0\xcf")
    import_audio(tmp_path, count=2, seconds=0.5)
    assert corpus(tmp_path) == NEW
    assert not (folder / ".DS_Store").exists() and not (folder / "0000" / "Thumbs.db").exists()


def test_a_folder_named_like_litter_is_still_the_users(tmp_path):
    import_audio(tmp_path, count=3)
    (tmp_path / "en" / "audio" / "train" / "._mine").mkdir()
    (tmp_path / "en" / "audio" / "train" / "._mine" / "take1.wav").write_bytes(b"RIFF")
    with pytest.raises(XlsrError, match="holds files that are not an import's audio"):
        import_audio(tmp_path, count=2, seconds=0.5)
    assert (tmp_path / "en" / "audio" / "train" / "._mine" / "take1.wav").exists()
