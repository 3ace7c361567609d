"""A fairseq manifest's utterance id is its listed path without the suffix: two folders' 001.flac stay two ids."""

import numpy as np
import soundfile as sf

from xlsr.data.importers import import_fairseq
from xlsr.data.manifest import read_manifest


def test_files_of_one_name_in_two_folders_get_two_ids(tmp_path):
    audio = tmp_path / "wavs"
    for spk, n in (("spk1", 8000), ("spk2", 9600)):
        (audio / spk).mkdir(parents=True)
        sf.write(audio / spk / "001.flac", 0.3 * np.sin(np.arange(n) * 0.1), 16000)
    (tmp_path / "train.tsv").write_text(f"{audio}\nspk1/001.flac\t8000\nspk2/001.flac\t9600\n")
    (tmp_path / "train.wrd").write_text("one\ntwo\n")
    assert import_fairseq(tmp_path / "train.tsv", tmp_path / "out", lang="en").counts == {("en", "train"): 2}
    utts = read_manifest(tmp_path / "out" / "en" / "train.jsonl")
    assert [(u.id, u.text, u.num_samples) for u in utts] == [("spk1/001", "one", 8000), ("spk2/001", "two", 9600)]
