"""compare_runs.py's presets: each a table of runs, the data they train and are scored on, and the flags they share.

Data, not code: a new comparison is a new entry here (a fork edits this file, compare_runs.py runs it). Paths are
relative to the repository, where compare_runs.py runs its commands; the data folder is MNR_DATA_DIR, by default
../shared/data beside the repository.
"""
import os

DATA = os.environ.get("MNR_DATA_DIR", os.path.join("..", "shared", "data"))  # relative to this folder
NLI, STS, SNLI_TEST = f"{DATA}/nli", f"{DATA}/stsb", f"{DATA}/nli/snli_test.tsv.gz"
SCIFACT = f"{DATA}/beir/scifact"  # CC BY-NC: read where it is, never copied into the repository
OURS = [("MNR (ours)", "mnr", ["train_mnr.py"]),
        ("bidirectional GTE (ours)", "bidirectional", ["train_bidirectional.py", "--loss", "bidirectional"]),
        ("symmetric (ours)", "symmetric", ["train_bidirectional.py", "--loss", "symmetric"]),
        ("MNR (sentence-transformers)", "st-mnr", ["benchmarks/st_train.py"])]
MINED = "MINED"  # in a run's flags: the file mine_negatives.py writes for that run's "mine" settings
SOUP = "benchmarks/model_soup.py"  # a soup row's script: the weight average of another row's runs ("soups")
# A preset: data, flags given to every run, its runs (name, folder, command), default seeds, and extras:
# "mine": per run, mine_negatives.py's flags (or the name of the run whose mined file it shares); "dims": STSb test
# also on embeddings cut to each of these; "train": a --train-data source instead of the NLI folder (mined from
# its own corpus); "beir": [folder, split] scored instead of the NLI retrieval file; "false_negatives": each run's
# false-negative share before training (mnr/samplers.py); "score_precision": of the scoring encodes (default fp32);
# "baseline": the run every other is compared with, ndcg@10 with a paired bootstrap over queries; "sort", "columns";
# "soups": {soup row: [row, size]}, a row whose every model averages `size` runs of `row` (disjoint seeds).
PRESETS = {
    "cpu": {"nli": NLI, "sts": STS, "retrieval": SNLI_TEST, "flags": ["--eval-every", "100"], "runs": OURS},
    "gpu": {"model": "bert-base-uncased", "nli": "hub", "sts": "hub", "retrieval": SNLI_TEST,
            "flags": ["--eval-every", "1000"], "runs": OURS},
    "smoke": {"nli": NLI, "sts": STS, "retrieval": SNLI_TEST, "runs": OURS,
              "flags": ["--eval-every", "2", "--max-steps", "3", "--batch-size", "8"]},
    "negatives": {"nli": NLI, "sts": STS, "retrieval": SNLI_TEST, "flags": ["--eval-every", "100"], "seeds": 3,
                  "results": "cpu-negatives", "runs": [
                      ("MNR, in-batch negatives only", "mnr", ["train_mnr.py"]),
                      ("+ NLI contradiction as hard negative", "nli-contradiction", ["train_mnr.py", "--hard-negatives"]),
                      ("+ 1 mined negative, plain top-k", "mined-topk", ["train_mnr.py", "--train-data", MINED]),
                      ("+ 1 mined negative, relative margin 0.05", "mined-margin", ["train_mnr.py", "--train-data", MINED]),
                      ("MNR + guided false-negative masking (GIST, guide = start model)", "gist",
                       ["train_mnr.py", "--guide-model", "START", "--false-negative-margin", "0.0"])],
                  "mine": {"mined-topk": ["--num-negatives", "1", "--relative-margin", "0"],
                           "mined-margin": ["--num-negatives", "1", "--relative-margin", "0.05"]}},
    "matryoshka": {"nli": NLI, "sts": STS, "retrieval": None, "flags": [], "seeds": 3,
                   "results": "cpu-matryoshka", "dims": [384, 256, 128, 64, 32], "runs": [
                       ("MNR", "mnr", ["train_mnr.py"]),
                       ("MNR + Matryoshka 384,256,128,64,32", "matryoshka",
                        ["train_mnr.py", "--matryoshka-dims", "384,256,128,64,32"])]},
    "precision": {"nli": NLI, "sts": STS, "retrieval": SNLI_TEST, "flags": [], "seeds": 3,
                  "results": "cpu-precision", "dims": [384, 64], "runs": [
                      ("MNR, fp32", "mnr-fp32", ["train_mnr.py", "--precision", "fp32"]),
                      ("MNR, bf16 autocast", "mnr-bf16", ["train_mnr.py", "--precision", "bf16"]),
                      ("MNR + Matryoshka 384,256,128,64,32, fp32", "matryoshka-fp32",
                       ["train_mnr.py", "--matryoshka-dims", "384,256,128,64,32", "--precision", "fp32"]),
                      ("MNR + Matryoshka 384,256,128,64,32, bf16 autocast", "matryoshka-bf16",
                       ["train_mnr.py", "--matryoshka-dims", "384,256,128,64,32", "--precision", "bf16"])]},
    # Each "+" row adds one lever to the in-batch-only run, except the GradCache row, which scales up the mined row.
    # Chosen on dev with plain MNR, seed 42 (results/cpu-scifact/dev-choices.md): lr 1e-4 and 3 epochs at batch 32
    # and max length 256. The batch 128 row scales the rate by sqrt(128 / 32), the rule of the batch preset.
    # bf16 throughout (training and scoring), not "auto": the table is made over several sittings on whatever CPU
    # each has (records in results/cpu-scifact/runs, mnr/ledger.py), and "auto" would train some runs in bf16 (a
    # CPU with native bf16) and others in fp32. bf16: no measurable cost (the precision preset) and 2-3x faster
    # where the CPU computes it (AVX512-BF16, AMX), as most of ours do; a CPU without it emulates it, slowly.
    "scifact": {"train": SCIFACT, "sts": STS, "beir": [SCIFACT, "dev"], "seeds": 3, "results": "cpu-scifact",
                "score_precision": "bf16", "baseline": "MNR, in-batch negatives only", "sort": "ndcg@10",
                "columns": ["ndcg@10", "ndcg@10_delta", "mrr@10", "recall@100", "sts_test"],
                "flags": ["--lr", "1e-4", "--epochs", "3", "--max-length", "256", "--precision", "bf16"], "runs": [
                    ("MNR, in-batch negatives only", "mnr", ["train_mnr.py"]),
                    ("+ 1 mined negative, relative margin 0.05", "mined", ["train_mnr.py", "--train-data", MINED]),
                    ("+ 1 mined negative, batch 128 through GradCache, lr 2e-4", "mined-batch128",
                     ["train_mnr.py", "--train-data", MINED, "--batch-size", "128", "--mini-batch-size", "32",
                      "--lr", "2e-4"]),
                    ("+ hardness weighting (in-batch negatives, strength 9)", "hardness",
                     ["train_mnr.py", "--hardness-mode", "in_batch_negatives", "--hardness-strength", "9"]),
                    ("+ clustered batches (TAS-B)", "clustered", ["train_mnr.py", "--batch-sampler", "clustered"]),
                    ("+ 1 mined negative, relative margin 0.05, from the top 100", "mined-top100",
                     ["train_mnr.py", "--train-data", MINED]),
                    # Issue 29 §5's candidates on top of the best row (added 2026-12-06; README "Which levers helped"
                    # says which have been run): the two best single levers together, a second mined negative, and
                    # GIST's false-negative mask over the mined and in-batch negatives, the start model as guide.
                    ("+ 1 mined negative from the top 100, hardness weighting (all negatives, strength 9)",
                     "mined-top100-hardness", ["train_mnr.py", "--train-data", MINED, "--hardness-mode",
                                               "all_negatives", "--hardness-strength", "9"]),
                    ("+ 2 mined negatives, relative margin 0.05, from the top 100", "mined2-top100",
                     ["train_mnr.py", "--train-data", MINED]),
                    ("+ 1 mined negative from the top 100, false negatives masked (GIST, guide = start model)",
                     "mined-top100-gist", ["train_mnr.py", "--train-data", MINED, "--guide-model", "START",
                                           "--false-negative-margin", "0.0"]),
                    # Five epochs instead of three (added 2026-12-06): the best of dev-choices.md's "More §5
                    # pilots" (3 seeds by hand: 0.7744 +/- 0.0142 against 0.7610 +/- 0.0170); chosen on SciFact dev.
                    ("+ 1 mined negative from the top 100, 5 epochs", "mined-top100-epochs5",
                     ["train_mnr.py", "--train-data", MINED, "--epochs", "5"]),
                    # A model soup of three five-epoch runs (added 2026-12-07): by hand, the soup of seeds 42-44
                    # scored 0.7889 against their 0.7744 +/- 0.0142. Each of the row's models averages three runs
                    # of the row above (seeds 42-44, 45-47, 48-50 with --seeds 3): three times its training.
                    ("+ 1 mined negative from the top 100, 5 epochs, soup of 3 runs", "mined-top100-epochs5-soup3",
                     [SOUP])],
                "mine": {"mined": ["--num-negatives", "1", "--relative-margin", "0.05"], "mined-batch128": "mined",
                         "mined-top100": ["--num-negatives", "1", "--relative-margin", "0.05", "--range-max", "100"],
                         "mined-top100-hardness": "mined-top100", "mined-top100-gist": "mined-top100",
                         "mined-top100-epochs5": "mined-top100",
                         "mined2-top100": ["--num-negatives", "2", "--relative-margin", "0.05", "--range-max", "100"]},
                "soups": {"mined-top100-epochs5-soup3": ["mined-top100-epochs5", 3]}},
    # One epoch each: a larger batch is fewer, bigger steps over the same pairs; above 64 rows through GradCache.
    # Learning rate: square-root scaling from train_mnr.py's 2e-5 at batch 32, lr = 2e-5 * sqrt(batch / 32): an
    # Adam step's noise falls like 1/sqrt(batch), so the rate that keeps it alike grows like sqrt(batch) (Malladi
    # et al. 2022); linear scaling would put batch 1024 at 6.4e-4, past what fine-tuning BERT tolerates, and the
    # peers' hand-tuned points (256: 2e-5, 512: 5e-5, 16384: 2e-4) grow slower than linear too.
    "batch": {"nli": NLI, "sts": STS, "retrieval": SNLI_TEST, "flags": [], "seeds": 3, "results": "cpu-batch",
              "score_precision": "auto", "baseline": "batch 64, lr 2.8e-5",  # the samplers' batch size
              "columns": ["sts_dev", "sts_test", "ndcg@10", "ndcg@10_delta", "mrr@10", "recall@10", "recall@100",
                          "false_negative_share"],
              "false_negatives": True, "runs": [
                  ("batch 16, lr 1.4e-5", "batch16", ["train_mnr.py", "--batch-size", "16", "--lr", "1.4e-5"]),
                  ("batch 64, lr 2.8e-5", "batch64", ["train_mnr.py", "--batch-size", "64", "--lr", "2.8e-5"]),
                  ("batch 256, lr 5.7e-5 (GradCache, mini-batches of 64)", "batch256",
                   ["train_mnr.py", "--batch-size", "256", "--mini-batch-size", "64", "--lr", "5.7e-5"]),
                  ("batch 1024, lr 1.1e-4 (GradCache, mini-batches of 64)", "batch1024",
                   ["train_mnr.py", "--batch-size", "1024", "--mini-batch-size", "64", "--lr", "1.1e-4"]),
                  ("batch 64, lr 2.8e-5, clustered batches (TAS-B)", "clustered64",
                   ["train_mnr.py", "--batch-size", "64", "--lr", "2.8e-5", "--batch-sampler", "clustered"]),
                  ("batch 64, lr 2.8e-5, one source per batch", "by-source64",
                   ["train_mnr.py", "--batch-size", "64", "--lr", "2.8e-5", "--batch-sampler", "by-source"])]},
    # Built at start from the scifact preset's best row as results/cpu-scifact/results.json records it, the data
    # folder replaced by --beir's (mnr/recipe.py, recipe.build in main): nothing of SciFact's is copied here.
    "beir": {},
}
