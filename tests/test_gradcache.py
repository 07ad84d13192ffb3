"""GradCache (--mini-batch-size, gradcache.py): the same loss and gradients as the plain large-batch step."""
import copy
import functools

import pytest
import torch

import data_prep
from mnr import distributed, gradcache
from mnr.matryoshka import matryoshka_loss
import train_bidirectional
import train_mnr

CPU = torch.device("cpu")


def backward(model, columns, loss_fn, mini_batch_size=None, pack=True, built=None):
    """One step's forward and backward as train_mnr.train runs it -> (loss, {parameter: gradient}).
    `built`: the loss as train_mnr.make_loss builds it (called with the embeddings); else `loss_fn` at scale 20."""
    model.zero_grad(set_to_none=True)
    embed_fn = functools.partial(train_mnr.embed_columns, pooling="mean", pack=pack)
    loss_of = built or distributed.InBatch(functools.partial(loss_fn, scale=20.0))
    if mini_batch_size:
        loss = gradcache.cached_backward(model, columns, embed_fn, loss_of, mini_batch_size, CPU)
    else:
        loss = loss_of(embed_fn(model, columns))
        loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.fixture(scope="module")
def setup(tiny_model_dir, nli_dir):
    model, tokenizer = train_mnr.load_model(tiny_model_dir, dropout=0.0)
    nli = data_prep.load_nli(nli_dir)
    triplets = data_prep.make_rows(nli, hard_negatives=True)
    rows = {"pairs": data_prep.make_rows(nli)[:20], "triplets": triplets[:20],
            # two negative columns, as --train-data gives them: the second is another row's contradiction
            "quadruples": [(*row, other[2]) for row, other in zip(triplets[:20], triplets[40:60])]}
    return model, tokenizer, rows


@pytest.mark.parametrize("kind", ["pairs", "triplets", "quadruples"])
@pytest.mark.parametrize("loss_fn", [train_mnr.mnr_loss, train_bidirectional.bidirectional_loss,
                                     train_bidirectional.symmetric_loss,
                                     matryoshka_loss(train_mnr.mnr_loss, [32, 16, 8], [1.0, 0.5, 0.25])])
def test_cached_step_equals_plain_step(setup, kind, loss_fn):
    model, tokenizer, rows = setup
    columns = data_prep.collate(rows[kind], tokenizer)
    plain_loss, plain = backward(copy.deepcopy(model), columns, loss_fn)
    cached_loss, cached = backward(copy.deepcopy(model), columns, loss_fn, 6)  # 20 rows: mini-batches of 6, 6, 6, 2
    assert cached_loss.item() == pytest.approx(plain_loss.item(), abs=1e-6)
    assert plain.keys() == cached.keys() and len(plain) > 10
    for name in plain:
        assert torch.allclose(plain[name], cached[name], atol=1e-5, rtol=1e-4), name
    assert sum(g.abs().sum() for g in plain.values()) > 0


def test_replay_sees_the_same_dropout_masks_as_the_first_pass(setup):
    """With dropout on, pass (3) must drop the units pass (1) dropped: record both passes' embeddings."""
    model, tokenizer, rows = setup
    model = copy.deepcopy(model)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.1
    model.train()
    columns = data_prep.collate(rows["triplets"], tokenizer)
    calls = []

    def recording(model, columns):
        out = train_mnr.embed_columns(model, columns, "mean", True)
        calls.append(out[0].detach().clone())
        return out

    loss_of = distributed.InBatch(functools.partial(train_mnr.mnr_loss, scale=20.0))
    gradcache.cached_backward(model, columns, recording, loss_of, 6, CPU)
    n = len(calls) // 2
    assert n == 3 * 4  # three columns, four mini-batches each: one no-graph pass, one replay
    for first, replay in zip(calls[:n], calls[n:]):
        assert torch.equal(first, replay)
    # ...and dropout really is on: two forwards from the same start state without the restore differ.
    assert not torch.equal(recording(model, columns[:1])[0], recording(model, columns[:1])[0])
