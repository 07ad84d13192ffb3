"""Build tests/data/beir-snli, a tiny BEIR folder, from the shipped SNLI dev sample (see SOURCES.md).

    python tests/data/make_beir_sample.py                  # writes tests/data/beir-snli
    python tests/data/make_beir_sample.py --out DIR

A premise is a query, every distinct hypothesis of the file (entailed, neutral or contradicted) a document, and
each entailed hypothesis its premise's relevant document (grade 1): the shape of a BEIR task, with the
contradictions as the corpus's near-misses. Premises go to test, dev or train by the second 32 bits of the SHA-256
of their text (one in 5 each to test and dev, the rest to train; make_sample.py chose the premises by the first
32), so the split needs no random generator; ids are q1, q2, ... and d1, d2, ... in the file's order. No SciFact
text or any other BEIR data is in it: SNLI is CC BY-SA 4.0, and so is this folder.
"""
import argparse
import gzip
import hashlib
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "nli", "snli_dev_sample.tsv.gz")
ENTAILMENT = "0"


def split_of(premise):
    # the hash's second 32 bits: make_sample.py kept these premises by its first 32 (mod 10 = 0)
    bucket = int(hashlib.sha256(premise.encode("utf-8")).hexdigest()[8:16], 16) % 5
    return "test" if bucket == 0 else "dev" if bucket == 1 else "train"


def make(out, source=SOURCE):
    with gzip.open(source, "rt", encoding="utf-8", newline="") as f:
        rows = [line.rstrip("\n").split("\t") for line in f][1:]  # quoting off, as the NLI files are written
    queries, documents, qrels = {}, {}, {"train": [], "dev": [], "test": []}
    for premise, hypothesis, label, _ in rows:
        documents.setdefault(hypothesis, f"d{len(documents) + 1}")
        if label == ENTAILMENT:
            queries.setdefault(premise, f"q{len(queries) + 1}")
            qrels[split_of(premise)].append(f"{queries[premise]}\t{documents[hypothesis]}\t1\n")
    os.makedirs(os.path.join(out, "qrels"), exist_ok=True)
    with open(os.path.join(out, "corpus.jsonl"), "w", encoding="utf-8", newline="\n") as f:
        f.writelines(json.dumps({"_id": i, "title": "", "text": t}) + "\n" for t, i in documents.items())
    with open(os.path.join(out, "queries.jsonl"), "w", encoding="utf-8", newline="\n") as f:
        f.writelines(json.dumps({"_id": i, "text": t}) + "\n" for t, i in queries.items())
    for split, lines in qrels.items():
        with open(os.path.join(out, "qrels", f"{split}.tsv"), "w", encoding="utf-8", newline="\n") as f:
            f.writelines(["query-id\tcorpus-id\tscore\n", *lines])
    return {split: len(lines) for split, lines in qrels.items()}, len(queries), len(documents)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(HERE, "beir-snli"))
    args = parser.parse_args(argv)
    pairs, queries, documents = make(args.out)
    print(f"wrote {args.out}: {documents} documents, {queries} queries, pairs {pairs}")


if __name__ == "__main__":
    main()
