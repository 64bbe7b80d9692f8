import math

import pytest
import torch

from utils.schedules import WarmupCosine, no_decay_param_groups


def _opt(lr=1e-3):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def test_warmup_then_cosine():
    opt = _opt()
    s = WarmupCosine(opt, total_steps=110, warmup_steps=10, warmup_lr=1e-6, min_lr=1e-5)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(110):
        s.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(1e-6)
    assert lrs[10] == pytest.approx(1e-3)              # end of warm-up: base LR
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:11]))  # rising during warm-up
    assert lrs[60] == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5))  # cosine half-way
    assert lrs[110] == pytest.approx(1e-5)


def test_constant_reproduces_the_original_behaviour():
    opt = _opt()
    s = WarmupCosine(opt, 100, 10, warmup_lr=5e-7, min_lr=5e-6, constant=True)
    for _ in range(50):
        s.step()
    assert opt.param_groups[0]["lr"] == 5e-7


def test_resume_continues_the_schedule():
    opt = _opt()
    s = WarmupCosine(opt, 100, 10, 1e-6, 1e-5)
    for _ in range(37):
        s.step()
    opt2 = _opt()
    s2 = WarmupCosine(opt2, 100, 10, 1e-6, 1e-5)
    s2.load_state_dict(s.state_dict())
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


def test_no_decay_groups():
    m = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    m.relative_position_bias_table = torch.nn.Parameter(torch.zeros(3, 2))
    decay, no_decay = no_decay_param_groups(m, 0.05)
    assert decay["weight_decay"] == 0.05 and [p.shape for p in decay["params"]] == [(4, 4)]
    assert len(no_decay["params"]) == 4 and no_decay["weight_decay"] == 0.0
