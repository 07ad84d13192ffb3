"""Step 9 of the tutorial, save: a folder that transformers and sentence-transformers both load.

The weights are written first, then what sentence-transformers reads to rebuild the same pooling, then the model
card. The folder is written under a temporary name beside OUTPUT_DIR and swapped in whole (mnr/outdir.py):
  - the weights cannot be written (disk full, no permission, a file-size limit): one `error:` line with the path
    and the system's reason; the model already in OUTPUT_DIR is untouched;
  - the weights are written but a later file fails (the card, a sentence-transformers file): the folder is
    swapped in all the same, weights and tokenizer complete, and one `error:` line names what is missing.
"""
import os
import shutil

import torch

from mnr import outdir, prompts
from mnr.errors import SaveError, first_line
from mnr.files import follow_umask, read_json, removed_on_failure, temporary_folder, write_json
from mnr.model_card import module_kind, write_model_card
from mnr.models import MAX_LENGTH, SBERT_CONFIG, cached_folder, pooling_table, st_pooling_key

def start_model_folder(name):
    """The start model (--model-name) on disk: the folder itself, or its snapshot in the local Hugging Face cache;
    None when it is in neither (the saved folder then holds only what training knows)."""
    return name if os.path.isdir(name) else cached_folder(name)


def modules_after_pooling(start):
    """The start model's sentence-transformers modules after Pooling (Normalize, Dense, ...) as listed in its
    modules.json, in order; [] when it has none."""
    modules = read_json(os.path.join(start, "modules.json"), [])
    kinds = [module_kind(m) for m in modules]
    return modules[kinds.index("Pooling") + 1:] if "Pooling" in kinds else []


def start_pooler(start, prefix):
    """The start model's pooler.* weights, unchanged. load_model drops BERT's pooler (no pooling here uses it), but
    `AutoModel.from_pretrained` of the saved folder builds one: without these it would be random, and reported
    missing. Keys saved from a task model (`bert.pooler...`) lose the base model's prefix."""
    files = [os.path.join(start, "model.safetensors")]
    index = read_json(os.path.join(start, "model.safetensors.index.json"), None)
    if index:
        files = sorted({os.path.join(start, shard) for shard in index["weight_map"].values()})
    pooler = {}
    if all(os.path.isfile(f) for f in files):
        from safetensors import safe_open
        for path in files:
            with safe_open(path, "pt") as f:
                pooler.update({k.removeprefix(prefix + "."): f.get_tensor(k) for k in f.keys()
                               if k.removeprefix(prefix + ".").startswith("pooler.")})
    elif os.path.isfile(os.path.join(start, "pytorch_model.bin")):
        state = torch.load(os.path.join(start, "pytorch_model.bin"), map_location="cpu", weights_only=True)
        pooler = {k.removeprefix(prefix + "."): v for k, v in state.items()
                  if k.removeprefix(prefix + ".").startswith("pooler.")}
    return pooler


def sentence_bert_config(start, config, facts):
    """sentence_bert_config.json: the start model's, max_seq_length included, unless the run set MAX_LENGTH away
    from its default; then the run's. MAX_LENGTH is how much of each training sentence the model saw, not a limit
    on what it can encode: a default left alone says nothing, and the start model's limit (256 for MiniLM)
    keeps the saved model encoding long inputs as the start model did. A MAX_LENGTH the user chose is kept."""
    default = (facts or {}).get("defaults", {}).get("MAX_LENGTH", MAX_LENGTH)
    st_config = {"max_seq_length": config["MAX_LENGTH"], "do_lower_case": False}
    st_config.update(read_json(os.path.join(start, SBERT_CONFIG), {}) if start else {})
    if config["MAX_LENGTH"] != default:
        st_config["max_seq_length"] = config["MAX_LENGTH"]
    return st_config


