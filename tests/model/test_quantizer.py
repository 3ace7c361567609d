import torch

from xlsr.model import Wav2Vec2Config
from xlsr.model.quantizer import GumbelVectorQuantizer, gumbel_noise


def _quantizer():
    torch.manual_seed(0)
    # 12 CNN channels in, G = 2 groups of V = 5 entries, codevector_dim 8.
    cfg = Wav2Vec2Config(conv_layers=[(12, 10, 5)], codevector_dim=8, num_codevector_groups=2, num_codevectors_per_group=5)
    return GumbelVectorQuantizer(cfg)


def test_training_forward_is_hard_codebook_sum_with_soft_gradient():
    q = _quantizer().train()
    x = torch.randn(30, 12)
    out = q(x, torch.Generator().manual_seed(1))
    book = q.codevectors.view(2, 5, 4)
    expected = torch.cat([book[0, out.codes[:, 0]], book[1, out.codes[:, 1]]], dim=1)
    torch.testing.assert_close(out.quantized, expected)
    out.quantized.pow(2).sum().backward()
    assert q.weight_proj.weight.grad.abs().sum() > 0  # straight-through gradient reaches the logits
    assert q.codevectors.grad.abs().sum() > 0


def test_eval_is_noise_free_argmax_and_temperature_matters_in_training():
    q = _quantizer()
    x = torch.randn(200, 12)
    q.eval()
    out = q(x)
    assert torch.equal(out.codes, q.logits(x).argmax(-1)) and torch.equal(out.codes, q.codes(x))
    q.train()
    q.set_temperature(1e-3)  # near-zero temperature: the Gumbel noise still decides, so codes differ
    noisy = q(x, torch.Generator().manual_seed(0)).codes
    assert not torch.equal(noisy, out.codes)


def test_perplexities_are_bounded_by_group_times_vars():
    q = _quantizer().eval()
    out = q(torch.randn(500, 12))
    assert 0 < out.code_perplexity <= 10 + 1e-4 and 0 < out.prob_perplexity <= 10 + 1e-4
    # Same input everywhere: one code per group, perplexity 1 per group.
    same = q(torch.randn(1, 12).expand(50, 12))
    torch.testing.assert_close(same.code_perplexity, torch.tensor(2.0), atol=1e-4, rtol=0)


def test_code_perplexity_in_training_counts_the_noise_free_choices():
    # Every frame's logits favour entry 0 of each group by a margin the Gumbel noise often overturns at
    # temperature 2: the noise-free choice is one entry per group (perplexity 1 per group, G = 2 in all),
    # whatever the noise draws; the noisy codes spread over several entries.
    q = _quantizer().train()
    q.set_temperature(2.0)
    with torch.no_grad():
        q.weight_proj.weight.zero_()
        q.weight_proj.bias.zero_()
        q.weight_proj.bias[0::q.num_vars] = 1.0
    out = q(torch.randn(400, 12), torch.Generator().manual_seed(0))
    assert len(out.codes[:, 0].unique()) > 1  # the noise changed some choices
    torch.testing.assert_close(out.code_perplexity, torch.tensor(2.0), atol=1e-4, rtol=0)


def test_gumbel_noise_has_the_standard_gumbel_mean_and_gives_softmax_argmax_frequencies():
    # Standard Gumbel: mean is Euler's constant 0.5772 (std pi/sqrt(6), so 1e5 draws pin it to about 0.004).
    g = torch.Generator().manual_seed(0)
    noise = gumbel_noise(torch.Size((100_000,)), torch.empty(0), g)
    assert abs(noise.mean().item() - 0.5772) < 0.02
    # The Gumbel-max trick: argmax(logits + noise) is distributed as softmax(logits).
    logits = torch.tensor([1.0, 0.0, -1.0])
    picks = (logits + gumbel_noise(torch.Size((100_000, 3)), logits, g)).argmax(-1)
    freq = torch.bincount(picks, minlength=3).float() / picks.numel()
    torch.testing.assert_close(freq, logits.softmax(-1), atol=0.01, rtol=0)
