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
A table of results/ also keeps a record of each finished run (results/NAME/runs/, mnr/ledger.py): a sitting on a
machine that kept no output/ folder restores those runs from their records instead of training them again, and
--rows ROW,ROW trains a part of a preset in a sitting too short for the rest (no table: a run without it writes it).
"""
import functools
import json
import os
import shlex
import subprocess
import sys
import time
from types import SimpleNamespace

from mnr import ledger as records, outdir, recipe, report, sts
from mnr.report import shown
from mnr.errors import ConfigError, exit_on_input_error
from mnr.files import ROOT, code_version
from mnr.flags import new_parser, parse_flags
from mnr.stats import mean_std
from mnr.ledger import stamp_of
from mnr.models import packaged_minilm
from mnr.sitting import chosen_rows, emulated_bf16  # what this sitting trains (--rows), and what it costs here
from mnr.presets import MINED, PRESETS, SOUP, STS  # the tables of runs (mnr/presets.py): data, not code
# how a preset's models are scored (mnr/scores.py)
from mnr.scores import compare_with_baseline, false_negative_share, retrieval_task, score, score_key, scoring_precision

SAMPLE_STS = os.path.join("tests", "data", "stsb")  # STSb's shipped sample, where the full files are not here


def made_by_of(command, inputs=None):
    """What makes a run: its command, the code it runs (a digest), and its `inputs` where given (a soup: its runs'
    own stamps, so a run trained again makes the soup again, though the soup's command names the same folders)."""
    return {"command": command, "code": code_version([command[0]]), **({"inputs": inputs} if inputs else {})}


def made_here(out, made_by, product="model.safetensors"):
    """Whether `out` (relative to the repository) holds `product` made as `made_by` says."""
    out = os.path.join(ROOT, out)
    return os.path.isfile(os.path.join(out, product)) and stamp_of(out) == made_by


def run_once(command, out, log_path, product="model.safetensors", inputs=None, ledger=None, before=None):
    """Run one command (training, or mining with product=its file) unless `out` holds `product` made by the very
    same command and the same code, from the same `inputs` where given, or `ledger` (ledger_of()) restores it;
    `before()` first where it runs (the mining of the table it trains on)."""
    made_by = made_by_of(command, inputs)
    if made_here(out, made_by, product):
        print(f"reusing {os.path.relpath(os.path.join(ROOT, out), ROOT)}", flush=True)
        return None
    out = os.path.join(ROOT, out)
    stamp = os.path.join(out, "command.json")
    if ledger is not None and not os.path.lexists(os.path.join(out, product)) and ledger.restore(out, made_by):
        return None
    records.clear(out)  # restored from a record before: its run is trained for real now
    if before is not None:
        before()
    print("$ python " + shlex.join(command), flush=True)
    started = time.perf_counter()
    replace = []
    if os.path.lexists(os.path.join(out, product)):  # made by other code or another command: ours to replace
        for own in ("command.json", "scores.json"):
            if os.path.isfile(os.path.join(out, own)):
                os.remove(os.path.join(out, own))
        replace = ["--overwrite"]  # the scripts refuse to replace a model or table without it
    elif os.path.exists(os.path.join(out, outdir.IN_PROGRESS_LOG)):  # its training was cut (a sitting's end):
        replace = ["--overwrite"]  # the folder is ours, what the cut run left in it goes (a live one holds the lock)
    with open(log_path, "w") as log:
        result = subprocess.run([sys.executable, *command, *replace], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    with open(log_path) as f:  # the log is a results file: no path of this machine in it
        text = shown(f.read(), packaged_minilm())
    with open(log_path, "w") as f:
        f.write(text)
    if result.returncode != 0:
        sys.exit(f"error: {shlex.join(command)} failed (exit {result.returncode}); see {log_path}")
    os.makedirs(out, exist_ok=True)
    with open(stamp, "w") as f:  # with the command's wall time (the table's "minutes") and where it ran
        json.dump({**made_by, "seconds": round(time.perf_counter() - started, 1), "machine": report.machine()}, f)
    outdir.adopt(out, "command.json", "scores.json")  # ours too: a later --overwrite may replace them


def ledger_of(runs_dir, preset, model, dev, test, task):
    """The records of finished runs (mnr/ledger.py) as train_all uses them: whether a run has one, restore a run
    from it, keep a finished run's (scored at once, so a sitting cut short keeps every run it finished)."""
    def found(out, made_by):
        return records.find(runs_dir, out, made_by, score_key(made_by, preset, task), model)

    def restore(out, made_by):
        if os.path.exists(os.path.join(out, records.RESTORED)) and stamp_of(out) == made_by:
            return True  # restored already in this sitting (a soup row's runs are also its source row's)
        record = found(out, made_by)
        if record:
            records.restore(out, record, made_by, score_key(made_by, preset, task))
            print(f"restored {os.path.relpath(out, ROOT)} from its record (trained in an earlier sitting; its model "
                  "is not here)", flush=True)
        return record is not None

    def keep(out):
        score(os.path.join(ROOT, out), preset, dev, test, task)
        records.keep(os.path.join(ROOT, out), runs_dir, model)
    return SimpleNamespace(found=found, restore=restore, keep=keep)


def foreign_files(folder):
    """Entries of `folder` that are not compare_runs' own: its results, logs, and the folders it trained or mined,
    or derived from a BEIR folder (--preset beir: a carved dev split, a cap)."""
    def ours(entry):
        path = os.path.join(folder, entry)
        if os.path.isdir(path):
            return any(os.path.exists(os.path.join(path, f))
                       for f in ("command.json", outdir.MANIFEST, outdir.LOCK, recipe.SPLIT_FILE))
        return entry in ("results.md", "results.json", "curves.png", records.RUNS) or entry.endswith(".log")
    return sorted(e for e in os.listdir(folder) if not ours(e))


def train_seed(script, short, seed, common, data, models_dir, results_dir, inputs=None, ledger=None, weights=False,
               before=None):
    """One run of a preset with one seed (unless already trained by the same command from the same `inputs`: its
    mined table's stamp; or restored from its record, unless its `weights` are needed; `before()` where it trains:
    its mining) -> (its folder as the commands name it, relative to the repository, the command)."""
    out = os.path.join(models_dir, short if seed == 42 else f"{short}-seed{seed}")
    command = [script[0], *common, *data, *script[1:], *(["--seed", str(seed)] if seed != 42 else []),
               "--output-dir", out]  # the run's own flags after the shared ones: a run may override them
    run_once(command, out, os.path.join(results_dir, f"{os.path.basename(out)}.log"), inputs=inputs,
             ledger=None if weights else ledger, before=before)
    if ledger is not None:
        ledger.keep(out)
    return out, command


def train_all(preset, model, models_dir, results_dir, seeds, ledger=None, rows=None):
    """Mine what the runs need, then train every run with every seed -> [(run name, [folders], its first seed's
    mining and training commands, [each folder's trained runs]), ...], every command once. A soup row (preset
    "soups": {row: [another row, size]}) trains that row with size x seeds seeds and averages each `size`
    consecutive ones into one model (benchmarks/model_soup.py): its seeds' models come from disjoint seeds. With a
    `ledger` (ledger_of()), each run is restored from its record where it has one, and recorded once finished.
    `rows` (short names, --rows): only those rows, and the runs a soup row of them averages, train."""
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
        here = rows is None or short in rows  # trained in this sitting (--rows); else only prepared for its soups
        if short in preset.get("soups", {}):
            if not here:
                continue
            folders, run_commands, members, every = soups(preset, short, script, made, seeds, models_dir, results_dir,
                                                          ledger)
            commands += [command for command in every if command not in commands]
            trained.append((name, folders, run_commands, members))
            continue
        script = [model if flag == "START" else flag for flag in script]
        run_commands, inputs, mine = [], None, None
        if MINED in script:  # mine_negatives.py with the start model: the run's negatives, mined once for all seeds
            owner = preset["mine"][short] if isinstance(preset["mine"][short], str) else short  # or another run's
            mined = os.path.join(models_dir, f"{owner}-negatives")
            command = ["mine_negatives.py", "--model-name", model, *pairs, "--corpus", pairs[1],
                       "--output", os.path.join(mined, "negatives.tsv.gz"), *preset["mine"][owner]]
            # mined when a run trains on it (not when every run is reused or restored): a run's input is what
            # will make the table (its stamp), so a table mined again by other code, under the same name,
            # retrains the runs, though their commands are the same
            mine = functools.partial(run_once, command, mined, os.path.join(results_dir, f"{owner}-mining.log"),
                                     product="negatives.tsv.gz")
            commands += [command] if here and command not in commands else []
            run_commands.append(command)
            inputs = [made_by_of(command)]
            script = [os.path.join(mined, "negatives.tsv.gz") if flag == MINED else flag for flag in script]
        data = [] if "--train-data" in script else pairs
        made[short] = (script, common, data, list(run_commands), inputs, mine)
        if not here:
            continue  # a soup row of it still trains the seeds it averages
        folders = []
        for seed in range(42, 42 + seeds):
            out, command = train_seed(script, short, seed, common, data, models_dir, results_dir, inputs, ledger,
                                      before=mine)
            folders.append(os.path.join(ROOT, out))
            commands.append(command)
            run_commands += [command] if seed == 42 else []
        trained.append((name, folders, run_commands, [[folder] for folder in folders]))
    return trained, commands


def soups(preset, short, script, made, seeds, models_dir, results_dir, ledger=None):
    """A soup row's models: soup j averages the runs of the row it names with seeds 42 + j * size onwards ->
    (its folders, its first soup's commands: mining, the runs, the soup; each soup's runs' folders; every
    command it ran). A soup made again needs its runs' weights: runs restored from their records train again."""
    source, size = preset["soups"][short]
    if source not in made:
        raise ConfigError(f"soup row {short!r}: averages {source!r}, which must be a trained row listed before it")
    train_script, common, data, mining, inputs, mine = made[source]
    folders, run_commands, members, every = [], list(mining), [], list(mining)
    for j in range(seeds):
        def train_runs(weights=False):
            return [train_seed(train_script, source, seed, common, data, models_dir, results_dir, inputs, ledger,
                               weights, mine) for seed in range(42 + j * size, 42 + (j + 1) * size)]
        runs = train_runs()
        out = os.path.join(models_dir, short if j == 0 else f"{short}-{j + 1}")
        command = [script[0], *(folder for folder, _ in runs), "--output-dir", out]
        made_by = made_by_of(command, [stamp_of(folder) for folder, _ in runs])
        if ledger is not None and not made_here(out, made_by) and not ledger.found(out, made_by):
            train_runs(weights=True)  # the soup is made again: from its runs' weights, which a record has not
        run_once(command, out, os.path.join(results_dir, f"{os.path.basename(out)}.log"),
                 inputs=made_by.get("inputs"), ledger=ledger)
        if ledger is not None:
            ledger.keep(out)
        folders.append(os.path.join(ROOT, out))
        members.append([os.path.join(ROOT, folder) for folder, _ in runs])
        run_commands += [*(c for _, c in runs), command] if j == 0 else []
        every += [*(c for _, c in runs), command]
    return folders, run_commands, members, every


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


def table_row(name, folders, run_commands, members, preset, model, dev, test, task):
    """One row of the table: each of its models scored alike, the mean and spread over them, what its training cost
    and, for a batch preset, the false-negative share its first seed's batches hold."""
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
    return row


def parse_args(argv=None):
    """The command line, its flags checked (check_args) before anything is made."""
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
    parser.add_argument("--rows", default=None, help="train only these rows (the preset's short names, comma-"
                        "separated; mnr/presets.py) and the runs a soup row among them averages, in a sitting too "
                        "short for the whole preset; no table is written: a run without --rows reuses or restores "
                        "them and writes it")
    parser.add_argument("--records", default=None, help="keep a record of each finished run here (mnr/ledger.py) "
                        "and restore runs from it instead of training them again (default: results/NAME/runs for a "
                        "table in results/; none with --output-dir or --preset beir)")
    args = parse_flags(parser, argv)
    check_args(args)
    return args


def main(argv=None):
    args = parse_args(argv)
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
    with exit_on_input_error():
        only = chosen_rows(args.rows, preset, args.preset)
    emulated = emulated_bf16(preset)
    if emulated:  # said before hours of slow steps, not after
        print(emulated, flush=True)
    os.makedirs(results_dir, exist_ok=True)
    dev, test = sts.load_sts(preset["sts"], "dev"), sts.load_sts(preset["sts"], "test")
    task = retrieval_task(preset)
    # A table of the repository's results/ keeps a record of each finished run (mnr/ledger.py): a sitting on
    # another machine, with no output/ folder, restores them instead of training again.
    runs_dir = args.records or (os.path.join(results_dir, records.RUNS) if not args.output_dir and
                                args.preset != "beir" else None)
    ledger = ledger_of(runs_dir, preset, model, dev, test, task) if runs_dir else None

    # 1. Mine and train every run, with every seed (each scored and recorded as soon as it is trained).
    trained, commands = train_all(preset, model, models_dir, results_dir, seeds, ledger, only)
    if only is not None:  # a part of the table: each run scored and recorded as it finished; a table needs every row
        print(f"--rows: {', '.join(sorted(only))} trained (or restored); no table written: run again without --rows "
              "to write it from every row", flush=True)
        return
    sittings = records.machines(folder for _, folders, _, members in trained for runs in members for folder in runs)
    if len(sittings) > 1:
        preset = dict(preset, notes=[*preset.get("notes", []), "Runs trained over several sittings (records in "
                                     f"{os.path.relpath(runs_dir, ROOT)}), on: " + "; ".join(sittings)])

    # 2. Score the start model and every trained one the same way; then mean and spread over the seeds.
    rows = [table_row(name, folders, run_commands, members, preset, model, dev, test, task)
            for name, folders, run_commands, members in [("start model (untrained)", [model], [], None), *trained]]
    if preset.get("baseline"):
        compare_with_baseline(rows, preset["baseline"])
    report.write_results(args.preset, preset, rows, commands, model, seeds, results_dir, scoring_precision(preset))
    report.plot_curves([(name, folders[0]) for name, folders, _, members in trained if members[0] == folders[:1]],
                       os.path.join(results_dir, "curves.png"))  # a soup row has no curve of its own


if __name__ == "__main__":
    with exit_on_input_error():
        main()
