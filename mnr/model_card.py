"""The model card: a README.md in every saved model folder, so a folder found months later says what it is, how it
was made and how to load it.

Written with the model, from the run's hyperparameters and what the training loop measured; no network. The YAML
front matter is the metadata the Hugging Face hub reads (base model, library, task, tags, datasets, and the last
STSb dev score in the hub's model-index format); the text after it is for people. Paths and the command appear
as the user typed them.
"""
import functools
import json
import math
import os
import re
import shlex

import torch

from mnr.files import read_json
from mnr.hub import NLI_HUB_DATASETS, STS_HUB, hub_id
from mnr.matryoshka import parse_dims
from mnr.models import SBERT_CONFIG, pooling_source, pooling_table, st_pooling_key

# --loss -> (the sentence-transformers class that computes the same loss, for the hub's loss: tag; its name here).
# A loss not in this table (one a user added to train_bidirectional.LOSSES) is described by its docstring's first
# line, given by the training loop as facts["loss_description"], and gets no loss: tag.
LOSSES = {
    "mnr": ("MultipleNegativesRankingLoss", "Multiple Negatives Ranking loss (Henderson et al. 2017)"),
    "bidirectional": ("MultipleNegativesRankingLoss",  # with all four directions under one softmax
                      "GTE's improved contrastive loss (Li et al. 2023): Multiple Negatives Ranking in four "
                      "directions"),
    "symmetric": ("MultipleNegativesSymmetricRankingLoss",
                  "symmetric Multiple Negatives Ranking loss (query to document and document to query)"),
}
EXAMPLE = json.dumps(["A man is playing a guitar.", "Someone plays an instrument."])  # what the examples embed
def to_yaml(value, indent=""):
    """Block-style YAML lines for nested dicts and lists. Scalars are written as JSON (JSON strings, numbers,
    true/false/null are valid YAML), so no value needs YAML's own quoting rules."""
    lines = []
    items = value.items() if isinstance(value, dict) else ((None, v) for v in value)
    for key, item in items:
        head = f"{indent}{key}:" if key is not None else f"{indent}-"
        if isinstance(item, (dict, list)):
            nested = to_yaml(item, indent + "  ")
            if key is None:  # a list item that is a mapping starts on the dash's line
                lines += [f"{head} {nested[0].lstrip()}", *nested[1:]]
            else:
                lines += [head, *nested]
        else:
            lines.append(f"{head} {json.dumps(item, ensure_ascii=False)}")
    return lines


def module_kind(module):
    """A modules.json entry's kind: "Normalize" for sentence_transformers.models.Normalize."""
    return module["type"].rsplit(".", 1)[-1]


def loss_key(config):
    return config.get("LOSS", "mnr")  # only train_bidirectional.py has --loss; train_mnr.py trains MNR


def matryoshka_dims(config):
    return parse_dims(config.get("MATRYOSHKA_DIMS"))[0] or []  # "384,256,128" as typed, or already a list


def loss_description(config, facts):
    """What the card calls the run's loss: the table's name, else the loss function's own docstring line."""
    key = loss_key(config)
    return LOSSES[key][1] if key in LOSSES else facts.get("loss_description") or f"the loss `{key}`"


def train_datasets(config):
    """Hub datasets the run trained on; local files are no hub dataset, so they are named in the text only."""
    if config.get("TRAIN_DATA"):
        return [config["TRAIN_DATA"]] if hub_id(config["TRAIN_DATA"]) else []
    return NLI_HUB_DATASETS if config.get("NLI_DATA") == "hub" else []


def data_name(config, facts):
    """What the run trained on, as the loop described it or as the user typed it; None when neither says."""
    if facts.get("data", {}).get("source"):
        return facts["data"]["source"]
    if config.get("TRAIN_DATA"):
        return f"`{config['TRAIN_DATA']}`"
    if config.get("NLI_DATA") == "hub":
        return "SNLI + MultiNLI from the hub (" + ", ".join(NLI_HUB_DATASETS) + ")"
    return f"NLI pairs from `{config['NLI_DATA']}`" if config.get("NLI_DATA") else None


def sts_result(config, scores, name):
    """The last STSb dev Spearman in the hub's model-index format; None when the run evaluated none."""
    if not scores or not math.isfinite(scores[-1][1]):
        return None
    dataset = {"name": "STSb dev", "type": "sts-dev"}  # a local STSb copy: no hub id to point at
    if config.get("STS_DATA") == "hub":
        hub_name, hub_config, split = STS_HUB["dev"][:3]
        dataset = {"name": "STSb dev", "type": hub_name, "config": hub_config, "split": split}
    return [{"name": name, "results": [{
        "task": {"type": "semantic-similarity", "name": "Semantic Similarity"},
        "dataset": dataset,
        "metrics": [{"type": "spearman_cosine", "value": round(scores[-1][1], 4), "name": "Spearman Cosine"}]}]}]


