"""Hardness weighting (--hardness-mode, --hardness-strength, mnr/hardness.py): the loss and its gradients equal
sentence-transformers' MultipleNegativesRankingLoss(hardness_mode=..., hardness_strength=...), per process under
torchrun's label offset too, and through GradCache; flags that would do nothing are refused."""
import copy
from types import SimpleNamespace

import pytest
import torch

import data_prep
import train_bidirectional
import train_mnr
from mnr import hardness
from mnr.errors import ConfigError
from test_gradcache import backward

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def library_loss():
    st = pytest.importorskip("sentence_transformers.sentence_transformer.losses")

    def make(mode, strength, scale=20.0):  # compute_loss_from_embeddings never touches the model
        return st.MultipleNegativesRankingLoss(torch.nn.Identity(), scale=scale, hardness_mode=mode,
                                               hardness_strength=strength).compute_loss_from_embeddings
    return make


def batch(k, B=8, D=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(B, D, dtype=torch.float64, generator=generator).requires_grad_() for _ in range(2 + k)]


@pytest.mark.parametrize("mode", hardness.MODES)
@pytest.mark.parametrize("k", [0, 1, 2])
@pytest.mark.parametrize("strength,scale", [(9.0, 20.0), (5.0, 50.0), (0.5, 10.0)])
def test_loss_and_gradients_equal_sentence_transformers(library_loss, mode, k, strength, scale):
    anchor, positive, *negatives = columns = batch(k, seed=k)
    ours = hardness.weighted_mnr_loss(anchor, positive, negatives, scale=scale, mode=mode, strength=strength)
    theirs = library_loss(mode, strength, scale)(columns, None)
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-12)
    for g_ours, g_theirs in zip(torch.autograd.grad(ours, columns), torch.autograd.grad(theirs, columns)):
        assert torch.allclose(g_ours, g_theirs, atol=1e-12)
    plain = train_mnr.mnr_loss(anchor, positive, negatives, scale=scale)
    if mode != "hard_negatives" or k:  # hard_negatives without negative columns weighs nothing
        assert abs(ours.item() - plain.item()) > 1e-6  # the weighting did something


@pytest.mark.parametrize("mode", hardness.MODES)
def test_each_mode_weighs_exactly_its_candidates(mode):
    """Query i's row: its own positive (column i) never; in-batch negatives are every other row's candidates;
    hard negatives are its own negative columns (i + B, i + 2B)."""
    B, columns = 3, 9  # positives and two negative columns
    got = hardness.penalty(torch.ones(B, columns), B, mode, 1.0) != 0
    for i in range(B):
        own_negatives = {i + B, i + 2 * B}
        others = {c for c in range(columns) if c % B != i}
        want = {"in_batch_negatives": others, "hard_negatives": own_negatives,
                "all_negatives": others | own_negatives}[mode]
        assert {c for c in range(columns) if got[i, c]} == want


@pytest.mark.parametrize("mode", hardness.MODES)
def test_own_rows_first_gives_the_full_batch_loss_split_over_processes(mode):
    """Under torchrun each process scores its own queries against every candidate, its own rows first (as
    distributed.gather orders them): the mean of the halves' losses is the one-process loss."""
    anchor, positive, negative = batch(1, B=8, seed=3)
    whole = hardness.weighted_mnr_loss(anchor, positive, [negative], mode=mode, strength=9.0)
    halves = [hardness.weighted_mnr_loss(anchor[start:start + 4], positive.roll(-start, 0), [negative.roll(-start, 0)],
                                         mode=mode, strength=9.0) for start in (0, 4)]
    assert whole.item() == pytest.approx(sum(h.item() for h in halves) / 2, abs=1e-12)


HARDNESS_FLAGS = ["--hardness-mode", "all_negatives", "--hardness-strength", "5"]
SIZE_16 = SimpleNamespace(config=SimpleNamespace(hidden_size=16))  # all make_loss reads of a model here


