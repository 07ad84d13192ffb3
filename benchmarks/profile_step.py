"""Where a training step's time goes: torch.profiler over a few steps of train_mnr.py's own step functions.

    python benchmarks/profile_step.py --model-name PATH --nli-data ../shared/data/nli [--batch-size 32] [--max-steps 3]
    python benchmarks/profile_step.py --model-name PATH --train-data TABLE --max-length 256 [--attention eager]

Takes train_mnr.py's flags (so --train-data, --no-pack-sequences, --precision, --dropout 0, --mini-batch-size ...
profile those paths; the rows and batches are train_mnr.load_batches'), plus --attention (the model's attention
implementation: sdpa, transformers' default, or eager). Runs 2 warm-up steps, then profiles --max-steps steps
(default 3) of the body of train_mnr.py's loop: collate (timed apart: tokenising), forward under the run's autocast,
loss and backward (GradCache's when --mini-batch-size is given), clipping, AdamW, schedule, zero_grad. Prints the
tokens per step (real, as computed, and what per-column padding would compute), the time per step by kind of work,
and the operators that took the most time. Nothing is written.
"""
import functools
import os
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile
from transformers import get_linear_schedule_with_warmup

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import data_prep  # noqa: E402
import train_mnr  # noqa: E402
from mnr import gradcache, packing  # noqa: E402
from mnr.models import load_model  # noqa: E402
from mnr.precision import autocast, resolve  # noqa: E402
from pooling import embed_columns  # noqa: E402

# Operator name -> kind of work. Everything else is "other" (elementwise ops, layer norms, copies, indexing).
KINDS = {"matrix multiplies (the model's own compute)": ("aten::mm", "aten::addmm", "aten::bmm"),
         "attention kernels (SDPA's fused ones; eager's are its matrix multiplies and softmax)": (
             "aten::_scaled_dot_product_flash_attention_for_cpu",
             "aten::_scaled_dot_product_flash_attention_for_cpu_backward", "aten::_softmax", "aten::_softmax_backward_data"),
         "dropout masks (random numbers)": ("aten::bernoulli_",),
         "AdamW": ("aten::_fused_adamw_",),
         "gradient clipping (norms)": ("aten::linalg_vector_norm",)}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    attention = "sdpa"
    if "--attention" in argv:  # ours, not train_mnr.py's: which attention kernel the model runs
        attention = argv.pop(argv.index("--attention") + 1)
        argv.remove("--attention")
    args = train_mnr.parse_args(argv)
    steps = args.max_steps or 3
    args.max_steps = 2 + steps
    torch.manual_seed(args.seed)
    device = torch.device("cpu")
    args.precision = resolve(args.precision, device)
    model, tokenizer = load_model(args.model_name, args.dropout)
    model.set_attn_implementation(attention)
    model.train()
    rows, batches, _ = train_mnr.load_batches(args)  # the loop's own rows and batches (NLI, or --train-data)
    batches = batches[:2 + steps]
    optimizer = train_mnr.make_optimizer(model, args.lr, args.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, 0, len(batches))
    pack = args.pack_sequences and not args.pad_to_max_length and packing.can_pack(model)
    embed_fn = functools.partial(embed_columns, pooling=args.pooling, pack=pack)
    loss_of = train_mnr.make_loss(args, model)  # the loop's own loss: MNR at --scale, as in-batch as it trains
    tokenising = []

    def step(batch):
        """One iteration of train_mnr.py's loop body, without its logging. Returns the batch's columns."""
        t0 = time.perf_counter()
        cols = data_prep.collate([rows[i] for i in batch], tokenizer, args.max_length, args.pad_to_max_length)
        tokenising.append(time.perf_counter() - t0)
        if args.mini_batch_size:
            gradcache.cached_backward(model, cols, embed_fn, loss_of, args.mini_batch_size, device, args.precision)
        else:
            with autocast(device, args.precision):
                embeddings = embed_fn(model, cols)
            loss_of(embeddings).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        return cols

    for batch in batches[:2]:
        step(batch)  # warm-up: first-call allocations and kernel choices
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        columns = [step(batch) for batch in batches[2:]]
    wall = (time.perf_counter() - start) / steps  # includes the profiler's own overhead

    real = sum(int(c["attention_mask"].sum()) for cols in columns for c in cols) / steps
    padded = sum(c["input_ids"].numel() for cols in columns for c in cols) / steps
    packed = sum(packing.pack(cols)[0].numel() for cols in columns) / steps
    print(f"batch {args.batch_size}, max length {args.max_length}, {args.precision}, attention {attention}, {steps} steps, "
          f"{torch.get_num_threads()} threads: {wall * 1e3:.0f} ms per step under the profiler, of which tokenising "
          f"{sum(tokenising[2:]) / steps * 1e3:.1f} ms; tokens per step: {real:.0f} real, {packed:.0f} packed slots, "
          f"{padded:.0f} when each column is padded (this run computes the {'packed' if pack and packing.saves_work(columns[0]) else 'padded'} ones)")
    ops = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in ops) / steps / 1e3
    print("\n| kind of work | ms per step | share |\n| --- | --- | --- |")
    counted = 0.0
    for kind, names in KINDS.items():
        ms = sum(e.self_cpu_time_total for e in ops if e.key in names) / steps / 1e3
        counted += ms
        print(f"| {kind} | {ms:.1f} | {ms / total:.0%} |")
    print(f"| other operators | {total - counted:.1f} | {(total - counted) / total:.0%} |\n| all operators | {total:.1f} | 100% |")
    print("\n" + ops.table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
