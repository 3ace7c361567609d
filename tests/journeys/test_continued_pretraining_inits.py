"""Continued pretraining takes `--init` from every path `load_pretrained` reads (a `--to fairseq` folder, a file
inside a Hugging Face folder), and the run says at its start that the schedules begin again."""

import sys
from pathlib import Path

import pytest
import torch

from xlsr.cli.log_lines import show_library_log
from xlsr.cli.main import main
from xlsr.interop.fairseq_export import export_fairseq
from xlsr.interop.huggingface import export_hf
from xlsr.interop.init_model import checkpoint_languages
from xlsr.interop.native import save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForPreTraining
from xlsr.train.pretrain import PretrainConfig, PretrainTask

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from _tones import write_tone_corpus  # noqa: E402

# XLS-R's layer kinds (LayerNorm CNN with bias, pre-LN blocks), tiny; the CNN narrower than the Transformer, as
# fairseq's export needs
MODEL = dict(conv_layers=[(32, 10, 5), (32, 3, 2), (32, 3, 2), (32, 3, 2), (32, 3, 2), (32, 2, 2), (32, 2, 2)],
             extractor_mode="layer_norm", conv_bias=True, layer_norm_first=True, hidden_size=48, num_layers=1,
             num_heads=2, ffn_dim=64, conv_pos=8, conv_pos_groups=4, final_dim=16, codevector_dim=16,
             num_codevectors_per_group=8, num_negatives=5, mask_prob=0.5, mask_length=3)  # fmt: skip
RUN = dict(num_workers=0, progress=False, tensorboard=False, device="cpu", max_tokens=64000, min_sample_size=8000,
           max_sample_size=16000, valid_every=0, feature_health_frames=0)  # fmt: skip


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Wav2Vec2ForPreTraining:
    torch.manual_seed(0)
    return Wav2Vec2ForPreTraining(Wav2Vec2Config(**MODEL)).eval()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tones")
    write_tone_corpus(root, "train", 4, seed=0)
    return root


def _assert_all_weights_of(model: torch.nn.Module, published: torch.nn.Module) -> None:
    state = model.state_dict()
    assert state.keys() == published.state_dict().keys()
    for k, v in published.state_dict().items():
        assert torch.equal(state[k], v), k


@pytest.mark.parametrize("where", ["fairseq folder", "fairseq .pt", "hf config.json", "hf model.safetensors"])
def test_continued_pretraining_reads_every_path_load_pretrained_reads(where, published, corpus, tmp_path):
    if where.startswith("fairseq"):
        folder = export_fairseq(published, tmp_path / "fs")
        init = folder if where == "fairseq folder" else folder / "checkpoint.pt"
    else:
        folder = export_hf(published, tmp_path / "hf")
        init = folder / where.split()[1]
    task = PretrainTask(PretrainConfig(data=str(corpus), out=str(tmp_path / "run"), init=str(init), **RUN))
    assert task.init.source_format == where.split()[0]
    model = task.build_model()
    assert task.quantizer_from_init
    _assert_all_weights_of(model, published)  # quantizer, project_q and final_proj included


def test_the_languages_of_a_fairseq_export_folder_are_read_as_its_checkpoint_pts(published, tmp_path):
    folder = export_fairseq(published, tmp_path / "fs")
    assert checkpoint_languages(folder) == checkpoint_languages(folder / "checkpoint.pt") == []


def test_a_continued_run_says_once_that_its_schedules_start_again(published, corpus, tmp_path, capsys):
    show_library_log()  # as the command shows it
    save_checkpoint(tmp_path / "published", published)
    args = ["pretrain", "--data", str(corpus), "--init", str(tmp_path / "published"), "--out", str(tmp_path / "run"),
            "--save-every", "1", *(f"--{k}={v}" for k, v in RUN.items())]
    assert main([*args, "--max-updates", "1"]) == 0
    note = capsys.readouterr().err
    assert (f"continuing pretraining from {tmp_path / 'published'} with a fresh optimizer; the schedules start at "
            "update 0, the learning rate's and the Gumbel temperature's (from 2 down to 0.5, as for a new codebook): "
            "--model.latent_temp 0.5,0.5,1 trains the codebook at the temperature it ended at") in note
    assert main([*args, "--max-updates", "2"]) == 0  # the same run, resumed: its schedules go on
    again = capsys.readouterr().err
    assert "resuming" in again and "continuing pretraining" not in again
    # with the temperature held at τ_min there is nothing to say
    assert main([*args, "--out", str(tmp_path / "held"), "--max-updates", "1", "--model.latent_temp", "0.5,0.5,1"]) == 0
    assert "continuing pretraining" not in capsys.readouterr().err