def write_weights(model, tokenizer, folder, start):
    """The transformers part, which alone makes a usable model: weights (safetensors, fp32 whatever autocast
    computed in), config and tokenizer, plus the start model's pooler weights (from the folder `start`, None when
    not on disk) so AutoModel finds them."""
    state = model.state_dict()
    pooler = {k: v for k, v in start_pooler(start, model.base_model_prefix).items() if k not in state} if start else {}
    model.save_pretrained(folder, state_dict={**state, **pooler} if pooler else None, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def write_sentence_transformers_files(model, folder, start, config, facts=None):
    """What sentence-transformers reads to rebuild the same pooling, so all three loaders give the same
    embeddings; the start model's modules after pooling (Normalize, Dense) are kept. Then training_config.json.
    A pooling sentence-transformers cannot express (None in pooling.py's table) gets no modules.json: with one,
    sentence-transformers would load the folder with some other pooling and say nothing; without, it says it
    found no sentence-transformers model. Our loaders read POOLING from training_config.json instead."""
    write_json(os.path.join(folder, SBERT_CONFIG), sentence_bert_config(start, config, facts))
    write_json(os.path.join(folder, "training_config.json"), config)
    key = st_pooling_key(config["POOLING"])
    if key is None:
        return
    later = modules_after_pooling(start) if start else []
    for module in later:  # Normalize has no files; Dense has its weights and config
        if module.get("path") and os.path.isdir(os.path.join(start, module["path"])):
            shutil.copytree(os.path.join(start, module["path"]), os.path.join(folder, module["path"]))
    write_json(os.path.join(folder, "modules.json"), [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        *[dict(module, idx=i, name=str(i)) for i, module in enumerate(later, start=2)]])
    os.makedirs(os.path.join(folder, "1_Pooling"), exist_ok=True)
    flags = {other: other == key for _, other in pooling_table().values() if other}  # every flag the table knows
    write_json(os.path.join(folder, "1_Pooling", "config.json"),
               {"word_embedding_dimension": model.config.hidden_size, **flags})
    write_json(os.path.join(folder, "config_sentence_transformers.json"),  # the prompts trained with (mnr/prompts.py)
               {"similarity_fn_name": "cosine", **prompts.saved_config(start, config)})


def no_sentence_transformers_note(config, shown_as):
    """The one line a save of a pooling sentence-transformers cannot express prints; None for every other."""
    if st_pooling_key(config["POOLING"]) is not None:
        return None
    return (f"note: {shown_as}: sentence-transformers has no {config['POOLING']!r} pooling, so the folder holds no "
            "sentence-transformers files; the weights, tokenizer and model card (with the pooling's code for "
            "transformers) are saved, and this project's evaluators and miner read its pooling")


def write_model_files(model, tokenizer, folder, config, facts=None, shown_as=None):
    """Every file of a saved model into `folder`: the weights first; then the rest, whose failure -> the error
    text (the weights stay), else None. A failure to write the weights raises SaveError naming `shown_as`."""
    shown_as = shown_as or folder
    model = getattr(model, "module", model)  # unwrap DDP
    start = start_model_folder(config["MODEL_NAME"])  # what the start model had beyond the trained encoder
    try:
        write_weights(model, tokenizer, folder, start)
    except Exception as e:  # noqa: BLE001 - safetensors reports a full disk as its own error type, not OSError
        raise SaveError(f"{shown_as}: could not write the model's weights ({first_line(e, type(e).__name__)}); "
                        "the model that was there before is untouched") from None
    try:
        write_sentence_transformers_files(model, folder, start, config, facts)
        write_model_card(folder, config, facts)  # last: it describes the files above
    except Exception as e:  # noqa: BLE001 - a card that cannot be written must not cost the trained weights
        return f"{type(e).__name__}: {first_line(e)}"
    return None


def save_model(model, tokenizer, output_dir, config, facts=None, log_path=None):
    """The final model, swapped in whole (mnr/outdir.py): written to a temporary folder beside `output_dir`, then
    exchanged with it in one atomic step, so `output_dir` holds the earlier model or the new one at every instant.
    Into the new folder go this run's log (`log_path`, the in-progress log, as train_log.jsonl) and the
    checkpoints in `output_dir` (hard links: no copy); entries of the earlier folder that we did not write are
    moved across, never deleted. `facts`: what the training loop measured, for the model card."""
    facts = dict(facts or {}, path=output_dir)  # the card names the folder as the user typed it
    shown_as, output_dir = output_dir, os.path.abspath(output_dir)
    parent = os.path.dirname(output_dir)
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = temporary_folder(parent, os.path.basename(output_dir))
        open(os.path.join(tmp, outdir.INCOMPLETE), "w").close()  # all of tmp is ours until it is complete
    except OSError as e:
        raise SaveError(f"{shown_as}: cannot write there ({e.strerror})") from None
    with removed_on_failure(tmp, f"{shown_as}: could not save the model ({{reason}}); the model that was there "
                                 "before is untouched"):
        incomplete = write_model_files(model, tokenizer, tmp, config, facts, shown_as)
        carry_over(output_dir, tmp, log_path)
        outdir.write_manifest(tmp)
        follow_umask(tmp)  # after the links above: they share their files' modes with the originals
        swapped = outdir.swap(tmp, output_dir)
    try:  # outside the block above: tmp may now hold the earlier folder, with files of the user's to move across
        if swapped:
            outdir.discard(tmp, output_dir)
    except OSError as e:
        raise SaveError(f"{shown_as}: the new model is saved, but the earlier one could not be cleared away "
                        f"({e.strerror}); it is in {tmp}") from None
    note = no_sentence_transformers_note(config, shown_as)
    if note:
        print(note, flush=True)
    if incomplete:
        raise SaveError(f"{shown_as}: the weights and tokenizer are saved, but the model card or the "
                        f"sentence-transformers files could not be written ({incomplete})")


def carry_over(output_dir, tmp, log_path):
    """This run's log and checkpoints, hard-linked into the new folder `tmp` (a copy where links are refused)."""
    def link(src, dst):
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
    if log_path and os.path.isfile(log_path):
        link(log_path, os.path.join(tmp, "train_log.jsonl"))
    for entry in os.listdir(output_dir) if os.path.isdir(output_dir) else []:
        if outdir.CHECKPOINT.match(entry) and not entry.startswith(".") and \
                not os.path.exists(os.path.join(tmp, entry)):
            shutil.copytree(os.path.join(output_dir, entry), os.path.join(tmp, entry), copy_function=link)


def report_saved(output_dir, seconds, checkpoints):
    """Where the model is, and what checkpoints remain beside it (they are not needed to use the model)."""
    print(f"saved to {output_dir} (training took {seconds / 60:.1f} min)")
    for path in checkpoints:
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)
        print(f"  checkpoint kept: {path} ({size / 2 ** 20:.0f} MB): delete it if you will not resume or inspect it")
