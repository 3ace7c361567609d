"""scripts/gpu_checks/prepare.py downloads wheels from PyPI: --help (or a mistyped option) answers before any of it."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_checks" / "prepare.py"


@pytest.fixture
def prepare(monkeypatch):
    spec = importlib.util.spec_from_file_location("gpu_checks_prepare", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def no_download(*args, **kwargs):
        raise AssertionError("downloaded")

    monkeypatch.setattr(module, "download_wheels", no_download)
    monkeypatch.setattr(module, "write_wordfreq_stand_in", no_download)
    return module


@pytest.mark.parametrize(("argv", "code"), [(["--help"], 0), (["--bogus"], 2)])
def test_help_and_unknown_options_download_nothing(prepare, capsys, argv, code):
    with pytest.raises(SystemExit) as exited:
        prepare.main(argv)
    assert exited.value.code == code
    out = capsys.readouterr()
    assert ("Prepare the one-command GPU check" in out.out) if code == 0 else ("unrecognized arguments" in out.err)
