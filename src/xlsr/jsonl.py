"""Reading back the one-JSON-object-per-line files xlsr appends to as it works (atomic.json_line writes each line).

The resumable results files (`xlsr transcribe`'s OUT.partial, `xlsr data check`'s REPORT.partial) start with a
line recording the settings, `{"settings": ...}`, and a kill may cut any line short, that one included.
"""

from __future__ import annotations

import json

SETTINGS_START = b'{"settings": '  # how a results file's first line starts


def parse_json(text: str | bytes):
    """json.loads, with JSON nested deeper than the parser can go (a damaged file: `[[[[...`) raised as the
    json.JSONDecodeError a malformed text raises, not as a RecursionError that no `except ValueError` takes."""
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", text if isinstance(text, str) else "", 0) from None


def json_object(line: str | bytes) -> dict:
    """One line as a dict; {} for anything else: a line a kill cut short, not JSON, or JSON but not an object."""
    try:
        record = parse_json(line)
    except ValueError:  # UnicodeDecodeError too
        return {}
    return record if isinstance(record, dict) else {}


def torn_settings_line(first: bytes) -> bool:
    """Whether `first`, the first line of a results file, is its settings line cut short by a kill (or nothing):
    the file then holds no result, and a rerun starts it over."""
    return not first.endswith(b"\n") and SETTINGS_START.startswith(first[:len(SETTINGS_START)])
