"""compare_runs.py --preset beir: the scifact preset's best row, replayed from results/cpu-scifact/results.json on any
BEIR folder (mnr/recipe.py). Its dev split is the folder's or carved from train, its test split is read by
--report-test only, and its time is said before it starts: a long run needs --max-pairs or --yes."""
import gzip
import importlib.util
import json
import os
import shutil

import pytest

import compare_runs
from conftest import SAMPLE_DIR, runs_recorded
from mnr import beir, recipe

SAMPLE_BEIR = os.path.join(SAMPLE_DIR, "beir-snli")
SCIFACT_ROW = "+ 1 mined negative, relative margin 0.05, from the top 100"


def test_the_recipe_is_the_recorded_best_row_replayed_with_the_data_folder_replaced(tmp_path, monkeypatch):
    row = recipe.best_row()
    assert row["run"] == SCIFACT_ROW  # the best ndcg@10 of results/cpu-scifact/results.json
    mine, train, data, out = recipe.recorded(row)
    assert data == "../shared/data/beir/scifact" and out == "output/compare-scifact"
    ran = runs_recorded(monkeypatch, compare_runs)
    preset = recipe.preset(row, "my/beir-folder", "dev", "../shared/data/stsb")
    _, commands = compare_runs.train_all(preset, "$MINILM", "output/compare-beir-mine", str(tmp_path), seeds=1)
    expected = recipe.replay(row["commands"], {data: "my/beir-folder", out: "output/compare-beir-mine"})
    assert commands == ran == expected
    assert "--range-max" in expected[0] and "../shared/data/beir/scifact" not in json.dumps(commands)


def test_the_recipe_leaves_the_precision_to_the_machine(tmp_path, monkeypatch):
    """The scifact preset pins --precision (one table over sittings on different CPUs): a recorded row with it
    replays without it, so a run of the recipe trains in its machine's own "auto" (bf16 only where computed)."""
    row = recipe.best_row()
    pinned = dict(row, commands=[[*c[:-2], "--precision", "bf16", *c[-2:]] if c[0] == "train_mnr.py" else c
                                 for c in row["commands"]])
    ran = runs_recorded(monkeypatch, compare_runs)
    compare_runs.train_all(recipe.preset(pinned, "my/beir-folder", "dev", "../shared/data/stsb"), "$MINILM",
                           "output/compare-beir-mine", str(tmp_path), seeds=1)
    assert ran[-1][0] == "train_mnr.py" and "--precision" not in ran[-1]
    _, train, data, out = recipe.recorded(row)
    assert ran == recipe.replay(pinned["commands"], {data: "my/beir-folder", out: "output/compare-beir-mine"})


def test_max_length_is_the_start_models_own_else_the_recorded_one(tmp_path, tiny_model_dir, minilm_path):
    """The recorded 256 is all-MiniLM-L6-v2's own max_seq_length, not a SciFact length: a start model that declares
    another trains at its own, and the commands differ from the recorded ones in that value alone."""
    row = recipe.best_row()
    _, train, _, _ = recipe.recorded(row)
    assert recipe.max_length_rule(minilm_path, 256)[0] == 256 == int(recipe.option(train, "--max-length"))
    assert recipe.max_length_rule(tiny_model_dir, 256)[0] == 256  # declares none: the recorded length
    own = tmp_path / "own"
    shutil.copytree(tiny_model_dir, own)
    (own / "sentence_bert_config.json").write_text('{"max_seq_length": 384, "do_lower_case": false}')
    length, said = recipe.max_length_rule(str(own), 256)
    assert length == 384 and "the start model's own max_seq_length (recorded: 256)" in said
    recorded = recipe.preset(row, "f", "dev", "s")
    mine = recipe.preset(row, "f", "dev", "s", 384)
    assert recipe.preset(row, "f", "dev", "s", 256) == recorded
    assert mine["flags"] == [("384" if a == "256" else a) for a in recorded["flags"]] != recorded["flags"]


