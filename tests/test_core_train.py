"""End to end: train_mnr.py on the real NLI files with the tiny random BERT, the saved folder, determinism,
evaluate_sts.py, and the command line's errors.

The training runs start together (one thread each: the machine has 2 cores) and are shared by the tests."""
import json
import os
import time

import pytest
import torch

import evaluate_sts
import pooling
import train_mnr
from conftest import FULL_DATA, count_rows, finish, start_script

TRAIN_FLAGS = ["--batch-size", "16", "--lr", "1e-3"]


@pytest.fixture(scope="module")
def runs(tiny_model_dir, nli_dir, sts_dir, tmp_path_factory):
    """Three 30-step runs at once, one thread each (the second repeats the first, the third has another seed),
    then evaluate_sts.py on the first run's folder while the others finish. Each test checks what it uses."""
    base = tmp_path_factory.mktemp("runs")
    seeds = {"main": "42", "again": "42", "seed7": "7"}
    procs = {name: start_script("train_mnr.py", "--model-name", tiny_model_dir, "--nli-data", nli_dir, *TRAIN_FLAGS,
                                "--max-steps", "30", "--seed", seed, "--output-dir", str(base / name),
                                OMP_NUM_THREADS="1")
             for name, seed in seeds.items()}
    results = {"main": finish(procs["main"])}
    evaluation = start_script("evaluate_sts.py", str(base / "main"), tiny_model_dir, "--sts-data", sts_dir,
                              "--split", "dev", "--json", OMP_NUM_THREADS="1")
    results.update({name: finish(procs[name]) for name in ("again", "seed7")})
    return {"dirs": {name: str(base / name) for name in seeds}, "results": results, "evaluation": finish(evaluation)}


def finished(runs, *names):
    for name in names:
        assert runs["results"][name].returncode == 0, f"{name}: {runs['results'][name].stderr[-3000:]}"
    return [runs["dirs"][name] for name in names]


@pytest.fixture(scope="module")
def trained(runs):
    return finished(runs, "main")[0]


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
    a, b = map(load_weights, finished(runs, "main", "again"))
    assert a.keys() == b.keys() and a
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different[:5]
    # ... and training did move them (else the equality above says nothing).
    initial = load_weights(tiny_model_dir)
    assert any(not torch.equal(a[k], initial[k]) for k in a if k in initial)


def test_other_seed_gives_other_weights(runs):
    a, c = map(load_weights, finished(runs, "main", "seed7"))
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_evaluate_sts_json(runs, trained, tiny_model_dir, sts_dir):
    proc = runs["evaluation"]
    # STSb dev has 1,500 pairs; the shipped sample (no full data here) has what its file holds, counted apart.
    dev_pairs = 1500 if FULL_DATA else count_rows(os.path.join(sts_dir, "dev.tsv.gz"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout)
    assert isinstance(results, list) and len(results) == 2
    assert {r["model"] for r in results} == {trained, tiny_model_dir}
    for r in results:
        assert set(r) == {"model", "split", "spearman", "pearson", "n"}, r
        assert r["split"] == "dev" and r["n"] == dev_pairs
    assert results[0]["spearman"] >= results[1]["spearman"]  # sorted best first
    assert results[0]["spearman"] != results[1]["spearman"]  # two different models, two different scores


# ---------------------------------------------------------------------------------------------------------
# The command line


def one_error_line(proc):
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr[-2000:]
    return lines[0]


def test_a_refused_value_is_one_error_line_from_a_real_process(tiny_model_dir, nli_dir, tmp_path):
    """What a user sees in a terminal (tests/test_bad_input.py checks every case in-process)."""
    proc = finish(start_script("train_mnr.py", "--model-name", tiny_model_dir, "--nli-data", nli_dir,
                               "--output-dir", str(tmp_path / "out"), "--lr", "0"), timeout=300)
    assert proc.returncode == 1
    assert one_error_line(proc) == "error: --lr must be positive, got 0.0"
    assert not os.path.exists(tmp_path / "out")  # refused before anything was written


def test_flags_take_their_type_and_default_from_the_block():
    args = train_mnr.parse_args(["--batch-size", "64", "--dropout", "0", "--max-steps", "3"])
    assert args.batch_size == 64 and type(args.batch_size) is int
    assert args.dropout == 0.0 and type(args.dropout) is float
    assert args.max_steps == 3 and type(args.max_steps) is int
    defaults = vars(train_mnr.parse_args([]))
    assert defaults == {name.lower(): value for name, value in vars(train_mnr).items()
                        if name.isupper() and name.lower() in defaults}  # every flag's default is its constant
    assert {k: v for k, v in vars(args).items() if k not in ("batch_size", "dropout", "max_steps")} == \
        {k: v for k, v in defaults.items() if k not in ("batch_size", "dropout", "max_steps")}
    # A float flag accepts an int-looking value and stays a float; an int flag refuses a float.
    assert type(train_mnr.parse_args(["--lr", "1"]).lr) is float
    with pytest.raises(SystemExit):
        train_mnr.parse_args(["--batch-size", "1.5"])


def test_help_shows_each_flag_with_its_why_and_default(capsys):
    with pytest.raises(SystemExit):
        train_mnr.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--batch-size BATCH_SIZE rows per step" in text and "(default: 32)" in text
    assert "--resume [PATH]" in text and "--pack-sequences, --no-pack-sequences" in text


def test_boolean_flags_parse_both_ways():
    assert train_mnr.parse_args(["--hard-negatives"]).hard_negatives is True
    assert train_mnr.parse_args(["--no-hard-negatives"]).hard_negatives is False
    assert train_mnr.parse_args([]).hard_negatives is train_mnr.HARD_NEGATIVES
    with pytest.raises(SystemExit):  # not type=bool: "False" is not silently True
        train_mnr.parse_args(["--hard-negatives", "False"])


def test_hub_unreachable_fails_fast_with_one_line():
    t0 = time.monotonic()
    proc = finish(start_script("data_prep.py", "--nli-data", "hub", HF_HUB_OFFLINE="0"), timeout=120)
    elapsed = time.monotonic() - t0
    if proc.returncode == 0:
        pytest.skip("the hub is reachable from this machine; this test is about the offline path")
    assert elapsed < 30, elapsed
    assert "--nli-data" in one_error_line(proc)