def front_matter(config, facts, name):
    meta = {}
    if hub_id(config.get("MODEL_NAME"), bare=True):  # the hub refuses a base_model that is no hub model id (a local path)
        meta["base_model"] = config["MODEL_NAME"]
    meta["library_name"] = "sentence-transformers"
    meta["pipeline_tag"] = "sentence-similarity"
    if not config.get("TRAIN_DATA"):
        meta["language"] = ["en"]  # SNLI and MultiNLI are English
    tags = ["sentence-transformers", "sentence-similarity", "feature-extraction"]
    tags += [f"loss:{LOSSES[loss_key(config)][0]}"] if loss_key(config) in LOSSES else []
    meta["tags"] = tags + (["loss:MatryoshkaLoss"] if matryoshka_dims(config) else [])
    datasets, result = train_datasets(config), sts_result(config, facts.get("sts_dev"), name)
    if datasets:
        meta["datasets"] = datasets
    if result:
        meta["model-index"] = result
    return ["---", *to_yaml(meta), "---"]


def cell(value):
    return repr(value).replace("|", "\\|")  # a | inside a Markdown table cell would split it


def duration(seconds):
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d} (h:mm:ss)"


def training_section(config, facts):
    lines = ["## How it was trained", ""]
    if facts.get("command"):
        command = shlex.join(facts["command"])
        python = "python " if facts["command"][0].endswith(".py") else ""  # argv holds the script, not the interpreter
        lines += ["```bash", python + command, "```", ""]
    run = []
    if "steps" in facts:
        run.append(f"{facts['steps']:,} steps" + (f" of {facts['total_steps']:,}" if "total_steps" in facts else ""))
    if "wall_time_s" in facts:
        run.append(f"in {duration(facts['wall_time_s'])}")
    if "device" in facts:
        run.append(f"on {facts['device']}")
    if run:
        lines += [f"Trained for {' '.join(run)}.", ""]
    if facts.get("loss"):  # what make_loss built, so a forked loss is named by what it is
        lines += [f"Loss: {facts['loss']}.", ""]
    if facts.get("loss_parameters"):  # a loss module's learned values (a temperature) at the end of training
        lines += ["Learned loss parameters: " + ", ".join(f"`{k}` = {v!r}" for k, v in facts["loss_parameters"].items())
                  + ".", ""]
    data = facts.get("data")
    if data and set(data) - {"source"}:  # the source alone is already named at the top
        labels = {"source": "Source", "rows": "Rows", "pairs": "Pairs", "negatives_per_row": "Negatives per row"}
        lines += ["### Data", ""] + [f"- {labels.get(k, k)}: {f'{v:,}' if isinstance(v, int) else v}"
                                     for k, v in data.items()] + [""]
    return lines


def hyperparameter_section(config, facts):
    defaults = facts.get("defaults")
    lines = ["### Hyperparameters", ""]
    if not defaults:
        lines += ["| Hyperparameter | Value |", "| --- | --- |"]
        return lines + [f"| `{k}` | {cell(v)} |" for k, v in config.items()] + [""]
    changed = [k for k in config if k in defaults and config[k] != defaults[k]]
    lines += ["Changed from the defaults:" if changed else "All at their defaults.", ""]
    lines += [f"- `{k}` = {config[k]!r} (default {defaults[k]!r})" for k in changed] + ([""] if changed else [])
    lines += ["| Hyperparameter | Value | Default |", "| --- | --- | --- |"]
    lines += [f"| `{k}` | {cell(v)} | {cell(defaults[k]) if k in defaults else ''} |" for k, v in config.items()]
    return lines + [""]


def sts_section(scores):
    if not scores:
        return []
    lines = ["### STSb dev along training", "", "Spearman correlation of cosine similarity with the gold scores "
             "(step 0: the start model).", "", "| Step | Spearman |", "| --- | --- |"]
    return lines + [f"| {step:,} | {score:.4f} |" for step, score in scores] + [""]


def beir_section(scores, folder):
    if not scores:
        return []
    lines = ["### Retrieval dev along training", "", f"nDCG@10 on the dev split of `{folder}` (qrels/dev.tsv; step 0: "
             "the start model).", "", "| Step | nDCG@10 |", "| --- | --- |"]
    return lines + [f"| {step:,} | {score:.4f} |" for step, score in scores] + [""]


