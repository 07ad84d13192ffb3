"""Batch composition (--batch-sampler, --clusters; mnr/samplers.py, data_prep.sampled_batches), the false-negative
share, and seconds-long versions of compare_runs.py's scifact and batch presets.

Every sampler keeps the tutorial's rules (full batches, no text twice in a batch, one use of a row per epoch,
seeded); clustered batches come from one k-means cluster, by-source batches from one source; resuming with
another sampler is refused."""
import glob
import gzip
import json
import os
import shlex
import shutil

import pytest
import torch
from safetensors.torch import load_file

import compare_runs
import data_prep
import train_mnr
from conftest import SAMPLE_DIR, commands_recorded, run_in_process, runs_recorded, write_tsv
from mnr import recipe, samplers, scores, sitting
from mnr.presets import SOUP
from mnr.errors import ConfigError
from mnr.tables import load_train_data


def hand_rows(sizes=(("a", 30), ("b", 20), ("c", 10)), repeat=True):
    """Rows in groups of the given sizes; with `repeat`, each premise in two rows of its group, as in NLI."""
    rows, groups = [], []
    for group, size in sizes:
        for i in range(size):
            rows.append((f"{group} premise {i // 2 if repeat else i}", f"{group} hypothesis {i}"))
            groups.append(group)
    return rows, groups


def check_batches(rows, batches, batch_size):
    """The tutorial's rules: full batches, no text twice in a batch, no row twice in an epoch."""
    assert batches
    for batch in batches:
        texts = [text for i in batch for text in rows[i]]
        assert len(batch) == batch_size and len(set(texts)) == len(texts)
    used = [i for batch in batches for i in batch]
    assert len(used) == len(set(used))


def grouped(rows, groups, batch_size, seed, epoch=0):
    return samplers.grouped_batches(rows, groups, batch_size, seed, epoch, data_prep.epoch_batches)


def test_grouped_batches_are_duplicate_free_and_each_from_one_group():
    rows, groups = hand_rows()
    for seed in range(5):
        batches = grouped(rows, groups, 5, seed=seed)
        check_batches(rows, batches, 5)
        assert all(len({groups[i] for i in batch}) == 1 for batch in batches)
    rows, groups = hand_rows(repeat=False)  # no shared text: every group fills batches to its last row
    batches = grouped(rows, groups, 5, seed=0)
    counts = {g: sum(groups[batch[0]] == g for batch in batches) for g in "abc"}
    assert counts == {"a": 6, "b": 4, "c": 2}  # every group in proportion to its size


def test_grouped_batches_are_seeded():
    rows, groups = hand_rows()
    first = grouped(rows, groups, 5, seed=1)
    assert grouped(rows, groups, 5, seed=1) == first
    assert grouped(rows, groups, 5, seed=2) != first
    assert grouped(rows, groups, 5, seed=1, epoch=1) != first  # each epoch reshuffles
    # The groups are interleaved, not laid one after another: some seed starts with a group other than the first.
    assert {groups[grouped(rows, groups, 5, seed)[0][0]] for seed in range(20)} != {"a"}


def test_a_group_smaller_than_a_batch_gives_no_batch():
    rows, groups = hand_rows((("a", 30), ("b", 20), ("c", 4)), repeat=False)
    batches = grouped(rows, groups, 6, seed=0)
    assert {groups[batch[0]] for batch in batches} == {"a", "b"} and len(batches) == 5 + 3


def test_kmeans_finds_separated_clusters_and_is_seeded():
    generator = torch.Generator().manual_seed(0)
    centres = torch.eye(8)[:3] * 10
    x = torch.cat([centre + torch.randn(20, 8, generator=generator) for centre in centres])
    labels = samplers.kmeans(x, 3, seed=0)
    truth = torch.arange(3).repeat_interleave(20)
    assert all(len(set(labels[truth == c].tolist())) == 1 for c in range(3))  # each blob one cluster...
    assert len(set(labels.tolist())) == 3  # ...and each its own
    assert torch.equal(samplers.kmeans(x, 3, seed=0), labels)


TOPICS = {  # eight ways to say each of three things: topics MiniLM tells apart
    "guitar": ["A man is playing a guitar.", "A man plays the guitar.", "A guy is playing guitar.",
               "Someone is playing an acoustic guitar.", "A man strums his guitar.", "A musician plays a guitar.",
               "A person is playing the guitar.", "The man is playing a guitar on stage."],
    "dog": ["A dog is running through a field.", "A dog runs across the grass.", "A brown dog is running outside.",
            "The dog is running in the park.", "A puppy runs through the field.", "A dog sprints across a meadow.",
            "A black dog is running on the grass.", "Two dogs are running through a field."],
    "onion": ["A woman is slicing an onion.", "A woman cuts an onion.", "Someone is chopping an onion.",
              "A cook slices onions.", "A woman is dicing onions in the kitchen.", "A person is cutting up an onion.",
              "The woman is slicing onions with a knife.", "A chef chops an onion."],
}


