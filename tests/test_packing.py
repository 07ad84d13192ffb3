"""Sequence packing gives the padded path's embeddings, losses and gradients (packing.py)."""
import copy
import json

import pytest
import torch

import data_prep
from mnr import packing
import train_mnr
from mnr.models import load_model
from pooling import POOLINGS, embed, embed_columns, pool
from conftest import ROOT, run_script
from test_gradcache import backward


@pytest.fixture(scope="module")
def triplets(nli_dir):
    return data_prep.make_rows(data_prep.load_nli(nli_dir), hard_negatives=True)[:24]


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("which", ["tiny", "minilm"])
def test_packed_embeddings_equal_padded(triplets, tiny_model_dir, minilm_path, pooling, which):
    model, tokenizer = load_model(tiny_model_dir if which == "tiny" else str(minilm_path))
    model.eval()
    columns = data_prep.collate(triplets, tokenizer)
    with torch.no_grad():
        padded = [embed(model, c, pooling) for c in columns]
        packed = [pool(pooling, tokens, mask)  # narrow rows: many sentences share one
                  for tokens, mask in packing.token_embeddings(model, columns, width=64)]
    for a, b in zip(padded, packed):
        assert a.shape == b.shape
        assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()


def test_rows_hold_several_sentences_and_little_padding(triplets, tiny_model_dir):
    _, tokenizer = load_model(tiny_model_dir)
    columns = data_prep.collate(triplets, tokenizer)
    ids, positions, mask, places = packing.pack(columns, width=64)
    real = sum(int(c["attention_mask"].sum()) for c in columns)
    assert ids.shape[0] < sum(len(p) for p in places) / 2  # at least two sentences per row on average
    assert (ids != 0).sum() == real  # every real token placed exactly once, nothing else but padding
    for column, spots in zip(columns, places):  # each sentence's tokens and positions land where recorded
        for i, (row, start, n) in enumerate(spots.tolist()):
            assert torch.equal(ids[row, start:start + n], column["input_ids"][i, :n])
            assert torch.equal(positions[row, start:start + n], torch.arange(n))
            block = mask[row, 0, start:start + n]
            assert block[:, start:start + n].all() and block.sum() == n * n  # attends to itself only


def test_sentence_longer_than_width_gets_its_own_row(tiny_model_dir):
    model, tokenizer = load_model(tiny_model_dir)
    model.eval()
    rows = [("word " * 90, "short one"), ("another short", "and " * 70)]
    columns = data_prep.collate(rows, tokenizer)
    with torch.no_grad():
        packed = [pool("mean", t, m) for t, m in packing.token_embeddings(model, columns, width=32)]
        padded = [embed(model, c, "mean") for c in columns]
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(padded, packed))


@pytest.mark.parametrize("mini_batch_size", [None, 8])
def test_training_step_loss_and_gradients_equal_padded(triplets, tiny_model_dir, mini_batch_size):
    model, tokenizer = load_model(tiny_model_dir, dropout=0.0)
    columns = data_prep.collate(triplets, tokenizer)
    (loss_a, grads_a), (loss_b, grads_b) = [
        backward(copy.deepcopy(model), columns, train_mnr.mnr_loss, mini_batch_size, pack) for pack in (False, True)]
    assert loss_a.item() == pytest.approx(loss_b.item(), abs=1e-5)
    assert grads_a.keys() == grads_b.keys() and grads_a
    for name in grads_a:
        assert torch.allclose(grads_a[name], grads_b[name], atol=1e-5, rtol=1e-4), name


def test_only_architectures_tested_packed_are_packed(tiny_model_dir):
    model, _ = load_model(tiny_model_dir)
    assert packing.can_pack(model)
    model.config.model_type = "roberta"  # packed too, its positions counted from padding_idx + 1
    assert packing.can_pack(model) and packing.first_position(model.config) == model.config.pad_token_id + 1
    model.config.model_type = "deberta-v2"  # builds its own attention mask: the padded forward
    assert not packing.can_pack(model)
    model.config.model_type = "bert"
    model.config._attn_implementation = "flash_attention_2"  # takes no 4-D mask
    assert not packing.can_pack(model)


def test_a_batch_is_packed_only_when_padding_is_worth_removing(triplets, tiny_model_dir, monkeypatch):
    """Short uneven NLI sentences are packed; sentences of one length (long abstracts cut at the same limit) take
    the padded forward, which costs less when there is no padding to remove. Same embeddings either way."""
    model, tokenizer = load_model(tiny_model_dir, dropout=0.0)
    model.eval()
    packed_calls = []
    real = packing.token_embeddings
    monkeypatch.setattr(packing, "token_embeddings", lambda *a, **k: packed_calls.append(1) or real(*a, **k))
    uneven = data_prep.collate(triplets[:8], tokenizer, 128)
    assert packing.saves_work(uneven)
    with torch.no_grad():
        embed_columns(model, uneven, "mean", pack=True)
    assert packed_calls == [1]
    same_length = data_prep.collate([(f"word {i} " * 40, f"other {i} " * 40) for i in range(8)], tokenizer, 32)
    assert not packing.saves_work(same_length)  # every row cut at 32 tokens: no padding at all
    with torch.no_grad():
        got = embed_columns(model, same_length, "mean", pack=True)
        want = embed_columns(model, same_length, "mean", pack=False)
    assert packed_calls == [1]  # not packed
    assert all(torch.equal(a, b) for a, b in zip(got, want))


AGREE = """
import json, sys
import torch
import torch.distributed as dist
sys.path.insert(0, {root!r})
from mnr import packing
dist.init_process_group("gloo")
rank = dist.get_rank()
mask = torch.ones(8, 32, dtype=torch.long)  # rank 0: every row full, nothing to pack away
if rank == 1:
    mask[:, 4:] = 0                         # rank 1: seven eighths padding
columns = [{{"attention_mask": mask}}]
# one file per process: two processes printing to one pipe can interleave their lines
with open(sys.argv[1] + f"/answer-{{rank}}.json", "w") as f:
    json.dump([rank, packing.saves_work(columns), packing.saves_work(columns, every_rank=True)], f)
dist.destroy_process_group()
"""


def test_every_torchrun_process_takes_the_same_packing_choice(tmp_path):
    """DDP needs the same forwards in every process: one process packing (one forward) while another pads (one
    per column) hangs the run. The training step's choice is taken on all processes' batches together: here
    each process alone would choose differently, together they choose alike (7/16 of the slots are padding)."""
    script = tmp_path / "agree.py"
    script.write_text(AGREE.format(root=ROOT))
    result = run_script("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
                        str(tmp_path), OMP_NUM_THREADS="1")
    assert result.returncode == 0, result.stderr[-3000:]
    answers = sorted(json.loads((tmp_path / f"answer-{rank}.json").read_text()) for rank in (0, 1))
    assert answers == [[0, False, True], [1, True, True]]
