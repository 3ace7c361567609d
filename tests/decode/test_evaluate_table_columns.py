"""`xlsr evaluate`'s printed tables keep their columns whatever the numbers: a rate of 10000 % or more (insertions
over a short reference), inf (errors over an empty one), "-" (a language whose recordings all failed), counts and
utterance numbers past their usual widths, and a language tag longer than "language"."""

import re

import pytest

from xlsr.decode.evaluate import EvalReport
from xlsr.decode.lm_sweep import sweep_table
from xlsr.text.metrics import EditCounts as E


def _ends(line: str) -> list[int]:
    """Where each cell of `line` ends (a header such as "PER %" is one cell): a right-aligned column's cells end
    where its header does."""
    return [m.end() for m in re.finditer(r"\S+(?: %)?", line)]


def _report(labels: str, counts: dict, utterances: dict) -> EvalReport:
    return EvalReport("m", labels, counts, utterances)


@pytest.mark.parametrize("counts, utterances", [
    ({"en": {"char": E(1, 0, 1300, 10), "word": E(0, 0, 1300, 10)}, "de": {"char": E(1, 1, 1, 4), "word": E(0, 1, 0, 2)}},
     {"en": 3, "de": 1}),  # 13010.00 % and 13000.00 %: wider than the 7 of "PER %"'s column
    ({"en": {"char": E(0, 0, 3, 0), "word": E(0, 0, 1, 0)}, "de": {"char": E(), "word": E()}},
     {"en": 1, "de": 0}),  # inf and "-"
    ({"cmn-Hans-CN": {"char": E(1234567, 2, 3, 9999999), "word": E(1, 0, 0, 12345678)}, "de": {"char": E(), "word": E()}},
     {"cmn-Hans-CN": 123456, "de": 0}),  # a long tag, counts past 6 and 7 digits, utterances past 5
])
def test_every_row_of_the_report_table_keeps_the_header_columns(counts, utterances):
    lines = [line for line in _report("chars", counts, utterances).table().splitlines() if not line.startswith("-")]
    head = lines[0]
    for line in lines[1:]:
        assert _ends(line)[1:] == _ends(head)[1:] and len(line) == len(head), f"\n{head}\n{line}"
    rules = [line for line in _report("chars", counts, utterances).table().splitlines() if line.startswith("-")]
    assert rules == ["-" * len(head)] * 2


def test_the_numbers_stay_as_they_were():
    table = _report("phones", {"en": {"phone": E(1, 0, 1300, 10)}, "de": {"phone": E()}}, {"en": 3, "de": 0}).table()
    assert [line.split() for line in table.splitlines() if not line.startswith("-")] == [
        ["language", "utts", "PER", "%", "95%-CI", "S", "D", "I", "N"],
        ["de", "0", "-", "-", "0", "0", "0", "0"],  # (no interval without each utterance's counts)
        ["en", "3", "13010.00", "-", "1", "0", "1300", "10"],
        ["total", "3", "13010.00", "-", "1", "0", "1300", "10"],
    ]


def test_every_row_of_the_sweep_table_keeps_the_header_columns():
    big = _report("chars", {"en": {"char": E(0, 0, 1300, 10), "word": E(0, 0, 1300, 10)}}, {"en": 1})
    small = _report("chars", {"en": {"char": E(1, 0, 0, 10), "word": E(1, 0, 0, 10)}}, {"en": 1})
    none = _report("chars", {"en": {"char": E(), "word": E()}}, {"en": 0})
    lines = sweep_table([(0.5, -1.0, small), (12345.5, 0.0, big), (2.0, 1.0, none)]).splitlines()
    head = lines[0]
    assert lines[1] == "-" * len(head)
    for line in lines[2:]:
        assert _ends(line) == _ends(head) and len(line) == len(head), f"\n{head}\n{line}"
    assert lines[3].split() == ["12345.5", "0", "13000.00", "13000.00"]
    assert lines[4].split() == ["2", "1", "-", "-"]  # nothing scored: no rate, as in the report's table