def test_clustered_batches_come_from_one_topic_of_the_start_model(minilm_path):
    rows = [(anchor, f"{topic} row {i}") for topic, anchors in TOPICS.items() for i, anchor in enumerate(anchors)]
    topic = {row: name for row, name in zip(rows, [t for t, a in TOPICS.items() for _ in a])}
    clusters = data_prep.anchor_clusters(rows, minilm_path, 3, seed=0)
    assert len(set(clusters)) == 3 and all(len({clusters[i] for i in range(len(rows)) if topic[rows[i]] == t}) == 1
                                           for t in TOPICS)  # MiniLM's clusters are the three topics
    batches = data_prep.sampled_batches(rows, None, "clustered", 4, seed=0, epochs=2, clusters=3,
                                        model_name=minilm_path)
    assert len(batches) == 12  # 24 rows, batches of 4, two epochs
    for epoch in (batches[:6], batches[6:]):
        check_batches(rows, epoch, 4)
    assert all(len({topic[rows[i]] for i in batch}) == 1 for batch in batches)
    assert batches[:6] != batches[6:]


def test_clustered_batches_with_a_tiny_model_are_seeded_and_one_cluster_each(tiny_model_dir):
    rows = data_prep.make_rows(data_prep.load_nli(os.path.join(SAMPLE_DIR, "nli")))[:400]
    clusters = data_prep.anchor_clusters(rows, tiny_model_dir, 4, seed=0)
    batches = data_prep.sampled_batches(rows, None, "clustered", 8, 0, 1, clusters=4, model_name=tiny_model_dir)
    check_batches(rows, batches, 8)
    assert all(len({clusters[i] for i in batch}) == 1 for batch in batches)
    again = data_prep.sampled_batches(rows, None, "clustered", 8, 0, 1, clusters=4, model_name=tiny_model_dir)
    other = data_prep.sampled_batches(rows, None, "clustered", 8, 1, 1, clusters=4, model_name=tiny_model_dir)
    assert again == batches and other != batches


def write_nli(path, rows):
    return write_tsv(path, ["premise", "hypothesis", "label"], rows)


def two_sources(tmp_path):
    folder = tmp_path / "nli"
    folder.mkdir()
    for name, n in (("first_train.tsv", 24), ("second_train.tsv", 12)):
        write_nli(folder / name, [(f"{name} premise {i}", f"{name} says {i}", "entailment") for i in range(n)]
                  + [(f"{name} premise {i}", f"{name} denies {i}", "contradiction") for i in range(0, n, 2)])
    return str(folder)


def test_nli_rows_carry_their_file_as_source_and_stay_the_same_rows(tmp_path, nli_dir):
    nli = data_prep.load_nli(two_sources(tmp_path))
    rows, sources = data_prep.make_rows(nli, with_sources=True)
    assert rows == data_prep.make_rows(nli) and len(sources) == len(rows) == 36
    assert sources == ["first_train.tsv"] * 24 + ["second_train.tsv"] * 12
    assert all(row[0].startswith(source) for row, source in zip(rows, sources))
    triplets, sources = data_prep.make_rows(nli, hard_negatives=True, with_sources=True)
    assert triplets == data_prep.make_rows(nli, hard_negatives=True) and len(triplets) == 18
    assert all(row[0].startswith(source) for row, source in zip(triplets, sources))
    real = data_prep.load_nli(nli_dir)  # the real files: the same rows with or without their sources
    assert data_prep.make_rows(real, True, with_sources=True)[0] == data_prep.make_rows(real, True)


def test_by_source_batches_come_from_one_source(tmp_path):
    rows, sources = data_prep.make_rows(data_prep.load_nli(two_sources(tmp_path)), with_sources=True)
    batches = data_prep.sampled_batches(rows, sources, "by-source", 6, seed=0, epochs=1)
    check_batches(rows, batches, 6)
    assert all(len({sources[i] for i in batch}) == 1 for batch in batches)
    assert sorted(sources[batch[0]] for batch in batches) == ["first_train.tsv"] * 4 + ["second_train.tsv"] * 2
    assert data_prep.sampled_batches(rows, sources, "by-source", 6, seed=0, epochs=1) == batches
    assert data_prep.sampled_batches(rows, sources, "by-source", 6, seed=1, epochs=1) != batches


def test_train_data_list_is_one_source_per_file_and_one_source_is_refused(tmp_path):
    files = [write_tsv(tmp_path / f"{name}.tsv", ["anchor", "positive"],
                       [(f"{name} question {i}", f"{name} answer {i}") for i in range(8)]) for name in ("x", "y")]
    rows, sources = load_train_data(",".join(files), with_sources=True)
    assert sources == [files[0]] * 8 + [files[1]] * 8 and rows == load_train_data(",".join(files))
    with pytest.raises(ConfigError, match="one source"):
        data_prep.sampled_batches(rows[:8], sources[:8], "by-source", 4, seed=0, epochs=1)
    with pytest.raises(ConfigError, match="--clusters 3"):  # --clusters means nothing to another sampler
        data_prep.sampled_batches(rows, sources, "by-source", 4, seed=0, epochs=1, clusters=3)


