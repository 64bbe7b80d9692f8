"""Cross-modal InfoNCE against a plain, loop-based reference computation."""
import math

import pytest
import torch
import torch.nn.functional as F

from training.losses import info_nce_loss


def reference_info_nce(z1, z2, t):
    """SimCLR NT-Xent written out row by row: the positive of s1[i] is s2[i] and vice versa."""
    z = F.normalize(torch.cat([z1, z2]).double(), dim=1)
    n = z1.shape[0]
    losses, top1 = [], []
    for i in range(2 * n):
        pos = i + n if i < n else i - n
        sims = {j: float(z[i] @ z[j]) / t for j in range(2 * n) if j != i}
        denom = sum(math.exp(v) for v in sims.values())
        losses.append(-(sims[pos] - math.log(denom)))
        top1.append(max(sims, key=sims.get) == pos)
    return sum(losses) / len(losses), 100.0 * sum(top1) / len(top1)


@pytest.mark.parametrize("n", [1, 3, 7])  # odd sizes: nothing relies on a fixed batch size
def test_matches_reference(n):
    g = torch.Generator().manual_seed(n)
    z1, z2 = torch.randn(n, 16, generator=g), torch.randn(n, 16, generator=g)
    loss, acc = info_nce_loss(z1, z2, temperature=0.2)
    ref_loss, ref_top1 = reference_info_nce(z1, z2, 0.2)
    assert loss.item() == pytest.approx(ref_loss, rel=1e-5)
    assert acc["top1"].item() == pytest.approx(ref_top1)


def test_aligned_embeddings_score_perfectly_and_gradients_flow():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(6, 32, generator=g)
    loss_aligned, acc = info_nce_loss(z, z.clone(), temperature=0.07)
    loss_random, _ = info_nce_loss(z, torch.randn(6, 32, generator=g), temperature=0.07)
    assert acc["top1"].item() == 100.0 and acc["top5"].item() == 100.0
    assert loss_aligned < loss_random
    a = torch.randn(4, 8, requires_grad=True)
    b = torch.randn(4, 8, requires_grad=True)
    info_nce_loss(a, b, 0.1)[0].backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="differ in shape"):
        info_nce_loss(torch.randn(3, 8), torch.randn(4, 8))
