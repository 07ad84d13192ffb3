"""Writing models to disk so that a crash never leaves a half-written folder that looks whole.

Everything is written under a temporary name in the destination's own folder (so the final rename stays on
one filesystem and is atomic) and swapped in only once complete.
"""
import json
import os
import shutil
import tempfile

from pooling import ST_POOLING_KEYS


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)


KEEP_PREFIXES = ("train_log", "checkpoint-")


def save_model(model, tokenizer, output_dir, config):
    """Write a folder that `transformers.AutoModel`, our evaluators and `SentenceTransformer(output_dir)` all
    load with the same pooling. It is written to a temporary sibling and swapped in only when complete, so a
    crash mid-save leaves the previous model intact; other files already in `output_dir` (the training
    log, checkpoints) are carried over."""
    output_dir = os.path.abspath(output_dir)
    parent = os.path.dirname(output_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(output_dir)}.tmp-", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the final folder should read like any other
    try:
        getattr(model, "module", model).save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        dim = getattr(model, "module", model).config.hidden_size
        write_json(os.path.join(tmp, "modules.json"), [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}])
        write_json(os.path.join(tmp, "sentence_bert_config.json"),
                   {"max_seq_length": config["MAX_LENGTH"], "do_lower_case": False})
        os.makedirs(os.path.join(tmp, "1_Pooling"))
        write_json(os.path.join(tmp, "1_Pooling", "config.json"),
                   {"word_embedding_dimension": dim, "pooling_mode_mean_sqrt_len_tokens": False,
                    **{key: name == config["POOLING"] for name, key in ST_POOLING_KEYS.items()}})
        write_json(os.path.join(tmp, "config_sentence_transformers.json"),
                   {"similarity_fn_name": "cosine", "prompts": {}, "default_prompt_name": None})
        write_json(os.path.join(tmp, "training_config.json"), config)
        if os.path.isdir(output_dir):
            for entry in os.listdir(output_dir):  # keep the run's log and checkpoints, not an old model's files
                if entry.startswith(KEEP_PREFIXES) and not os.path.exists(os.path.join(tmp, entry)):
                    shutil.move(os.path.join(output_dir, entry), os.path.join(tmp, entry))
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(output_dir)}.old-", dir=parent)
            os.rename(output_dir, os.path.join(old, "model"))
            os.rename(tmp, output_dir)
            shutil.rmtree(old)
        else:
            os.rename(tmp, output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
