"""Check and time the training step on a GPU in one run of a few minutes: what the CPU tests cannot see.

    python benchmarks/gpu_check.py --out output/gpu_check                       # one GPU, bert-base's shape, < 8 min
    python benchmarks/gpu_check.py --out output/gpu_check --device cpu --tiny   # the same code on a CPU, < 2 min

Needs only what travels in the repository: a BERT with random weights (BertConfig's defaults: bert-base's shape, no
download), the tokenizer in benchmarks/gpu_check_tokenizer/, the SNLI sample in tests/data/nli. GPU machines have no
`datasets`: nothing on our path imports it. Checks: GradCache = the plain step with dropout on; bf16 close to fp32; a
resume bit-identical; packed forward = per-column forward; GradCache's peak memory near its mini-batch's. Speed: our
step against sentence-transformers' trainer (without `datasets`: the library's model and loss in our loop) at two
batch sizes, and GradCache at a big one. Writes OUT/gpu_check.json after every item (a run cut short keeps what it
measured), prints a table, exits 1 when a check fails. Benchmark code: it may import sentence-transformers.
"""
import argparse
import csv
import gzip
import importlib.util
import itertools
import json
import os
import random
import sys
import tempfile
import time
import warnings

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import data_prep  # noqa: E402
from mnr import checkpoint, gradcache  # noqa: E402
from mnr.flags import block_defaults  # noqa: E402
from mnr.models import MAX_LENGTH  # noqa: E402
from mnr.precision import autocast, resolve  # noqa: E402
from mnr.rng import rng_state, set_rng_state  # noqa: E402
from pooling import embed_columns  # noqa: E402

# train_mnr.py's recipe, read from its hyperparameter block: a benchmark imports no script
TRAINING = block_defaults(os.path.join(ROOT, "train_mnr.py"))
LR, MAX_GRAD_NORM, SCALE, SEED, WARMUP_RATIO, WEIGHT_DECAY = (TRAINING[name] for name in (
    "LR", "MAX_GRAD_NORM", "SCALE", "SEED", "WARMUP_RATIO", "WEIGHT_DECAY"))

# ---- what runs: "full" on a GPU, "tiny" (--tiny) a CPU dry run of the same code ----------------------------------
TOKENIZER = os.path.join(ROOT, "benchmarks", "gpu_check_tokenizer")  # bert-base-uncased's vocabulary (SOURCES.md)
NLI_SAMPLE = os.path.join(ROOT, "tests", "data", "nli", "snli_train_sample.tsv.gz")  # 1,918 entailment pairs
MODEL = {"full": {}, "tiny": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                              "intermediate_size": 64}}  # BertConfig overrides; none: bert-base
BATCHES = {"full": (32, 256), "tiny": (8, 16)}   # plain speed rows, ours and the library's; the first also checks
CACHED = {"full": (4096, 256), "tiny": (32, 8)}  # GradCache's row (batch, mini-batch): the mini-batch is a plain row
STEPS = {"full": (3, 10), "tiny": (1, 3)}        # (warm-up, timed) steps per speed row
# Dense bf16 peak TFLOPS (no sparsity) by a part of the device's name, the first that matches; elsewhere MFU is null.
PEAK_TFLOPS = [("H200", 989), ("H100 PCIe", 756), ("H100 NVL", 835), ("H100", 989), ("A100", 312)]


def load_pairs(path=NLI_SAMPLE):
    """The sample's entailment pairs, read as the local NLI files are: tab-separated, quoting off."""
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        rows = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [(r["premise"], r["hypothesis"]) for r in rows if r["label"] in ("0", "entailment")]


def batches_of(pairs, size, count):
    """`count` batches of `size` rows: data_prep's duplicate-free batches, epoch after epoch, while the sample holds
    enough rows; bigger batches (GradCache's) a seeded draw with repeats: a repeat is a false negative, no slower."""
    if 2 * size <= len(pairs):
        found = (b for epoch in range(count) for b in data_prep.epoch_batches(pairs, size, SEED, epoch))
        return [[pairs[i] for i in b] for b in itertools.islice(found, count)]
    draw = random.Random(SEED)
    return [draw.choices(pairs, k=size) for _ in range(count)]