def test_dev_carved_from_train_queries_seeded_and_whole():
    ids = [f"q{i}" for i in range(50)]
    dev = recipe.carve_dev(ids)
    assert dev == recipe.carve_dev(list(reversed(ids))) and len(dev) == 10  # 20 %, seeded, order-blind
    assert dev != recipe.carve_dev(ids, seed=7)
    assert len(recipe.carve_dev([f"q{i}" for i in range(20_000)])) == recipe.DEV_AT_MOST
    assert len(recipe.carve_dev(["a", "b"])) == 1  # one to train on, one to score
    with pytest.raises(Exception, match="at least 2"):
        recipe.carve_dev(["a"])


def test_plan_without_dev_split_never_splits_a_query_and_never_reads_test(tmp_path):
    folder = tmp_path / "beir"
    shutil.copytree(SAMPLE_BEIR, folder)
    os.remove(folder / "qrels" / "dev.tsv")
    (folder / "qrels" / "test.tsv").write_bytes(b"\xff\xfe\x00 not a qrels file")
    data = recipe.plan(str(folder))
    train_queries, dev_queries = {q for q, _, _ in data["train"]}, {q for q, _, _ in data["dev"]}
    assert not train_queries & dev_queries and data["derived"]
    everything = beir.read_graded_qrels(str(folder), "train")
    assert sorted(data["train"] + data["dev"]) == sorted(everything)  # nothing lost, nothing made up
    assert len(dev_queries) == data["dev_queries"] == round(0.2 * len({q for q, _, _ in everything}))
    assert data["lines"][0].startswith("no qrels/dev.tsv in") and "seed 42" in data["lines"][0]
    capped = recipe.plan(str(folder), max_pairs=40)
    assert sum(1 for *_, g in capped["train"] if g > 0) <= 40 and capped["dev"] == data["dev"]  # dev stays put
    groups = recipe.by_query(everything)
    assert all(sorted(groups[q]) == sorted(j for j in capped["train"] if j[0] == q)  # whole queries only
               for q in {q for q, _, _ in capped["train"]})


def test_prediction_from_rows_batch_and_a_measured_step():
    seconds, steps = recipe.predict(100_000, 3, 32, 3.0, 10_000, 0.01)
    assert steps == 3 * 3125 and seconds == pytest.approx(3 * 3125 * 3.0 + 100)
    fit = recipe.pairs_that_fit(3600, 3, 32, 3.0, 10_000, 0.01)
    assert recipe.predict(fit, 3, 32, 3.0, 10_000, 0.01)[0] <= 3600 < recipe.predict(fit + 32, 3, 32, 3.0, 10_000,
                                                                                       0.01)[0]
    assert recipe.pairs_that_fit(3600, 3, 32, 3.0, 1_000_000, 0.01) == 0  # embedding alone takes longer


def big_folder(path, pairs):
    os.makedirs(path / "qrels")
    with open(path / "corpus.jsonl", "w") as f:
        f.writelines(json.dumps({"_id": f"d{i}", "title": "", "text": f"document {i}"}) + "\n" for i in range(pairs))
    with open(path / "queries.jsonl", "w") as f:
        f.writelines(json.dumps({"_id": f"q{i}", "text": f"query {i}"}) + "\n" for i in range(pairs))
    with open(path / "qrels" / "train.tsv", "w") as f:
        f.writelines(["query-id\tcorpus-id\tscore\n", *(f"q{i}\td{i}\t1\n" for i in range(pairs))])
    return str(path)


