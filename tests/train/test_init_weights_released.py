"""A run started with --init lets go of the loaded init model once its own model holds the weights: for XLS-R 1B/2B
that copy is 4-8.6 GB per process, held for nothing over the whole run. FSDP's saving copy (a second build_model,
then the run's weights loaded into it) still comes out as the run's model."""

import weakref

import pytest
import torch

from xlsr.interop.native import save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForCTC, Wav2Vec2ForPreTraining
from xlsr.train.finetune import FinetuneConfig, FinetuneTask
from xlsr.train.pretrain import PretrainConfig, PretrainTask

from ._audio import TINY_MODEL, make_corpus
from ._tones import write_tone_corpus

pytestmark = pytest.mark.usefixtures("one_thread")

TOKENS = ["<blank>", "<unk>", "a", "i", "u"]  # the tone corpus's phones: a CTC init's head is kept


def _pretrain_task(tmp_path) -> tuple[PretrainTask, Wav2Vec2ForPreTraining]:
    torch.manual_seed(0)
    reference = Wav2Vec2ForPreTraining(Wav2Vec2Config(**TINY_MODEL))
    init = save_checkpoint(tmp_path / "init", reference)
    data = make_corpus(tmp_path / "tones", per_lang=1, splits=("train",))
    task = PretrainTask(PretrainConfig(data=str(data), out=str(tmp_path / "run"), init=str(init), num_workers=0,
                                       progress=False, tensorboard=False, device="cpu"))
    return task, reference


def _finetune_task(tmp_path) -> tuple[FinetuneTask, Wav2Vec2ForCTC]:
    torch.manual_seed(0)
    reference = Wav2Vec2ForCTC(Wav2Vec2Config(**TINY_MODEL), len(TOKENS))
    init = save_checkpoint(tmp_path / "init", reference, vocab=TOKENS, metadata={"labels": "phones"})
    train = write_tone_corpus(tmp_path / "tones", "train", 2, seed=1)
    task = FinetuneTask(FinetuneConfig(train=[str(train)], out=str(tmp_path / "run"), init=str(init), num_workers=0,
                                       progress=False, tensorboard=False, device="cpu"))
    assert task.data.keep_head  # the init's CTC head is loaded too
    return task, reference


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("make_task", [_pretrain_task, _finetune_task], ids=["pretrain", "finetune"])
def test_building_the_runs_model_lets_go_of_the_init_model(make_task, tmp_path):
    task, reference = make_task(tmp_path)
    init_model = weakref.ref(task.init.model)
    init_weight = weakref.ref(next(task.init.model.parameters()))
    model = task.build_model()
    # no gc.collect here: the init is let go of when the model is built, not at some later collection
    assert init_model() is None and init_weight() is None
    assert _same_weights(model, reference)  # the run's model has the init's weights
    # what --init gave the run is still known: the override checks and adapter checks read `pretrained`
    assert task.init.pretrained and task.init.model is None and task.init.encoder is None


@pytest.mark.parametrize("make_task", [_pretrain_task, _finetune_task], ids=["pretrain", "finetune"])
def test_a_second_build_given_the_runs_weights_is_the_runs_model(make_task, tmp_path):
    """As FSDP's rank 0 makes the copy it saves: build_model again, then the run's full state dict loaded."""
    task, reference = make_task(tmp_path)
    model = task.build_model()
    with torch.no_grad():  # the run trained: its weights are no longer the init's
        for p in model.parameters():
            p.add_(0.5)
    copy = task.build_model()
    copy.load_state_dict(model.state_dict())
    assert type(copy) is type(model) and _same_weights(copy, model) and not _same_weights(copy, reference)
    if isinstance(task, PretrainTask):  # the note on a trained codebook's schedules still applies
        assert task.quantizer_from_init


def test_released_weights_are_freed_at_once_even_from_a_reference_cycle():
    """In a real run the loaded model sits in a garbage cycle: torch imports modules lazily as a model is first built,
    and one of them keeps the frames that imported it (the init's build among them); only the cyclic collector, which
    may not run for a long while, frees those. Automatic collection is off here, so only release_weights can."""
    import gc

    from xlsr.interop.init_model import InitModel

    config = Wav2Vec2Config(**TINY_MODEL)
    init = InitModel(config, Wav2Vec2ForPreTraining(config), source="init")
    cycle = [init.model]
    cycle.append(cycle)
    model = weakref.ref(init.model)
    del cycle
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        init.release_weights()
        assert model() is None
    finally:
        if was_enabled:
            gc.enable()
    assert init.pretrained and init.model is None