def test_the_default_sampler_is_the_tutorials(nli_dir):
    args = train_mnr.parse_args(["--nli-data", nli_dir, "--batch-size", "16", "--epochs", "2"])
    rows, batches, _ = train_mnr.load_batches(args)
    assert batches == [b for epoch in (0, 1) for b in data_prep.epoch_batches(rows, 16, 42, epoch)]


def test_false_negative_share_on_a_hand_made_batch():
    """Two queries about x and two about y, batched (0, 1) and (2, 3). Row 2's positive points at y, and row 3's
    at x: each query finds the other row's positive closer than its own."""
    anchors = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    positives = torch.tensor([[1.0, 0.1], [0.1, 1.0], [0.6, 0.8], [1.0, 0.05]])
    assert samplers.false_negative_share([anchors, positives], [[0, 1]]) == 0.0
    assert samplers.false_negative_share([anchors, positives], [[2, 3]]) == 1.0
    assert samplers.false_negative_share([anchors, positives], [[0, 1], [2, 3]]) == 0.5
    # A negative column counts too: row 0's own negative above its positive.
    negatives = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, -1.0], [-1.0, -1.0]])
    assert samplers.false_negative_share([anchors, positives, negatives], [[0, 1]]) == 0.5



def test_resume_refuses_another_sampler(tmp_path, tiny_model_dir):
    data = os.path.join(SAMPLE_DIR, "nli")  # two train files: SNLI and MultiNLI
    out = tmp_path / "run"
    flags = ["--model-name", tiny_model_dir, "--nli-data", data, "--batch-size", "8", "--max-steps", "4",
             "--save-every", "2", "--output-dir", str(out)]
    assert run_in_process([*flags, "--batch-sampler", "by-source"]) is None
    config = json.load(open(out / "training_config.json"))
    assert config["BATCH_SAMPLER"] == "by-source" and config["CLUSTERS"] is None
    message = run_in_process([*flags, "--resume"])
    assert message.startswith("error:") and "--batch-sampler 'no-duplicates'" in message
    assert "written with 'by-source'" in message
    message = run_in_process([*flags, "--resume", "--batch-sampler", "clustered", "--clusters", "2"])
    assert message.startswith("error:") and "--batch-sampler" in message


# ---- compare_runs.py's presets, a few steps each -----------------------------------------------------------

def head(src, dst, n):
    with gzip.open(src, "rt") as f, open(dst, "w") as out:
        for _ in range(n + 1):
            out.write(f.readline())


@pytest.fixture(scope="module")
def small_sts(tmp_path_factory, sts_dir):
    folder = tmp_path_factory.mktemp("sts")
    for split in ("dev", "test"):
        head(os.path.join(sts_dir, f"{split}.tsv.gz"), folder / f"{split}.tsv", 40)
    return str(folder)


WORDS = ["protein", "cell", "gene", "virus", "cancer", "brain", "heart", "blood", "liver", "bone", "skin", "lung"]


def beir_folder(path):
    """A small hand-made BEIR folder: 120 documents, 24 train and 6 dev queries, each with one relevant document."""
    os.makedirs(path / "qrels")
    documents = [(f"d{i}", f"Study {i} of the {WORDS[i % 12]}", f"We measured how the {WORDS[i % 12]} reacts to "
                  f"treatment {i} and found effect {i * 7 % 11}.") for i in range(120)]
    with open(path / "corpus.jsonl", "w") as f:
        f.writelines(json.dumps({"_id": d, "title": title, "text": text}) + "\n" for d, title, text in documents)
    with open(path / "queries.jsonl", "w") as f:
        f.writelines(json.dumps({"_id": f"q{i}", "text": f"Does treatment {i} change the {WORDS[i % 12]}?"}) + "\n"
                     for i in range(30))
    for split, queries in (("train", range(24)), ("dev", range(24, 30))):
        write_tsv(path / "qrels" / f"{split}.tsv", ["query-id", "corpus-id", "score"],
                  [(f"q{i}", f"d{i}", "1") for i in queries])
    return str(path)


def shrunk(runs, sizes):
    """A preset's runs with their batch sizes replaced (the real ones are larger than the smoke data)."""
    return [(name, short, [sizes.get(flag, flag) for flag in command]) for name, short, command in runs]


