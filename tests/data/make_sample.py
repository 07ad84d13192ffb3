"""Cut the small real sample shipped in tests/data from the full local data (see SOURCES.md).

    python tests/data/make_sample.py                       # reads $MNR_DATA_DIR, else ../shared/data
    python tests/data/make_sample.py --source DIR --out DIR

Deterministic: no random generator, no clock. Which NLI premises are kept depends only on the premise's text
(SHA-256), and whole premise groups are kept (every row of a kept premise, in the source's order), so
entailment pairs and (premise, entailment, contradiction) triplets both survive. Lines are copied byte for byte
(trailing spaces and `"` characters included); the gzip header carries no name and no time.

Writes, under --out:
    nli/snli_train_sample.tsv.gz   premise groups of nli/snli_train_subset.tsv.gz
    nli/mnli_train_sample.tsv.gz   premise groups of nli/mnli_train_subset.tsv.gz
    nli/snli_test_sample.tsv.gz    premise groups of nli/snli_test.tsv.gz (for the retrieval tests)
    nli/snli_dev_sample.tsv.gz     premise groups of nli/snli_dev.tsv.gz (tests that read a held-out NLI file)
    stsb/dev.tsv.gz, stsb/test.tsv.gz   every 5th pair of stsb/dev.tsv.gz, stsb/test.tsv.gz
    stsb/LICENSE.txt, stsb/readme.txt   copied unchanged (the STS texts' licences travel with them)
"""
import argparse
import gzip
import hashlib
import os
import shutil
import sys
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DEFAULT_SOURCE = os.environ.get("MNR_DATA_DIR") or os.path.join(ROOT, "..", "shared", "data")

# output <- (source, (keep 1 premise in N among those with an entailed AND a contradicted hypothesis,
#                    keep 1 in N among the others)).
# Train: every premise with both (the only ones that give hard-negative triplets: ~7% of the train subsets'
# premises, and a few have 30+ triplets, which a thinner cut would leave too few of for 64-row batches), so the
# sample holds all the source's triplets; and one in 20 of the others.
NLI_TRAIN = {
    "nli/snli_train_sample.tsv.gz": ("nli/snli_train_subset.tsv.gz", (1, 20)),
    "nli/mnli_train_sample.tsv.gz": ("nli/mnli_train_subset.tsv.gz", (1, 20)),
}
# Held-out splits (no "train" in the names, so never loaded as training data). SNLI test: one premise in 15
# (637 rows: over 600, so tests that read "the first 600 rows" can); SNLI dev: one in 10 (930 rows, 308
# entailment pairs: over 300, so tests that take "the first 300 pairs" can).
NLI_TEST = {"nli/snli_test_sample.tsv.gz": ("nli/snli_test.tsv.gz", (15, 15)),
            "nli/snli_dev_sample.tsv.gz": ("nli/snli_dev.tsv.gz", (10, 10))}
STS = {"stsb/dev.tsv.gz": "stsb/dev.tsv.gz", "stsb/test.tsv.gz": "stsb/test.tsv.gz"}
STS_EVERY = 5  # rows 0, 5, 10, ... of each STS file
COPIED = ["stsb/LICENSE.txt", "stsb/readme.txt"]

# SHA-256 of the uncompressed source files this sample was cut from (../shared/data at the time of cutting).
SOURCE_SHA256 = {
    "nli/snli_train_subset.tsv.gz": "41e00945ab9bf1e37a799e9654ab88ce0916dcaeb1d4f69f90e5f81483b518b4",
    "nli/mnli_train_subset.tsv.gz": "3f1719e979e7358d239c23224eccda4d3775213fd4ab8d09523f533dee4cda7b",
    "nli/snli_test.tsv.gz": "95c8ea76db8d5b6e66c969912c85fdc06be1338e58dc47a01380e33f178db6a5",
    "nli/snli_dev.tsv.gz": "a3de8dfcf5c77741daa6225f095f38c24c1babb8bafa771dc68ae073f4a7e715",
    "stsb/dev.tsv.gz": "ad04397e97e682b5b16362e386c742cc8843bcf9c61285f79d39f1aa5754b658",
    "stsb/test.tsv.gz": "8f8b8c4ca8e29ed9d8153629a207057128c7df8166ae33c70791f5dddbe2b9d4",
}


