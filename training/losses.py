"""Cross-modal InfoNCE (NT-Xent) as used for S1/S2 pre-training.

For a batch of ``n`` locations the S1 and S2 embeddings form ``2n`` vectors. The positive
of each vector is the other modality's embedding of the *same* location; every other
vector in the (global) batch is a negative — the SimCLR formulation the original used,
with S1 and S2 as the two "views". Labels are built from the actual batch size, so a short
last batch is fine (the original needed ``drop_last``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from training.distributed import gather_with_grad, get_rank


def info_nce_logits(z_s1: torch.Tensor, z_s2: torch.Tensor, temperature: float,
                    gather: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Similarity logits of this rank's ``2n`` rows against the global ``2N`` columns.

    Returns ``(logits, positive_index)``: ``logits`` is ``(2n, 2N)`` with each row's own
    column set to ``-inf``; ``positive_index[i]`` is the column of row ``i``'s positive.
    Rows are ordered ``[s1 of the local batch, s2 of the local batch]``; columns
    ``[s1 of all ranks, s2 of all ranks]``.
    """
    if z_s1.shape != z_s2.shape:
        raise ValueError(f"S1 and S2 embeddings differ in shape: {tuple(z_s1.shape)} vs {tuple(z_s2.shape)}")
    n = z_s1.shape[0]
    z_s1 = F.normalize(z_s1.float(), dim=1)
    z_s2 = F.normalize(z_s2.float(), dim=1)
    all_s1 = gather_with_grad(z_s1) if gather else z_s1
    all_s2 = gather_with_grad(z_s2) if gather else z_s2
    total = all_s1.shape[0]
    offset = get_rank() * n if total != n else 0

    rows = torch.cat([z_s1, z_s2])                      # (2n, D)
    cols = torch.cat([all_s1, all_s2])                  # (2N, D)
    logits = rows @ cols.T / temperature
    local = torch.arange(n, device=rows.device) + offset
    self_index = torch.cat([local, local + total])
    positive_index = torch.cat([local + total, local])
    logits = logits.index_put((torch.arange(2 * n, device=rows.device), self_index),
                              torch.tensor(float("-inf"), device=rows.device))
    return logits, positive_index


def info_nce_loss(z_s1: torch.Tensor, z_s2: torch.Tensor, temperature: float = 0.07,
                  gather: bool = True) -> tuple[torch.Tensor, dict]:
    """Mean InfoNCE over this rank's rows, and contrastive top-1/top-5 accuracy (in %)."""
    logits, positive = info_nce_logits(z_s1, z_s2, temperature, gather)
    loss = F.cross_entropy(logits, positive)
    return loss, contrastive_accuracy(logits.detach(), positive)


def contrastive_accuracy(logits: torch.Tensor, positive: torch.Tensor, topk=(1, 5)) -> dict:
    """Share of rows (in %) whose positive ranks among the top-k columns (0-d tensors, no sync)."""
    # rank = number of columns scoring strictly higher than the positive
    pos_score = logits.gather(1, positive[:, None])
    rank = (logits > pos_score).sum(1)
    candidates = logits.shape[1] - 1
    return {f"top{k}": 100.0 * (rank < k).float().mean() for k in topk if k <= candidates}
