"""Query and document prompts (mnr/prompts.py): training prefixes anchors with the query prompt and the other
columns with the document prompt; the saved folder names them, so sentence-transformers' encode_query and
encode_document embed as our evaluators do; a start model's own prompts are kept; the evaluator and the miner read
a folder's prompts unless a flag overrides them, and the retrieval table says when a model is scored without them."""
import json
import os
import shutil
import sys

import numpy as np
import pytest

import compare_runs
import evaluate_retrieval
import mine_negatives
import train_mnr
from conftest import run_in_process, run_script, write_tsv
from mnr import prompts, tables
from mnr.models import load_encoder
from mnr.scoring import unit_embeddings

PROMPTS = {"query": "query: ", "document": "passage: "}
QUERIES = ["A man is playing a guitar.", "Who sleeps on the windowsill?", "kids swimming"]
DOCUMENTS = ["Someone plays an instrument.", "The cat sleeps on the warm windowsill.", "Children are in water."]


def train_args(model, nli_dir, out, *extra):
    return ["--model-name", model, "--nli-data", nli_dir, "--batch-size", "8", "--max-steps", "2",
            "--precision", "fp32", "--output-dir", str(out), *extra]


def st_config(folder):
    with open(os.path.join(folder, "config_sentence_transformers.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def prompted_model(tmp_path_factory, tiny_model_dir, nli_dir):
    """The tiny model trained 2 steps with e5's prompts."""
    out = tmp_path_factory.mktemp("prompted") / "model"
    assert run_in_process(train_args(tiny_model_dir, nli_dir, out, "--query-prompt", "query: ",
                                     "--document-prompt", "passage: ")) is None
    return str(out)


@pytest.fixture(scope="module")
def e5_like_start(tmp_path_factory, tiny_model_dir):
    """The tiny model as a start folder that names its own prompts, as e5's do, and one more of another task."""
    folder = tmp_path_factory.mktemp("e5-like") / "start"
    shutil.copytree(tiny_model_dir, folder)
    with open(folder / "config_sentence_transformers.json", "w") as f:
        json.dump({"similarity_fn_name": "cosine", "default_prompt_name": None,
                   "prompts": {**PROMPTS, "classification": "classify: "}}, f)
    return str(folder)


def test_the_saved_folder_names_the_prompts_it_was_trained_with(prompted_model):
    assert st_config(prompted_model)["prompts"] == PROMPTS
    assert prompts.saved_prompts(prompted_model) == ("query: ", "passage: ")
    card = open(os.path.join(prompted_model, "README.md")).read()  # the card tells a reader the prompts too
    assert '## Prompts' in card and 'query `"query: "`, document `"passage: "`' in card


def our_retrieval_embeddings(folder, monkeypatch):
    """The query and document embeddings evaluate_retrieval.py searches with, with the folder's own prompts: what
    its evaluate() hands to the search."""
    seen = {}
    module = sys.modules[evaluate_retrieval.evaluate.__module__]
    search = module.top_k

    def spy(queries, corpus, k, *rest, **options):
        seen.update(queries=queries.numpy(), corpus=corpus.numpy())
        return search(queries, corpus, k, *rest, **options)
    monkeypatch.setattr(module, "top_k", spy)
    task = {"queries": QUERIES, "corpus": DOCUMENTS, "relevant": [{0}, {1}, {2}]}
    used, _ = prompts.scoring_prompts(folder, None, None)
    evaluate_retrieval.evaluate(load_encoder(folder, "cpu"), prompts.prompted_task(task, *used))
    return seen["queries"], seen["corpus"]


def test_encode_query_and_encode_document_embed_as_our_evaluator(prompted_model, monkeypatch):
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(prompted_model, device="cpu")
    queries, documents = our_retrieval_embeddings(prompted_model, monkeypatch)
    np.testing.assert_allclose(model.encode_query(QUERIES, normalize_embeddings=True), queries, atol=1e-5)
    np.testing.assert_allclose(model.encode_document(DOCUMENTS, normalize_embeddings=True), documents, atol=1e-5)
    # ... and the prompts made a difference: without them the same texts embed elsewhere
    plain = unit_embeddings(load_encoder(prompted_model, "cpu"), QUERIES).numpy()
    assert np.abs(plain - queries).max() > 1e-3


def test_the_anchors_carry_the_query_prompt_and_the_rest_the_document_prompt(tiny_model_dir, nli_dir, tmp_path):
    flags = train_args(tiny_model_dir, nli_dir, tmp_path / "m", "--hard-negatives")
    raw, raw_batches, _ = train_mnr.load_batches(train_mnr.parse_args(flags))
    rows, batches, _ = train_mnr.load_batches(train_mnr.parse_args(
        [*flags, "--query-prompt", "query: ", "--document-prompt", "passage: "]))
    assert len(rows[0]) == 3  # anchor, positive, hard negative
    assert rows == [("query: " + a, *("passage: " + t for t in rest)) for a, *rest in raw]
    assert batches == raw_batches  # batched on the raw texts: the prompts change what is embedded, nothing else


def test_a_start_model_keeps_its_prompts(e5_like_start, nli_dir, tmp_path, capsys):
    out = tmp_path / "model"
    rows, _, _ = train_mnr.load_batches(train_mnr.parse_args(train_args(e5_like_start, nli_dir, out)))
    assert all(r[0].startswith("query: ") and r[1].startswith("passage: ") for r in rows)
    assert "prompts: query 'query: ', document 'passage: '" in capsys.readouterr().out  # said: no flag was typed
    assert run_in_process(train_args(e5_like_start, nli_dir, out)) is None
    assert st_config(out)["prompts"] == {**PROMPTS, "classification": "classify: "}


def test_an_empty_prompt_trains_without_the_start_models_own(e5_like_start, nli_dir, tmp_path):
    flags = train_args(e5_like_start, nli_dir, tmp_path / "model", "--query-prompt", "")
    rows, _, _ = train_mnr.load_batches(train_mnr.parse_args(flags))
    assert not any(r[0].startswith("query: ") for r in rows) and all(r[1].startswith("passage: ") for r in rows)
    assert run_in_process(flags) is None
    saved = st_config(tmp_path / "model")["prompts"]
    assert saved == {"query": "", "document": "passage: ", "classification": "classify: "}  # "" says: none


def test_a_folder_naming_passage_not_document_is_read_and_saved_for_encode_document(tiny_model_dir, tmp_path):
    folder = tmp_path / "start"
    shutil.copytree(tiny_model_dir, folder)
    with open(folder / "config_sentence_transformers.json", "w") as f:
        json.dump({"prompts": {"query": "query: ", "passage": "passage: "}}, f)
    assert prompts.saved_prompts(str(folder)) == ("query: ", "passage: ")
    # sentence-transformers 6.3 gives every model a "document" prompt, "" unless named: name it, or it is lost
    saved = prompts.saved_config(str(folder), {"QUERY_PROMPT": None, "DOCUMENT_PROMPT": None})
    assert saved["prompts"] == {"query": "query: ", "passage": "passage: ", "document": "passage: "}


def retrieval_file(tmp_path):
    rows = [(q, d, "0") for q, d in zip(QUERIES, DOCUMENTS)] + [(QUERIES[0], DOCUMENTS[2], "2")]
    return write_tsv(tmp_path / "nli.tsv", ("premise", "hypothesis", "label"), rows)


def test_evaluate_retrieval_scores_with_the_folders_prompts_and_says_when_overridden(prompted_model, tmp_path):
    task = retrieval_file(tmp_path)
    own = run_script("evaluate_retrieval.py", prompted_model, "--nli-retrieval", task, "--json")
    assert own.returncode == 0, own.stderr
    [row] = json.loads(own.stdout)
    assert (row["query_prompt"], row["document_prompt"]) == ("query: ", "passage: ") and "prompt_note" not in row
    plain = run_script("evaluate_retrieval.py", prompted_model, "--nli-retrieval", task,
                       "--query-prompt", "", "--document-prompt", "")
    assert plain.returncode == 0, plain.stderr
    [line] = [line for line in plain.stdout.splitlines() if line.startswith(f"| {prompted_model}")]
    assert "(trained with prompts, scored without them)" in line, plain.stdout


def test_compare_runs_scores_a_model_with_its_own_prompts(prompted_model, snli_test_file, sts_dir):
    """compare_runs' table scores retrieval as evaluate_retrieval.py does: with the folder's prompts."""
    from mnr import retrieval, sts
    full = retrieval.load_nli_retrieval(snli_test_file)  # 3,089 queries: the first ones, over a corpus of 300, do
    keep = [i for i, docs in enumerate(full["relevant"]) if max(docs) < 300]
    task = {"queries": [full["queries"][i] for i in keep], "corpus": full["corpus"][:300],
            "relevant": [full["relevant"][i] for i in keep]}
    pairs, gold = sts.load_sts(sts_dir, "dev")
    dev = test = (pairs[:50], gold[:50])  # STS is scored too; a few pairs do
    row = compare_runs.score(prompted_model, {"sts": sts_dir}, dev, test, task)
    encoder = load_encoder(prompted_model)
    prompted = retrieval.evaluate(encoder, prompts.prompted_task(task, "query: ", "passage: "))
    plain = retrieval.evaluate(encoder, task)
    assert prompted != plain  # the prompts change the ranking's scores, so the check below can tell them apart
    assert {k: row[k] for k in prompted} == prompted


def test_mining_embeds_with_the_prompts_and_writes_the_raw_texts(prompted_model, tmp_path, monkeypatch):
    pairs = list(zip(QUERIES, DOCUMENTS))
    data = write_tsv(tmp_path / "pairs.tsv", ("anchor", "positive"), pairs)
    corpus = write_tsv(tmp_path / "corpus.tsv", ("text",), [("A dog runs in a park.",), ("Two men play chess.",)])
    embedded, embed = [], mine_negatives.embed_texts
    monkeypatch.setattr(mine_negatives, "embed_texts", lambda e, texts, *a: embedded.append(texts) or embed(e, texts, *a))
    out = tmp_path / "mined.tsv"
    mine_negatives.main(["--model-name", prompted_model, "--train-data", data, "--corpus", corpus,
                         "--num-negatives", "1", "--relative-margin", "0", "--output", str(out)])
    assert embedded[0] == ["query: " + q for q in QUERIES]  # the folder's own prompts, by default
    assert all(t.startswith("passage: ") for t in embedded[1]) and len(embedded[1]) == 5
    rows = tables.load_train_data(str(out))
    assert [r[:2] for r in rows] == pairs  # the table keeps the raw texts: training adds its prompts
    assert not any(t.startswith(("query: ", "passage: ")) for r in rows for t in r)
    embedded.clear()
    mine_negatives.main(["--model-name", prompted_model, "--train-data", data, "--corpus", corpus, "--overwrite",
                         "--num-negatives", "1", "--relative-margin", "0", "--query-prompt", "", "--document-prompt", "",
                         "--output", str(out)])
    # "" for both: no prompt, and one embedding per distinct text again
    assert embedded == [QUERIES + DOCUMENTS + ["A dog runs in a park.", "Two men play chess."]]


def test_damaged_prompts_are_one_error_line(tiny_model_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    with open(folder / "config_sentence_transformers.json", "w") as f:
        json.dump({"prompts": ["query: "]}, f)
    result = run_script("evaluate_retrieval.py", str(folder), "--nli-retrieval", retrieval_file(tmp_path))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and lines[-1].startswith("error: ") and "config_sentence_transformers.json" in \
        lines[-1] and "Traceback" not in result.stderr, result.stderr
