"""GradCache (--mini-batch-size): the same loss and gradients as the plain large-batch step."""
import copy

import pytest
import torch

import data_prep
import train_bidirectional
import train_mnr


@pytest.fixture(scope="module")
def setup(tiny_model_dir, nli_dir):
    model, tokenizer = train_mnr.load_model(tiny_model_dir, dropout=0.0)
    nli = data_prep.load_nli(nli_dir)
    rows = {"pairs": data_prep.make_rows(nli)[:20], "triplets": data_prep.make_rows(nli, hard_negatives=True)[:20]}
    return model, tokenizer, rows


def step(model, columns, loss_fn, mini_batch_size, seed=1):
    model.zero_grad(set_to_none=True)
    config = dict(train_mnr.DEFAULTS, MINI_BATCH_SIZE=mini_batch_size)
    torch.manual_seed(seed)
    loss = train_mnr.train_step(model, columns, loss_fn, config, torch.device("cpu"))
    return loss, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("kind", ["pairs", "triplets"])
@pytest.mark.parametrize("loss_fn", [train_mnr.mnr_loss, train_bidirectional.bidirectional_loss,
                                     train_bidirectional.symmetric_loss])
def test_cached_step_equals_plain_step(setup, kind, loss_fn):
    model, tokenizer, rows = setup
    columns = data_prep.collate(rows[kind], tokenizer)
    plain_loss, plain = step(copy.deepcopy(model), columns, loss_fn, None)
    cached_loss, cached = step(copy.deepcopy(model), columns, loss_fn, 6)  # 20 rows: chunks of 6, 6, 6, 2
    assert cached_loss.item() == pytest.approx(plain_loss.item(), abs=1e-6)
    assert plain.keys() == cached.keys() and len(plain) > 10
    for name in plain:
        assert torch.allclose(plain[name], cached[name], atol=1e-5, rtol=1e-4), name
    assert sum(g.abs().sum() for g in plain.values()) > 0


def test_replay_reproduces_first_pass_with_dropout_on(setup, monkeypatch):
    """With dropout on, pass 3 must see the same dropout masks as pass 1: record both passes' embeddings."""
    model, tokenizer, rows = setup
    model = copy.deepcopy(model)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.1
    columns = data_prep.collate(rows["triplets"], tokenizer)
    calls = []
    real_embed_columns = train_mnr.embed_columns

    def recording(*args, **kwargs):
        out = real_embed_columns(*args, **kwargs)
        calls.append(out[0].detach().clone())
        return out

    monkeypatch.setattr(train_mnr, "embed_columns", recording)
    step(model, columns, train_mnr.mnr_loss, 6)
    n = len(calls) // 2
    assert n == 3 * 4  # three columns, four chunks each: one no-graph pass, one replay
    for first, replay in zip(calls[:n], calls[n:]):
        assert torch.equal(first, replay)
    # ...and dropout really is on: two forwards from the same start state without the restore differ.
    model.train()
    config = train_mnr.DEFAULTS
    a = real_embed_columns(model, columns[:1], config)[0]
    b = real_embed_columns(model, columns[:1], config)[0]
    assert not torch.equal(a, b)