def test_compare_runs_scifact_smoke(tmp_path, tiny_model_dir, small_sts, monkeypatch, capsys):
    monkeypatch.setattr(sitting, "cpu_has_native_bf16", lambda: False)  # said at start on a CPU that emulates it
    monkeypatch.setattr(sitting.torch.cuda, "is_available", lambda: False)
    folder = beir_folder(tmp_path / "beir")
    # The new paths: BEIR pairs, mined from the BEIR corpus once for two runs, GradCache, clustered batches (plain
    # and hardness-weighted training are the same paths as clustered's, tested in-process in test_hardness.py).
    # Batch 4 for every run (24 train pairs), before each run's own flags as the preset's batch size would be.
    runs = [(name, short, [command[0], "--batch-size", "4", *command[1:]])
            for name, short, command in shrunk(compare_runs.PRESETS["scifact"]["runs"], {"128": "8", "32": "4"})
            if short in ("mnr", "mined", "mined-batch128", "clustered", "mined-top100-epochs5",
                         "mined-top100-epochs5-soup3")]
    # The random tiny model scores every text alike: the 5 % margin would leave no negative, and its top-1 is the
    # same document for most queries (which no batch could hold twice); so no margin, and a random one of the top 30.
    random_top30 = ["--num-negatives", "1", "--relative-margin", "0", "--sampling", "random"]
    mine = dict(compare_runs.PRESETS["scifact"]["mine"], mined=random_top30, **{"mined-top100": random_top30})
    preset = dict(compare_runs.PRESETS["scifact"], train=folder, beir=[folder, "dev"], sts=small_sts, runs=runs,
                  mine=mine, flags=["--max-steps", "2", "--max-length", "64", "--epochs", "3"])
    monkeypatch.setitem(compare_runs.PRESETS, "scifact", preset)
    out = tmp_path / "out"
    compare_runs.main(["--preset", "scifact", "--model-name", tiny_model_dir, "--output-dir", str(out),
                       "--seeds", "1"])
    said = capsys.readouterr().out.splitlines()
    assert said[0].startswith("note: this preset computes its scoring in bf16")  # the shrunk runs' flags: no bf16
    rows = {r["run"]: r for r in json.load(open(out / "results.json"))}
    assert len(rows) == 7 and all(r["ndcg@10"] >= 0 and "recall@100" in r and "sts_test" in r for r in rows.values())
    # every row but plain MNR: its ndcg@10 difference to plain MNR over the same 6 dev queries, with an interval
    baseline = rows["MNR, in-batch negatives only"]
    assert "ndcg@10_delta" not in baseline and len(baseline["per_seed"][0]["per_query"]["ndcg@10"]) == 6
    for name, r in rows.items():
        if r is not baseline:
            assert r["ndcg@10_delta"] == pytest.approx(r["ndcg@10"] - baseline["ndcg@10"], abs=1e-12)
            low, high = r["ndcg@10_delta_ci95"]
            assert low <= r["ndcg@10_delta"] <= high
        assert name == "start model (untrained)" or r["minutes"] > 0  # the training's wall time
    assert rows["start model (untrained)"]["commands"] == []
    mined = rows["+ 1 mined negative, relative margin 0.05"]
    larger = rows["+ 1 mined negative, batch 128 through GradCache, lr 2e-4"]
    assert [c[0] for c in mined["commands"]] == ["mine_negatives.py", "train_mnr.py"]
    assert mined["commands"][0] == larger["commands"][0]  # mined once, for both runs
    def shown(path):  # as results files show a path: relative to the repository (a folder beside it: ../)
        return compare_runs.shown(str(path), None)
    assert mined["commands"][0][mined["commands"][0].index("--corpus") + 1] == shown(folder)
    config = json.load(open(out / "mined-batch128" / "training_config.json"))
    assert (config["BATCH_SIZE"], config["MINI_BATCH_SIZE"]) == (8, 4)  # the run's own batch, not the preset's
    clustered = rows["+ clustered batches (TAS-B)"]["commands"]
    assert len(clustered) == 1 and clustered[0][clustered[0].index("--train-data") + 1] == shown(folder)
    config = json.load(open(out / "clustered" / "training_config.json"))
    assert config["BATCH_SAMPLER"] == "clustered" and config["MAX_LENGTH"] == 64
    assert config["EPOCHS"] == 3  # the preset's flag
    assert json.load(open(out / "mined-top100-epochs5" / "training_config.json"))["EPOCHS"] == 5  # the run's wins
    epochs5_name = "+ 1 mined negative from the top 100, 5 epochs"
    epochs5 = rows[epochs5_name]["commands"]
    assert [c[0] for c in epochs5] == ["mine_negatives.py", "train_mnr.py"]  # mined-top100's settings, aliased
    assert epochs5[0][epochs5[0].index("--sampling") + 1] == "random"
    # the soup row: its one model (--seeds 1) averages the five-epoch row's seeds 42, 43 and 44, tensor by tensor
    soup = rows["+ 1 mined negative from the top 100, 5 epochs, soup of 3 runs"]
    assert [c[0] for c in soup["commands"]] == ["mine_negatives.py", *["train_mnr.py"] * 3, "benchmarks/model_soup.py"]
    assert soup["commands"][0] == epochs5[0] and soup["commands"][1] == epochs5[1]  # mined once, seed 42 trained once
    runs = [out / "mined-top100-epochs5", out / "mined-top100-epochs5-seed43", out / "mined-top100-epochs5-seed44"]
    assert soup["commands"][-1][1:4] == [shown(run) for run in runs]
    assert soup["averages"] == [[shown(run) for run in runs]] and "averages" not in rows[epochs5_name]
    weights = [load_file(run / "model.safetensors") for run in runs]
    for tensor_name, tensor in load_file(out / "mined-top100-epochs5-soup3" / "model.safetensors").items():
        if tensor.is_floating_point():
            assert torch.allclose(tensor.double(), sum(w[tensor_name].double() for w in weights) / 3, atol=1e-7)
    trained_for = [json.load(open(run / "command.json"))["seconds"] for run in runs]
    assert soup["minutes"] * 60 >= sum(trained_for)  # its cost: three trainings
    table = open(out / "results.md").read()
    assert "averages the weights of 3 runs of \"+ 1 mined negative from the top 100, 5 epochs\"" in table
    assert all(f"python {shlex.join(c)}" in table for c in soup["commands"])  # every command run, seeds 43, 44 too
    # the recipe of --preset beir is one training: never a soup row, even the best one
    results = json.load(open(out / "results.json"))
    for row in results:
        row["ndcg@10"] = 1.0 if row["run"] == soup["run"] else 0.5 if row["run"] == epochs5_name else 0.0
    json.dump(results, open(tmp_path / "recorded.json", "w"))
    assert recipe.best_row(str(tmp_path / "recorded.json"))["run"] == epochs5_name
    assert f"Retrieval: {shown(folder)} dev" in table and table.count("\n| ") == 9  # header, rule, 7 rows
    assert "[95 % CI over queries]" in table and "Machine: " in table