def read_lines(path):
    """A gzip TSV -> (header line, data lines), each line as text without its "\\n" (nothing else touched)."""
    with gzip.open(path, "rb") as f:
        text = f.read().decode("utf-8")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines[0], lines[1:]


def content_sha256(path):
    with gzip.open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def write_lines(path, header, lines):
    """Deterministic gzip: no file name and mtime 0 in the header, so the same lines give the same bytes
    (with the same zlib)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                                                 compresslevel=9) as f:
        f.write(("\n".join([header, *lines]) + "\n").encode("utf-8"))


def bucket(text, n):
    """The premise's SHA-256 (first 32 bits) modulo n: 0 means kept. Independent of order, seed and platform."""
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16) % n


def premise_groups(header, lines, one_in):
    """Keep every line of each kept premise, in the source's order. `one_in` = (n for premises that have an
    entailed (0) AND a contradicted (2) hypothesis in the file, n for the others)."""
    columns = header.split("\t")
    p, y = columns.index("premise"), columns.index("label")
    labels = defaultdict(set)
    for line in lines:
        fields = line.split("\t")
        labels[fields[p]].add(fields[y])
    keep = {premise for premise, ys in labels.items()
            if bucket(premise, one_in[0] if {"0", "2"} <= ys else one_in[1]) == 0}
    return [line for line in lines if line.split("\t")[p] in keep]


def make(source, out):
    written = {}
    for dst, (src, one_in) in {**NLI_TRAIN, **NLI_TEST}.items():
        header, lines = read_lines(os.path.join(source, src))
        written[dst] = premise_groups(header, lines, one_in)
        write_lines(os.path.join(out, dst), header, written[dst])
    for dst, src in STS.items():
        header, lines = read_lines(os.path.join(source, src))
        written[dst] = lines[::STS_EVERY]
        write_lines(os.path.join(out, dst), header, written[dst])
    for name in COPIED:
        shutil.copyfile(os.path.join(source, name), os.path.join(out, name))
    return written


def check_sources(source):
    """The sources' content hashes, and which differ from the ones the shipped sample was cut from."""
    missing = [s for s in SOURCE_SHA256 if not os.path.isfile(os.path.join(source, s))]
    if missing:
        return None, missing
    return {s: content_sha256(os.path.join(source, s)) for s in SOURCE_SHA256}, []


def main(argv=None):
    parser = argparse.ArgumentParser(description="Cut tests/data's sample from the full local data.")
    parser.add_argument("--source", default=DEFAULT_SOURCE, help="folder holding nli/ and stsb/ "
                        "(default: $MNR_DATA_DIR, else ../shared/data)")
    parser.add_argument("--out", default=HERE, help="where to write (default: this folder, tests/data)")
    parser.add_argument("--any-source", action="store_true",
                        help="cut even if the sources differ from the ones recorded in SOURCE_SHA256")
    args = parser.parse_args(argv)
    hashes, missing = check_sources(args.source)
    if missing:
        sys.exit(f"error: {args.source}: missing {', '.join(missing)}")
    changed = [s for s, h in hashes.items() if h != SOURCE_SHA256[s]]
    if changed and not args.any_source:
        sys.exit(f"error: {', '.join(changed)} differ from the files the shipped sample was cut from "
                 "(SOURCE_SHA256); pass --any-source to cut anyway")
    for name, lines in make(args.source, args.out).items():
        print(f"{name}: {len(lines)} rows")


if __name__ == "__main__":
    main()
