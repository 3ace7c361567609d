"""Reading back JSON lines: a dict, or {} for whatever a kill or another program left; a torn settings line."""

import pytest

from xlsr.atomic import json_line
from xlsr.jsonl import json_object, torn_settings_line


@pytest.mark.parametrize("line", ['{"audio": "a.fl', "[1, 2]\n", '"text"\n', "", b"\xff\xfe{}\n", "null\n"])
def test_anything_but_an_object_is_empty(line):
    assert json_object(line) == {}


def test_an_object_in_text_or_bytes():
    line = json_line({"audio": "ü.flac", "n": 3})
    assert json_object(line) == json_object(line.encode("utf-8")) == {"audio": "ü.flac", "n": 3}


def test_a_settings_line_cut_short_anywhere_is_torn():
    whole = json_line({"settings": {"model": "m"}}).encode("utf-8")
    assert not torn_settings_line(whole)
    assert all(torn_settings_line(whole[:k]) for k in range(len(whole)))  # every cut, the empty file included
    assert not torn_settings_line(b'{"audio": "a.fl')  # a file that starts otherwise is not ours to start over
