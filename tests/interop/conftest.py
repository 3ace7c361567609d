"""Keep transformers quiet in the interop tests (the tests that need it skip when it is missing)."""

from __future__ import annotations

import pytest

try:
    import transformers
except ImportError:  # only hf_fixtures users need it; they skip themselves
    transformers = None


@pytest.fixture(autouse=True)
def _quiet_transformers():
    if transformers is not None:
        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    yield
