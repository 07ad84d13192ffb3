"""Step 5 of the tutorial: token vectors -> one sentence vector, and the one encoder every script embeds with.

BERT returns one vector per token; a sentence embedding is a pooled summary of them. Rows in a batch are
padded to the same length, and pad positions still come out of BERT with (meaningless) vectors, so every
pooling here reads the attention mask and lets padding count for nothing. The numerics follow
sentence-transformers' `Pooling` module, so a saved model embeds the same in either library.

Two ways to get the token vectors, the same numbers up to float rounding:
  the tutorial's   one padded forward per column (anchors, then positives, ...)   `token_embeddings(pack=False)`
  packed           every sentence of the batch end to end in one forward, no padding computed (mnr/packing.py)
Training, the evaluators and the miner all go through `embed_columns`; `encode` turns a list of texts into
embeddings for the evaluators and the miner.
"""
import torch
from tqdm import tqdm

from mnr import packing
from mnr.precision import autocast


def mean_pool(tokens, mask):
    """Average of the real tokens. (B, T, D), (B, T) -> (B, D)."""
    weights = mask.unsqueeze(-1).to(tokens.dtype)  # (B, T, 1): 1 on tokens, 0 on padding
    summed = (tokens * weights).sum(dim=1)  # (B, D): padding contributes zeros
    # An all-padding row would divide by zero; the clamp turns it into a zero vector instead of NaN.
    counts = weights.sum(dim=1).clamp(min=1e-9)  # (B, 1)
    return summed / counts


def cls_pool(tokens, mask):
    """The first real token's vector ([CLS]). With padding at the end, as BERT's tokenizers pad, that is token 0;
    a tokenizer that pads on the left (decoder-style, e.g. Qwen's) puts it after the padding, so the mask finds it."""
    first = mask.to(torch.long).argmax(dim=1)  # (B,): the first 1 of each mask row
    return tokens[torch.arange(len(first), device=first.device), first.to(tokens.device)]  # (B, D)


def max_pool(tokens, mask):
    """Per-dimension max over the real tokens. Padding is set to the dtype's lowest value first, so it never
    wins the max (a fixed -1e9 would overflow fp16)."""
    keep = mask.unsqueeze(-1).bool()  # (B, T, 1)
    lowest = torch.finfo(tokens.dtype).min
    return tokens.masked_fill(~keep, lowest).max(dim=1).values  # (B, D)


def last_token_pool(tokens, mask):
    """The last real token's vector: what decoder-only embedders (Qwen3-Embedding, e5-mistral) pool, since a causal
    model's last token is the only one that has seen the whole text. The tokenizer appends the end-of-sequence
    token, so that is the token read. Works with padding on either side: the last 1 of each mask row is found."""
    last = mask.shape[1] - 1 - mask.flip(1).to(torch.long).argmax(dim=1)  # (B,)
    return tokens[torch.arange(len(last), device=last.device), last.to(tokens.device)]  # (B, D)


# Every pooling there is: name -> (its function, the flag that selects it in sentence-transformers'
# 1_Pooling/config.json, or None where sentence-transformers has no such pooling). --pooling's choices, the saved
# folder's sentence-transformers files, the model card's example code and the loaders all derive from this table
# (the package reads it through mnr/models.py `pooling_table`), so a new pooling is one function above and one line
# here. A pooling with None still trains, saves and scores here; its folder has no sentence-transformers
# files, and the save says so.
POOLINGS = {
    "mean": (mean_pool, "pooling_mode_mean_tokens"),
    "cls": (cls_pool, "pooling_mode_cls_token"),
    "max": (max_pool, "pooling_mode_max_tokens"),
    "lasttoken": (last_token_pool, "pooling_mode_lasttoken"),
}


def pool(name, tokens, mask):
    """The one entry point the scripts use: `pool("mean", tokens, mask)`, token vectors (B, T, D) and attention
    mask (B, T) -> (B, D)."""
    if name not in POOLINGS:
        raise ValueError(f"unknown pooling {name!r}; choose one of {', '.join(POOLINGS)}")
    return POOLINGS[name][0](tokens, mask)


def token_embeddings(model, columns, pack=False, every_rank=False):
    """Per-column tokenizer dicts -> per column (token vectors (n, T, D), attention mask (n, T)). `every_rank`:
    called by every process of a torchrun run at once (the training step), so the packing choice is theirs together."""
    # mnr/packing.py: one forward for every column's sentences, no padding computed, when there is enough padding
    # to save. DDP needs the same forwards in every process (one packed forward here, one per column there would
    # leave the processes waiting on each other's gradients), so the training step decides on all their batches.
    if pack and packing.saves_work(columns, every_rank=every_rank):
        return packing.token_embeddings(model, columns)
    device = next(model.parameters()).device  # the tutorial: one padded forward per column
    columns = [{k: v.to(device, non_blocking=True) for k, v in features.items()} for features in columns]
    return [(model(**features).last_hidden_state, features["attention_mask"]) for features in columns]


def embed_columns(model, columns, pooling="mean", pack=False, every_rank=False):
    """The siamese network: the same model embeds every column -> per column (n, D) sentence embeddings.
    `features` may hold token_type_ids or not; the model gets whatever the tokenizer produced."""
    return [pool(pooling, tokens, mask) for tokens, mask in token_embeddings(model, columns, pack, every_rank)]


def embed(model, features, pooling="mean", pack=False):
    """One tokenizer dict -> (B, D) sentence embeddings."""
    return embed_columns(model, [features], pooling, pack)[0]


@torch.inference_mode()
def encode(encoder, texts, batch_size=64, precision="fp32", progress=None, pack=None):
    """Texts -> (N, D) float32 embeddings in the order given: what evaluation and mining embed with.

    `encoder`: a SentenceEncoder (mnr/models.py). Texts are tokenized once, sorted by token count so each batch
    holds similar lengths, and embedded packed when the model can be (`pack` None: whenever it can); the
    caller's order is restored at the end. `precision`: "fp32" (scores comparable with published ones) or
    "bf16" (mnr/precision.py). `progress`: a description for a bar on stderr (None: no bar)."""
    model, tokenizer, pooling, max_length = encoder
    if not texts:
        return torch.empty(0, model.config.hidden_size)
    was_training = model.training
    model.eval()  # dropout off: embeddings must be deterministic
    device = next(model.parameters()).device
    pack = packing.can_pack(model) if pack is None else pack and packing.can_pack(model)
    ids = tokenizer(list(texts), max_length=max_length, truncation=True)["input_ids"]
    order = sorted(range(len(texts)), key=lambda i: -len(ids[i]))
    chunks = []
    for start in tqdm(range(0, len(order), batch_size), desc=progress, unit="batch", disable=progress is None):
        features = tokenizer.pad({"input_ids": [ids[i] for i in order[start:start + batch_size]]},
                                 padding="longest", return_tensors="pt")
        with autocast(device, precision):
            chunks.append(embed(model, features, pooling, pack).float().cpu())
    model.train(was_training)
    embeddings = torch.cat(chunks)  # (N, D), longest-first order
    return embeddings[torch.argsort(torch.tensor(order))]  # back to the caller's order
