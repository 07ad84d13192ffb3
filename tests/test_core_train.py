"""End to end: train_mnr.py on the real NLI files with the tiny random BERT, the saved folder, determinism,
evaluate_sts.py, and the command line's errors.

The training runs start together (one thread each: the machine has 2 cores) and are shared by the tests."""
import json
import os
import subprocess
import sys
import time

import pytest
import torch

import evaluate_sts
import pooling
import train_mnr
from conftest import ROOT

TRAIN_FLAGS = ["--batch-size", "16", "--lr", "1e-3"]


def start(*args, env=None):
    env = env or dict(os.environ, PYTHONPATH=ROOT, TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1",
                      OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc, timeout=600):
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture(scope="module")
def runs(tiny_model_dir, nli_dir, sts_dir, tmp_path_factory):
    """Three 30-step runs at once (the second repeats the first, the third has another seed), then
    evaluate_sts.py on the first run's folder while the others finish."""
    base = tmp_path_factory.mktemp("runs")
    seeds = {"main": "42", "again": "42", "seed7": "7"}
    procs = {name: start("train_mnr.py", "--model-name", tiny_model_dir, "--nli-data", nli_dir, *TRAIN_FLAGS,
                         "--max-steps", "30", "--seed", seed, "--output-dir", str(base / name))
             for name, seed in seeds.items()}
    results = {"main": finish(procs["main"])}
    evaluation = None
    if results["main"].returncode == 0:
        evaluation = start("evaluate_sts.py", str(base / "main"), tiny_model_dir, "--sts-data", sts_dir,
                           "--split", "dev", "--json")
    results.update({name: finish(procs[name]) for name in ("again", "seed7")})
    for name, proc in results.items():
        assert proc.returncode == 0, f"{name}: {proc.stderr[-3000:]}"
    return {"dirs": {name: str(base / name) for name in seeds}, "evaluation": finish(evaluation)}


@pytest.fixture(scope="module")
def trained(runs):
    return runs["dirs"]["main"]


def test_train_log(trained):
    with open(os.path.join(trained, "train_log.jsonl")) as f:
        lines = [json.loads(line) for line in f if line.strip()]
    assert [line["step"] for line in lines] == list(range(1, 31))
    for line in lines:
        assert set(line) == {"step", "loss", "lr", "grad_norm", "pairs_per_s"}, line
        assert line["loss"] > 0 and line["pairs_per_s"] > 0 and line["lr"] >= 0
    losses = [line["loss"] for line in lines]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5, losses
    # Linear warmup then decay: the peak learning rate is the one asked for, and it ends near zero.
    lrs = [line["lr"] for line in lines]
    assert max(lrs) == pytest.approx(1e-3)
    assert lrs[-1] < 1e-4 and lrs.index(max(lrs)) < 10


def test_saved_folder_contents(trained):
    files = set(os.listdir(trained))
    assert {"model.safetensors", "config.json", "tokenizer_config.json", "modules.json",
            "sentence_bert_config.json"} <= files, files
    assert "tokenizer.json" in files or "vocab.txt" in files
    with open(os.path.join(trained, "1_Pooling", "config.json")) as f:
        pooling_config = json.load(f)
    assert pooling_config["pooling_mode_mean_tokens"] is True
    assert not pooling_config.get("pooling_mode_cls_token") and not pooling_config.get("pooling_mode_max_tokens")
    assert pooling_config["word_embedding_dimension"] == 32
    with open(os.path.join(trained, "modules.json")) as f:
        modules = json.load(f)
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Pooling"]
    assert modules[1]["path"] == "1_Pooling"
    # No temporary folders from the atomic save are left next to the output.
    assert not [e for e in os.listdir(os.path.dirname(trained)) if e.startswith(".")]


TEXTS = ["Hi", "A man is playing a guitar on stage.",
         "Two women are embracing while holding to go packages after just eating lunch in the park.",
         "NA", "A dog runs."]


def test_reload_gives_identical_embeddings(trained, tiny_model_dir):
    from transformers import AutoModel, AutoTokenizer
    got = evaluate_sts.encode(evaluate_sts.load_encoder(trained), TEXTS)
    assert got.shape == (len(TEXTS), 32)

    # By hand: transformers + mean pooling on one padded batch, in the caller's order.
    tokenizer = AutoTokenizer.from_pretrained(trained)
    model = AutoModel.from_pretrained(trained).eval()
    with torch.inference_mode():
        features = tokenizer(TEXTS, padding=True, truncation=True, max_length=128, return_tensors="pt")
        want = pooling.mean_pool(model(**features).last_hidden_state, features["attention_mask"])
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()

    # The training changed the model: the folder is not the untouched tiny model.
    base = AutoModel.from_pretrained(tiny_model_dir).eval()
    with torch.inference_mode():
        untrained = pooling.mean_pool(base(**features).last_hidden_state, features["attention_mask"])
    assert not torch.allclose(got, untrained, atol=1e-3)

    st = pytest.importorskip("sentence_transformers")
    st_emb = st.SentenceTransformer(trained, device="cpu").encode(TEXTS, convert_to_tensor=True)
    assert torch.allclose(got, st_emb.cpu(), atol=1e-5), (got - st_emb.cpu()).abs().max()


