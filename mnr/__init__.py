"""The machinery behind the scripts at the repository's root; the scripts use it, it never imports a script
(the tutorial's two modules, data_prep.py and pooling.py, it may: their steps are the ones it scores with).

  flags.py        command lines built from a script's hyperparameter block (help = the why-comments)
  errors.py       the errors a user can fix, each reported as one `error:` line
  hub.py          the Hugging Face hub: hub ids, whether it answers, what to give instead
  models.py       load a start model to train, or a saved one to score (its pooling and input limit)
  tables.py       tables of texts (--train-data, --corpus, NLI and STS files); beir.py: BEIR folders;
                  table_file.py: one table file read as it is, under both
  sts.py          the STS benchmark: its pairs, a model's Spearman (evaluate_sts, the training loop, compare_runs)
  retrieval.py    retrieval tasks (NLI, BEIR, NanoBEIR) and nDCG@10 / MRR@10 / Recall@k (evaluate_retrieval,
                  compare_runs); scoring.py: what both evaluators share (unit embeddings, the table)
  precision.py    bf16 autocast where the hardware computes it natively, fp32 elsewhere
  packing.py      all sentences of a batch in one forward without padding, the same embeddings
  gradcache.py    a batch of any size in the memory of a mini-batch (GradCache); rng.py: the RNG states it replays
  distributed.py  torchrun: N processes, each query ranked against the global batch
  matryoshka.py   the loss on the embeddings cut to fewer dimensions too
  gist.py         a guide model leaves likely false negatives out of the softmax (GIST)
  hardness.py     hardness weighting: the negatives the model already confuses weigh more in the softmax
  samplers.py     batch composition: no duplicates, one k-means topic per batch (TAS-B), one source per batch
  search.py       exact top-k search, for retrieval scores and negative mining
  save.py         the saved model folder (transformers + sentence-transformers), written atomically
  outdir.py       output folders: ours or refused, locked while a run writes, swapped in whole (never a user file)
  steps.py        around each step: NaN named (loss, gradient norm, a weight), log, progress, dev scores, checkpoints
  prompts.py      query and document prompts: a model's own, the flags', the saved folder's
  checkpoint.py   checkpoints and a bit-identical resume; train_log.py: the JSONL training log
  model_card.py   the README.md of every saved model
  files.py        JSON and atomic writes, repository-relative paths, the code a script runs (compare_runs)
  stats.py        seed mean and spread, the paired bootstrap over queries (compare_runs)
  report.py       compare_runs' table, machine line, training speed and loss curves; a benchmark's RESULTS.md section
  presets.py      compare_runs' presets: each table's runs, data and shared flags (data, not code)
  recipe.py       compare_runs --preset beir: the scifact recipe replayed on any BEIR folder, its time said first
  sitting.py      compare_runs: the rows a sitting trains (--rows), and bf16 said at start where the CPU emulates it
  measure.py      a training command run in a fresh process and measured (the benchmarks)
"""
