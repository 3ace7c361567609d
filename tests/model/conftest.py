"""Fixtures shared by the model tests; the plain helpers live in model_fixtures.py."""

import pytest
from model_fixtures import micro_config

from xlsr.model import Wav2Vec2Config


@pytest.fixture
def micro() -> Wav2Vec2Config:
    return micro_config()