@pytest.mark.parametrize("native", [False, True])
def test_a_preset_in_bf16_is_announced_where_the_cpu_emulates_bf16(native):
    """The scifact preset pins bf16 (one table over several sittings): on a CPU without native bf16 each of its
    steps is ~14x slower than fp32, which a user learns at start, with which of its runs and scoring it concerns."""
    scifact = compare_runs.PRESETS["scifact"]
    trained = [run for run in scifact["runs"] if run[1] not in scifact["soups"]]  # a soup row trains no run of its own
    note = sitting.emulated_bf16(scifact, native=native)
    assert note is None if native else note.startswith(f"note: this preset computes the training of {len(trained)} of "
                                                       f"its {len(trained)} runs and its scoring in bf16")
    # the precision preset: only its two bf16 runs; a preset in auto precision (fp32 where bf16 is emulated): nothing
    note = sitting.emulated_bf16(compare_runs.PRESETS["precision"], native=native)
    assert note is None if native else note.startswith("note: this preset computes the training of 2 of its 4 runs in")
    assert sitting.emulated_bf16(compare_runs.PRESETS["negatives"], native=native) is None
    every = len(compare_runs.PRESETS["negatives"]["runs"])  # its flags in bf16: each run's training, no scoring
    forced = sitting.emulated_bf16(dict(compare_runs.PRESETS["negatives"], flags=["--precision", "bf16"]),
                                        native=native)
    assert forced is None if native else f"the training of {every} of its {every} runs in bf16" in forced
    assert recipe.option(["train_mnr.py", "--precision", "bf16", "--precision", "fp32"], "--precision") == "fp32"


def scifact_rows(*shorts):
    """The scifact preset with only the runs named `shorts` (their short names)."""
    return dict(compare_runs.PRESETS["scifact"], runs=[r for r in compare_runs.PRESETS["scifact"]["runs"]
                                                        if r[1] in shorts])


def test_a_soup_row_averages_disjoint_seeds_and_lists_every_command(tmp_path, monkeypatch):
    """With --seeds 2 the scifact soup row trains the five-epoch row with seeds 42-47 (42-44 shared with that row)
    and makes two soups, of 42-44 and of 45-47; every command is run, and listed, once."""
    ran = runs_recorded(monkeypatch, compare_runs)
    preset = scifact_rows("mined-top100-epochs5", "mined-top100-epochs5-soup3")
    trained, commands = compare_runs.train_all(preset, "START-MODEL", "out", str(tmp_path), seeds=2)
    # each command listed once (seeds 42 and 43 are the plain row's and the soup's: trained once, reused after)
    assert len(commands) == len({json.dumps(c) for c in commands}) == 1 + 6 + 2  # mining, 6 runs, 2 soups
    assert {json.dumps(c) for c in ran} == {json.dumps(c) for c in commands}
    (_, plain, _, _), (_, soups, first, members) = trained
    def seed(folder):
        return 42 if folder.endswith("epochs5") else int(folder.rsplit("seed", 1)[1])
    assert [seed(f) for f in plain] == [42, 43] and [os.path.basename(f) for f in soups] == [
        "mined-top100-epochs5-soup3", "mined-top100-epochs5-soup3-2"]
    assert [[seed(f) for f in runs] for runs in members] == [[42, 43, 44], [45, 46, 47]]
    made = [c for c in ran if c[0] == "benchmarks/model_soup.py"]
    assert [c[1:4] for c in made] == [[os.path.relpath(f, compare_runs.ROOT) for f in runs] for runs in members]
    assert [c[0] for c in first] == ["mine_negatives.py", *["train_mnr.py"] * 3, "benchmarks/model_soup.py"]
    assert [seed(c[c.index("--output-dir") + 1]) for c in first[1:4]] == [42, 43, 44] and first[-1] == made[0]
    trainings = [c for c in commands if c[0] == "train_mnr.py"]
    assert sorted(seed(c[c.index("--output-dir") + 1]) for c in trainings) == list(range(42, 48))


