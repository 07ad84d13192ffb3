"""Hardness weighting (Lan et al. 2025, "LLaVE: Large Language and Vision Embedding Models with Hardness-Weighted
Contrastive Learning", eq. 5; EmbeddingGemma, Schechter Vera et al. 2025): make hard negatives count for more.

A negative's logit in the MNR softmax is scale x cos(query, negative). Hardness weighting adds
strength x cos(query, negative) once more, computed without a gradient: a negative the model already finds close to
the query gets a larger share of the softmax, so more of the gradient goes into pushing it away, and an easy one
gets less. The positive's logit is left alone. Which negatives get the extra term:

  in_batch_negatives  the other rows' positives and hard negatives (Lan et al. use strength 9)
  hard_negatives      only the query's own hard-negative columns (EmbeddingGemma uses 5); needs negative columns
  all_negatives       both: every candidate but the query's own positive

The same logits as sentence-transformers' MultipleNegativesRankingLoss(hardness_mode=..., hardness_strength=...).
"""
import torch
import torch.nn.functional as F

from mnr.errors import ConfigError

MODES = ("in_batch_negatives", "hard_negatives", "all_negatives")


def penalty(cosines, batch_size, mode, strength):
    """(b, C) cosines of this process's queries against every candidate: the batch's B = `batch_size` positives,
    then each negative column of B -> (b, C) to add to the scaled logits: strength x cosine, detached, on the
    negatives `mode` names, 0 elsewhere. Query i's own positive is column i (mnr/distributed.py's gather puts a
    process's own rows first); its own hard negatives sit B, 2B, ... columns further on."""
    if mode not in MODES:
        raise ValueError(f"hardness mode must be one of {', '.join(MODES)}, got {mode!r}")
    rows = torch.arange(cosines.shape[0], device=cosines.device)[:, None]  # (b, 1): each query's row
    columns = torch.arange(cosines.shape[1], device=cosines.device)[None, :]  # (1, C)
    own = columns % batch_size == rows  # (b, C): the query's own positive and its own hard negatives
    weighted = {"in_batch_negatives": ~own,  # every other row's candidates
                "hard_negatives": own & (columns >= batch_size),  # the query's own negative columns only
                "all_negatives": columns != rows}[mode]  # all but the query's own positive
    return (strength * cosines.detach()).masked_fill(~weighted, 0.0)  # (b, C)


def weighted_mnr_loss(anchor, positive, negatives=None, scale=20.0, mode=None, strength=0.0, exclude=None):
    """MNR loss with its score matrix changed before the cross-entropy (hardness weighting, GIST's mask).

    Hardness weighting adds its term (`mode`, `strength`); GIST's `exclude` ((b, C) True: left out, mnr/gist.py)
    takes candidates out of the softmax. Same arguments as train_mnr.mnr_loss otherwise; with neither, its value."""
    negatives = [negatives] if torch.is_tensor(negatives) else list(negatives or [])
    cosines = F.normalize(anchor, dim=1) @ F.normalize(torch.cat([positive, *negatives]), dim=1).T  # (b, C)
    scores = cosines * scale
    if mode and strength:
        scores = scores + penalty(cosines, len(positive), mode, strength)
    if exclude is not None:
        scores = scores.masked_fill(exclude, float("-inf"))  # a left-out candidate gets probability 0
    return F.cross_entropy(scores, torch.arange(len(anchor), device=anchor.device))  # query i's positive: column i


def check_flags(mode, strength, columns=None, source=None):
    """Refuse --hardness-mode and --hardness-strength that would do nothing: one without the other, a negative
    strength, or hard_negatives on rows with no negative column (`columns`: the rows' width, from `source`)."""
    if strength < 0 or bool(mode) != bool(strength):
        raise ConfigError("--hardness-mode and a positive --hardness-strength go together (one does nothing alone)")
    if mode == "hard_negatives" and columns is not None and columns < 3:
        raise ConfigError(f"{source}: --hardness-mode hard_negatives weighs the negative columns, and these rows have "
                          "none; use in_batch_negatives, or data with negatives")
