"""A user's journey, through the `xlsr` command: continue wav2vec 2.0 pretraining from a published Hugging Face
folder (XLS-R's layer kinds, built here with transformers and random weights) on unlabeled audio of their own,
be killed and resume, fine-tune, and export back to transformers and fairseq.

Each step is a process of its own, as a user runs it; a dozen of them make this slow (about a minute on 2 cores).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from xlsr.interop.load import load_pretrained

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from _tones import write_tone_corpus  # noqa: E402

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.slow

XLSR = Path(sys.executable).parent / "xlsr"
HF_CONFIG = dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(32,) * 7,
                 feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True, codevector_dim=32,
                 proj_codevector_dim=16, num_codevectors_per_group=8, num_conv_pos_embeddings=16,
                 num_conv_pos_embedding_groups=2)  # fmt: skip
# transformers' names of the pretraining heads -> ours
HEADS = {"quantizer.codevectors": "quantizer.codevectors", "quantizer.weight_proj.weight": "quantizer.weight_proj.weight",
         "quantizer.weight_proj.bias": "quantizer.weight_proj.bias", "project_q.weight": "project_q.weight",
         "project_q.bias": "project_q.bias", "project_hid.weight": "final_proj.weight",
         "project_hid.bias": "final_proj.bias"}  # fmt: skip
FAST = ["--num-workers", "0", "--device", "cpu", "--progress", "false", "--tensorboard", "false", "--max-tokens", "64000"]
PRETRAIN = [*FAST, "--min-sample-size", "8000", "--max-sample-size", "16000", "--log-every", "1"]
# `xlsr ARGS`, killed with SIGKILL (no handler runs: the OOM killer, a lost node) during the KILL_AT_STEP-th batch
KILLED = """
import os, signal, sys
import xlsr.train.pretrain as pretrain
from xlsr.cli.main import main
step, calls = pretrain.PretrainTask.train_step, []
def train_step(self, model, batch):
    calls.append(batch)
    if len(calls) == int(os.environ["KILL_AT_STEP"]):
        os.kill(os.getpid(), signal.SIGKILL)
    return step(self, model, batch)
