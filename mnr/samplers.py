"""Batch composition: which rows share a batch, and so which texts are each other's in-batch negatives.

The tutorial's batches (data_prep.epoch_batches, `--batch-sampler no-duplicates`) are a shuffle with no text twice
in a batch. Two other compositions change what a batch holds, never its size or the duplicate rule:

  clustered   TAS-B's topic-aware sampling (Hofstätter et al. 2021, "Efficiently Teaching an Effective Dense
              Retriever with Balanced Topic Aware Sampling"): k-means over the start model's anchor embeddings,
              and each batch drawn from one cluster. Its negatives share the query's topic: harder, and more
              likely to be false negatives too.
  by-source   each batch from one data source (a file; SNLI or MultiNLI from the hub), as sentence-transformers'
              round-robin and proportional samplers do for several data sets: a batch never lets the style of a
              source give the answer away. Sources come in proportion to their size.

Both are `grouped_batches`: rows with a group id each, every group batched alone by the tutorial's duplicate-free
batcher, the batches of all groups then shuffled together. `false_negative_share` measures, before training, how
often a composition puts a candidate the start model prefers to the positive into a query's batch.
"""
import random
from collections import defaultdict

import torch
import torch.nn.functional as F

from mnr.gist import false_negatives

SAMPLERS = ("no-duplicates", "clustered", "by-source")
BATCHES_PER_CLUSTER = 8  # --clusters' default: clusters of about this many batches' worth of rows. A cluster leaves
                         # up to a batch of rows over each epoch, so few clusters lose few rows; many make tighter topics


def default_clusters(n_rows, batch_size):
    """--clusters when not given: about BATCHES_PER_CLUSTER batches of rows per cluster, at least 2."""
    return max(2, n_rows // (BATCHES_PER_CLUSTER * batch_size))


def kmeans(x, k, seed, restarts=3, iterations=50):
    """Spherical k-means (cosine similarity): (N, D) embeddings -> (N,) cluster ids in [0, k). Seeded: the same
    embeddings and seed give the same clusters. Lloyd's iterations from `restarts` k-means++ starts, keeping the
    clustering whose rows are closest to their centres: a single start often settles with two centres in one topic."""
    x = F.normalize(x.float(), dim=1)  # (N, D)
    generator = torch.Generator().manual_seed(seed)
    best, best_fit = None, None
    for _ in range(restarts):
        assigned = lloyd(x, kmeans_plus_plus(x, k, generator), iterations)
        fit = torch.zeros(k, x.shape[1]).index_add_(0, assigned, x).norm(dim=1).sum()  # sum of cosines to centres
        if best is None or fit > best_fit:
            best, best_fit = assigned, fit
    return best


def kmeans_plus_plus(x, k, generator):
    """k starting centres among the unit rows of x (Arthur and Vassilvitskii 2007): the first at random, each next
    drawn with probability proportional to its squared distance from the nearest centre so far -> (k, D)."""
    picks = [torch.randint(len(x), (1,), generator=generator)]
    distance = 1 - (x @ x[picks[0]].T).squeeze(1)  # (N,): 1 - cosine, half the squared distance of unit vectors
    for _ in range(1, min(k, len(x))):
        if not distance.clamp(min=0).sum() > 0:
            break  # fewer distinct embeddings than clusters
        picks.append(torch.multinomial(distance.clamp(min=0), 1, generator=generator))
        distance = torch.minimum(distance, 1 - (x @ x[picks[-1]].T).squeeze(1))
    return x[torch.cat(picks)]


def lloyd(x, centres, iterations):
    """Assign each unit row of x to its most similar centre, move each centre to its rows' normalised mean, repeat
    until no row moves -> (N,) cluster ids. A centre that loses all its rows stays. Similarities are computed a
    chunk of rows at a time, so memory stays O(chunk x k) for any N."""
    assigned = None
    for _ in range(iterations):
        nearest = torch.cat([(chunk @ centres.T).argmax(dim=1) for chunk in x.split(4096)])  # (N,)
        if assigned is not None and torch.equal(nearest, assigned):
            break
        assigned = nearest
        sums = torch.zeros_like(centres).index_add_(0, assigned, x)  # (k, D)
        filled = torch.bincount(assigned, minlength=len(centres)) > 0  # (k,)
        centres = torch.where(filled[:, None], F.normalize(sums, dim=1), centres)
    return assigned


def grouped_batches(rows, groups, batch_size, seed, epoch, batches_of):
    """Row indices of one epoch as full batches, each batch from one group: rows[i] belongs to groups[i].

    `batches_of(rows, batch_size, seed, epoch)` batches one group's rows (data_prep.epoch_batches: a seeded
    shuffle, no text twice in a batch, full batches only); a group smaller than a batch gives none. The batches of
    every group are then shuffled together, so each group comes up in proportion to its size. Deterministic for
    (seed, epoch); each epoch reshuffles within the groups and their order."""
    members = defaultdict(list)  # group -> its row indices, groups in first-seen order
    for i, group in enumerate(groups):
        members[group].append(i)
    batches = []
    for group, indices in members.items():
        if len(indices) >= batch_size:
            found = batches_of([rows[i] for i in indices], batch_size, f"{seed}-{group}", epoch)
            batches += [[indices[j] for j in batch] for batch in found]  # back to indices into `rows`
    random.Random(f"{seed}-{epoch}-groups").shuffle(batches)
    return batches


def false_negative_share(embeddings, batches):
    """How often a batch holds a candidate the start model scores above a query's own positive, measured once
    before training: `embeddings`, per column (anchor, positive, negatives...), the start model's (N, D) for every
    row; `batches`, lists of row indices -> the share of queries (over all batches) with at least one such
    candidate among the batch's positives and negatives. They are GIST's false negatives at margin 0
    (mnr/gist.py): likely right answers that the loss would push away."""
    flagged = 0
    for batch in batches:
        index = torch.tensor(batch)
        anchor, *candidates = (column[index] for column in embeddings)  # (b, D) each
        flagged += false_negatives(anchor, torch.cat(candidates), 0.0).any(dim=1).sum().item()
    return flagged / sum(len(batch) for batch in batches)
