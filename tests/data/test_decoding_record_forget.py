"""forget_decodings() (train/elastic.py, a rank ending itself for a failed peer, from its watcher thread) is the
process's last word on its records: a decoding the training thread begins after it, before os._exit lands, is not
recorded, so the next run does not blame that file."""

import weakref

import pytest

from xlsr.data import decoding_record
from xlsr.data.decoding_record import DecodingRecord, forget_decodings


@pytest.fixture(autouse=True)
def own_records(monkeypatch):
    """forget_decodings() reaches only this test's records, not those other tests still hold."""
    monkeypatch.setattr(decoding_record, "_records", weakref.WeakSet(), raising=False)


def test_a_decoding_begun_after_forget_decodings_is_not_recorded(tmp_path):
    record = DecodingRecord(tmp_path / "run")
    with record.decoding("first.flac"):  # the record is open: the training thread decodes in a loop
        pass
    forget_decodings()
    with record.decoding("next.flac"):
        assert DecodingRecord(tmp_path / "run").died_on is None  # what os._exit here would leave
    record.close()


def test_a_first_decoding_after_forget_decodings_is_not_recorded(tmp_path):
    record = DecodingRecord(tmp_path / "run")  # not yet opened (no decoding so far)
    forget_decodings()
    with record.decoding("first.flac"):
        assert DecodingRecord(tmp_path / "run").died_on is None
    record.close()


def test_records_of_a_process_that_goes_on_still_name_their_file(tmp_path):
    record = DecodingRecord(tmp_path / "run")
    with record.decoding("a.flac"):
        assert DecodingRecord(tmp_path / "run").died_on == "a.flac"
    assert DecodingRecord(tmp_path / "run").died_on is None
    record.close()
