"""The peer run: sentence-transformers' own trainer on the same rows, model, batch, steps and seed as train_mnr.py.

    python benchmarks/st_train.py --model-name MODEL --nli-data ../shared/data/nli --output-dir output/st-mnr \\
        [--batch-size 32] [--max-steps N] [--sts-data ../shared/data/stsb --eval-every 100]
    python benchmarks/st_train.py --model-name MODEL --train-data output/bench-scifact/negatives.tsv.gz \\
        --max-length 256 --output-dir output/st-scifact [--bf16]   # a mined (anchor, positive, negative) table

SentenceTransformerTrainer, MultipleNegativesRankingLoss (defaults: scale 20, cosine) and the NO_DUPLICATES
batch sampler; AdamW at 2e-5 with weight decay 0.01, linear warmup over 10 % of the steps, gradient norm
clipped at 1: the recipe of train_mnr.py. The rows come from our data_prep (same pairs), the batch order from
the library's own sampler. --train-data reads a table as train_mnr.py's --train-data does (mnr.tables), so
both train the same rows; each column becomes one of the dataset's, and MNRL takes every column after the
anchor as candidates (the positive, then the negatives). Writes the saved model and `train_log.jsonl` in
train_mnr.py's format (step, loss, lr, pairs_per_s; sts_dev_spearman lines), so compare_runs.py and the plots
read both alike.
Benchmark code: it may import sentence-transformers and accelerate (requirements-bench.txt); product code never does.
"""
import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import data_prep  # noqa: E402
from mnr.models import MAX_LENGTH  # noqa: E402  train_mnr.py's default, so both truncate alike
from mnr.tables import load_train_data  # noqa: E402  the same rows as train_mnr.py --train-data


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-name", required=True)
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--nli-data", help="NLI files, made into pairs by data_prep as train_mnr.py does")
    data.add_argument("--train-data", help="an (anchor, positive, negatives...) table, read as train_mnr.py reads it")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-steps", type=int, default=None, help="default: one epoch of our duplicate-free batches")
    parser.add_argument("--max-length", type=int, default=MAX_LENGTH, help="the model's max_seq_length, in tokens")
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--sts-data", default=None)
    parser.add_argument("--eval-every", type=int, default=0)
    parser.add_argument("--dropout", type=float, default=None, help="override every dropout rate (0: off)")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                        help="the trainer's bf16=True (autocast); default: on a GPU only, as the library's own default is off")
    parser.add_argument("--our-batches", action="store_true",
                        help="feed data_prep.epoch_batches instead of the library's NO_DUPLICATES sampler, so the "
                             "first losses can be compared with train_mnr.py's one for one")
    args = parser.parse_args(argv)

    import torch
    from datasets import Dataset
    from sentence_transformers import (SentenceTransformer, SentenceTransformerTrainer,
                                       SentenceTransformerTrainingArguments, losses)
    from sentence_transformers.training_args import BatchSamplers
    from transformers import TrainerCallback

    if args.train_data:
        rows = load_train_data(args.train_data)
    else:
        rows = data_prep.make_rows(data_prep.load_nli(args.nli_data))
    batches = data_prep.epoch_batches(rows, args.batch_size, args.seed)  # train_mnr.py's default sampler's
    steps = args.max_steps or len(batches)
    negatives = len(rows[0]) - 2  # the table's negative columns; NLI pairs have none
    names = ["anchor", "positive", *(["negative"] if negatives == 1 else
                                     [f"negative_{k}" for k in range(1, negatives + 1)])]
    train = Dataset.from_dict({name: [r[j] for r in rows] for j, name in enumerate(names)})
    model = SentenceTransformer(args.model_name, device="cuda" if torch.cuda.is_available() else "cpu")
    model.max_seq_length = args.max_length
    if args.dropout is not None:
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = args.dropout
    evaluator = None
    if args.sts_data:
        from mnr.sts import load_sts
        from sentence_transformers.evaluation import EmbeddingSimilarityEvaluator
        pairs, gold = load_sts(args.sts_data, "dev")
        evaluator = EmbeddingSimilarityEvaluator([a for a, _ in pairs], [b for _, b in pairs], gold, name="sts-dev")

    os.makedirs(args.output_dir, exist_ok=True)
    log = open(os.path.join(args.output_dir, "train_log.jsonl"), "w")
    scored = set()  # steps with an STSb dev score in the log

    class JsonlLog(TrainerCallback):
        """Our log format, written as the library reports. A step's time runs from the previous step's end to
        its own end, so that, as in train_mnr.py, it holds the batch's loading and tokenisation (which the
        trainer does before its step-begin event) and the logging; evaluations are left out, as ours are."""
        rate = previous_end = None

        def on_step_begin(self, a, state, control, **kw):
            self.start = self.previous_end or time.perf_counter()

        def on_step_end(self, a, state, control, **kw):
            self.previous_end = time.perf_counter()
            self.rate = args.batch_size / (self.previous_end - self.start)

        def on_evaluate(self, a, state, control, **kw):
            self.previous_end = None  # the next step starts timing at its own begin

        def on_log(self, a, state, control, logs=None, **kw):
            if "loss" in logs:
                record = {"step": state.global_step, "loss": logs["loss"], "lr": logs.get("learning_rate"),
                          "pairs_per_s": self.rate}
                if torch.cuda.is_available():
                    record["cuda_peak_gib"] = torch.cuda.max_memory_allocated() / 2 ** 30
                log.write(json.dumps(record) + "\n")
            for key, value in logs.items():
                if key.endswith("spearman_cosine"):
                    log.write(json.dumps({"step": state.global_step, "sts_dev_spearman": value}) + "\n")
                    scored.add(state.global_step)
            log.flush()

    bf16 = torch.cuda.is_available() if args.bf16 is None else args.bf16
    training_args = SentenceTransformerTrainingArguments(
        output_dir=os.path.join(args.output_dir, "trainer"), per_device_train_batch_size=args.batch_size,
        max_steps=steps, learning_rate=args.lr, warmup_steps=int(0.1 * steps), lr_scheduler_type="linear",
        weight_decay=0.01, max_grad_norm=1.0, seed=args.seed, data_seed=args.seed,
        batch_sampler=(lambda dataset, **kw: batches) if args.our_batches else BatchSamplers.NO_DUPLICATES, logging_steps=1, save_strategy="no", report_to=[],
        eval_strategy="steps" if evaluator and args.eval_every else "no", eval_steps=args.eval_every or None,
        dataloader_drop_last=True, disable_tqdm=False,
        bf16=bf16, **({"use_cpu": True} if bf16 and not torch.cuda.is_available() else {}))  # CPU bf16 needs use_cpu
    trainer = SentenceTransformerTrainer(model=model, args=training_args, train_dataset=train,
                                         loss=losses.MultipleNegativesRankingLoss(model), evaluator=evaluator,
                                         callbacks=[JsonlLog()])
    if evaluator:
        log.write(json.dumps({"step": 0, "sts_dev_spearman": evaluator(model)["sts-dev_spearman_cosine"]}) + "\n")
    trainer.train()
    if evaluator and steps not in scored:  # the trainer may have scored the last step already
        log.write(json.dumps({"step": steps, "sts_dev_spearman": evaluator(model)["sts-dev_spearman_cosine"]}) + "\n")
    log.close()
    model.save(args.output_dir)
    print(f"saved to {args.output_dir}")


if __name__ == "__main__":
    main()
