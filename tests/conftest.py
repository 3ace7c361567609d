"""Fixtures shared by every test folder."""

import logging
import signal

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


@pytest.fixture
def ctrl_c():
    """Ctrl-C raises KeyboardInterrupt in this process, as in a terminal: a test suite started in the background
    (`make test &`, a CI runner) inherits SIGINT ignored, and Python then installs no handler of its own."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
