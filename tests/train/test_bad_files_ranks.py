"""Bad audio files as one rank of a long run meets them: a file the system cannot open is skipped and counted like
any other bad file (not a traceback that ends every rank), and each rank counts the bad files of its own part of an
epoch against max_bad_share, which its error says (a count that named no rank read as the whole manifest's)."""

import numpy as np
import pytest
import soundfile as sf

from xlsr.data.batching import pretrain_loader
from xlsr.data.manifest import Utterance
from xlsr.errors import XlsrError


def _noise_files(folder, count: int, samples: int = 4000) -> list[Utterance]:
    folder.mkdir(parents=True, exist_ok=True)
    utts = []
    for k in range(count):
        path = folder / f"es{k}.wav"
        sf.write(path, (0.1 * np.random.default_rng(k).standard_normal(samples)).astype(np.float32), 16000)
        utts.append(Utterance(audio=str(path), num_samples=samples, lang="es", id=f"es{k}"))
    return utts


@pytest.mark.parametrize("rank", [0, 1])
def test_the_bad_share_error_names_the_rank_whose_part_of_the_epoch_it_counts(tmp_path, rank):
    utts = _noise_files(tmp_path, 20)
    for u in utts:
        (tmp_path / u.audio).write_text("garbage")  # every file: the rank's first batch (2 files) is over the share
    # 10 batches of 2 files, 5 of them (10 files) for each of the 2 ranks
    loader = pretrain_loader(utts, max_tokens=8000, min_sample_size=1000, max_sample_size=4000, seed=0, alpha=1.0,
                             max_bad_share=0.05, rank=rank, world_size=2)
    with pytest.raises(XlsrError, match=rf"^2 of the 10 audio files rank {rank} of 2 reads in epoch 0 are bad "):
        next(iter(loader))


def test_one_process_counts_the_whole_epoch(tmp_path):
    utts = _noise_files(tmp_path, 20)
    (tmp_path / "es3.wav").write_text("garbage")
    loader = pretrain_loader(utts, max_tokens=8000, min_sample_size=1000, max_sample_size=4000, seed=0, alpha=1.0,
                             max_bad_share=0.0)
    with pytest.raises(XlsrError, match=r"^1 of 20 audio files in epoch 0 are bad .*es3\.wav"):
        list(loader)


def test_a_file_the_system_cannot_open_is_skipped_as_a_bad_file(tmp_path, caplog):
    # stat() fails with ENAMETOOLONG here (with EIO on a flaky mount, EACCES in a folder the user may not enter):
    # an OSError that Path.is_file passes on, which used to end the rank with a traceback instead of a skip
    utts = _noise_files(tmp_path, 20)
    utts[3] = Utterance(audio=str(tmp_path / ("x" * 300 + ".wav")), num_samples=4000, lang="es", id="es3")
    loader = pretrain_loader(utts, max_tokens=8000, min_sample_size=1000, max_sample_size=4000, seed=0, alpha=1.0,
                             max_bad_share=0.05)
    rows = sum(len(batch.waveforms) for batch in loader)
    assert (rows, loader.epoch_bad_files) == (19, 1)
    assert "File name too long" in caplog.text and "x" * 300 in caplog.text