def new_model(size, device, seed=SEED):
    """A BERT with random weights, in training mode: dropout 0.1 on, as in a pretrained BERT."""
    from transformers import BertConfig, BertModel
    torch.manual_seed(seed)
    with torch.device(device):
        return BertModel(BertConfig(**MODEL[size]), add_pooling_layer=False).train()


def new_optimizer(model, steps):
    """train_mnr.py's AdamW (decay on weight matrices only) and schedule: linear warmup, then linear decay;
    tests/test_layout.py checks the groups are train_mnr.make_optimizer's."""
    from transformers import get_linear_schedule_with_warmup
    no_decay = {id(p) for n, p in model.named_parameters() if n.endswith("bias") or "norm" in n.lower()}
    optimizer = torch.optim.AdamW([
        {"params": [p for p in model.parameters() if id(p) not in no_decay], "weight_decay": WEIGHT_DECAY},
        {"params": [p for p in model.parameters() if id(p) in no_decay], "weight_decay": 0.0}], lr=LR, fused=True)
    return optimizer, get_linear_schedule_with_warmup(optimizer, int(WARMUP_RATIO * steps), steps)


def loss_of(embeddings):
    """train_mnr.py's MNR loss in one process (tests/test_layout.py checks the two agree): each anchor picks its
    positive among every positive and negative of the batch, by scaled cosine, cross-entropy in fp32."""
    anchor, *candidates = [F.normalize(e.float(), dim=1) for e in embeddings]
    scores = SCALE * anchor @ torch.cat(candidates).T  # (B, B*(1+k))
    return F.cross_entropy(scores, torch.arange(len(anchor), device=anchor.device))


def update(model, optimizer, scheduler):
    torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def step(model, optimizer, scheduler, columns, device, precision, mini=None):
    """One step as train_mnr.train runs it: embed (packed), MNR loss, backward (or GradCache's), clip, AdamW."""
    if mini:
        loss = gradcache.cached_backward(model, columns, lambda m, c: embed_columns(m, c, "mean", True), loss_of,
                                         mini, device, precision)
    else:
        with autocast(device, precision):
            embeddings = embed_columns(model, columns, "mean", True)
        loss = loss_of(embeddings)
        loss.backward()
    value = loss.item()  # the CPU-GPU sync train_mnr.train has too
    update(model, optimizer, scheduler)
    return value


def gradients(model):
    return torch.cat([p.grad.flatten().float() for p in model.parameters() if p.grad is not None])


# ---- checks: each -> (ok, detail) ------------------------------------------------------------------------------

def check_packed(model, columns):
    """Packed rows (one forward, block-diagonal mask) give the per-column padded forward's embeddings."""
    model.eval()
    with torch.no_grad():
        packed, padded = (embed_columns(model, columns, "mean", pack) for pack in (True, False))
    model.train()
    error = max((a - b).abs().max().item() for a, b in zip(packed, padded))
    return error < 1e-4, f"largest difference {error:.1e} (fp32, limit 1e-4), {len(columns[0]['input_ids'])} rows"


