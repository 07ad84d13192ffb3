"""The encoder: a pretrained model, its token embeddings, and the pooling that makes them one sentence embedding.

BERT returns one vector per token; a sentence embedding is a pooled summary of them. Rows in a batch are
padded to the same length, and pad positions still come out of BERT with (meaningless) vectors, so every
pooling here reads the attention mask and lets padding count for nothing. The numerics follow
sentence-transformers' `Pooling` module, so a saved model embeds the same in either library.
"""
import os

import torch

import hub
from errors import ModelError, first_line

POOLINGS = ("mean", "cls", "max")
# The flag each pooling sets in sentence-transformers' 1_Pooling/config.json.
ST_POOLING_KEYS = {"mean": "pooling_mode_mean_tokens", "cls": "pooling_mode_cls_token",
                   "max": "pooling_mode_max_tokens"}


def mean_pool(token_embeddings, attention_mask):
    """Average of the real tokens. (B, T, D), (B, T) -> (B, D)."""
    mask = attention_mask.unsqueeze(-1).to(token_embeddings.dtype)  # (B, T, 1): 1 on tokens, 0 on padding
    summed = (token_embeddings * mask).sum(dim=1)  # (B, D): padding contributes zeros
    # An all-padding row would divide by zero; the clamp turns it into a zero vector instead of NaN.
    counts = mask.sum(dim=1).clamp(min=1e-9)  # (B, 1)
    return summed / counts


def cls_pool(token_embeddings, attention_mask):
    """The first token's vector ([CLS]); padding sits at the end, so the mask is not needed."""
    return token_embeddings[:, 0]  # (B, D)


def max_pool(token_embeddings, attention_mask):
    """Per-dimension max over the real tokens. Padding is set to the dtype's lowest value first, so it never
    wins the max (a fixed -1e9 would overflow fp16)."""
    mask = attention_mask.unsqueeze(-1).bool()  # (B, T, 1)
    lowest = torch.finfo(token_embeddings.dtype).min
    return token_embeddings.masked_fill(~mask, lowest).max(dim=1).values  # (B, D)


def pool(name, token_embeddings, attention_mask):
    """The one entry point the scripts use: `pool("mean", tokens, mask)`."""
    if name == "mean":
        return mean_pool(token_embeddings, attention_mask)
    if name == "cls":
        return cls_pool(token_embeddings, attention_mask)
    if name == "max":
        return max_pool(token_embeddings, attention_mask)
    raise ValueError(f"unknown pooling {name!r}; choose one of {', '.join(POOLINGS)}")


def embed(model, features, pooling="mean"):
    """One tokenizer dict -> (B, D) sentence embeddings. The siamese network: the same model for every column.

    `features` may hold token_type_ids or not; the model gets whatever the tokenizer produced."""
    device = next(model.parameters()).device
    features = {k: v.to(device, non_blocking=True) for k, v in features.items()}
    token_embeddings = model(**features).last_hidden_state  # (B, T, D)
    return pool(pooling, token_embeddings, features["attention_mask"])


def autocast(device):
    """bf16 autocast on CUDA (halves activation memory; bf16 needs no loss scaling); plain fp32 on CPU."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def check_model_name(name):
    """Refuse at once a model path that cannot hold a model (a hub name is only checked when loading)."""
    if os.path.isdir(name):
        if not os.path.isfile(os.path.join(name, "config.json")):
            raise ModelError(f"{name}: holds no model (no config.json)")
    elif os.path.sep in name or name.startswith("."):
        raise ModelError(f"{name}: no such model folder")


def hub_alternative(name):
    """For `hub.check_inputs`: what to give instead of `name` when it would have to come from the hub (not a
    local folder, not in the local Hugging Face cache), else None."""
    if os.path.isdir(name):
        return None
    from huggingface_hub import try_to_load_from_cache
    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return None
    return f"--model-name FOLDER (a local model folder; {name} is not in the Hugging Face cache)"


def load_model(name, dropout=None):
    """A hub name or local folder -> (model, tokenizer). `dropout` overrides the model's dropout rates.

    Without network a hub name is looked up in the local Hugging Face cache only: one line at once, instead of
    a minute of retries."""
    import logging

    import transformers
    from transformers import AutoModel, AutoTokenizer

    transformers.logging.set_verbosity_error()  # the load report lists BERT's unused pooler head: noise here
    transformers.logging.disable_progress_bar()
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
    overrides = {} if dropout is None else {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
    check_model_name(name)
    offline = not os.path.isdir(name) and not hub.reachable()  # then only the local cache is looked in
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=offline)
        try:
            model = AutoModel.from_pretrained(name, add_pooling_layer=False, local_files_only=offline, **overrides)
        except TypeError:  # architectures without BERT's pooling layer do not take the argument
            model = AutoModel.from_pretrained(name, local_files_only=offline, **overrides)
    except (OSError, ValueError) as e:
        if offline:
            raise ModelError(f"{name}: not a local folder nor in the Hugging Face cache, and the hub is unreachable; "
                             "pass a local model folder to --model-name") from None
        raise ModelError(f"{name}: cannot load a model from it ({first_line(e, type(e).__name__)})") from None
    return model, tokenizer