pretrain.PretrainTask.train_step = train_step
sys.exit(main(sys.argv[1:]))
"""


def xlsr(*args, cwd: Path, env: dict | None = None, killed_at: int | None = None) -> subprocess.CompletedProcess:
    """Run the command as a user does (one thread: the test machine's cores are shared)."""
    cmd = [sys.executable, "-c", KILLED] if killed_at else [str(XLSR)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", **({"KILL_AT_STEP": str(killed_at)} if killed_at else {})}
    return subprocess.run([*cmd, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def train_records(run: Path) -> list[dict]:
    return [r for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if r.get("split") == "train"]


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """The user's folder: the published model (safetensors, and the older pytorch_model.bin), an HF CTC model,
    and unlabeled audio with a dev split (the labels the tone corpus also writes serve the fine-tuning)."""
    transformers.logging.set_verbosity_error()
    home = tmp_path_factory.mktemp("user")
    torch.manual_seed(0)
    published = transformers.Wav2Vec2ForPreTraining(transformers.Wav2Vec2Config(**HF_CONFIG))
    with torch.no_grad():  # no exact zeros and ones left from the init: a weight not copied would show
        for p in published.parameters():
            p.add_(0.05 * torch.randn_like(p))
    published.save_pretrained(home / "published")
    (home / "published_bin").mkdir()
    (home / "published_bin" / "config.json").write_text((home / "published" / "config.json").read_text())
    torch.save(published.state_dict(), home / "published_bin" / "pytorch_model.bin")
    transformers.Wav2Vec2ForCTC(transformers.Wav2Vec2Config(**HF_CONFIG, vocab_size=6)).save_pretrained(home / "hf_ctc")
    write_tone_corpus(home / "audio", "train", 8, seed=0)
    write_tone_corpus(home / "audio", "dev", 4, seed=1)
    return home


@pytest.fixture(scope="module")
def continued(home) -> Path:
    """`xlsr pretrain --init published` for 4 updates, a checkpoint every 2."""
    done = xlsr("pretrain", "--data", "audio", "--init", "published", "--out", "continued", "--max-updates", 4,
                "--save-every", 2, "--valid-every", 2, "--warmup-updates", 2, *PRETRAIN, cwd=home)
    assert done.returncode == 0, done.stderr
    return home / "continued"


@pytest.mark.parametrize("folder", ["published", "published_bin"])
def test_continued_pretraining_starts_from_every_published_weight(home, folder):
    # a learning rate of 0 (and no weight decay): the first checkpoint holds the weights as loaded
    done = xlsr("pretrain", "--data", "audio", "--init", folder, "--out", f"as_loaded_{folder}", "--max-updates", 1,
                "--lr", 0, "--weight-decay", 0, *PRETRAIN, cwd=home)
    assert done.returncode == 0, done.stderr
    ours = load_file(home / f"as_loaded_{folder}" / "checkpoints" / "last" / "model.safetensors")
    published = transformers.Wav2Vec2ForPreTraining.from_pretrained(home / folder).state_dict()
    assert len(ours) == len(published)
    for hf_name, name in HEADS.items():  # the quantizer and the projections too, not only the encoder
        assert torch.equal(ours[name], published[hf_name]), name
    for hf_name, value in published.items():  # and every other tensor, under whatever name we give it
        assert any(v.shape == value.shape and torch.equal(v, value) for v in ours.values()), hf_name


def test_the_schedules_start_afresh_and_the_run_says_so(home, continued):
    records = train_records(continued)
    lrs, temperatures = [r["lr"] for r in records], [r["temperature"] for r in records]
    assert lrs[0] < lrs[1] == max(lrs) == 5e-4 > lrs[-1]  # warmed up again over --warmup-updates 2, then decaying
    assert temperatures[0] == 2.0 and temperatures == sorted(temperatures, reverse=True)  # τ anneals from 2, as README says
    # the optimizer is fresh: Adam has counted this run's updates only, also when --init is a run with its own state
    again = xlsr("pretrain", "--data", "audio", "--init", "continued", "--out", "again", "--max-updates", 1,
                 *PRETRAIN, cwd=home)
    assert again.returncode == 0, again.stderr
    assert "continuing pretraining from continued with a fresh optimizer; the schedules start at update 0" in again.stderr
    assert "--model.latent_temp 0.5,0.5,1 trains the codebook at the temperature it ended at" in again.stderr
    for run, updates in ((continued, 4), (home / "again", 1)):
        state = torch.load(run / "checkpoints" / "last" / "trainer.pt", weights_only=False)["optimizer"]["state"]
        assert {float(s["step"]) for s in state.values()} == {updates}


def test_a_killed_continued_run_resumes_exactly(home, continued):
    args = ("pretrain", "--data", "audio", "--init", "published", "--out", "killed", "--max-updates", 4,
            "--save-every", 2, "--valid-every", 2, "--warmup-updates", 2, *PRETRAIN)
    killed = xlsr(*args, cwd=home, killed_at=4)  # during update 4: update 3 is lost, update 2 is saved
    assert killed.returncode == -9
    assert os.readlink(home / "killed" / "checkpoints" / "last") == "update_0000002"
    resumed = xlsr(*args, cwd=home)  # the same command again
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming killed from update 2" in resumed.stderr and "continuing pretraining" not in resumed.stderr
    a, b = (load_file(run / "checkpoints" / "last" / "model.safetensors") for run in (continued, home / "killed"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    keys = ("update", "loss", "lr", "temperature", "code_perplexity")
    assert [[r[k] for k in keys] for r in train_records(continued)] == [
        [r[k] for k in keys] for r in train_records(home / "killed")]


def test_the_continued_and_fine_tuned_models_export_to_what_transformers_computes(home, continued):
    done = xlsr("finetune", "--init", "continued", "--train", "audio/xx/train.jsonl", "--dev", "audio/xx/dev.jsonl",
                "--labels", "phones", "--out", "finetuned", "--max-updates", 2, *FAST, cwd=home)
    assert done.returncode == 0, done.stderr
    for src, dst, to in (("continued", "continued_hf", "hf"), ("continued", "continued_fs", "fairseq"),
                         ("finetuned", "finetuned_hf", "hf")):
        done = xlsr("convert", src, dst, "--to", to, cwd=home)
        assert done.returncode == 0, done.stderr
    g = torch.Generator().manual_seed(3)
    lengths = torch.tensor([20000, 14000])
    x = torch.randn(2, 20000, generator=g) * (torch.arange(20000)[None] < lengths[:, None])
    mask = (torch.arange(20000)[None] < lengths[:, None]).long()
    ours = load_pretrained(continued).model.eval()  # the run folder, as `xlsr convert` read it
    theirs = transformers.Wav2Vec2ForPreTraining.from_pretrained(home / "continued_hf").eval()
    with torch.no_grad():
        a = ours.wav2vec2(x, lengths).last_hidden_state
        b = theirs.wav2vec2(x, attention_mask=mask).last_hidden_state
    frames = ours.wav2vec2.frame_lengths(lengths)
    for i, t in enumerate(frames.tolist()):
        torch.testing.assert_close(a[i, :t], b[i, :t], rtol=0, atol=1e-4)
    exported = theirs.state_dict()
    for hf_name, name in HEADS.items():  # the continued codebook and projections go along
        assert torch.equal(exported[hf_name], ours.state_dict()[name]), hf_name
    # fairseq's export reads back as the same model (fairseq itself loads such exports: tests/interop/
    # test_fairseq_reference.py)
    back = load_pretrained(home / "continued_fs").model.state_dict()
    assert back.keys() == ours.state_dict().keys()
    assert all(torch.equal(back[k], v) for k, v in ours.state_dict().items())
    ctc = load_pretrained(home / "finetuned").model.eval()
    theirs_ctc = transformers.Wav2Vec2ForCTC.from_pretrained(home / "finetuned_hf").eval()
    with torch.no_grad():
        a, b = ctc(x[:1, :14000]), theirs_ctc(x[:1, :14000]).logits
    torch.testing.assert_close(getattr(a, "logits", a), b, rtol=0, atol=1e-4)


def test_a_ctc_model_or_a_contradicting_config_is_said_in_one_line(home):
    ctc = xlsr("pretrain", "--data", "audio", "--init", "hf_ctc", "--out", "from_ctc", "--max-updates", 1,
               *PRETRAIN, cwd=home)
    assert ctc.returncode == 0, ctc.stderr  # documented: the encoder is taken, the quantizer starts afresh
    said = [line for line in ctc.stderr.splitlines() if "quantizer" in line]
    assert said == ["xlsr: warning: hf_ctc has no quantizer (not a pretraining checkpoint): its encoder is loaded, "
                    "the quantizer and the final projections start from random weights"]
    assert "continuing pretraining" not in ctc.stderr  # a new codebook: the temperature from 2 is right for it
    # an override that contradicts the published weights' architecture
    bias = xlsr("pretrain", "--data", "audio", "--init", "published", "--out", "no_bias", "--model.conv_bias", "false",
                *PRETRAIN, cwd=home)
    assert bias.returncode == 2 and "Traceback" not in bias.stderr
    assert bias.stderr.splitlines()[-1].startswith(
        "xlsr: error: model.conv_bias: the --init checkpoint has True, not False; with --init only ")
    assert not (home / "no_bias").exists()
    # a config.json that contradicts its own weights (conv_bias false, biases in the file)
    (home / "edited").mkdir()
    (home / "edited" / "model.safetensors").write_bytes((home / "published" / "model.safetensors").read_bytes())
    hf = json.loads((home / "published" / "config.json").read_text())
    (home / "edited" / "config.json").write_text(json.dumps({**hf, "conv_bias": False}))
    edited = xlsr("pretrain", "--data", "audio", "--init", "edited", "--out", "from_edited", *PRETRAIN, cwd=home)
    assert edited.returncode == 2 and "Traceback" not in edited.stderr
    assert len(edited.stderr.splitlines()) == 1
    assert edited.stderr == (f"xlsr: error: edited{os.sep}config.json: conv_bias=false disagrees with the weights in "
                             "model.safetensors, which hold conv biases\n")
    assert not (home / "from_edited").exists()