def prompts_section(prompts):
    """The prompts the model was trained with: a query embedded without its prompt is not what the model learnt."""
    shown = {name: text for name, text in (prompts or {}).items() if text}
    if not shown:
        return []
    listed = ", ".join(f"{name} `{json.dumps(text)}`" for name, text in shown.items())
    return ["## Prompts", "", f"Trained with these prompts before the texts: {listed}. sentence-transformers adds "
            "them in `encode_query` and `encode_document` (this folder's config_sentence_transformers.json); "
            "with transformers, put them before the texts yourself.", ""]


def matryoshka_section(dims, path):
    if not dims:
        return []
    dims_text = ", ".join(map(str, dims))
    return ["## Matryoshka dimensions", "",
            f"Trained with the loss applied to the embeddings cut to their first {dims_text} dimensions as well, so "
            "each cut is an embedding on its own: keep the first d dimensions and compare by cosine similarity "
            "(or renormalise). In sentence-transformers:", "",
            "```python", "from sentence_transformers import SentenceTransformer", "",
            f"model = SentenceTransformer({json.dumps(path)}, truncate_dim={dims[-1]})", "```", "",
            f"STSb score of a cut: `python evaluate_sts.py {shlex.quote(path)} --truncate-dim {dims[-1]}`.", ""]


def pooling_code(pooling):
    """How the transformers example turns token vectors (B, T, D) into one vector per sentence: the pooling's own
    function, copied from pooling.py's table, then called."""
    function = pooling_table()[pooling][0]
    return [*pooling_source(pooling).splitlines(), "", "",
            f"embeddings = {function}(tokens, batch[\"attention_mask\"])  # (B, D)"]


def usage_section(path, pooling, normalize, max_length, dense, dims):
    if st_pooling_key(pooling) is None:  # mnr/save.py wrote no sentence-transformers files
        lines = ["## Usage", "", f"sentence-transformers has no {pooling!r} pooling, so this folder holds no "
                 "sentence-transformers files: load it with transformers, as below, or score it with this "
                 "project's evaluate_sts.py and evaluate_retrieval.py.", ""]
    else:
        lines = ["## Usage", "", "With sentence-transformers:", "", "```python",
                 "from sentence_transformers import SentenceTransformer", "",
                 f"model = SentenceTransformer({json.dumps(path)})",
                 f"embeddings = model.encode({EXAMPLE})",
                 "print(model.similarity(embeddings, embeddings))  # cosine similarities", "```", ""]
    if dense:
        return lines + [f"The folder also holds {', '.join(dense)} after pooling, which only sentence-transformers "
                        "applies: load it with sentence-transformers.", ""]
    lines += [f"With transformers alone ({pooling} pooling{', then L2 normalisation' if normalize else ''}):", "",
              "```python", "import torch", *(["import torch.nn.functional as F"] if normalize else []),
              "from transformers import AutoModel, AutoTokenizer", "",
              f"tokenizer = AutoTokenizer.from_pretrained({json.dumps(path)})",
              f"model = AutoModel.from_pretrained({json.dumps(path)})",
              f"batch = tokenizer({EXAMPLE},",
              f"                  padding=True, truncation=True, max_length={max_length}, return_tensors=\"pt\")",
              "with torch.no_grad():", "    tokens = model(**batch).last_hidden_state  # (B, T, D)", "", "",
              *pooling_code(pooling)]
    if dims:
        lines.append(f"# embeddings = embeddings[:, :{dims[-1]}]  # a Matryoshka cut: only the first {dims[-1]}")
    if normalize:
        lines.append("embeddings = F.normalize(embeddings, p=2, dim=1)  # unit length, as the Normalize module does")
    return lines + ["```", ""]


def intro(config, facts, kinds, size, max_length):
    start, data = config.get("MODEL_NAME", "?"), data_name(config, facts)
    vector = f"a {size}-dimensional vector" if size else "one vector"
    return (f"A sentence embedding model: `{start}` fine-tuned with {loss_description(config, facts)}"
            f"{f' on {data}' if data else ''}. It maps a sentence to {vector}"
            f"{' of unit length' if 'Normalize' in kinds else ''}; sentences that mean the same get vectors with a "
            f"high cosine similarity. Inputs are cut at {max_length} tokens.")


def first_line(doc):
    """A docstring's first line, without its full stop."""
    return (doc or "").strip().split("\n")[0].rstrip(".")


