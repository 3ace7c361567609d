"""What a run writes into its folder after the loop (MMS adapter runs: RUN/adapter/) is written while the run still
holds RUN/.lock, so that a second run cannot start in between; after a stopped run and a re-run of a finished one
as after a finished one."""

import os
import signal
import sys
from pathlib import Path

import pytest

from xlsr.errors import XlsrError
from xlsr.interop.load import load_pretrained
from xlsr.train import finetune as finetune_module
from xlsr.train.finetune import FinetuneConfig, FinetuneTask, finetune
from xlsr.train.trainer import Trainer

from ._tones import write_tone_corpus
from ._toy import ToyTask
from .test_adapter_finetune import _is_base
from .test_trainer import _cfg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "interop"))
from mms_fixtures import write_mms_dir  # noqa: E402

fcntl = pytest.importorskip("fcntl")  # no run-folder lock where there is no flock (Windows)

pytestmark = pytest.mark.usefixtures("one_thread")


def _locked_by_run(run: Path) -> bool:
    """Whether a second run would be refused RUN/.lock now."""
    try:
        fd = os.open(run / ".lock", os.O_RDWR)
    except FileNotFoundError:  # a run that ended removes it
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def _last_update(run: Path) -> str:
    return os.readlink(run / "checkpoints" / "last")


class Exporting(ToyTask):
    """A toy task that records, at the end of each fit, whether the run still held its folder and its last checkpoint."""

    def __init__(self, seen: list, **kwargs):
        super().__init__(**kwargs)
        self.seen = seen

    def on_fit_end(self, run_dir):
        self.seen.append((run_dir, _locked_by_run(run_dir), _last_update(run_dir)))


def test_on_fit_end_runs_inside_the_lock_after_a_stopped_a_finished_and_a_rerun_finished_run(tmp_path):
    run = tmp_path / "run"
    seen = []
    cfg = _cfg(run, max_updates=4, valid_every=0, save_every=2)
    Trainer(cfg, Exporting(seen, stop_at=1)).fit()  # SIGINT in update 1: stopped, saved
    Trainer(cfg, Exporting(seen)).fit()  # resumed to the end
    Trainer(cfg, Exporting(seen)).fit()  # a re-run of the finished run
    assert seen == [(run, True, "update_0000001"), (run, True, "update_0000004"), (run, True, "update_0000004")]


def test_on_fit_end_is_not_called_after_an_error(tmp_path):
    class Failing(Exporting):
        def train_step(self, model, batch):
            raise XlsrError("data: broken")

    seen = []
    with pytest.raises(XlsrError, match="data: broken"):
        Trainer(_cfg(tmp_path / "run", max_updates=2), Failing(seen)).fit()
    assert seen == []


@pytest.fixture(scope="module")
def mms(tmp_path_factory):
    return write_mms_dir(tmp_path_factory.mktemp("mms") / "mms-1b-all")


def test_an_adapter_run_exports_while_it_holds_its_folder_stopped_finished_and_rerun(mms, tmp_path, monkeypatch):
    train = write_tone_corpus(tmp_path, "train", 4, seed=1, phones_per_utt=(2, 3))
    run = tmp_path / "run"
    exports = []
    real_export = finetune_module.export_run_adapter

    def export(run_dir, lang):
        exports.append((_locked_by_run(Path(run_dir)), _last_update(Path(run_dir))))
        return real_export(run_dir, lang)

    monkeypatch.setattr(finetune_module, "export_run_adapter", export)
    real_step = FinetuneTask.train_step

    def stop_in_first_step(self, model, batch):
        if self.cfg.max_updates == 2 and not hasattr(self, "_stopped"):
            self._stopped = True
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C during update 1
        return real_step(self, model, batch)

    monkeypatch.setattr(FinetuneTask, "train_step", stop_in_first_step)
    cfg = FinetuneConfig(train=[str(train)], labels="chars", out=str(run), init=str(mms), target_lang="new",
                         train_only="adapters", max_updates=2, valid_every=0, progress=False, tensorboard=False)
    finetune(cfg)  # stopped at update 1
    assert exports == [(True, "update_0000001")]
    stopped = load_pretrained(run / "adapter", target_lang="new").model.state_dict()
    monkeypatch.setattr(FinetuneTask, "train_step", real_step)
    finetune(cfg)  # resumed to the end
    finetune(cfg)  # re-run of the finished run
    assert exports == [(True, "update_0000001"), (True, "update_0000002"), (True, "update_0000002")]
    final = load_pretrained(run / "adapter", target_lang="new").model.state_dict()
    last = load_pretrained(run / "checkpoints" / "last", target_lang="new").model.state_dict()
    assert all((final[k] == v).all() for k, v in last.items())  # the export is the finished run's
    assert any(not (stopped[k] == v).all() for k, v in final.items() if not _is_base(k))
