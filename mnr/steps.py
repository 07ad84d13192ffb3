"""What train_mnr.py's loop does around each step: the step's numbers checked, then the log line, the progress bar,
the dev scores and the checkpoint when they are due.

A NaN stops the run at the step it appears in, naming what went non-finite, because each has its own cause:
  the gradient norm   (the loss was finite) one batch's backward overflowed: the step is not applied
  a weight            the previous step's update broke it: the learning rate is too high for this model
  the loss            with finite weights: the scores overflowed (the scale, or bf16 on too large logits)
"""
import math
import time
from dataclasses import dataclass
from typing import NamedTuple

import torch

from mnr import checkpoint, distributed, model_card, retrieval, sts, train_log
from mnr.flags import config_of
from mnr.rng import rng_state


class Checkpointed(NamedTuple):
    """What a checkpoint holds, and the save writes: the model itself (not DDP's or torch.compile's wrapper)."""
    model: torch.nn.Module
    tokenizer: object
    optimizer: torch.optim.Optimizer
    scheduler: object
    loss: object            # the loss function: a module with its own state (a learned temperature) or a function


@dataclass
class Bookkeeping:
    """What the bookkeeping around each step writes to (train_mnr.setup fills it; after_step, dev_scores and the save
    read it). The loop itself never reads it: its rows, batches, model, loss, optimiser and schedule are named."""
    total_steps: int        # load_batches: one epoch's batches, or --max-steps
    device: torch.device    # distributed.setup: this process's device
    world: int              # distributed.setup: processes under torchrun, 1 without
    master: bool            # rank 0, the one process that prints, logs, scores the dev data and saves
    claim: object           # outdir.claim: OUTPUT_DIR locked for this run (None on the other ranks)
    rows_digest: str        # checkpoint.rows_digest: each checkpoint records the rows it was trained on
    checkpointed: Checkpointed  # what a checkpoint holds
    log: object = None      # train_log.open_log: the open train_log.in-progress.jsonl (rank 0)
    facts: dict | None = None  # model_card.run_facts: what the model card tells beyond the config (rank 0)
    sts: tuple | None = None   # --sts-data: STSb dev pairs, scored along training (rank 0)
    beir: object = None     # --eval-beir: a BEIR dev task, with the model's prompts (rank 0)
    started: float = 0.0    # when the first step began: the wall time of the log and the card


def first_non_finite(model):
    """The name of the first weight of `model` holding a NaN or an infinity, else None (run only on a failure)."""
    return next((name for name, p in model.named_parameters() if not torch.isfinite(p).all()), None)


def checked_loss(args, step, loss, model):
    """The step's loss as a number (the global batch's, under torchrun; a CPU-GPU sync, once per step); a NaN or
    an infinity stops the run here, naming a broken weight if there is one, else the loss itself."""
    value = distributed.mean_across_ranks(loss.detach()).item()
    if not math.isfinite(value):
        broken = first_non_finite(getattr(model, "module", model))
        if broken:
            raise FloatingPointError(f"step {step}: the weight {broken} is not finite, made so by step {step - 1}'s "
                                     f"update (the loss is {value}); the learning rate ({args.lr}) is likely too high")
        raise FloatingPointError(f"step {step}: the loss is {value} while every weight is finite: the scores "
                                 f"overflowed; the scale ({args.scale}) or the learning rate ({args.lr}) is likely "
                                 "too high")
    return value


def checked_grad_norm(args, step, grad_norm, loss_value):
    """Stop before the optimiser applies a non-finite gradient (clipping would spread the NaN into every weight)."""
    norm = grad_norm.item()
    if not math.isfinite(norm):
        raise FloatingPointError(f"step {step}: the gradient norm is {norm} (the loss, {loss_value:.4f}, is finite): "
                                 "the backward overflowed and the step was not applied; lower the learning rate "
                                 f"({args.lr}) or use --precision fp32")
    return grad_norm


def after_step(args, book, step, progress, loss_value, lr, grad_norm, seconds):
    """What follows a step: the log line, the progress bar, dev scores when due, a checkpoint when due."""
    model, tokenizer, optimizer, scheduler, loss = book.checkpointed
    left_out = getattr(loss, "left_out", None)  # GIST's count of false negatives it left out this step
    left_out = None if left_out is None else distributed.mean_across_ranks(left_out.float()).item() * book.world
    if book.master:
        train_log.log_step(book.log, step, loss_value, lr, grad_norm, args.batch_size / seconds, book.device, left_out)
        progress.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", refresh=False)
    progress.update()
    if step == book.total_steps and first_non_finite(model):  # the last update: no later loss would show it
        raise FloatingPointError(f"step {step}: the weight {first_non_finite(model)} is not finite after the "
                                 f"last update; the learning rate ({args.lr}) is likely too high")
    if (book.sts or book.beir) and (step == book.total_steps or args.eval_every and step % args.eval_every == 0):
        dev_scores(args, book, step, progress.write)
    if args.save_every and step % args.save_every == 0 and step < book.total_steps:
        states = distributed.gather_objects(rng_state(book.device))  # a collective: every process takes part
        if book.master:
            book.facts.update(steps=step, wall_time_s=time.perf_counter() - book.started,
                              loss_parameters=model_card.loss_parameters(loss))
            checkpoint.save_checkpoint(args.output_dir, step, model, tokenizer, optimizer, scheduler, config_of(args),
                                       states, args.keep_checkpoints, facts=book.facts, rows_digest=book.rows_digest,
                                       loss=loss)


def dev_scores(args, book, step, write):
    """The model now on the dev data asked for (STSb dev Spearman, a BEIR folder's dev nDCG@10), in fp32 as the
    evaluators score: printed, logged and kept for the model card."""
    model, tokenizer = book.checkpointed.model, book.checkpointed.tokenizer
    encoder = (model, tokenizer, args.pooling, args.max_length)
    scored = (("sts_dev", "STSb dev spearman", "sts_dev_spearman", book.sts,
               lambda: sts.evaluate(encoder, *book.sts)["spearman"]),
              ("beir_dev", "BEIR dev nDCG@10", "beir_dev_ndcg@10", book.beir,
               lambda: retrieval.evaluate(encoder, book.beir)["ndcg@10"]))
    for fact, shown, logged, data, score in scored:
        if data:
            value = score()
            write(f"step {step}: {shown} {value:.4f}")
            train_log.write(book.log, {"step": step, logged: value})
            book.facts[fact].append((step, value))