def test_rows_trains_those_rows_and_the_runs_a_soup_among_them_averages(tmp_path, monkeypatch):
    """--rows: a sitting too short for the whole preset trains a part of it (the scifact soup row first: its runs'
    weights must be in one sitting): the rows named and the runs a soup among them averages, mined first; no
    other row, and no table (a later run without --rows writes it from every row)."""
    ran = runs_recorded(monkeypatch, compare_runs)
    preset = scifact_rows("mnr", "mined-top100-hardness", "mined-top100-epochs5", "mined-top100-epochs5-soup3")
    def outputs():
        return [os.path.basename(c[c.index("--output-dir" if "--output-dir" in c else "--output") + 1]) for c in ran]
    compare_runs.train_all(preset, "START-MODEL", "out", str(tmp_path), seeds=2, rows={"mined-top100-epochs5-soup3"})
    runs = ["mined-top100-epochs5", *[f"mined-top100-epochs5-seed{seed}" for seed in range(43, 48)]]
    assert outputs() == ["negatives.tsv.gz", *runs[:3], "mined-top100-epochs5-soup3", *runs[3:],
                         "mined-top100-epochs5-soup3-2"]  # the soups' runs only: not the other rows
    del ran[:]
    compare_runs.train_all(preset, "START-MODEL", "out", str(tmp_path), seeds=2, rows={"mnr", "mined-top100-hardness"})
    assert outputs() == ["mnr", "mnr-seed43", "negatives.tsv.gz", "mined-top100-hardness", "mined-top100-hardness-seed43"]
    # main: an unknown row is refused at start, naming the preset's rows; a known one trains, then no table
    with pytest.raises(SystemExit, match="1"):
        compare_runs.main(["--preset", "scifact", "--rows", "mnr,soup", "--output-dir", str(tmp_path / "refused")])
    assert not os.path.exists(tmp_path / "refused")


def test_rows_writes_no_table(tmp_path, tiny_model_dir, small_sts, monkeypatch, capsys):
    folder = beir_folder(tmp_path / "beir")
    preset = dict(compare_runs.PRESETS["scifact"], train=folder, beir=[folder, "dev"], sts=small_sts)
    monkeypatch.setitem(compare_runs.PRESETS, "scifact", preset)
    asked = []
    monkeypatch.setattr(compare_runs, "train_all", lambda *args: asked.append(args[-1]) or ([], []))
    out = tmp_path / "out"
    compare_runs.main(["--preset", "scifact", "--rows", "mnr, hardness", "--model-name", tiny_model_dir,
                       "--output-dir", str(out)])
    assert asked == [{"mnr", "hardness"}] and not os.path.exists(out / "results.md")
    assert "--rows: hardness, mnr trained (or restored); no table written" in capsys.readouterr().out


def test_a_soup_is_made_again_when_one_of_its_runs_is_trained_again(tmp_path, monkeypatch):
    """The soup's command names the same folders before and after a run is retrained: its runs' stamps decide."""
    out = tmp_path / "soup"
    calls = commands_recorded(monkeypatch, compare_runs, out)
    command = ["benchmarks/model_soup.py", "run-a", "run-b", "--output-dir", str(out)]
    runs = [{"command": ["train_mnr.py", "--seed", "42"], "seconds": 60.0},
            {"command": ["train_mnr.py"], "seconds": 61.0}]
    compare_runs.run_once(command, str(out), str(tmp_path / "log"), inputs=runs)
    compare_runs.run_once(command, str(out), str(tmp_path / "log"), inputs=runs)  # the same runs: reused
    assert len(calls) == 1
    compare_runs.run_once(command, str(out), str(tmp_path / "log"), inputs=[runs[0], dict(runs[1], code="edited")])
    assert len(calls) == 2 and "--overwrite" in calls[-1]  # run-b trained again, by other code: the soup is made
    # again, replaced
    # compare_runs gives a soup its runs' stamps (read from each run's command.json)
    recorded = []
    monkeypatch.setattr(compare_runs, "run_once", lambda command, *a, **kw: recorded.append(kw.get("inputs")))
    preset = scifact_rows("mined-top100-epochs5", "mined-top100-epochs5-soup3")
    compare_runs.train_all(preset, "START-MODEL", str(tmp_path / "models"), str(tmp_path), seeds=1)
    assert [len(inputs) for inputs in recorded] == [1, 1, 1, 1, 3]  # 4 runs (their table's stamp), the soup


