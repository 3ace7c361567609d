
from xlsr.model.config import Wav2Vec2Config
from xlsr.model.pretraining import Wav2Vec2ForPreTraining
from xlsr.train.optimizer import build_optimizer, no_weight_decay
from xlsr.train.trainer_config import TrainerConfig


def test_weight_decay_reaches_weight_matrices_only():
    model = Wav2Vec2ForPreTraining(Wav2Vec2Config.preset("tiny"))
    decayed = {n for n, p in model.named_parameters() if not no_weight_decay(n, p)}
    gains = [n for n in dict(model.named_parameters()) if n.endswith("parametrizations.weight.original0")]
    assert gains and not decayed.intersection(gains)  # the positional conv's weight-norm g (3-d) is a scale
    directions = [n for n in dict(model.named_parameters()) if n.endswith("parametrizations.weight.original1")]
    assert directions and set(directions) <= decayed  # its direction v is a weight like any other
    assert not any(n.endswith("bias") or "norm" in n or "codevectors" in n for n in decayed)
    opt = build_optimizer(model, TrainerConfig(weight_decay=0.1))
    by_decay = {g["weight_decay"]: {id(p) for p in g["params"]} for g in opt.param_groups}
    params = dict(model.named_parameters())
    assert {id(params[n]) for n in gains} <= by_decay[0.0]
    assert {id(params[n]) for n in decayed} == by_decay[0.1]
