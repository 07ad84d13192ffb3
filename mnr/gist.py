"""GIST (Solatorio 2024, "GISTEmbed: Guided In-sample Selection of Training Negatives"): keep false negatives out.

With in-batch negatives, every other row's texts count as wrong answers for a query. When rows are about the
same things (many NLI premises describe the same kinds of scene), some of those are right answers too, and the
loss pushes the query away from them. A frozen guide model, often the start model, scores each query against
every candidate of the batch; a candidate it scores above the query's own positive (minus a margin) is left out
of that query's softmax. The model's loss is otherwise unchanged.
"""
import torch
import torch.nn.functional as F

from mnr import distributed


def false_negatives(guide_anchor, guide_candidates, margin, label_offset=0):
    """GIST (Solatorio 2024, "GISTEmbed: Guided In-sample Selection of Training Negatives"): a guide model's
    embeddings of the queries (b, D) and of every candidate (C, D) -> (b, C) True for each candidate the guide
    scores above the query's own positive minus `margin`. With many rows about the same thing, such a candidate
    is likely another right answer, and training would push the query away from it. A query's own positive,
    column label_offset + i, is never left out."""
    scores = F.normalize(guide_anchor, dim=1) @ F.normalize(guide_candidates, dim=1).T  # (b, C): cosines
    rows = torch.arange(len(guide_anchor), device=scores.device)
    own = rows + label_offset  # (b,): each query's positive
    exclude = scores > scores[rows, own][:, None] - margin  # (b, C)
    exclude[rows, own] = False
    return exclude


def guided_exclusions(guide_columns, margin, device):
    """The guide's embeddings of this process's rows, one (b, D) per column (anchor, positive, negatives...), made
    without a gradient -> `false_negatives` against the global batch, (b, B*(1+k)) on `device`. The candidates are
    gathered like the model's (this process's rows first), so the mask lines up with the loss's score matrix."""
    anchor, positive, *negatives = guide_columns
    candidates = torch.cat([distributed.gather(positive), *[distributed.gather(n) for n in negatives]])
    return false_negatives(anchor, candidates, margin).to(device)


class GuidedLoss(torch.nn.Module):
    """GIST: a frozen guide leaves the batch's likely false negatives out of the wrapped loss's softmax.

    As sentence-transformers' GISTEmbedLoss holds its guide, this loss does: the guide embeds the step's rows,
    marks the likely false negatives, and the wrapped loss leaves them out of the softmax
    (it gets them as `exclude=`). `embed_rows(rows)` -> the guide's (b, D) per column, without a gradient: a
    function, so the frozen guide's weights are no parameter of the loss (never trained, never checkpointed).
    `left_out`: how many candidates the last step left out, for the training log."""

    def __init__(self, loss, embed_rows, margin):
        super().__init__()
        self.loss, self.embed_rows, self.margin, self.left_out = loss, embed_rows, margin, None

    def forward(self, embeddings, rows, **options):
        exclude = guided_exclusions(self.embed_rows(rows), self.margin, embeddings[0].device)
        self.left_out = exclude.sum()
        return self.loss(embeddings, rows, exclude=exclude, **options)
