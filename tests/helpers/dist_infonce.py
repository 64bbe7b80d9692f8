"""Run under torchrun (2 processes, gloo): each rank takes half of a fixed batch and checks
that the gathered InfoNCE loss and the DDP-averaged gradient equal the single-process ones."""
import os
import sys

import torch
import torch.distributed as dist

from training import distributed as du
from training.losses import info_nce_loss


def main() -> int:
    du.init_distributed("cpu")
    rank, world = du.get_rank(), du.get_world_size()
    g = torch.Generator().manual_seed(0)
    x1, x2 = torch.randn(8, 6, generator=g), torch.randn(8, 6, generator=g)
    weight = torch.randn(6, 4, generator=g)

    # single-process reference on the whole batch
    w_ref = weight.clone().requires_grad_(True)
    ref_loss, _ = info_nce_loss(x1 @ w_ref, x2 @ w_ref, 0.1, gather=False)
    ref_loss.backward()

    # this rank's half, negatives gathered from every rank, gradients averaged like DDP
    n = x1.shape[0] // world
    part = slice(rank * n, (rank + 1) * n)
    w = weight.clone().requires_grad_(True)
    loss, _ = info_nce_loss(x1[part] @ w, x2[part] @ w, 0.1)
    loss.backward()
    dist.all_reduce(w.grad)
    w.grad /= world
    mean_loss = loss.detach().clone()
    dist.all_reduce(mean_loss)
    mean_loss /= world
    ok = torch.allclose(mean_loss, ref_loss.detach(), atol=1e-6) and \
        torch.allclose(w.grad, w_ref.grad, atol=1e-6)
    print(f"rank {rank}: loss {mean_loss.item():.6f} vs {ref_loss.item():.6f}, grads equal: {ok}")
    du.cleanup()
    return 0 if ok else 1


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Leave without running C++ static destructors: at interpreter exit torch (2.14, gloo, after a
    # backward through the autograd all_gather) sometimes aborts with "terminate called without
    # an active exception" although the work is done and the group destroyed (seen in about one
    # of three full test-suite runs here, never when run alone).
    os._exit(code)
