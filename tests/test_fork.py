"""Forking train_mnr.py as a user would (issue 28 §1): README's "Fork it" blocks applied to a copy of the script.
A margin constant reaches the loss and the card; a learned temperature is trained, checkpointed, resumed to the
bit after kill -9, logged and carded; a functools.partial, a lambda and a module get a readable card line."""
import functools
import importlib.util
import json
import math
import os
import re
import shutil
import sys
from types import SimpleNamespace

import pytest
import torch

import train_mnr
from conftest import ROOT, run_script, start_script
from mnr import checkpoint, model_card
from test_checkpoint import THREADS, assert_identical, kill_when, logged_steps, weights

# Where each README block goes in the copy, by its first line.
PLACES = {"# train_mnr.py: in the hyperparameter block, after the SCALE line": "after SCALE",
          "# train_mnr.py: above make_loss": "above make_loss",
          "# train_mnr.py: make_loss's first line becomes": "first line"}
FIRST_LINE = "    loss = functools.partial(loss_fn, scale=args.scale)  # 6. the tutorial's loss, at SCALE\n"


def readme_forks():
    """README's "Fork it" section -> {subsection title: [code blocks]}."""
    text = open(os.path.join(ROOT, "README.md")).read()
    section = text.split("\n## Fork it\n", 1)[1].split("\n## ", 1)[0]
    forks = {}
    for part in section.split("\n### ")[1:]:
        title, body = part.split("\n", 1)
        forks[title] = re.findall(r"```python\n(.*?)```", body, re.S)
    return forks


def fork(tmp_path, title):
    """A copy of train_mnr.py with the README fork `title` applied -> its path (it imports the repo's modules)."""
    source = open(os.path.join(ROOT, "train_mnr.py")).read()
    assert source.count(FIRST_LINE) == 1, "make_loss's first line moved: update the README and this test"
    for block in readme_forks()[title]:
        where, code = block.split("\n", 1)
        place = PLACES[where]
        if place == "after SCALE":
            line = re.search(r"^SCALE = .*\n", source, re.M).group(0)
            source = source.replace(line, line + code, 1)
        elif place == "above make_loss":
            source = source.replace("def make_loss(", code + "\n\n" + "def make_loss(", 1)
        else:
            source = source.replace(FIRST_LINE, code, 1)
    path = tmp_path / "forked" / "train_mnr.py"
    os.makedirs(path.parent, exist_ok=True)
    path.write_text(source)
    return path