def load_weights(folder):
    from safetensors.torch import load_file
    return load_file(os.path.join(folder, "model.safetensors"))


def test_same_seed_gives_bit_identical_weights(runs, tiny_model_dir):
    a, b = load_weights(runs["dirs"]["main"]), load_weights(runs["dirs"]["again"])
    assert a.keys() == b.keys() and a
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different[:5]
    # ... and training did move them (else the equality above says nothing).
    initial = load_weights(tiny_model_dir)
    assert any(not torch.equal(a[k], initial[k]) for k in a if k in initial)


def test_other_seed_gives_other_weights(runs):
    a, c = load_weights(runs["dirs"]["main"]), load_weights(runs["dirs"]["seed7"])
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_evaluate_sts_json(runs, trained, tiny_model_dir):
    proc = runs["evaluation"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout)
    assert isinstance(results, list) and len(results) == 2
    assert {r["model"] for r in results} == {trained, tiny_model_dir}
    for r in results:
        assert set(r) == {"model", "split", "spearman", "pearson", "n"}, r
        assert r["split"] == "dev" and r["n"] == 1500
        assert -1 <= r["spearman"] <= 1 and -1 <= r["pearson"] <= 1
    assert results[0]["spearman"] >= results[1]["spearman"]  # sorted best first
    assert results[0]["spearman"] != results[1]["spearman"]  # two different models, two different scores


# ---------------------------------------------------------------------------------------------------------
# The command line


def one_error_line(proc):
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr[-2000:]
    return lines[0]


BAD_VALUES = [("--max-steps", "0"), ("--lr", "0"), ("--batch-size", "0")]


@pytest.fixture(scope="module")
def cli_errors(tiny_model_dir, nli_dir, tmp_path_factory):
    """The refused command lines, started together: each only imports and exits."""
    base = tmp_path_factory.mktemp("cli")
    procs = {flag: start("train_mnr.py", "--model-name", tiny_model_dir, "--nli-data", nli_dir,
                         "--output-dir", str(base / flag.strip("-")), flag, value) for flag, value in BAD_VALUES}
    procs["--bogus"] = start("train_mnr.py", "--bogus", "1")
    return base, {flag: finish(p, timeout=300) for flag, p in procs.items()}


@pytest.mark.parametrize("flag,value", BAD_VALUES)
def test_bad_values_exit_with_one_error_line(cli_errors, flag, value):
    base, procs = cli_errors
    proc = procs[flag]
    assert proc.returncode != 0
    assert flag in one_error_line(proc)
    assert not os.path.exists(base / flag.strip("-"))  # refused before anything was written


def test_unknown_flag_is_an_argparse_error(cli_errors):
    proc = cli_errors[1]["--bogus"]
    assert proc.returncode == 2
    assert "--bogus" in proc.stderr and "Traceback" not in proc.stderr


def test_parse_config_types_and_defaults():
    config = train_mnr.parse_config(argv=["--batch-size", "64", "--dropout", "0", "--max-steps", "3"])
    assert config["BATCH_SIZE"] == 64 and type(config["BATCH_SIZE"]) is int
    assert config["DROPOUT"] == 0.0 and type(config["DROPOUT"]) is float
    assert config["MAX_STEPS"] == 3 and type(config["MAX_STEPS"]) is int
    changed = {"BATCH_SIZE", "DROPOUT", "MAX_STEPS"}
    assert {k: v for k, v in config.items() if k not in changed} == \
        {k: v for k, v in train_mnr.DEFAULTS.items() if k not in changed}
    assert config.keys() == train_mnr.DEFAULTS.keys()
    # A float flag accepts an int-looking value and stays a float; an int flag refuses a float.
    assert type(train_mnr.parse_config(argv=["--lr", "1"])["LR"]) is float
    with pytest.raises(SystemExit):
        train_mnr.parse_config(argv=["--batch-size", "1.5"])


def test_boolean_flags_parse_both_ways():
    assert train_mnr.parse_config(argv=["--hard-negatives"])["HARD_NEGATIVES"] is True
    assert train_mnr.parse_config(argv=["--no-hard-negatives"])["HARD_NEGATIVES"] is False
    assert train_mnr.parse_config(argv=[])["HARD_NEGATIVES"] is train_mnr.DEFAULTS["HARD_NEGATIVES"]
    with pytest.raises(SystemExit):  # not type=bool: "False" is not silently True
        train_mnr.parse_config(argv=["--hard-negatives", "False"])


def test_hub_unreachable_fails_fast_with_one_line():
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(PYTHONPATH=ROOT, TOKENIZERS_PARALLELISM="false")
    t0 = time.monotonic()
    proc = finish(start("data_prep.py", "--nli-data", "hub", env=env), timeout=120)
    elapsed = time.monotonic() - t0
    if proc.returncode == 0:
        pytest.skip("the hub is reachable from this machine; this test is about the offline path")
    assert elapsed < 30, elapsed
    assert "--nli-data" in one_error_line(proc)
