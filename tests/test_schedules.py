"""Parameter groups (the schedules themselves are checked against timm in test_parity.py)."""
import torch

from training.schedules import no_decay_param_groups


def test_no_decay_groups():
    m = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    m.relative_position_bias_table = torch.nn.Parameter(torch.zeros(3, 2))
    decay, no_decay = no_decay_param_groups(m, 0.05)
    assert decay["weight_decay"] == 0.05 and [p.shape for p in decay["params"]] == [(4, 4)]
    assert len(no_decay["params"]) == 4 and no_decay["weight_decay"] == 0.0
