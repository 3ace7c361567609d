"""Continuing pretraining from a checkpoint with settings meant for a model built from scratch: a shipped recipe's
sizes that the checkpoint lacks are refused naming the recipe (the user never typed them), and a --preset that builds
nothing (an xlsr or fairseq --init holds its own model and training settings) is said to be unused."""

import pytest
import torch

from xlsr.cli import resolve_config
from xlsr.cli.log_lines import show_library_log
from xlsr.cli.main import build_parser
from xlsr.errors import XlsrError
from xlsr.interop.native import save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForCTC, Wav2Vec2ForPreTraining
from xlsr.train.pretrain import PretrainConfig, PretrainTask

from ._audio import TINY_MODEL, make_corpus

pytestmark = pytest.mark.usefixtures("one_thread")

# the tiny-demo recipe's CNN (GroupNorm, no conv bias), but a 2 x 8 codebook where the recipe builds 2 x 16
PUBLISHED = dict(TINY_MODEL, extractor_mode="group_norm", conv_bias=False)
RUN = ["--num-workers", "0", "--progress", "false", "--tensorboard", "false", "--device", "cpu"]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    torch.manual_seed(0)
    save_checkpoint(home / "published", Wav2Vec2ForPreTraining(Wav2Vec2Config(**PUBLISHED)))
    biased = dict(PUBLISHED, conv_bias=True, num_codevectors_per_group=16)  # the recipe's codebook, a CNN with bias
    save_checkpoint(home / "biased", Wav2Vec2ForPreTraining(Wav2Vec2Config(**biased)))
    save_checkpoint(home / "fine-tuned", Wav2Vec2ForCTC(Wav2Vec2Config(**PUBLISHED), vocab_size=6),
                    vocab=["<pad>", "<s>", "</s>", "<unk>", "a", "b"])  # no quantizer: its sizes are the run's to choose
    make_corpus(home / "audio", per_lang=2, splits=("train",))
    return home


def command(home, *args: str) -> PretrainConfig:
    """The PretrainConfig of `xlsr pretrain ARGS`, as the command resolves it (recipe < YAML < command line)."""
    parsed = build_parser().parse_args(["pretrain", "--data", str(home / "audio"), "--init", str(home / "published"),
                                        "--out", str(home / "run"), *RUN, *args])
    return resolve_config(PretrainConfig, parsed, recipe_kind="pretrain")


def test_a_recipe_size_the_init_lacks_is_refused_naming_the_recipe(home):
    with pytest.raises(XlsrError) as refused:
        PretrainTask(command(home, "--recipe", "tiny-demo"))
    assert str(refused.value) == (
        f"model.num_codevectors_per_group: --recipe tiny-demo sets 16 for the model it builds from scratch, the "
        f"--init checkpoint {home / 'published'} has 8; give --model.num_codevectors_per_group 8 to continue from it "
        "with the recipe's other settings")
    # as the line says: the checkpoint's codebook, and the recipe's training settings
    task = PretrainTask(command(home, "--recipe", "tiny-demo", "--model.num_codevectors_per_group", "8"))
    assert task.model_cfg.num_codevectors_per_group == 8
    assert (task.model_cfg.mask_length, task.model_cfg.latent_temp, task.model_cfg.num_negatives) == (3, (2.0, 0.5, 0.995), 20)


def test_a_recipe_layer_kind_is_shown_as_the_command_line_takes_it(home):
    with pytest.raises(XlsrError, match=r"^model.conv_bias: --recipe tiny-demo sets false for the model it builds from "
                                        r"scratch, the --init checkpoint \S+biased has true; give --model.conv_bias true "):
        PretrainTask(command(home, "--recipe", "tiny-demo", "--init", str(home / "biased")))


def test_a_size_given_on_the_command_line_is_named_as_given(home):
    with pytest.raises(XlsrError, match=r"^model.num_codevectors_per_group: the --init checkpoint has 8, not 32; "):
        PretrainTask(command(home, "--recipe", "tiny-demo", "--model.num_codevectors_per_group", "32"))


def test_a_preset_an_xlsr_init_does_not_use_is_said(home, capsys):
    show_library_log()  # as the command shows it
    task = PretrainTask(command(home, "--preset", "base"))
    assert task.model_cfg.hidden_size == 32  # the checkpoint's model, not base's
    said = [line for line in capsys.readouterr().err.splitlines() if "preset" in line]
    assert said == [f"xlsr: warning: preset base is not used: the model and its training settings are those of "
                    f"{home / 'published'} (sized like no preset); --model.<field> changes its training settings"]
    PretrainTask(command(home))  # the default preset: nothing to say
    assert "preset" not in capsys.readouterr().err


def test_a_checkpoint_without_a_quantizer_takes_the_codebook_sizes_asked_for(home):
    ctc = ["--init", str(home / "fine-tuned")]
    task = PretrainTask(command(home, *ctc, "--model.num_codevectors_per_group", "32", "--model.final_dim", "24"))
    assert (task.model_cfg.num_codevectors_per_group, task.model_cfg.final_dim) == (32, 24)
    model = task.build_model()  # the encoder from the checkpoint, a 2 x 32 codebook from random weights
    assert model.quantizer.codevectors.shape[1] == 2 * 32
    task = PretrainTask(command(home, *ctc, "--recipe", "tiny-demo"))  # the recipe's 2 x 16, no refusal
    assert task.model_cfg.num_codevectors_per_group == 16
    with pytest.raises(XlsrError, match=r"^model.hidden_size: the --init checkpoint has 32, not 48; "):
        PretrainTask(command(home, *ctc, "--model.hidden_size", "48"))  # the encoder's sizes are still the checkpoint's
