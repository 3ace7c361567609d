"""Fixtures shared by every test folder."""

import logging

import pytest
import torch


@pytest.fixture
def one_thread():
    """Run a test on one torch thread: small models on a shared 2-core machine are several times slower
    with two threads (oversubscription)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _library_log_as_each_test_found_it():
    """`xlsr.cli.main` routes the library's log to stderr (cli/log_lines.py); each test starts and ends without it."""
    logger = logging.getLogger("xlsr")
    handlers, level = list(logger.handlers), logger.level
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)
