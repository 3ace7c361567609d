"""A language code langcodes does not know gets one folder whatever its casing (Common Voice's `tok`)."""

import pytest

from xlsr.data.languages import language_code


@pytest.mark.parametrize("value", ["tok", "TOK", "Tok", " tok "])
def test_an_unknown_code_is_lower_case_whatever_its_casing(value):
    assert language_code(value) == "tok"