def test_a_run_is_trained_again_when_its_table_is_mined_again(tmp_path, monkeypatch):
    """New mining code mines the table again under the same name: the runs' commands are unchanged, so only the
    table's stamp can tell that a run was trained on the old one (it was reused, stale, before)."""
    ran = []
    def run(command, **kwargs):  # each script makes its product, as the real ones do
        ran.append(command)
        product = command[command.index("--output") + 1] if "--output" in command else os.path.join(
            command[command.index("--output-dir") + 1], "model.safetensors")
        os.makedirs(os.path.dirname(product), exist_ok=True)
        open(product, "w").close()
        return type("Done", (), {"returncode": 0})()
    monkeypatch.setattr(compare_runs.subprocess, "run", run)
    preset = scifact_rows("mined-top100")
    models = str(tmp_path / "models")
    def scripts():
        return [c[1] for c in ran]  # after the interpreter
    compare_runs.train_all(preset, "START-MODEL", models, str(tmp_path), seeds=2)
    compare_runs.train_all(preset, "START-MODEL", models, str(tmp_path), seeds=2)  # all reused
    assert scripts() == ["mine_negatives.py", "train_mnr.py", "train_mnr.py"]
    version = compare_runs.code_version
    monkeypatch.setattr(compare_runs, "code_version", lambda files: "other" if files == ["mine_negatives.py"]
                        else version(files))  # the miner changed, the training code did not
    compare_runs.train_all(preset, "START-MODEL", models, str(tmp_path), seeds=2)
    assert scripts()[3:] == ["mine_negatives.py", "train_mnr.py", "train_mnr.py"]
    assert all("--overwrite" in c for c in ran[3:])  # each replaces what it made before
    compare_runs.train_all(preset, "START-MODEL", models, str(tmp_path), seeds=2)  # and now reused again
    assert len(ran) == 6


def fake_scripts(ran):
    """subprocess.run for compare_runs: each script makes its product (a mined table, a model), as the real ones do,
    and `ran` lists the commands."""
    def run(command, **kwargs):
        ran.append(command)
        product = command[command.index("--output") + 1] if "--output" in command else os.path.join(
            command[command.index("--output-dir") + 1], "model.safetensors")
        os.makedirs(os.path.dirname(product), exist_ok=True)
        with open(product, "w") as f:
            f.write(command[-1])
        with open(os.path.join(os.path.dirname(product), "train_log.jsonl"), "w") as f:
            f.write(json.dumps({"step": 1, "loss": 1.0, "pairs_per_s": 10.0}) + "\n")
        return type("Done", (), {"returncode": 0})()
    return run


def test_a_run_recorded_in_an_earlier_sitting_is_restored_not_trained(tmp_path, monkeypatch):
    """A sitting with no output/ (another machine) restores each run from its record: same stamp, scores and log,
    nothing trained or scored; a soup made again trains its runs again (it needs their weights); a run whose
    command or code changed, or whose record is gone, trains."""
    ran, scored = [], []
    monkeypatch.setattr(compare_runs.subprocess, "run", fake_scripts(ran))
    monkeypatch.setattr(scores, "load_encoder", lambda path: scored.append(path) or path)
    monkeypatch.setattr(scores.sts, "evaluate", lambda encoder, *a, **kw: {"spearman": len(scored) / 10})
    preset = scifact_rows("mnr", "mined-top100-epochs5", "mined-top100-epochs5-soup3")
    runs_dir, models = str(tmp_path / "results" / "runs"), tmp_path / "models"
    os.makedirs(tmp_path / "results")
    def sitting():
        ledger = compare_runs.ledger_of(runs_dir, preset, "START-MODEL", (), (), None)
        return compare_runs.train_all(preset, "START-MODEL", str(models), str(tmp_path / "results"), 1, ledger)
    def scripts(commands):
        return [c[1] for c in commands]  # after the interpreter
    def files(folder):
        return {name: json.load(open(os.path.join(folder, name))) for name in ("command.json", "scores.json")} | {
            "train_log.jsonl": open(os.path.join(folder, "train_log.jsonl")).read()}
    trained, _ = sitting()
    assert scripts(ran) == ["train_mnr.py", "mine_negatives.py", *["train_mnr.py"] * 3, SOUP]
    assert len(scored) == 5 and sorted(os.listdir(runs_dir)) == sorted(
        f"{n}.json" for n in ("mnr", "mined-top100-epochs5", "mined-top100-epochs5-seed43",
                              "mined-top100-epochs5-seed44", "mined-top100-epochs5-soup3"))
    first = {f: files(f) for _, folders, _, members in trained for f in [*folders, *sum(members, [])]}
    assert all("machine" in f["command.json"] for f in first.values())
    shutil.rmtree(models)  # the next sitting: a fresh clone, the records committed
    del ran[:]
    trained, _ = sitting()
    assert ran == [] and len(scored) == 5  # nothing trained, scored or mined (no run needs the table)
    assert {f: files(f) for f in first} == first  # what the table reads, as the first sitting left it
    assert not os.path.exists(models / "mnr" / "model.safetensors")
    os.remove(os.path.join(runs_dir, "mined-top100-epochs5-soup3.json"))
    shutil.rmtree(models)
    del ran[:]
    sitting()  # the soup is made again, from its runs' weights: they are trained again, the plain run is not
    assert scripts(ran) == ["mine_negatives.py", *["train_mnr.py"] * 3, SOUP]
    assert all("--overwrite" not in c for c in ran)  # a restored folder is cleared, not overwritten
    del ran[:]
    version = compare_runs.code_version
    monkeypatch.setattr(compare_runs, "code_version", lambda files: "other" if files == ["train_mnr.py"]
                        else version(files))  # the training code changed: no record serves, every run trains
    shutil.rmtree(models)
    sitting()
    assert scripts(ran) == ["train_mnr.py", "mine_negatives.py", *["train_mnr.py"] * 3, SOUP]