def test_a_day_long_run_does_not_start_unannounced(tmp_path, monkeypatch, capsys, tiny_model_dir):
    folder = big_folder(tmp_path / "big", 100_000)
    monkeypatch.setattr(recipe, "measure", lambda *a, **kw: (3.0, 0.001))  # a MiniLM step on 2 cores, roughly
    out = tmp_path / "out"
    argv = ["--preset", "beir", "--beir", folder, "--model-name", tiny_model_dir, "--output-dir", str(out)]
    with pytest.raises(SystemExit) as refused:
        compare_runs.main(argv)
    message = str(refused.value.code)
    assert message.startswith("error: --beir") and "\n" not in message and "minutes on this machine" in message
    assert "--max-pairs" in message and "--yes" in message
    assert not out.exists() or not os.listdir(out)  # refused before anything was written
    fit = int(message.split("--max-pairs ")[1].split()[0])
    assert 0 < fit < 80_000 and "carved" in capsys.readouterr().out  # no dev.tsv: said at start

    def stop(*args):
        raise RuntimeError("training would start here")
    monkeypatch.setattr(compare_runs, "train_all", stop)
    with pytest.raises(RuntimeError, match="training would start"):  # capped: it starts, on the capped pairs
        compare_runs.main([*argv, "--max-pairs", str(fit)])
    derived = out / f"data-dev-carved-max-pairs-{fit}"
    assert 0 < len(beir.read_qrels(str(derived), "train")) <= fit and os.path.islink(derived / "corpus.jsonl")
    with pytest.raises(RuntimeError, match="training would start"):  # or confirmed: all of them
        compare_runs.main([*argv, "--yes"])
    assert len(beir.read_qrels(str(out / "data-dev-carved"), "train")) == 100_000 - recipe.DEV_AT_MOST


@pytest.mark.parametrize("flags", [["--max-pairs", "10"], ["--yes"], ["--report-test"], ["--beir", "x"]])
def test_beir_flags_need_the_beir_preset(flags):
    with pytest.raises(SystemExit) as refused:
        compare_runs.main(["--preset", "smoke", *flags])
    assert str(refused.value.code).startswith(f"error: {flags[0]} is a --preset beir flag")


@pytest.fixture(scope="module")
def small_sts(tmp_path_factory, sts_dir):
    base = tmp_path_factory.mktemp("sts")
    for split in ("dev", "test"):
        with gzip.open(os.path.join(sts_dir, f"{split}.tsv.gz"), "rt") as f, open(base / f"{split}.tsv", "w") as out:
            out.writelines(next(f) for _ in range(61))
    return str(base)


