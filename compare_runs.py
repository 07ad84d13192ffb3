"""The tutorial's results table, measured in one command: several runs trained side by side, then scored alike.

    python compare_runs.py --preset cpu          # MNR, bidirectional, symmetric and the library's MNR (~50 min, 2 cores)
    python compare_runs.py --preset negatives    # in-batch only vs hard negatives: NLI, mined, guided (3 seeds)
    python compare_runs.py --preset matryoshka   # plain MNR vs Matryoshka MNR, STSb test at each cut (3 seeds)
    python compare_runs.py --preset precision    # MNR and Matryoshka trained in fp32 and in bf16 (3 seeds)
    python compare_runs.py --preset scifact      # SciFact: in-batch, mined, batch 128, hardness, clustered (~40 min a seed)
    python compare_runs.py --preset batch        # NLI at batch 16 to 1024, and the three batch samplers (3 seeds)
    python compare_runs.py --preset gpu          # the tutorial's recipe: bert-base-uncased, SNLI + MultiNLI from the hub
    python compare_runs.py --preset smoke --model-name PATH   # a few steps of everything (what the tests run)
    python compare_runs.py --preset beir --beir FOLDER     # your BEIR folder: the start model vs the scifact recipe
    python compare_runs.py --preset beir --beir FOLDER --report-test   # ... the final run: scored on its test split

Every run of a preset starts from the same model, data, batch size and number of steps (one epoch of the local
pairs at batch 32 unless said otherwise); with --seeds N each run is trained N times (seeds 42, 43, ...) and
reported as mean +/- standard deviation over the seeds, so a difference can be told from seed noise. Trained
models and the untrained start model are scored on STSb dev and test (evaluate_sts.py) and on the NLI retrieval
task (evaluate_retrieval.py), or a BEIR folder's split. Writes results/NAME/: results.md (the table and the exact
commands, paths relative to the repository), results.json (per-seed values too, and each run's first-seed mining
and training commands) and curves.png (loss and STSb dev over steps); --preset beir writes them beside its
models, in output/compare-beir-NAME (README, "Your own data"). The presets themselves, the runs and their flags,
are in mnr/presets.py. A soup row (a preset's "soups") trains another row with more seeds and scores the weight
averages of its runs (benchmarks/model_soup.py), each model of the row from its own runs, so its ± is a spread too.
A run whose output folder already holds a model trained with the same command by the same training code (a
digest of its files) is reused, so a table can be completed over more than one sitting; mined files likewise.
"""
import functools
import json
import os
import shlex
import subprocess
import sys
import time

import torch

import data_prep
from mnr import outdir, prompts, recipe, report, retrieval, samplers, sts
from mnr.report import shown
from mnr.errors import ConfigError, exit_on_input_error
from mnr.files import ROOT, code_version, read_json, write_json_atomic
from mnr.precision import resolve
from mnr.stats import mean_std, paired_over_seeds
from mnr.flags import new_parser, parse_flags
from mnr.models import load_encoder, packaged_minilm
from mnr.presets import MINED, PRESETS, SOUP, STS  # the tables of runs (mnr/presets.py): data, not code
from mnr.tables import load_train_data
from pooling import encode

SAMPLE_STS = os.path.join("tests", "data", "stsb")  # STSb's shipped sample, where the full files are not here
SCORING_SCRIPTS = ["mnr/sts.py", "mnr/retrieval.py", "mnr/prompts.py"]  # what score() computes with, imports included