def attention_kernels(model, columns):
    """Which attention runs packed rows. They carry a 4-D boolean mask (mnr/packing.py), which sdpa's flash kernel
    does not take, so sdpa falls back to another kernel; a varlen path (flash-attn's flash_attn_varlen_func on the
    sentences' offsets) would need no mask, but only where flash-attn is installed, and it is not wired here."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    runs = []
    model.eval()
    for backend in [getattr(SDPBackend, name) for name in ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION",
                                                           "MATH") if hasattr(SDPBackend, name)]:  # cuDNN's: torch 2.3+
        try:
            with torch.no_grad(), sdpa_kernel(backend), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # each kernel that declines says why, at length
                embed_columns(model, columns, "mean", True)
            runs.append(backend.name)
        except RuntimeError:
            pass
    model.train()
    flash = importlib.util.find_spec("flash_attn") is not None
    return True, (f"attn_implementation {model.config._attn_implementation}; sdpa kernels that take packed rows: "
                  f"{', '.join(runs) or 'none'}; flash-attn "
                  f"{'installed: a varlen path could apply' if flash else 'not installed: no varlen path'}")


def check_gradcache(model, columns, device, mini):
    """With dropout on, GradCache's gradient equals the plain step's over the same mini-batches from the same RNG
    state (over the whole batch at once, dropout would draw other masks). Its first pass and its replay must both
    draw the masks the plain step draws, on CUDA from the GPU's RNG: any other mask moves the gradient by far more
    than rounding does."""
    n = len(columns[0]["input_ids"])
    chunks = [{k: v[s:s + mini] for k, v in column.items()} for column in columns for s in range(0, n, mini)]
    per_column = len(chunks) // len(columns)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)  # seeds every CUDA device too
    embedded = [embed_columns(model, [chunk], "mean", True)[0] for chunk in chunks]  # in GradCache's order
    loss_of([torch.cat(embedded[c * per_column:(c + 1) * per_column]) for c in range(len(columns))]).backward()
    plain = gradients(model)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    gradcache.cached_backward(model, columns, lambda m, c: embed_columns(m, c, "mean", True), loss_of, mini, device)
    error = ((gradients(model) - plain).norm() / plain.norm()).item()
    model.zero_grad(set_to_none=True)
    return error < 1e-4, f"gradient relative error {error:.1e} (limit 1e-4); batch {n}, mini-batch {mini}, dropout 0.1"


def check_bf16(model, columns, device):
    """bf16 autocast's loss and gradient near fp32's. Dropout off, so both compute the same network."""
    model.eval()
    results = []
    for precision in ("fp32", "bf16"):
        model.zero_grad(set_to_none=True)
        with autocast(device, precision):
            embeddings = embed_columns(model, columns, "mean", True)
        loss = loss_of(embeddings)
        loss.backward()
        results.append((loss.item(), gradients(model)))
    model.zero_grad(set_to_none=True)
    model.train()
    (loss32, grad32), (loss16, grad16) = results
    loss_error = abs(loss16 - loss32) / abs(loss32)
    cosine = F.cosine_similarity(grad32.double(), grad16.double(), dim=0).item()  # fp32 sums drift over 1e8 terms
    return loss_error < 1e-2 and cosine > 0.99, (f"loss {loss32:.4f} fp32, {loss16:.4f} bf16 (relative difference "
                                                 f"{loss_error:.1e}, limit 1e-2); gradient cosine {cosine:.4f} "
                                                 "(limit 0.99)")


def check_resume(size, tokenizer, batches, device, precision):
    """Train 2 steps, checkpoint (mnr/checkpoint.py), 2 more -> A; a fresh model loads the checkpoint, restores the
    RNG states and trains the same 2 steps -> B. Exact when A == B bit for bit, as train_mnr.py --resume promises."""
    config = dict(TRAINING, MAX_LENGTH=MAX_LENGTH, MAX_STEPS=4)  # train_mnr's MAX_LENGTH is mnr.models'
    columns = [data_prep.collate(rows, tokenizer) for rows in batches[:4]]

    def straight(save_to=None):
        model = new_model(size, device)
        optimizer, scheduler = new_optimizer(model, 4)
        for i in range(4):
            if i == 2 and save_to:
                checkpoint.save_checkpoint(save_to, 2, model, tokenizer, optimizer, scheduler, config,
                                           [rng_state(device)], keep=1)
            step(model, optimizer, scheduler, columns[i], device, precision)
        return model

    with tempfile.TemporaryDirectory() as out:
        whole = straight(save_to=out)
        resumed = new_model(size, device, seed=SEED + 1)  # other weights: the checkpoint must bring them back
        optimizer, scheduler = new_optimizer(resumed, 4)
        start, states = checkpoint.load_checkpoint(os.path.join(out, "checkpoint-2"), resumed, optimizer, scheduler,
                                                   config)
        set_rng_state(states[0], device)
        for i in range(start, 4):
            step(resumed, optimizer, scheduler, columns[i], device, precision)
    def same(a, b):
        return all(map(torch.equal, a.state_dict().values(), b.state_dict().values()))
    if same(whole, resumed):
        return True, f"2 + 2 steps with a checkpoint between = 4 steps, bit for bit ({precision}, dropout on)"
    # Which is it: the resume, or kernels that differ from run to run anyway?
    culprit = "so the resume" if same(whole, straight()) else "nor is a second straight run: nondeterministic kernels"
    return False, f"resumed weights differ from the straight run's ({precision}), {culprit}"


# ---- speed ----------------------------------------------------------------------------------------------------

def clock(device, start=False):
    """Now, once the GPU has done what was queued. `start`: the timed steps start, and peak memory counts from here
    (after warm-up, so AdamW's state is there)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        if start:
            torch.cuda.reset_peak_memory_stats(device)
    return time.perf_counter()


def time_steps(batches, warm, device, one_step):
    """one_step(rows) for every batch -> the seconds the batches after the first `warm` took."""
    for i, rows in enumerate(batches):
        if i == warm:
            started = clock(device, start=True)
        one_step(rows)
    return clock(device) - started


def speed_row(name, batch, seconds, batches, tokenizer, encoder, device):
    """pairs/s, real tokens/s (padding not counted), MFU and peak memory of `batches` trained in `seconds`.
    FLOPs per token: PaLM's count (Chowdhery et al. 2022, app. B), 6 x the encoder's weights (2 forward, 4 backward;
    embedding lookups are not products) + 12 x layers x width x span, the span being the tokens each token attends
    to: its own sentence, so sum(length^2) / sum(length). Model FLOPs only: GradCache's second forward is left out."""
    lengths = torch.cat([c["attention_mask"].sum(1) for rows in batches for c in data_prep.collate(rows, tokenizer)])
    tokens, span = lengths.sum().item(), (lengths.double() ** 2).sum().item() / lengths.sum().item()
    flops = 6 * sum(p.numel() for p in encoder.encoder.parameters()) + \
        12 * encoder.config.num_hidden_layers * encoder.config.hidden_size * span
    peak = device.type == "cuda" and next((tflops for part, tflops in PEAK_TFLOPS
                                           if part in torch.cuda.get_device_name(device)), None)
    return {"config": name, "pairs_per_s": batch * len(batches) / seconds, "tokens_per_s": tokens / seconds,
            "mfu": tokens / seconds * flops / (peak * 1e12) if peak else None,
            "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else None}


def time_ours(size, tokenizer, pairs, batch, device, precision, mini=None):
    """Our step on a fresh model; tokenising is timed too, as train_mnr.py's pairs/s and the trainer's collator."""
    warm, timed = STEPS[size]
    batches = batches_of(pairs, batch, warm + timed)
    model = new_model(size, device)
    optimizer, scheduler = new_optimizer(model, len(batches))
    seconds = time_steps(batches, warm, device, lambda rows: step(
        model, optimizer, scheduler, data_prep.collate(rows, tokenizer), device, precision, mini))
    name = f"ours batch {batch}" + (f" GradCache mini-batch {mini}" if mini else "")
    return speed_row(name, batch, seconds, batches[warm:], tokenizer, model, device)


def time_library(size, folder, tokenizer, pairs, batch, device, precision):
    """sentence-transformers on the same weights, texts and batches: SentenceTransformerTrainer with
    MultipleNegativesRankingLoss (bf16 on CUDA); where the trainer cannot run (it needs `datasets` and
    `accelerate`), the library's model and loss in our loop."""
    from sentence_transformers import SentenceTransformer, losses
    from sentence_transformers.util import batch_to_device, is_training_available
    warm, timed = STEPS[size]
    batches = batches_of(pairs, batch, warm + timed)
    model = SentenceTransformer(folder, device=str(device))
    model.max_seq_length = MAX_LENGTH
    loss = losses.MultipleNegativesRankingLoss(model, scale=SCALE)
    if is_training_available():
        seconds, name = run_trainer(model, loss, batches, device, warm), f"sentence-transformers trainer batch {batch}"
    else:
        optimizer, scheduler = new_optimizer(model, len(batches))
        preprocess = getattr(model, "preprocess", model.tokenize)  # tokenize: before sentence-transformers 6

        def library_step(rows):
            features = [batch_to_device(preprocess(list(texts)), device) for texts in zip(*rows)]
            with autocast(device, precision):
                value = loss(features, None)
            value.backward()
            value.item()
            update(model, optimizer, scheduler)
        seconds = time_steps(batches, warm, device, library_step)
        name = f"sentence-transformers model+loss, our loop (no datasets: no trainer) batch {batch}"
    return speed_row(name, batch, seconds, batches[warm:], tokenizer, model[0].auto_model, device)


def run_trainer(model, loss, batches, device, warm):
    """SentenceTransformerTrainer over exactly `batches`, in order -> seconds of the steps after `warm`."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback
    size, ends = len(batches[0]), []
    rows = [row for rows in batches for row in rows]
    order = [list(range(i * size, (i + 1) * size)) for i in range(len(batches))]

    class Clock(TrainerCallback):
        def on_step_end(self, *args, **kwargs):
            ends.append(clock(device, start=len(ends) + 1 == warm))
    with tempfile.TemporaryDirectory() as out:
        args = SentenceTransformerTrainingArguments(
            output_dir=out, per_device_train_batch_size=size, max_steps=len(batches), learning_rate=LR,
            warmup_steps=int(WARMUP_RATIO * len(batches)), lr_scheduler_type="linear", weight_decay=WEIGHT_DECAY,
            max_grad_norm=MAX_GRAD_NORM, seed=SEED, batch_sampler=lambda dataset, **kw: order, save_strategy="no",
            report_to=[], logging_strategy="no", disable_tqdm=True, dataloader_drop_last=True,
            bf16=device.type == "cuda", use_cpu=device.type == "cpu")
        train = Dataset.from_dict({"anchor": [r[0] for r in rows], "positive": [r[1] for r in rows]})
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train, loss=loss,
                                             callbacks=[Clock()])
        trainer.remove_callback(PrinterCallback)  # its closing metrics line would land in our table
        trainer.train()
    return ends[-1] - ends[warm - 1]


def check_memory(speed, device, batch, mini):
    """GradCache's peak near a plain step of its mini-batch: it holds one mini-batch's activations (and one column
    of it, not both) plus the B x B loss, where a plain step at B would hold B's activations."""
    if device.type != "cuda":
        return True, "skipped (CPU)"
    cached = next((r for r in speed if r["config"] == f"ours batch {batch} GradCache mini-batch {mini}"), None)
    plain = next((r for r in speed if r["config"] == f"ours batch {mini}"), None)
    if not cached or not plain:
        return False, "a speed row it compares failed above"
    allowance = 8 * batch * batch * 4 / 2 ** 30  # a few fp32 B x B matrices: scores, softmax, their gradients
    ok = cached["peak_memory_gib"] <= 1.1 * plain["peak_memory_gib"] + allowance
    return ok, (f"GradCache batch {batch}: {cached['peak_memory_gib']:.2f} GiB; plain batch {mini}: "
                f"{plain['peak_memory_gib']:.2f} GiB (limit: 1.1 x that + {allowance:.2f} GiB for the B x B loss)")


# ---- the run ----------------------------------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for gpu_check.json")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="default: cuda if any")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer, 32-wide BERT and small batches: a CPU dry run")
    args = parser.parse_args(argv)
    size, device = "tiny" if args.tiny else "full", torch.device(args.device)
    precision = resolve("auto", device)  # what train_mnr.py computes in there: bf16 on CUDA
    report = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "checks": [], "speed": []}
    os.makedirs(args.out, exist_ok=True)

    def run(name, work):
        """One item; an exception fails that item only, so a short GPU loan still reports the rest."""
        started = time.perf_counter()
        try:
            result = work()
        except Exception as e:  # noqa: BLE001 - whatever broke, the report says it and the run goes on
            result = False, f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"
        if isinstance(result, dict):
            report["speed"].append(result)
            print(f"{time.perf_counter() - started:5.0f}s  {name}: {result['pairs_per_s']:.1f} pairs/s", flush=True)
        else:
            report["checks"].append({"name": name, "ok": bool(result[0]), "detail": result[1]})
            print(f"{time.perf_counter() - started:5.0f}s  {name}: {'ok' if result[0] else 'FAILED'}, {result[1]}",
                  flush=True)
        with open(os.path.join(args.out, "gpu_check.json"), "w") as f:
            json.dump(report, f, indent=1)

    # None: never imported, or blocked (a test stands in for a machine without it that way)
    run("no datasets on our path", lambda: (sys.modules.get("datasets") is None,
                                            "importing data_prep, pooling and mnr/ did not import it"))
    import transformers
    from transformers import AutoTokenizer
    transformers.logging.set_verbosity_error()  # load reports of the random BERT's absent pooler: noise here
    tokenizer = AutoTokenizer.from_pretrained(TOKENIZER)
    pairs = load_pairs()
    small, large = BATCHES[size]
    batches = batches_of(pairs, small, 4)
    columns = data_prep.collate(batches[0], tokenizer)
    model = new_model(size, device)
    run("packed forward = per-column forward", lambda: check_packed(model, columns))
    run("attention kernel (information)", lambda: attention_kernels(model, columns))
    run("GradCache = plain step, dropout on", lambda: check_gradcache(model, columns, device, small // 4))
    run("bf16 close to fp32", lambda: check_bf16(model, columns, device))
    del model
    run("resume bit-identical", lambda: check_resume(size, tokenizer, batches, device, precision))
    for batch in (small, large):
        run(f"ours batch {batch}", lambda: time_ours(size, tokenizer, pairs, batch, device, precision))
    try:
        import sentence_transformers  # noqa: F401 - it imports `datasets` when installed: after the check above
        with tempfile.TemporaryDirectory() as folder:
            new_model(size, device).save_pretrained(folder)  # the random weights ours start from, drawn on `device`
            tokenizer.save_pretrained(folder)
            for batch in (small, large):
                run(f"sentence-transformers batch {batch}",
                    lambda: time_library(size, folder, tokenizer, pairs, batch, device, precision))
    except ImportError as e:
        reason = f"skipped: sentence_transformers not importable ({e})"
        run("sentence-transformers comparison", lambda: (True, reason))
    batch, mini = CACHED[size]
    run(f"ours batch {batch} GradCache", lambda: time_ours(size, tokenizer, pairs, batch, device, precision, mini))
    run("GradCache peak memory near its mini-batch's", lambda: check_memory(report["speed"], device, batch, mini))

    print(f"\n{report['device']}, torch {report['torch']}, {size} model, {precision}; checks: "
          f"{', '.join(c['name'] + (' ok' if c['ok'] else ' FAILED') for c in report['checks'])}")
    print(f"\n{'config':<72} {'pairs/s':>9} {'tokens/s':>10} {'MFU':>6} {'peak GiB':>8}")
    for r in report["speed"]:
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "-"
        memory = f"{r['peak_memory_gib']:.2f}" if r["peak_memory_gib"] is not None else "-"
        print(f"{r['config']:<72} {r['pairs_per_s']:>9.1f} {r['tokens_per_s']:>10.0f} {mfu:>6} {memory:>8}")
    print(f"\nwritten: {os.path.join(args.out, 'gpu_check.json')}")
    return 0 if all(c["ok"] for c in report["checks"]) else 1


if __name__ == "__main__":
    sys.exit(main())