def load(path, name):
    """The forked script as a module of its own (mnr.flags reads the block from its file)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


SIZE = SimpleNamespace(config=SimpleNamespace(hidden_size=16), device=torch.device("cpu"))  # what make_loss reads


def columns(seed=0, k=1, B=8, D=16):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, D, generator=g) for _ in range(2 + k)]


def flags(tiny_model_dir, nli_dir, out, *extra):
    return ["--model-name", tiny_model_dir, "--nli-data", nli_dir, "--batch-size", "8", "--precision", "fp32",
            "--output-dir", str(out), *extra]


def test_readme_has_the_three_forks():
    assert list(readme_forks()) == [
        "A hyperparameter of your loss: an additive margin, as a `functools.partial`",
        "A learned temperature (CLIP), as an `nn.Module`", "A new pooling"]


def test_a_margin_constant_reaches_the_loss(tmp_path):
    forked = load(fork(tmp_path, next(iter(readme_forks()))), "forked_margin")
    embeddings = columns()
    stock = train_mnr.make_loss(train_mnr.parse_args([]), SIZE)(embeddings, None)
    assert forked.parse_args([]).margin == 0.1  # a flag, defaulting to the block's value
    with_margin = forked.make_loss(forked.parse_args([]), SIZE)(embeddings, None)
    assert with_margin.item() > stock.item() + 1e-3  # the positive pays the margin: a larger loss
    wider = forked.make_loss(forked.parse_args(["--margin", "0.3"]), SIZE)(embeddings, None)
    assert wider.item() > with_margin.item() + 1e-3
    none = forked.make_loss(forked.parse_args(["--margin", "0"]), SIZE)(embeddings, None)
    assert none.item() == pytest.approx(stock.item(), abs=1e-6)


def test_a_margin_run_writes_it_into_config_and_card(tmp_path, tiny_model_dir, nli_dir):
    forked = load(fork(tmp_path, next(iter(readme_forks()))), "forked_margin_run")
    out = tmp_path / "out"
    forked.train(forked.parse_args(flags(tiny_model_dir, nli_dir, out, "--max-steps", "2", "--margin", "0.2")))
    assert json.load(open(out / "training_config.json"))["MARGIN"] == 0.2
    card = (out / "README.md").read_text()
    assert ("Loss: `margin_mnr_loss`: MNR with an additive margin (Yang et al. 2019): each anchor's own positive "
            "scores `margin` less (scale=20.0, margin=0.2).") in card
    assert "partial(" not in card and "new function with partial application" not in card


def test_a_learned_temperature_is_trained_checkpointed_resumed_logged_and_carded(tmp_path, tiny_model_dir, nli_dir):
    title = list(readme_forks())[1]
    path = fork(tmp_path, title)
    forked = load(path, "forked_temperature")
    loss = forked.make_loss(forked.parse_args([]), SIZE)
    optimizer = forked.make_optimizer(torch.nn.Linear(2, 2), 1e-3, 0.01, loss)
    assert optimizer.param_groups[-1]["params"] == list(loss.parameters())  # its own group...
    assert optimizer.param_groups[-1]["weight_decay"] == 0.0  # ...without weight decay
    run = flags(tiny_model_dir, nli_dir, "OUT", "--max-steps", "6", "--lr", "1e-2", "--save-every", "2",
                "--keep-checkpoints", "5")
    whole = tmp_path / "whole"
    forked.main(forked.parse_args([str(whole) if f == "OUT" else f for f in run]))
    lines = [json.loads(line) for line in open(whole / "train_log.jsonl")]
    learned = lines[-1]["loss_parameters"]["log_scale"]
    assert lines[-1]["step"] == 6 and learned != pytest.approx(math.log(20.0), abs=1e-4)  # it moved
    state = torch.load(os.path.join(whole, "checkpoint-2", checkpoint.STATE_FILE), weights_only=True)
    assert set(state["loss"]) == {"loss.log_scale"}  # in every checkpoint
    card = (whole / "README.md").read_text()
    assert "Loss: `LearnedTemperature`: MNR with a learned temperature (CLIP, Radford et al. 2021)" in card
    assert f"Learned loss parameters: `log_scale` = {learned!r}." in card
    # kill -9 once step 3 is logged (checkpoint-2 is written), then the same command with --resume
    killed = tmp_path / "killed"
    argv = [str(killed) if f == "OUT" else f for f in run]
    proc = start_script(str(path), *argv, OMP_NUM_THREADS=THREADS, start_new_session=True)
    assert kill_when(proc, lambda: len(logged_steps(killed)) >= 3), "the run ended before it could be killed"
    assert not (killed / "model.safetensors").exists()
    forked.main(forked.parse_args([*argv, "--resume"]))
    assert_identical(weights(killed), weights(whole))
    resumed = [json.loads(line) for line in open(killed / "train_log.jsonl")][-1]
    assert resumed["loss_parameters"]["log_scale"] == learned  # bit-identical: the same float


def test_resuming_with_a_loss_of_other_parameters_is_refused(tmp_path, tiny_model_dir, nli_dir):
    """A checkpoint of the stock MNR loss holds no loss state: the temperature fork refuses to resume from it."""
    stock = tmp_path / "stock"
    argv = flags(tiny_model_dir, nli_dir, stock, "--max-steps", "4", "--save-every", "2")
    train_mnr.main(train_mnr.parse_args(argv))
    out = tmp_path / "out"
    os.makedirs(out)
    shutil.copytree(stock / "checkpoint-2", out / "checkpoint-2")
    forked = load(fork(tmp_path, list(readme_forks())[1]), "forked_temperature_refused")
    with pytest.raises(SystemExit) as refused:
        forked.main(forked.parse_args([*flags(tiny_model_dir, nli_dir, out, "--max-steps", "4", "--save-every", "2"),
                                       "--resume"]))
    assert str(refused.value.code) == (f"error: {out / 'checkpoint-2'}: the loss holds ['loss.log_scale'], the "
                                       "checkpoint none; resume with the loss that wrote it")


def mnr_at_50(anchor, positive, negatives=None):
    return train_mnr.mnr_loss(anchor, positive, negatives, scale=50.0)


class Temperature(torch.nn.Module):
    """A learned scale.

    More text that the card leaves out."""

    def __init__(self):
        super().__init__()
        self.log_scale, self.floor = torch.nn.Parameter(torch.tensor(3.0)), 0.5

    def forward(self, anchor, positive, negatives=None):
        return train_mnr.mnr_loss(anchor, positive, negatives, scale=self.log_scale.exp())


@pytest.mark.parametrize("loss,line", [
    (train_mnr.mnr_loss, "`mnr_loss`: Multiple Negatives Ranking loss (Henderson et al. 2017, \"Efficient Natural "
                         "Language Response Suggestion\")"),
    (functools.partial(train_mnr.mnr_loss, scale=20.0), "`mnr_loss`: Multiple Negatives Ranking loss (Henderson et "
                                                         "al. 2017, \"Efficient Natural Language Response "
                                                         "Suggestion\") (scale=20.0)"),
    (lambda anchor, positive, negatives=None: train_mnr.mnr_loss(anchor, positive, negatives), "a lambda"),
    (mnr_at_50, "`mnr_at_50`"),
    (Temperature(), "`Temperature`: A learned scale (floor=0.5)"),
])
def test_the_card_names_what_built_the_loss(loss, line):
    assert model_card.describe_loss(loss) == line


def test_the_card_names_each_layer_make_loss_built():
    built = train_mnr.make_loss(train_mnr.parse_args(["--matryoshka-dims", "16,8", "--scale", "30"]), SIZE)
    assert model_card.describe_loss(built) == (
        "`MatryoshkaLoss`: Matryoshka: the wrapped loss on the embeddings cut to each of `dims`, weighted and summed "
        "(dims=[16, 8], weights=[1.0, 1.0]) around `mnr_loss`: Multiple Negatives Ranking loss (Henderson et al. 2017, "
        "\"Efficient Natural Language Response Suggestion\") (scale=30.0)")


def test_a_learned_temperature_under_torchrun_trains_like_one_process(tmp_path, tiny_model_dir, nli_dir):
    """2 processes (gloo) against 1: the temperature's gradient is averaged over processes as DDP averages the
    model's, so both runs end at the same temperature (dropout off, fp32, as tests/test_distributed.py)."""
    path = fork(tmp_path, list(readme_forks())[1])
    common = ["--model-name", tiny_model_dir, "--nli-data", nli_dir, "--max-steps", "3", "--batch-size", "16",
              "--lr", "1e-2", "--dropout", "0", "--warmup-ratio", "0", "--precision", "fp32"]
    learned = []
    for name, launcher in (("one", []), ("two", ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"])):
        out = tmp_path / name
        result = run_script(*launcher, str(path), *common, "--output-dir", str(out), OMP_NUM_THREADS="1")
        assert result.returncode == 0, result.stderr[-3000:]
        learned.append([json.loads(line) for line in open(out / "train_log.jsonl")][-1]["loss_parameters"]["log_scale"])
    assert learned[0] != pytest.approx(math.log(20.0), abs=1e-3)  # it moved...
    assert learned[1] == pytest.approx(learned[0], abs=1e-5)  # ...and the same way with 2 processes