@pytest.mark.parametrize("dev_split", [True, False], ids=["with-dev", "carved-dev"])
def test_the_recipe_on_the_shipped_sample_folder(tmp_path, monkeypatch, capsys, words_model_dir, small_sts,
                                                 dev_split):
    folder = tmp_path / "beir-snli"
    shutil.copytree(SAMPLE_BEIR, folder)
    test_qrels = (folder / "qrels" / "test.tsv").read_bytes()
    (folder / "qrels" / "test.tsv").write_bytes(b"\xff\xfe\x00 garbage: never read before --report-test")
    if not dev_split:
        os.remove(folder / "qrels" / "dev.tsv")
    monkeypatch.setattr(compare_runs, "STS", small_sts)
    out = tmp_path / "out"
    argv = ["--preset", "beir", "--beir", str(folder), "--model-name", words_model_dir, "--output-dir", str(out)]
    compare_runs.main(argv)
    said = capsys.readouterr().out
    assert "time: about" in said and "is not read (the final run: --report-test)" in said
    rows = {r["run"]: r for r in json.load(open(out / "results.json"))}
    assert set(rows) == {recipe.START, SCIFACT_ROW}
    low, high = rows[SCIFACT_ROW]["ndcg@10_delta_ci95"]  # the paired interval against the start model
    assert low <= rows[SCIFACT_ROW]["ndcg@10_delta"] <= high
    data = str(folder) if dev_split else str(out / "data-dev-carved")
    row = recipe.best_row()
    _, _, scifact, scifact_out = recipe.recorded(row)
    replayed = recipe.replay(row["commands"], {scifact: data, scifact_out: str(out), "$MINILM": words_model_dir,
                                               "../shared/data/stsb": small_sts})
    assert rows[SCIFACT_ROW]["commands"] == [[compare_runs.shown(a, words_model_dir) for a in c] for c in replayed]
    table = open(out / "results.md").read()
    assert "ndcg@10 - start model (untrained) [95 % CI over queries]" in table and \
        f"{compare_runs.shown(data, None)} dev" in table  # relative to the repository, as results files show paths
    if not dev_split:  # carved: whole train queries, none of them trained on
        carved = {q for q, _ in beir.read_qrels(data, "dev")}
        assert carved and not carved & {q for q, _ in beir.read_qrels(data, "train")}
        assert carved <= {q for q, _ in beir.read_qrels(str(folder), "train")} and "no qrels/dev.tsv" in table
        assert not os.path.exists(folder / "qrels" / "dev.tsv")  # the user's folder is left as it was
        return
    # The final run: the same models, now scored on the folder's test split.
    with pytest.raises(SystemExit) as refused:  # a test split that is not a qrels file is one error line
        compare_runs.main([*argv, "--report-test"])
    assert str(refused.value.code).startswith("error:") and "test.tsv" in str(refused.value.code)
    (folder / "qrels" / "test.tsv").write_bytes(test_qrels)
    compare_runs.main([*argv, "--report-test"])
    said = capsys.readouterr().out
    assert said.count("reusing ") == 1 and "$ python" not in said  # nothing mined or trained again (the run is
    assert "--report-test: scoring" in said                        # reused: its table is not needed)
    assert f"{compare_runs.shown(str(folder), None)} test" in open(out / "results.md").read()
    assert len(json.load(open(out / "results.json"))[0]["per_seed"][0]["per_query"]["ndcg@10"]) == len(
        {q for q, _ in beir.read_qrels(str(folder), "test")})


def test_the_shipped_sample_folder_is_its_make_script_rebuilt(tmp_path):
    spec = importlib.util.spec_from_file_location("make_beir_sample", os.path.join(SAMPLE_DIR, "make_beir_sample.py"))
    make_beir_sample = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_beir_sample)
    make_beir_sample.make(str(tmp_path / "beir"))
    for name in ("corpus.jsonl", "queries.jsonl", "qrels/train.tsv", "qrels/dev.tsv", "qrels/test.tsv"):
        assert (tmp_path / "beir" / name).read_bytes() == open(os.path.join(SAMPLE_BEIR, name), "rb").read(), name


def test_a_hub_start_models_own_length_is_read_from_its_cache_or_fetched(tmp_path, minilm_path, monkeypatch):
    """A hub name: transformers' load caches config.json and the weights, never sentence_bert_config.json, so the
    rule reads it from the snapshot when it is there and fetches it when the hub answers; offline without it, the
    recorded length (was: the snapshot was accepted for holding config_sentence_transformers.json, not this file)."""
    import huggingface_hub
    import huggingface_hub.constants
    snapshot = tmp_path / "models--someone--long" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    for name in ("config.json", "config_sentence_transformers.json", "model.safetensors"):
        os.symlink(os.path.join(minilm_path, name), snapshot / name)
    (tmp_path / "models--someone--long" / "refs").mkdir()
    (tmp_path / "models--someone--long" / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert recipe.max_length_rule("someone/long", 256)[0] == 256  # not in the cache, the hub not asked
    fetched = []

    def download(repo, filename):  # the hub answering: the file lands in the snapshot, as hf_hub_download does
        fetched.append((repo, filename))
        (snapshot / filename).write_text('{"max_seq_length": 512}')
        return str(snapshot / filename)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(recipe.prompts.hub, "may_load", lambda: True)
    assert recipe.max_length_rule("someone/long", 256)[0] == 512
    assert fetched == [("someone/long", "sentence_bert_config.json")]
    assert recipe.max_length_rule("someone/long", 256)[0] == 512 and len(fetched) == 1  # now read from the cache