def test_hardness_goes_through_make_loss_and_matryoshka(library_loss):
    anchor, positive, negative = batch(1, seed=5)
    got = train_mnr.make_loss(train_mnr.parse_args(HARDNESS_FLAGS), SIZE_16)([anchor, positive, negative], None)
    want = library_loss("all_negatives", 5.0)([anchor, positive, negative], None)
    assert got.item() == pytest.approx(want.item(), abs=1e-5)  # the loop's loss computes in fp32
    cut = train_mnr.make_loss(train_mnr.parse_args([*HARDNESS_FLAGS, "--matryoshka-dims", "16,8"]), SIZE_16)
    got = cut([anchor, positive, negative], None)
    want = sum(library_loss("all_negatives", 5.0)([anchor[:, :d], positive[:, :d], negative[:, :d]], None)
               for d in (16, 8))
    assert got.item() == pytest.approx(want.item(), abs=1e-5)


@pytest.mark.parametrize("mode", hardness.MODES)
def test_gradcache_step_equals_plain_step(tiny_model_dir, nli_dir, mode):
    model, tokenizer = train_mnr.load_model(tiny_model_dir, dropout=0.0)
    rows = data_prep.make_rows(data_prep.load_nli(nli_dir), hard_negatives=True)[:12]
    columns = data_prep.collate(rows, tokenizer)
    built = train_mnr.make_loss(train_mnr.parse_args(["--hardness-mode", mode, "--hardness-strength", "9"]), model)
    plain_loss, plain = backward(copy.deepcopy(model), columns, None, built=built)
    cached_loss, cached = backward(copy.deepcopy(model), columns, None, 5, built=built)  # 5, 5, 2
    unweighted_loss, _ = backward(copy.deepcopy(model), columns, train_mnr.mnr_loss)
    assert cached_loss.item() == pytest.approx(plain_loss.item(), abs=1e-6)
    assert plain_loss.item() != pytest.approx(unweighted_loss.item(), abs=1e-6)
    assert plain.keys() == cached.keys() and len(plain) > 10
    for name in plain:
        assert torch.allclose(plain[name], cached[name], atol=1e-5, rtol=1e-4), name


@pytest.mark.parametrize("flags", [["--hardness-mode", "in_batch_negatives"], ["--hardness-strength", "9"],
                                   ["--hardness-mode", "all_negatives", "--hardness-strength", "-1"]])
def test_a_flag_that_would_do_nothing_is_refused(flags):
    with pytest.raises(ConfigError, match="--hardness-mode and a positive --hardness-strength"):
        train_mnr.check_args(train_mnr.parse_args(["--model-name", "x/y", *flags]))


def test_hard_negatives_mode_on_pairs_is_refused_before_a_model_loads(nli_dir):
    args = train_mnr.parse_args(["--nli-data", nli_dir, "--hardness-mode", "hard_negatives",
                                 "--hardness-strength", "5"])
    with pytest.raises(ConfigError, match="these rows have none"):
        train_mnr.load_batches(args)
    args.hard_negatives = True  # triplets: accepted
    assert train_mnr.load_batches(args)[2] > 0


def test_bidirectional_losses_refuse_the_flags(capsys):
    with pytest.raises(SystemExit) as exit_:
        train_bidirectional.parse_args(["--hardness-mode", "in_batch_negatives", "--hardness-strength", "9"])
    assert exit_.value.code == 2 and "train_mnr.py's MNR loss only" in capsys.readouterr().err


def test_training_with_hardness_records_it(tiny_model_dir, nli_dir, tmp_path):
    import json
    out = tmp_path / "out"
    train_mnr.train(train_mnr.parse_args(["--model-name", tiny_model_dir, "--nli-data", nli_dir, "--max-steps", "2",
                                          "--batch-size", "8", "--hardness-mode", "in_batch_negatives",
                                          "--hardness-strength", "9", "--output-dir", str(out)]))
    config = json.load(open(out / "training_config.json"))
    assert config["HARDNESS_MODE"] == "in_batch_negatives" and config["HARDNESS_STRENGTH"] == 9.0
