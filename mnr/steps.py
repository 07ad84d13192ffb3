"""What train_mnr.py's loop does around each step: the step's numbers checked, then the log line, the progress bar,
the dev scores and the checkpoint when they are due.

A NaN stops the run at the step it appears in, naming what went non-finite, because each has its own cause:
  the gradient norm   (the loss was finite) one batch's backward overflowed: the step is not applied
  a weight            the previous step's update broke it: the learning rate is too high for this model
  the loss            with finite weights: the scores overflowed (the scale, or bf16 on too large logits)
"""
import math
import time

import torch

from mnr import checkpoint, distributed, model_card, retrieval, sts, train_log
from mnr.flags import config_of
from mnr.rng import rng_state


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


def after_step(args, run, step, progress, loss_value, lr, grad_norm, seconds):
    """What follows a step: the log line, the progress bar, dev scores when due, a checkpoint when due."""
    left_out = getattr(run.loss, "left_out", None)  # GIST's count of false negatives it left out this step
    left_out = None if left_out is None else distributed.mean_across_ranks(left_out.float()).item() * run.world
    if run.master:
        train_log.log_step(run.log, step, loss_value, lr, grad_norm, args.batch_size / seconds, run.device, left_out)
        progress.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", refresh=False)
    progress.update()
    if step == run.total_steps and first_non_finite(run.model):  # the last update: no later loss would show it
        raise FloatingPointError(f"step {step}: the weight {first_non_finite(run.model)} is not finite after the "
                                 f"last update; the learning rate ({args.lr}) is likely too high")
    if (run.sts or run.beir) and (step == run.total_steps or args.eval_every and step % args.eval_every == 0):
        dev_scores(args, run, step, progress.write)
    if args.save_every and step % args.save_every == 0 and step < run.total_steps:
        run.facts.update(steps=step, wall_time_s=time.perf_counter() - run.started,
                         loss_parameters=model_card.loss_parameters(run.loss))
        states = distributed.gather_objects(rng_state(run.device))  # a collective: every process takes part
        if run.master:
            checkpoint.save_checkpoint(args.output_dir, step, run.model, run.tokenizer, run.optimizer,
                                       run.scheduler, config_of(args), states, args.keep_checkpoints, facts=run.facts,
                                       rows_digest=run.rows_digest, loss=run.loss)


def dev_scores(args, run, step, write):
    """The model now on the dev data asked for (STSb dev Spearman, a BEIR folder's dev nDCG@10), in fp32 as the
    evaluators score: printed, logged and kept for the model card."""
    encoder = (run.model, run.tokenizer, args.pooling, args.max_length)
    scored = (("sts_dev", "STSb dev spearman", "sts_dev_spearman", run.sts,
               lambda: sts.evaluate(encoder, *run.sts)["spearman"]),
              ("beir_dev", "BEIR dev nDCG@10", "beir_dev_ndcg@10", run.beir,
               lambda: retrieval.evaluate(encoder, run.beir)["ndcg@10"]))
    for fact, shown, logged, data, score in scored:
        if data:
            value = score()
            write(f"step {step}: {shown} {value:.4f}")
            train_log.write(run.log, {"step": step, logged: value})
            run.facts[fact].append((step, value))