def describe_loss(loss):
    """What built the loss, for the card: each layer, outermost first, by its name (a module's class, a function's
    name, the function a functools.partial fixes, "a lambda"), its docstring's first line and its settings (a
    partial's arguments, a module's plain attributes). The layer that only gathers the batch is left out."""
    layers = []
    while loss is not None:
        settings, inner = {}, None
        while isinstance(loss, functools.partial):  # partial(f, scale=20.0): f, with its fixed arguments
            settings = {**({"args": loss.args} if loss.args else {}), **loss.keywords, **settings}
            loss = loss.func
        if isinstance(loss, torch.nn.Module):
            inner = getattr(loss, "loss", None)
            settings.update({k: v for k, v in vars(loss).items() if not k.startswith("_") and k not in
                             ("training", "loss", "left_out") and isinstance(v, (bool, int, float, str, list, tuple))})
            name, doc = type(loss).__name__, type(loss).__doc__
        else:
            name, doc = getattr(loss, "__name__", type(loss).__name__), getattr(loss, "__doc__", None)
        if name != "InBatch":  # mnr/distributed.py's plumbing: every process's candidates, nothing of the loss
            text = ("a lambda" if name == "<lambda>" else f"`{name}`") + (f": {first_line(doc)}" if doc else "")
            layers.append(text + (f" ({', '.join(f'{k}={v!r}' for k, v in settings.items())})" if settings else ""))
        loss = inner
    return " around ".join(layers)


def loss_parameters(loss):
    """A loss module's learned values -> {name: value} (plain numbers and lists), for the log and the card; {} for a
    function or a module without parameters."""
    if not isinstance(loss, torch.nn.Module):
        return {}
    # named as the loss built on names them, not by the wrappers' nesting (loss.loss.log_scale)
    return {re.sub(r"^(loss\.)+", "", name): p.detach().cpu().tolist() for name, p in loss.named_parameters()}


def innermost(loss):
    """The loss the wrappers (GIST, Matryoshka, the batch's gather, a partial) are built around."""
    while True:
        if isinstance(loss, functools.partial):
            loss = loss.func
        elif isinstance(loss, torch.nn.Module) and getattr(loss, "loss", None) is not None:
            loss = loss.loss
        else:
            return loss


def run_facts(config, defaults, command, device, rows, total_steps, loss_fn=None):
    """What the training loop hands the card at start-up (steps, time and STSb dev scores are added as it goes):
    `config`/`defaults` the UPPERCASE hyperparameters and their defaults, `rows` the training tuples, `loss_fn`
    the loss the loop calls (described by what built it; its innermost function's docstring names a loss the
    card's table does not know)."""
    width = len(rows[0])
    base = innermost(loss_fn)
    doc = first_line(type(base).__doc__ if isinstance(base, torch.nn.Module) else getattr(base, "__doc__", None))
    return {"command": command, "defaults": defaults, "device": str(device), "total_steps": total_steps,
            "loss_description": doc or None, "loss": describe_loss(loss_fn) if loss_fn is not None else None,
            "sts_dev": [], "beir_dev": [], "data": {"source": config["TRAIN_DATA"] or config["NLI_DATA"],
                                    "pairs" if width == 2 else "rows": len(rows), "negatives_per_row": width - 2}}


def write_model_card(folder, config, facts=None):
    """README.md in `folder`, written last: it describes the model files already there (modules.json,
    1_Pooling, sentence_bert_config.json). `config`: the run's UPPERCASE hyperparameters. `facts` (all optional):
    command, defaults, data, steps, total_steps, wall_time_s, device, sts_dev ([step, spearman] pairs), and path
    (the folder as the user will find it; else OUTPUT_DIR)."""
    import torch
    import transformers
    facts = facts or {}
    path = facts.get("path") or config.get("OUTPUT_DIR") or folder
    name = os.path.basename(os.path.normpath(path))
    kinds = [module_kind(m) for m in read_json(os.path.join(folder, "modules.json"), [])]
    size = read_json(os.path.join(folder, "1_Pooling", "config.json"), {}).get("word_embedding_dimension")
    max_length = read_json(os.path.join(folder, SBERT_CONFIG), {}).get(
        "max_seq_length", config.get("MAX_LENGTH"))
    dims = matryoshka_dims(config)
    lines = [*front_matter(config, facts, name), "", f"# {name}", "", intro(config, facts, kinds, size, max_length), ""]
    lines += training_section(config, facts) + hyperparameter_section(config, facts) + sts_section(facts.get("sts_dev"))
    lines += beir_section(facts.get("beir_dev"), config.get("EVAL_BEIR"))
    lines += usage_section(path, config.get("POOLING", "mean"), "Normalize" in kinds, max_length,
                           [k for k in kinds if k not in ("Transformer", "Pooling", "Normalize")], dims)
    lines += matryoshka_section(dims, path)
    lines += prompts_section(read_json(os.path.join(folder, "config_sentence_transformers.json"), {}).get("prompts"))
    lines += ["## Versions", "", f"- torch {torch.__version__}", f"- transformers {transformers.__version__}", ""]
    with open(os.path.join(folder, "README.md"), "w") as f:
        f.write("\n".join(lines))
