"""A pretraining run started from an xlsr CTC checkpoint (no quantizer) with codebook sizes of its own (--model.* or a
recipe's) resumes with them: the resume reads no weights of --init, and its config.json says it has no quantizer."""

import pytest
import torch

from xlsr.cli import resolve_config
from xlsr.cli.main import build_parser
from xlsr.errors import XlsrError
from xlsr.interop.native import save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForCTC, Wav2Vec2ForPreTraining
from xlsr.train.checkpoint import TRAINER_FILE
from xlsr.train.pretrain import PretrainConfig, PretrainTask

from ._audio import TINY_MODEL, make_corpus

pytestmark = pytest.mark.usefixtures("one_thread")

MODEL = dict(TINY_MODEL, extractor_mode="group_norm", conv_bias=False)  # a 2 x 8 codebook; the recipe's is 2 x 16
RUN = ["--num-workers", "0", "--progress", "false", "--tensorboard", "false", "--device", "cpu"]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    torch.manual_seed(0)
    save_checkpoint(home / "fine-tuned", Wav2Vec2ForCTC(Wav2Vec2Config(**MODEL), vocab_size=6),
                    vocab=["<pad>", "<s>", "</s>", "<unk>", "a", "b"])
    save_checkpoint(home / "published", Wav2Vec2ForPreTraining(Wav2Vec2Config(**MODEL)))
    make_corpus(home / "audio", per_lang=2, splits=("train",))
    return home


def command(home, run, init, *args: str) -> PretrainConfig:
    parsed = build_parser().parse_args(["pretrain", "--data", str(home / "audio"), "--init", str(home / init),
                                        "--out", str(run), *RUN, *args])
    return resolve_config(PretrainConfig, parsed, recipe_kind="pretrain")


def started(run, config: Wav2Vec2Config) -> None:
    """RUN as a run that saved update 1 of a model of `config` (what a resume finds, its weights unread here)."""
    checkpoint = run / "checkpoints" / "update_0000001"
    save_checkpoint(checkpoint, Wav2Vec2ForPreTraining(config))
    torch.save({"update": 1}, checkpoint / TRAINER_FILE)


@pytest.mark.parametrize("sizes, codebook", [(["--model.num_codevectors_per_group", "32"], 32),
                                             (["--recipe", "tiny-demo"], 16)], ids=["model", "recipe"])
def test_a_run_from_a_ctc_checkpoint_resumes_with_the_codebook_it_took(home, tmp_path, sizes, codebook):
    run = tmp_path / "run"
    first = PretrainTask(command(home, run, "fine-tuned", *sizes))
    assert first.init.resumed_from is None and first.model_cfg.num_codevectors_per_group == codebook
    started(run, first.model_cfg)
    again = PretrainTask(command(home, run, "fine-tuned", *sizes))
    assert again.init.resumed_from is not None
    assert again.model_cfg == first.model_cfg


def test_a_resume_from_a_checkpoint_with_a_quantizer_still_refuses_another_codebook(home, tmp_path):
    run = tmp_path / "run"
    started(run, PretrainTask(command(home, run, "published")).model_cfg)
    with pytest.raises(XlsrError, match=r"^model.num_codevectors_per_group: the --init checkpoint has 8, not 32; "):
        PretrainTask(command(home, run, "published", "--model.num_codevectors_per_group", "32"))
