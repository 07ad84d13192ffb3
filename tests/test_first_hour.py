"""A new user's first hour (issue 19): the README's quick start pasted into a fresh clone, the refusals that come
before any work, the flag-typo hints, --help, and what the evaluators print.

Every script here runs as a user runs it (`python SCRIPT ...`, conftest.run_script), so exit statuses, stderr and
the files left behind are the user's."""
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from conftest import ROOT, SAMPLE_DIR, run_script, write_tsv
from pooling import POOLINGS

README = os.path.join(ROOT, "README.md")
SAMPLE_STS = os.path.join(SAMPLE_DIR, "stsb")
SAMPLE_RETRIEVAL = os.path.join(SAMPLE_DIR, "nli", "snli_test_sample.tsv.gz")
NUMBER = r"-?\d\.\d{4}"


# ---- The quick start, as pasted into a fresh clone ------------------------------------------------------------

def quick_start_block(text):
    """The first ```bash block under the `## Quick start` heading of a markdown text, or None."""
    section = re.search(r"^## Quick start[ \t]*\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    block = section and re.search(r"^```bash\n(.*?)^```", section[1], re.M | re.S)
    return block[1] if block else None


def fresh_clone(dest):
    """The repository's tracked files, as `git clone` would give them (no ../shared, no output/, no .venv)."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed: no tracked files to copy")
    listed = subprocess.run(["git", "-C", ROOT, "ls-files", "-z"], capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip(f"not a git checkout ({listed.stderr.strip()}): no tracked files to copy")
    for name in filter(None, listed.stdout.split("\0")):
        src = os.path.join(ROOT, name)
        if os.path.isfile(src):  # a tracked file deleted in the working tree is not in the clone either
            os.makedirs(os.path.join(dest, os.path.dirname(name)), exist_ok=True)
            shutil.copy2(src, os.path.join(dest, name))
    return dest


def table_rows(out, model, n):
    """The scores of `model` in every markdown table of `out` with n score columns, as floats."""
    row = re.compile(rf"^\| {re.escape(model)}(?: \(best\))? \|" + rf" ({NUMBER}) \|" * n + "$", re.M)
    return [[float(x) for x in match.groups()] for match in row.finditer(out)]


@pytest.mark.slow  # about 1.5 minutes on 2 CPU cores: 30 training steps of MiniLM, 4 evaluations
def test_quick_start_runs_in_a_fresh_clone(tmp_path, minilm_path):
    minilm_path = str(minilm_path)  # the path the block's $(python -c ...) prints, as the tables show it
    # reads README.md
    with open(README, encoding="utf-8") as f:
        block = quick_start_block(f.read())
    assert block, "README.md has no ```bash block under a `## Quick start` heading"
    clone = fresh_clone(str(tmp_path / "clone"))
    assert not os.path.exists(os.path.join(clone, "..", "shared")) and not os.path.exists(os.path.join(clone, "output"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MNR_DATA_DIR")}
    env.update(HF_HUB_OFFLINE="1", PATH=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""))
    started = time.perf_counter()
    result = subprocess.run(["bash", "-e", "-c", block], cwd=clone, env=env, capture_output=True, text=True,
                            timeout=600)
    seconds = time.perf_counter() - started
    assert result.returncode == 0, f"the quick start failed after {seconds:.0f} s:\n{result.stderr[-3000:]}"
    out = result.stdout
    assert re.search(r"^saved to output/quickstart", out, re.M), out
    # STS: one table, the trained model's row first, then the start model's, in the order the block gives them.
    assert re.search(r"^STS benchmark test \(\d+ pairs, tests/data/stsb\)$", out, re.M), out
    sts_trained, sts_start = table_rows(out, "output/quickstart", 2), table_rows(out, minilm_path, 2)
    assert len(sts_trained) == len(sts_start) == 1, out
    assert out.index("| output/quickstart") < out.index(f"| {minilm_path}")
    assert sts_start[0][0] > 0.75 and sts_trained[0][0] > 0.75  # 30 steps leave the model about where it was
    assert "a sample of the STS benchmark" in result.stderr
    # Retrieval: the task's size line, then one row per model.
    assert re.search(r"^retrieval on tests/data/nli/snli_test_sample\.tsv\.gz: \d+ queries, \d+ documents", out, re.M)
    retrieval_trained, retrieval_start = table_rows(out, "output/quickstart", 5), table_rows(out, minilm_path, 5)
    assert len(retrieval_trained) == len(retrieval_start) == 1, out
    assert retrieval_start[0][0] > 0.7 and retrieval_trained[0][0] > 0.7  # nDCG@10
    assert os.path.isfile(os.path.join(clone, "output", "quickstart", "model.safetensors"))


# ---- Refused before any work: one `error:` line, exit 1, nothing written, no model loaded ---------------------

@pytest.fixture
def unloadable_model(tmp_path):
    """A folder that passes the up-front model check (it has the files it looks for) but fails to load: a data error
    seen with it proves the data was refused before the model was loaded."""
    folder = tmp_path / "unloadable-model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert"}')
    (folder / "tokenizer.json").write_text("{}")  # unreadable by the loaders
    (folder / "pytorch_model.bin").write_bytes(b"")
    return str(folder)


def refused(tmp_path, model, *args, expected=()):
    """Run train_mnr.py on data that gives no step: exactly one `error:` line naming each of `expected`, exit 1,
    no output folder, nothing new beside the inputs."""
    before = sorted(os.listdir(tmp_path))
    output = tmp_path / "out"
    result = run_script("train_mnr.py", "--model-name", model, "--output-dir", str(output), *args, timeout=120)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for phrase in expected:
        assert phrase in lines[0], lines[0]
    assert model not in lines[0], lines[0]  # the data was refused; the (unloadable) model was never loaded
    assert not output.exists() and sorted(os.listdir(tmp_path)) == before
    return lines[0]


def test_beir_qrels_file_is_refused_with_the_folder_to_give(tmp_path, unloadable_model):
    qrels = tmp_path / "scifact" / "qrels"
    qrels.mkdir(parents=True)
    path = write_tsv(qrels / "train.tsv", ["query-id", "corpus-id", "score"],
                     [[f"q{i}", f"{1000 + i}", "1"] for i in range(40)])
    line = refused(tmp_path, unloadable_model, "--train-data", path, "--batch-size", "8",
                   expected=["look like ids", "BEIR folder", f"--train-data {tmp_path / 'scifact'}"])
    assert "qrels" in line


def test_fewer_rows_than_the_batch_is_refused(tmp_path, unloadable_model):
    path = write_tsv(tmp_path / "three.tsv", ["anchor", "positive"],
                     [["A man plays a guitar.", "Someone makes music."], ["A dog runs.", "An animal moves."],
                      ["Kids swim in a lake.", "Children are in water."]])
    refused(tmp_path, unloadable_model, "--train-data", path, "--batch-size", "8",
            expected=["batch size 8", "3 usable rows", "lower --batch-size"])


def test_rows_that_give_no_full_batch_without_a_repeated_text_are_refused(tmp_path, unloadable_model):
    # 40 rows, but every one has the same anchor: no two of them can share a batch.
    path = write_tsv(tmp_path / "one-anchor.tsv", ["anchor", "positive"],
                     [["A man plays a guitar.", f"Someone makes music, take {i}."] for i in range(40)])
    refused(tmp_path, unloadable_model, "--train-data", path, "--batch-size", "4",
            expected=["no full batch of 4 without a repeated text", "--batch-size"])


def test_nli_data_without_entailment_pairs_is_refused(tmp_path, unloadable_model):
    path = write_tsv(tmp_path / "nli_train.tsv", ["premise", "hypothesis", "label", "source"],
                     [[f"A person stands in place number {i}.", f"Nobody is at place {i}.", "2", "snli"]
                      for i in range(40)])
    refused(tmp_path, unloadable_model, "--nli-data", path, "--batch-size", "4",
            expected=["no usable rows", "no entailment pairs"])


@pytest.mark.parametrize("script, flag, sample", [
    ("data_prep.py", "--nli-data", "--nli-data tests/data/nli"),
    ("evaluate_sts.py", "--sts-data", "--sts-data tests/data/stsb")])
def test_missing_data_path_names_the_shipped_sample(script, flag, sample, tmp_path):
    # The README's longer commands read ../shared/data, which a fresh clone does not have.
    models = ["some/model"] if script.startswith("evaluate") else []
    result = run_script(script, *models, flag, str(tmp_path / "shared" / "data"), timeout=120)
    assert result.returncode == 1
    assert "no such file or directory" in result.stderr and sample in result.stderr, result.stderr


# ---- Flags: typo hints, no abbreviations, --help as documentation --------------------------------------------

# How each script is called with one flag wrong: the evaluators need a model before their flags.
CALLS = {"train_mnr.py": [], "evaluate_sts.py": ["some/model"], "evaluate_retrieval.py": ["some/model"],
         "mine_negatives.py": []}


@pytest.mark.parametrize("script", CALLS)
def test_flag_typo_names_the_flag_meant(script):
    result = run_script(script, *CALLS[script], "--batchsize", "8", timeout=120)
    assert result.returncode == 2
    assert "unrecognized arguments: --batchsize 8; did you mean --batch-size?" in result.stderr


@pytest.mark.parametrize("script, abbreviation, meant", [
    ("train_mnr.py", "--max-step", "--max-steps"), ("evaluate_sts.py", "--batch", "--batch-size"),
    ("evaluate_retrieval.py", "--batch", "--batch-size"), ("mine_negatives.py", "--num-neg", "--num-negatives")])
def test_abbreviated_flags_are_refused(script, abbreviation, meant):
    # argparse would otherwise take `--max-step 3` for --max-steps without a word.
    result = run_script(script, *CALLS[script], abbreviation, "3", timeout=120)
    assert result.returncode == 2
    assert f"unrecognized arguments: {abbreviation} 3; did you mean {meant}?" in result.stderr


POOLING_CHOICES = "--pooling {" + ",".join(POOLINGS) + "}"  # the table's poolings, in its order
HELP = {  # script -> what its --help must show besides the common checks: choices, sections, documented flags
    "train_mnr.py": [POOLING_CHOICES, "--precision {auto,fp32,bf16}", "\ndata:\n", "\nmodel:\n",
                     "\nloss:\n", "\noptimisation:\n", "\nevaluation and output:\n", "\nsystem:\n"],
    "train_bidirectional.py": ["--loss {bidirectional,symmetric}", POOLING_CHOICES, "\nloss:\n"],
    "evaluate_sts.py": ["--split {dev,test}", "--precision {fp32,bf16}", "MODEL [MODEL ...]"],
    "evaluate_retrieval.py": ["--split {train,dev,test}", "--precision {fp32,bf16}", "--batch-size BATCH_SIZE"],
    "mine_negatives.py": ["--sampling {top,random}", "--precision {fp32,bf16}", "\nmining:\n"],
    "data_prep.py": ["--nli-data NLI_DATA", "--hard-negatives, --no-hard-negatives"],
}


def option_helps(text):
    """--help text -> {first option string: its help, joined onto one line}."""
    helps, current = {}, None
    for line in text.splitlines():
        match = re.match(r"^  (-[\w-]+)", line)
        if match:
            current = match[1]
            helps[current] = line
        elif current and line.startswith("      "):
            helps[current] += " " + line.strip()
        else:
            current = None
    return {option: " ".join(help.split()) for option, help in helps.items()}


@pytest.mark.parametrize("script", HELP)
def test_help_shows_choices_each_default_once_sections_and_examples(script):
    result = run_script(script, "--help", timeout=120)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for shown in HELP[script]:
        assert shown in text, shown
    assert "(default: None)" not in text
    helps = option_helps(text)
    for option, help in helps.items():
        assert help.count("(default:") <= 1, help
    headers = re.findall(r"^(\S[^\n]*):$", text.split("\nexamples:\n")[0], re.M)
    assert len(headers) == len(set(headers)), f"a --help section printed twice: {headers}"
    assert "\nexamples:\n" in text and text.index("\nexamples:\n") > text.index("  -h, --help")
    assert "python " + script in text.split("\nexamples:\n", 1)[1]


def test_evaluate_retrieval_help_documents_batch_size():
    helps = option_helps(run_script("evaluate_retrieval.py", "--help", timeout=120).stdout)
    assert "texts per forward pass" in helps["--batch-size"] and "(default: 64)" in helps["--batch-size"]


# ---- What the evaluators print ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_tasks(tmp_path_factory):
    """40 STS pairs and a 90-row NLI retrieval file cut from the shipped sample: scored in seconds."""
    import gzip
    base = tmp_path_factory.mktemp("small-tasks")
    for name, src, n in (("sts.tsv", os.path.join(SAMPLE_STS, "test.tsv.gz"), 40), ("nli.tsv", SAMPLE_RETRIEVAL, 90)):
        with gzip.open(src, "rt", encoding="utf-8", newline="") as f, open(base / name, "w", newline="") as out:
            out.writelines(f.readline() for _ in range(n + 1))
    return {"sts": ["evaluate_sts.py", "--sts-data", str(base / "sts.tsv")],
            "retrieval": ["evaluate_retrieval.py", "--nli-retrieval", str(base / "nli.tsv")]}


@pytest.mark.parametrize("task, columns", [("sts", 2), ("retrieval", 5)])
def test_evaluators_print_models_in_the_order_given(task, columns, small_tasks, tiny_model_dir, minilm_path):
    script, *flags = small_tasks[task]
    minilm_path = str(minilm_path)
    # The weaker model first: the table keeps the command line's order, it does not sort by score.
    result = run_script(script, tiny_model_dir, minilm_path, *flags, timeout=300)
    assert result.returncode == 0, result.stderr
    tiny, minilm = table_rows(result.stdout, tiny_model_dir, columns), table_rows(result.stdout, minilm_path, columns)
    assert len(tiny) == len(minilm) == 1, result.stdout
    assert result.stdout.index(f"| {tiny_model_dir}") < result.stdout.index(f"| {minilm_path} (best)")
    assert minilm[0][0] > tiny[0][0]


def test_beir_path_that_is_no_folder_is_said_so(tiny_model_dir):
    # HF_HUB_OFFLINE off, as for a user: a path must not be taken for a hub name (and then blamed on the network).
    result = run_script("evaluate_retrieval.py", tiny_model_dir, "--beir", "no/such/folder/x", timeout=120,
                        HF_HUB_OFFLINE="0")
    assert result.returncode == 1
    assert "no/such/folder/x: no such folder" in result.stderr
    assert "unreachable" not in result.stderr and "could not load" not in result.stderr


def test_sts_sample_gets_a_note_on_stderr(tiny_model_dir):
    result = run_script("evaluate_sts.py", tiny_model_dir, "--sts-data", SAMPLE_STS, "--split", "test", timeout=120)
    assert result.returncode == 0, result.stderr
    note = next((line for line in result.stderr.splitlines() if line.startswith("note:")), "")
    assert "a sample of the STS benchmark's 1379" in note and "differ from the benchmark's" in note, result.stderr
    assert "note:" not in result.stdout  # stdout holds only the table
