"""Exact nearest-neighbour search: a matrix product and a top-k, no index library. Retrieval scoring and
negative mining both search with it.

Memory: the corpus embeddings (N x D) plus one block of chunk x N scores, never the whole Q x N matrix.
"""
import torch
from tqdm import tqdm

CHUNK_ELEMENTS = 2 ** 21  # query x corpus scores held at once: 8 MiB of float32, which stays in a CPU's cache
                          # while topk reads it back (larger blocks are slower, not faster)


def top_k(queries, corpus, k, exclude=None, chunk_elements=CHUNK_ELEMENTS, progress=None):
    """(Q, D), (N, D) -> (scores, corpus indices), each (Q, k), best first by dot product (the cosine for unit
    vectors). Equal scores rank the lower corpus index first, so the result never depends on chunking.
    `exclude[q]`: corpus indices never returned for query q. Fewer than k candidates: -inf and -1 fill the row.
    `progress`: a description for a bar on stderr (None: no bar)."""
    n_queries, n_corpus = len(queries), len(corpus)
    scores = torch.full((n_queries, k), float("-inf"))
    indices = torch.full((n_queries, k), -1)
    if exclude is not None:  # as (row, column) pairs sorted by row, so each chunk finds its own with a search
        rows = torch.repeat_interleave(torch.arange(n_queries), torch.tensor([len(e) for e in exclude], dtype=torch.long))
        cols = torch.tensor([c for e in exclude for c in e], dtype=torch.long)
    kk, chunk = min(k, n_corpus), max(1, chunk_elements // max(n_corpus, 1))
    with tqdm(total=n_queries, desc=progress, unit="queries", disable=progress is None) as bar:
        for start in range(0, n_queries, chunk):
            end = min(start + chunk, n_queries)
            block = queries[start:end] @ corpus.T  # (c, N)
            if exclude is not None:
                lo, hi = torch.searchsorted(rows, torch.tensor([start, end])).tolist()
                block[rows[lo:hi] - start, cols[lo:hi]] = float("-inf")
            values, found = block.topk(kk, dim=1)  # (c, k), but equal scores come in no defined order
            found, order = found.sort(dim=1)  # by corpus index, then stably by score: ties resolved
            order = values.gather(1, order).argsort(dim=1, descending=True, stable=True)
            found = found.gather(1, order)
            # topk may also have kept a higher index than a tie it left out at the k-th place (duplicate
            # documents do this): those rare rows get a full stable sort.
            kth = values.min(dim=1, keepdim=True).values  # (c, 1)
            for row in ((block == kth).sum(1) > (values == kth).sum(1)).nonzero().flatten().tolist():
                found[row] = block[row].argsort(descending=True, stable=True)[:kk]
            scores[start:end, :kk], indices[start:end, :kk] = block.gather(1, found), found
            bar.update(end - start)
    indices[scores == float("-inf")] = -1  # excluded texts that still made a tiny corpus's top k
    return scores, indices