def test_committed_records_are_portable_and_restore_as_recorded(tmp_path):
    """The records committed with a table (results/NAME/runs/, what the next sitting restores the scifact table
    from): paths as the results files show them (relative, $MINILM), the scores of the model they name, and a
    folder restored from one records the same again."""
    from mnr import ledger
    from mnr.models import packaged_minilm
    paths = sorted(glob.glob(os.path.join(compare_runs.ROOT, "results", "*", ledger.RUNS, "*.json")))
    assert paths, "no records committed: the scifact table's records are in results/cpu-scifact/runs"
    for path in paths:
        record = json.load(open(path))
        stamp = record["stamp"]
        assert set(stamp) <= {*ledger.IDENTITY, "seconds", "machine"} and stamp["command"][0].endswith(".py")
        assert not [arg for arg in stamp["command"] if arg.startswith(os.sep)]  # no path of the recording machine
        assert os.path.basename(path) == os.path.basename(recipe.option(stamp["command"], "--output-dir")) + ".json"
        key = record["scores"]["key"]
        assert key["model"] == ledger.identity(stamp) and "ndcg@10" in record["scores"]["scores"]
        def here(value):  # as this machine's run would have it
            return json.loads(json.dumps(value).replace("$MINILM", packaged_minilm()))
        folder = tmp_path / os.path.basename(path).removesuffix(".json")
        ledger.restore(str(folder), record, here(ledger.identity(stamp)), here(key))
        ledger.keep(str(folder), str(tmp_path / "again"), packaged_minilm())
        assert json.load(open(tmp_path / "again" / os.path.basename(path))) == record


def test_compare_runs_batch_smoke(tmp_path, tiny_model_dir, small_sts, monkeypatch):
    new_paths = ("batch64", "batch256", "clustered64", "by-source64")  # the baseline, GradCache, the two new samplers
    runs = [run for run in compare_runs.PRESETS["batch"]["runs"] if run[1] in new_paths]
    preset = dict(compare_runs.PRESETS["batch"], nli=os.path.join(SAMPLE_DIR, "nli"), sts=small_sts,
                  retrieval=os.path.join(SAMPLE_DIR, "nli", "snli_test_sample.tsv.gz"), flags=["--max-steps", "2"],
                  runs=shrunk(runs, {"16": "4", "64": "8", "256": "16"}))
    monkeypatch.setitem(compare_runs.PRESETS, "batch", preset)
    out = tmp_path / "out"
    compare_runs.main(["--preset", "batch", "--model-name", tiny_model_dir, "--output-dir", str(out), "--seeds", "1"])
    rows = {r["run"]: r for r in json.load(open(out / "results.json"))}
    assert "false_negative_share" not in rows["start model (untrained)"]
    shares = {name: r["false_negative_share"] for name, r in rows.items() if name != "start model (untrained)"}
    assert len(shares) == 4 and all(0 <= s <= 1 for s in shares.values())
    # Every other run against batch 64 on the same retrieval queries, the samplers' batch size
    assert "ndcg@10_delta" not in rows["batch 64, lr 2.8e-5"]
    assert all(len(r["ndcg@10_delta_ci95"]) == 2 for name, r in rows.items() if name != "batch 64, lr 2.8e-5")
    # The share is the run's own batches seen by the start model: recomputed from its command, the same figure.
    command = rows["batch 64, lr 2.8e-5, clustered batches (TAS-B)"]["commands"][0]
    assert compare_runs.false_negative_share(tiny_model_dir, command) == shares["batch 64, lr 2.8e-5, clustered batches (TAS-B)"]
    assert "false-negative share" in open(out / "results.md").read()
