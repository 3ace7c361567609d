"""A manifest length counted at the file's own rate (22.05 kHz, 44.1 kHz) instead of 16 kHz is said to be that, not
only "decoded N samples, the manifest says M"."""

from xlsr.data.audio import length_mismatch


def test_a_length_counted_at_the_files_rate_is_named():
    assert length_mismatch(56000, 77175, "a.wav") == (
        "a.wav: decoded 56000 samples, the manifest says 77175 (its length at 22050 Hz: num_samples counts samples "
        "at 16000 Hz)")
    assert length_mismatch(16000, 48000, "b.wav").endswith("(its length at 48000 Hz: num_samples counts samples at "
                                                           "16000 Hz)")


def test_another_wrong_length_has_no_hint_and_a_right_one_no_line():
    assert length_mismatch(80000, 8000, "c.wav") == "c.wav: decoded 80000 samples, the manifest says 8000"
    assert length_mismatch(16000, 16010, "d.wav") is None