def run_once(command, out, log_path, product="model.safetensors", inputs=None):
    """Run one command (training, or mining with product=its file) unless `out` holds `product` made by the very
    same command and the same code, from the same `inputs` where given (a soup: its runs' own stamps, so a run
    trained again makes the soup again, though the soup's command names the same folders)."""
    out = os.path.join(ROOT, out)
    stamp = os.path.join(out, "command.json")
    made_by = {"command": command, "code": code_version([command[0]]), **({"inputs": inputs} if inputs else {})}
    stamped = read_json(stamp, {})
    if os.path.isfile(os.path.join(out, product)) and {key: stamped.get(key) for key in made_by} == made_by:
        print(f"reusing {os.path.relpath(out, ROOT)}", flush=True)
        return None
    print("$ python " + shlex.join(command), flush=True)
    started = time.perf_counter()
    replace = []
    if os.path.lexists(os.path.join(out, product)):  # made by other code or another command: ours to replace
        for own in ("command.json", "scores.json"):
            if os.path.isfile(os.path.join(out, own)):
                os.remove(os.path.join(out, own))
        replace = ["--overwrite"]  # the scripts refuse to replace a model or table without it
    with open(log_path, "w") as log:
        result = subprocess.run([sys.executable, *command, *replace], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    with open(log_path) as f:  # the log is a results file: no path of this machine in it
        text = shown(f.read(), packaged_minilm())
    with open(log_path, "w") as f:
        f.write(text)
    if result.returncode != 0:
        sys.exit(f"error: {shlex.join(command)} failed (exit {result.returncode}); see {log_path}")
    os.makedirs(out, exist_ok=True)
    with open(stamp, "w") as f:  # with the command's wall time: the table's "minutes"
        json.dump({**made_by, "seconds": round(time.perf_counter() - started, 1)}, f)
    outdir.adopt(out, "command.json", "scores.json")  # ours too: a later --overwrite may replace them


def stamp_of(folder):
    """What made `folder` (its command.json, written by run_once: command, code, inputs, seconds); None if nothing
    here did."""
    return read_json(os.path.join(ROOT, folder, "command.json"), None)


def foreign_files(folder):
    """Entries of `folder` that are not compare_runs' own: its results, logs, and the folders it trained or mined,
    or derived from a BEIR folder (--preset beir: a carved dev split, a cap)."""
    def ours(entry):
        path = os.path.join(folder, entry)
        if os.path.isdir(path):
            return any(os.path.exists(os.path.join(path, f))
                       for f in ("command.json", outdir.MANIFEST, outdir.LOCK, recipe.SPLIT_FILE))
        return entry in ("results.md", "results.json", "curves.png") or entry.endswith(".log")
    return sorted(e for e in os.listdir(folder) if not ours(e))


def train_seed(script, short, seed, common, data, models_dir, results_dir, inputs=None):
    """One run of a preset with one seed (unless already trained by the same command from the same `inputs`: its
    mined table's stamp) -> (its folder as the commands name it, relative to the repository, the command)."""
    out = os.path.join(models_dir, short if seed == 42 else f"{short}-seed{seed}")
    command = [script[0], *common, *data, *script[1:], *(["--seed", str(seed)] if seed != 42 else []),
               "--output-dir", out]  # the run's own flags after the shared ones: a run may override them
    run_once(command, out, os.path.join(results_dir, f"{os.path.basename(out)}.log"), inputs=inputs)
    return out, command


def train_all(preset, model, models_dir, results_dir, seeds):
    """Mine what the runs need, then train every run with every seed -> [(run name, [folders], its first seed's
    mining and training commands, [each folder's trained runs]), ...], every command once. A soup row (preset
    "soups": {row: [another row, size]}) trains that row with size x seeds seeds and averages each `size`
    consecutive ones into one model (benchmarks/model_soup.py): its seeds' models come from disjoint seeds."""
    common = ["--model-name", model, "--sts-data", preset["sts"], *preset.get("flags", [])]
    # the pairs to train on and mine for, and the corpus to mine from: --train-data's own, or the NLI folder's
    pairs = ["--train-data", preset["train"]] if preset.get("train") else ["--nli-data", preset["nli"]]
    trained, commands, made = [], [], {}  # made: each row's command, its mining resolved, for the soup rows
    for name, short, script in preset["runs"]:
        if short == "st-mnr":
            try:
                import sentence_transformers  # noqa: F401
            except ImportError:
                print("sentence-transformers is not installed (requirements-bench.txt): skipping its run")
                continue
        if short in preset.get("soups", {}):
            folders, run_commands, members, every = soups(preset, short, script, made, seeds, models_dir, results_dir)
            commands += [command for command in every if command not in commands]
            trained.append((name, folders, run_commands, members))
            continue
        script = [model if flag == "START" else flag for flag in script]
        run_commands, inputs = [], None
        if MINED in script:  # mine_negatives.py with the start model: the run's negatives, mined once for all seeds
            owner = preset["mine"][short] if isinstance(preset["mine"][short], str) else short  # or another run's
            mined = os.path.join(models_dir, f"{owner}-negatives")
            command = ["mine_negatives.py", "--model-name", model, *pairs, "--corpus", pairs[1],
                       "--output", os.path.join(mined, "negatives.tsv.gz"), *preset["mine"][owner]]
            run_once(command, mined, os.path.join(results_dir, f"{owner}-mining.log"), product="negatives.tsv.gz")
            commands += [] if command in commands else [command]
            run_commands.append(command)
            # a table mined again (other code) keeps its name, the runs their commands: its stamp retrains them
            inputs = [stamp_of(mined)]
            script = [os.path.join(mined, "negatives.tsv.gz") if flag == MINED else flag for flag in script]
        data = [] if "--train-data" in script else pairs
        made[short] = (script, common, data, list(run_commands), inputs)
        folders = []
        for seed in range(42, 42 + seeds):
            out, command = train_seed(script, short, seed, common, data, models_dir, results_dir, inputs)
            folders.append(os.path.join(ROOT, out))
            commands.append(command)
            run_commands += [command] if seed == 42 else []
        trained.append((name, folders, run_commands, [[folder] for folder in folders]))
    return trained, commands


def soups(preset, short, script, made, seeds, models_dir, results_dir):
    """A soup row's models: soup j averages the runs of the row it names with seeds 42 + j * size onwards ->
    (its folders, its first soup's commands: mining, the runs, the soup; each soup's runs' folders; every
    command it ran)."""
    source, size = preset["soups"][short]
    if source not in made:
        raise ConfigError(f"soup row {short!r}: averages {source!r}, which must be a trained row listed before it")
    train_script, common, data, mining, inputs = made[source]
    folders, run_commands, members, every = [], list(mining), [], list(mining)
    for j in range(seeds):
        runs = [train_seed(train_script, source, seed, common, data, models_dir, results_dir, inputs)
                for seed in range(42 + j * size, 42 + (j + 1) * size)]
        out = os.path.join(models_dir, short if j == 0 else f"{short}-{j + 1}")
        command = [script[0], *(folder for folder, _ in runs), "--output-dir", out]
        run_once(command, out, os.path.join(results_dir, f"{os.path.basename(out)}.log"),
                 inputs=[stamp_of(folder) for folder, _ in runs])
        folders.append(os.path.join(ROOT, out))
        members.append([os.path.join(ROOT, folder) for folder, _ in runs])
        run_commands += [*(c for _, c in runs), command] if j == 0 else []
        every += [*(c for _, c in runs), command]
    return folders, run_commands, members, every


def score(path, preset, dev, test, task):
    """One model's figures: STSb dev and test, retrieval, and STSb test at each Matryoshka cut. A trained
    folder keeps them in scores.json, reused while the model, the scoring code and the data stay the same: a
    table completed over several sittings (more seeds) scores only the new models."""
    cache = os.path.join(path, "scores.json")
    made_by = stamp_of(path)  # None: not trained here (the start model's
    key = None if made_by is None else {  # folder is not ours to write in), never cached
        "model": made_by, "code": code_version(SCORING_SCRIPTS), "sts": preset["sts"],
        "precision": scoring_precision(preset),  # what "auto" resolves to here: a folder moved elsewhere rescored
        "retrieval": preset.get("beir") or preset.get("retrieval") if task else None, "dims": preset.get("dims", [])}
    saved = read_json(cache, {}) if key else {}
    if key and saved.get("key") == key:
        return saved["scores"]
    encoder = load_encoder(path)
    precision = scoring_precision(preset)
    row = {"sts_dev": sts.evaluate(encoder, *dev, precision=precision)["spearman"],
           "sts_test": sts.evaluate(encoder, *test, precision=precision)["spearman"]}
    for d in preset.get("dims", []):
        row[f"sts_test@{d}"] = sts.evaluate(encoder, *test, truncate_dim=d, precision=precision)["spearman"]
    if task:  # per query too: the paired bootstrap against the preset's baseline run needs them
        # With the model's own prompts, as evaluate_retrieval.py scores it: an e5-like start model, or a run
        # trained with --query-prompt, scored without its prompts would say little of the model.
        prompted = prompts.prompted_task(task, *prompts.saved_prompts(path))
        row.update(retrieval.evaluate(encoder, prompted, precision=precision, per_query=True))
    if key is not None:
        write_json_atomic(cache, {"key": key, "scores": row})
    return row


def scoring_precision(preset):
    """The preset's "score_precision" as it computes here: "auto" resolved for the device load_encoder uses."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return resolve(preset.get("score_precision", "fp32"), device)


def retrieval_task(preset):
    """The preset's retrieval task: a BEIR folder's split, else the NLI file (None when that file is missing)."""
    if preset.get("beir"):
        return retrieval.load_beir(*preset["beir"])
    nli_file = preset.get("retrieval")
    return retrieval.load_nli_retrieval(nli_file) if nli_file and os.path.exists(nli_file) else None


@functools.lru_cache(maxsize=1)
def start_embeddings(model, texts):
    """The start model's embeddings of `texts` (a tuple): every run of a preset trains on the same texts."""
    return encode(load_encoder(model), list(texts), progress="embedding for the false-negative share")


def false_negative_share(model, command):
    """The false-negative share (mnr/samplers.py) that the start model sees in the first epoch's batches of a
    train_mnr.py `command`: the run's own rows, sampler, batch size and seed, measured before any training. The
    flags are read from the trained folder's training_config.json (each as train_mnr.py parsed it, defaults
    included): a script does not import another, and the folder says what the run did."""
    config = read_json(os.path.join(ROOT, command[command.index("--output-dir") + 1], "training_config.json"), None)
    if config["TRAIN_DATA"]:  # the rows as train_mnr.load_batches reads them
        rows, sources = load_train_data(config["TRAIN_DATA"], with_sources=True)
    else:
        rows, sources = data_prep.make_rows(data_prep.load_nli(config["NLI_DATA"]), config["HARD_NEGATIVES"],
                                            with_sources=True)
    batches = data_prep.sampled_batches(rows, sources, config["BATCH_SAMPLER"], config["BATCH_SIZE"], config["SEED"],
                                        1, config["CLUSTERS"], config["MODEL_NAME"])  # the first epoch's
    texts = list(dict.fromkeys(text for row in rows for text in row))
    index, vectors = {text: i for i, text in enumerate(texts)}, start_embeddings(model, tuple(texts))
    columns = [vectors[torch.tensor([index[row[j]] for row in rows])] for j in range(len(rows[0]))]  # (N, D) each
    return samplers.false_negative_share(columns, batches)


def check_args(args):
    """Refuse, before a folder is made, flags that would give no table (no seed: no rows) or a wrong one."""
    with exit_on_input_error():
        if args.seeds is not None and args.seeds < 1:
            raise ConfigError(f"--seeds must be at least 1, got {args.seeds}")
        beir_only = [flag for flag, given in (("--beir", args.beir), ("--max-pairs", args.max_pairs is not None),
                                              ("--yes", args.yes), ("--report-test", args.report_test)) if given]
        if args.preset != "beir" and beir_only:
            raise ConfigError(f"{beir_only[0]} is a --preset beir flag: add --preset beir --beir FOLDER")
        if args.preset == "beir" and not args.beir:
            raise ConfigError("--preset beir needs --beir FOLDER, the BEIR folder to train and score on")
        if args.max_pairs is not None and args.max_pairs < 1:
            raise ConfigError(f"--max-pairs must be at least 1, got {args.max_pairs}")
        if args.output_dir and os.path.isdir(args.output_dir) and foreign_files(args.output_dir):
            raise ConfigError(f"--output-dir {args.output_dir}: holds files compare_runs.py did not write (first: "
                              f"{foreign_files(args.output_dir)[0]}); give a new or empty folder")


def main(argv=None):
    parser = new_parser(__doc__)
    parser.add_argument("--preset", choices=tuple(PRESETS), default="cpu", help="which table to make (default: cpu)")
    parser.add_argument("--model-name", default=None, help="start model (default: the preset's; MiniLM on the CPU ones)")
    parser.add_argument("--output-dir", default=None, help="default: output/compare-PRESET (models), results/NAME")
    parser.add_argument("--seeds", type=int, default=None, help="train each run with this many seeds (default: "
                        "the preset's, 1 for cpu, gpu and smoke, 3 for negatives and matryoshka)")
    parser.add_argument("--beir", default=None, help="--preset beir: your BEIR folder (corpus.jsonl, queries.jsonl, "
                        "qrels/train.tsv, and qrels/dev.tsv where it has one, else a dev split is carved from train)")
    parser.add_argument("--max-pairs", type=int, default=None, help="--preset beir: train on at most this many of "
                        "its train pairs (whole queries, drawn with seed 42)")
    parser.add_argument("--yes", action="store_true", help="--preset beir: start even when the run is predicted "
                        "to take more than an hour")
    parser.add_argument("--report-test", action="store_true", help="--preset beir: the final run, scored on "
                        "qrels/test.tsv (never read otherwise)")
    args = parse_flags(parser, argv)
    check_args(args)
    preset = PRESETS[args.preset]
    seeds = args.seeds or preset.get("seeds", 1)
    model = args.model_name or preset.get("model") or packaged_minilm()
    models_dir = args.output_dir or os.path.join("output", f"compare-{args.preset}")  # relative to this folder
    results_dir = args.output_dir or os.path.join(ROOT, "results", preset.get("results", args.preset))
    if args.preset == "beir":  # your data's table stays beside its models, out of the repository's results/
        folder_name = os.path.basename(os.path.abspath(args.beir))
        models_dir = args.output_dir or os.path.join("output", f"compare-beir-{folder_name}")
        results_dir = os.path.join(ROOT, models_dir)
        with exit_on_input_error():
            # absolute: the runs' commands run in this folder, wherever the user typed --beir from
            preset = recipe.build(os.path.abspath(args.beir), model, os.path.join(ROOT, models_dir),
                                  STS if os.path.isdir(STS) else SAMPLE_STS,
                                  args.max_pairs, args.yes, args.report_test, seeds)
        preset["command"] = shlex.join(sys.argv[1:] if argv is None else argv)
    os.makedirs(results_dir, exist_ok=True)

    # 1. Mine and train every run, with every seed.
    trained, commands = train_all(preset, model, models_dir, results_dir, seeds)

    # 2. Score the start model and every trained one the same way; then mean and spread over the seeds.
    dev, test = sts.load_sts(preset["sts"], "dev"), sts.load_sts(preset["sts"], "test")
    task = retrieval_task(preset)
    rows = []
    for name, folders, run_commands, members in [("start model (untrained)", [model], [], None), *trained]:
        print(f"scoring {name} ({len(folders)} model(s))", flush=True)
        per_seed = [score(path, preset, dev, test, task) for path in folders]
        row = {"run": name, "models": [shown(path, model) for path in folders], "per_seed": per_seed,
               "commands": [[shown(arg, model) for arg in command] for command in run_commands]}
        for metric in (m for m in per_seed[0] if m != "per_query"):
            row[metric], row[f"{metric}_std"] = mean_std([r[metric] for r in per_seed])
        if members:  # trained here: what the training cost
            row.update(report.training_cost(folders, members, model))
        if preset.get("false_negatives") and run_commands:  # the batches of the first seed's training command
            training = [c for c in run_commands if c[0] != SOUP]  # a soup row: its last run's batches
            row["false_negative_share"] = false_negative_share(model, training[-1])
        rows.append(row)
    if preset.get("baseline"):
        compare_with_baseline(rows, preset["baseline"])
    report.write_results(args.preset, preset, rows, commands, model, seeds, results_dir, scoring_precision(preset))
    report.plot_curves([(name, folders[0]) for name, folders, _, members in trained if members[0] == folders[:1]],
                       os.path.join(results_dir, "curves.png"))  # a soup row has no curve of its own


def compare_with_baseline(rows, baseline, metric="ndcg@10"):
    """Each row's `metric` minus the baseline row's, with a paired bootstrap 95 % interval over the queries
    (mnr/stats.py): a row's per-query score is its mean over the seeds, so the interval is about the queries and
    the seed spread stays the ± next to it. An interval that excludes 0 is a difference these queries show."""
    per_query = {r["run"]: [s["per_query"][metric] for s in r["per_seed"]]
                 for r in rows if r["per_seed"] and "per_query" in r["per_seed"][0]}
    if baseline not in per_query:
        print(f"no run named {baseline!r} with per-query scores: no differences to it", flush=True)
        return
    for r in rows:
        if r["run"] in per_query and r["run"] != baseline:
            r[f"{metric}_delta"], low, high = paired_over_seeds(per_query[r["run"]], per_query[baseline])
            r[f"{metric}_delta_ci95"] = [low, high]


if __name__ == "__main__":
    with exit_on_input_error():
        main()
