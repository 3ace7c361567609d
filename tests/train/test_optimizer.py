
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


def test_feature_encoder_lr_scale_gives_the_cnn_its_own_rate():
    model = Wav2Vec2ForPreTraining(Wav2Vec2Config.preset("tiny"))
    cnn = {id(p) for n, p in model.named_parameters() if n.startswith("wav2vec2.feature_encoder.")}
    assert len(build_optimizer(model, TrainerConfig()).param_groups) == 2  # the groups of earlier versions
    opt = build_optimizer(model, TrainerConfig(feature_encoder_lr_scale=0.1))
    scaled = {id(p) for g in opt.param_groups if g["lr_scale"] == 0.1 for p in g["params"]}
    assert scaled == cnn
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))


def test_each_group_gets_the_schedules_rate_times_its_scale():
    import torch

    from xlsr.train.optimizer import set_learning_rate

    model = Wav2Vec2ForPreTraining(Wav2Vec2Config.preset("tiny"))
    cfg = TrainerConfig(lr=1e-3, feature_encoder_lr_scale=0.25, warmup_updates=0, max_updates=10)
    opt = build_optimizer(model, cfg)
    cnn_weight = model.wav2vec2.feature_encoder.conv_layers[0].conv.weight
    before = cnn_weight.detach().clone()
    other = model.final_proj.weight
    other_before = other.detach().clone()
    set_learning_rate(opt, 1e-3)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    # Adam's first step moves every weight by about lr (the gradient's scale cancels): 1e-3 x 0.25 for the CNN
    cnn_step = (before - cnn_weight.detach()).abs().mean().item()
    other_step = (other_before - other.detach()).abs().mean().item()
    assert abs(cnn_step - 0.25e-3) < 0.03e-3 and abs(other_step - 1e-3) < 0.12e-3


def test_negative_feature_encoder_lr_scale_is_refused():
    import pytest

    from xlsr.errors import XlsrError

    with pytest.raises(XlsrError, match="feature_encoder_lr_scale"):
        TrainerConfig(feature_encoder_lr_scale=-1)


def test_head_lr_scale_reaches_the_ctc_head_only():
    from xlsr.model.ctc import Wav2Vec2ForCTC

    model = Wav2Vec2ForCTC(Wav2Vec2Config.preset("tiny"), vocab_size=12)
    opt = build_optimizer(model, TrainerConfig(head_lr_scale=20.0, feature_encoder_lr_scale=0.5))
    by_scale: dict[float, set[int]] = {}
    for g in opt.param_groups:
        by_scale.setdefault(g["lr_scale"], set()).update(id(p) for p in g["params"])
    assert by_scale[20.0] == {id(model.lm_head.weight), id(model.lm_head.bias)}
    assert by_scale[0.5] == {id(p) for p in model.wav2vec2.feature_encoder.parameters()}
    assert sum(map(len, by_scale.values())) == len(list(model.parameters()))


def test_fused_adamw_steps_as_the_per_tensor_loop_does_and_loads_its_state():
    import torch

    from xlsr.train.optimizer import fused_adamw_applies

    torch.manual_seed(0)
    model = Wav2Vec2ForPreTraining(Wav2Vec2Config.preset("tiny"))
    twin = Wav2Vec2ForPreTraining(Wav2Vec2Config.preset("tiny"))
    twin.load_state_dict(model.state_dict())
    cfg = TrainerConfig(lr=1e-3, weight_decay=0.1)
    opt = build_optimizer(model, cfg)
    assert fused_adamw_applies(list(model.parameters())) and all(g["fused"] for g in opt.param_groups)
    # the reference: the twin's same groups through torch's per-tensor loop
    loop = torch.optim.AdamW([{**g, "fused": None, "foreach": False} for g in build_optimizer(twin, cfg).param_groups])
    gen = torch.Generator().manual_seed(1)

    def step_both_and_compare(a: torch.optim.Optimizer, b: torch.optim.Optimizer) -> None:
        for p, q in zip(model.parameters(), twin.parameters()):
            p.grad = torch.randn(p.shape, generator=gen)
            q.grad = p.grad.clone()
        a.step()
        b.step()
        for (name, p), q in zip(model.named_parameters(), twin.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7, msg=name)

    for _ in range(3):
        step_both_and_compare(opt, loop)
    # a checkpoint written by the loop (every earlier version) resumes in the fused optimizer: its fourth step
    # is the fourth step of the run that never stopped (a fresh state would take a first, bias-corrected step)
    resumed = build_optimizer(twin, cfg)
    resumed.load_state_dict(loop.state_dict())
    step_both_and_compare(opt, resumed)


def test_fused_adamw_is_not_asked_of_no_parameters_or_other_devices():
    import torch

    from xlsr.train.optimizer import fused_adamw_applies

    assert fused_adamw_applies([torch.nn.Parameter(torch.zeros(3))])
    assert not fused_adamw_applies([])
    assert not fused_adamw_applies([torch.nn.Parameter(torch.zeros(3)),
                                    torch.nn.Parameter(torch.zeros(3, device="meta"))])
