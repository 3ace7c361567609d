"""A settings file (--config, a recipe) is a page of YAML: a key given twice, aliases that expand to millions of
values, nesting thousands deep or a file of megabytes are refused in one line naming the file, before anything runs."""

from __future__ import annotations

import pytest

from xlsr.config import MAX_CONFIG_BYTES, read_yaml
from xlsr.errors import XlsrError


def _alias_bomb(levels: int) -> str:
    lines = ["l0: &l0 [1, 2, 3, 4, 5, 6, 7, 8, 9]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]")
    lines.append(f"probe_data: [{', '.join([f'*l{levels - 1}'] * 9)}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("text, problem", [
    ("lr: 0.001\nmax_updates: 3\nlr: 0.002\n", "not valid YAML (line 3, column 1: key 'lr' given twice)"),
    ("model:\n  dropout: 0.1\n  dropout: 0.2\n", "not valid YAML (line 3, column 3: key 'dropout' given twice)"),
    (_alias_bomb(8), "its aliases (*name) expand to more than 100,000 values"),
    ("x: &x [1, *x]\n", "its aliases (*name) expand to more than 100,000 values"),
    ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply to be a config"),
])
def test_a_settings_file_that_is_no_page_of_settings_is_one_line(tmp_path, text, problem):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(XlsrError) as err:
        read_yaml(path)
    assert str(err.value) == f"{path}: {problem}"


def test_a_file_of_megabytes_is_refused_before_it_is_parsed(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("# " + "x" * MAX_CONFIG_BYTES + "\nlr: 0.001\n")
    with pytest.raises(XlsrError, match=r"run.yaml: 1,048,58\d bytes, more than a config file holds"):
        read_yaml(path)


def test_shared_aliases_within_the_limit_and_plain_settings_are_read(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("langs: &l [it, de, fr]\nprobe_data: *l\nmodel: {dropout: 0.1}\n")
    assert read_yaml(path) == {"langs": ["it", "de", "fr"], "probe_data": ["it", "de", "fr"],
                               "model": {"dropout": 0.1}}


def test_merged_keys_may_be_given_again(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("base: &b {dropout: 0.1, layerdrop: 0.05}\nmodel:\n  <<: *b\n  dropout: 0.2\n")
    assert read_yaml(path)["model"] == {"dropout": 0.2, "layerdrop": 0.05}
