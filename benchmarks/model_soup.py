"""A model soup: the uniform average of the weights of several runs fine-tuned from the same start model (Wortsman
et al. 2022, "Model soups"; BAAI's LM-Cocktail merges embedding models the same way). Runs that differ only in
their seed end in the same basin of the loss, so the average of their weights is itself a good model, and often
better than each: their seed-to-seed wobble partly cancels. One model out, no training, no extra inference cost.

    python benchmarks/model_soup.py output/s5/epochs5-seed42 output/s5/epochs5-seed43 output/s5/epochs5-seed44 \\
        --output-dir output/s6/soup-epochs5

The soup takes every file but the weights from the first run (config, tokenizer, pooling, prompts), so the runs
must share them: the same tensor names and shapes, the same config.json and tokenizer; files of the user's in
the first run's folder are not copied. The folder is written under a temporary name and renamed into place; an
existing --output-dir is replaced only with --overwrite, and only when it holds nothing but a model of ours. Its
README.md names the runs it averages. compare_runs.py makes a preset's soup rows with it (mnr/presets.py,
"soups"): a soup's figure is one model's, so a row of soups holds several, each of its own disjoint seeds.
"""
import argparse
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from mnr import outdir  # noqa: E402
from mnr.checkpoint import STATE_FILE  # noqa: E402
from mnr.errors import ConfigError, exit_on_input_error  # noqa: E402
from mnr.files import removed_on_failure, temporary_folder  # noqa: E402
from mnr.models import check_model_names  # noqa: E402

WEIGHTS = "model.safetensors"
SHARED = ("config.json", "tokenizer.json")  # what the runs must have alike, as parsed JSON
# ... but for the tokenizer's padding and truncation: the state of its last call, not the vocabulary (a checkpoint
# saved mid-training holds the batch's padding, the final folder none), never a difference between models.
CALL_STATE = {"tokenizer.json": ("padding", "truncation")}
# What describes one run rather than the soup: left out of the copy of the first run's folder. A checkpoint's
# training state (optimiser moments, RNG) belongs to its own step: a soup of checkpoints is a model, not a resume.
ONE_RUN = {WEIGHTS, "README.md", "train_log.jsonl", "training_config.json", "scores.json", "command.json",
           outdir.MANIFEST, STATE_FILE}


def read_weights(folder):
    path = os.path.join(folder, WEIGHTS)
    if not os.path.isfile(path):
        raise ConfigError(f"{folder}: has no {WEIGHTS} (a sharded or .bin model is not averaged here)")
    return load_file(path)


def compared(path, name):
    """What of the JSON file `path` must be alike between the runs (None where it cannot be read)."""
    try:
        with open(path, encoding="utf-8") as f:
            content = json.load(f)
    except (OSError, ValueError):
        return None
    return {k: v for k, v in content.items() if k not in CALL_STATE.get(name, ())} if isinstance(content, dict) \
        else content


def same_files(folders):
    """Refuse, naming the folder, a run whose config or tokenizer differs from the first run's."""
    for name in SHARED:
        first = os.path.join(folders[0], name)
        if not os.path.isfile(first):
            continue
        expected = compared(first, name)
        for folder in folders[1:]:
            path = os.path.join(folder, name)
            if compared(path, name) != expected:
                raise ConfigError(f"{path}: differs from {first}: a soup averages runs of one model (same start)")


def average(folders):
    """-> {tensor name: the mean of the runs' tensors}, computed in float64 and stored in the first run's dtype."""
    runs = [read_weights(folder) for folder in folders]
    first = runs[0]
    for folder, weights in zip(folders[1:], runs[1:]):
        if weights.keys() != first.keys():
            odd = sorted(weights.keys() ^ first.keys())[0]
            raise ConfigError(f"{folder}: its tensors differ from {folders[0]}'s (first: {odd})")
        for name, tensor in weights.items():
            if tensor.shape != first[name].shape:
                raise ConfigError(f"{folder}: {name} has shape {list(tensor.shape)}, {folders[0]} "
                                  f"{list(first[name].shape)}")
    soup = {}
    for name, tensor in first.items():
        if not tensor.is_floating_point():  # integer buffers (position ids): alike in every run, kept as they are
            if any(not torch.equal(weights[name], tensor) for weights in runs[1:]):
                raise ConfigError(f"{name}: an integer tensor that differs between the runs cannot be averaged")
            soup[name] = tensor
            continue
        soup[name] = (sum(weights[name].double() for weights in runs) / len(runs)).to(tensor.dtype)
    return soup


def readme(folders):
    runs = "\n".join(f"- {folder}" for folder in folders)
    return (f"# A model soup of {len(folders)} runs\n\nThe uniform average of these runs' weights "
            f"(benchmarks/model_soup.py); every other file is the first run's:\n\n{runs}\n")


def write_soup(folders, output_dir, overwrite=False):
    """The soup into `output_dir`: written beside it, then renamed into place. An existing `output_dir` is refused,
    unless `overwrite` and it holds nothing but a model of ours (compare_runs.py remaking a soup whose runs
    changed): then the new folder takes its place in one exchange, as a training's save does (mnr/outdir.py)."""
    if os.path.lexists(output_dir) and not overwrite:
        raise ConfigError(f"--output-dir {output_dir}: already exists; give a new folder (a soup never replaces one)")
    outdir.check(output_dir, overwrite=True)  # a file, or a folder with files of the user's: refused
    soup = average(folders)
    parent = os.path.dirname(os.path.abspath(output_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = temporary_folder(parent, os.path.basename(output_dir))
    with removed_on_failure(tmp, f"--output-dir {output_dir}: could not write the soup ({{reason}})"):
        open(os.path.join(tmp, outdir.INCOMPLETE), "w").close()  # all of tmp is ours until it is complete
        listed = outdir.read_manifest(folders[0]) or set()
        for entry in os.listdir(folders[0]):  # a model's files only: none of the user's, none of one run's
            src = os.path.join(folders[0], entry)
            model_file = entry in listed or entry in outdir.SAVED_NAMES or outdir.MODULE_FOLDER.match(entry)
            if not model_file or entry in ONE_RUN or outdir.CHECKPOINT.match(entry):
                continue
            (shutil.copytree if os.path.isdir(src) else shutil.copy2)(src, os.path.join(tmp, entry))
        save_file(soup, os.path.join(tmp, WEIGHTS), metadata={"format": "pt"})
        with open(os.path.join(tmp, "README.md"), "w", encoding="utf-8") as f:
            f.write(readme(folders))
        outdir.write_manifest(tmp)
        swapped = outdir.swap(tmp, output_dir)
    if swapped:  # tmp holds the earlier soup now: nothing of the user's in it (checked above), all of it ours
        outdir.discard(tmp, output_dir)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="two or more model folders fine-tuned from the same start model")
    parser.add_argument("--output-dir", required=True, help="a new folder for the soup")
    parser.add_argument("--overwrite", action="store_true", help="replace --output-dir when it holds nothing but a "
                        "model of ours (files of yours there are refused, never deleted)")
    args = parser.parse_args(argv)
    with exit_on_input_error():
        if len(args.runs) < 2:
            raise ConfigError("give two or more model folders to average")
        check_model_names(args.runs)
        same_files(args.runs)
        write_soup(args.runs, args.output_dir, args.overwrite)
    print(f"wrote {args.output_dir}: the average of {len(args.runs)} runs' weights")


if __name__ == "__main__":
    main()
