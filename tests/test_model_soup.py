"""benchmarks/model_soup.py, the uniform average of several runs' weights: every tensor equals the mean computed
here independently, the soup loads in sentence-transformers with our embeddings, a user's file is neither copied
nor overwritten, and runs of different models are refused in one line naming the folder."""
import json
import os
import shutil
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import ROOT, one_line_error
from mnr.models import load_encoder
from pooling import encode

sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import model_soup  # noqa: E402

TEXTS = ["A man is playing a guitar.", "Someone plays an instrument.", "The cat sleeps on the warm windowsill."]


def fake_run(start, folder, seed):
    """The start model with every float tensor moved by seeded noise: a run fine-tuned from it, as far as
    averaging goes."""
    shutil.copytree(start, folder)
    weights = load_file(os.path.join(folder, "model.safetensors"))
    generator = torch.Generator().manual_seed(seed)
    moved = {k: v + 0.05 * torch.randn(v.shape, generator=generator) if v.is_floating_point() else v
             for k, v in weights.items()}
    save_file(moved, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    return str(folder)


@pytest.fixture()
def runs(tmp_path, tiny_model_dir):
    return [fake_run(tiny_model_dir, tmp_path / f"run-seed{seed}", seed) for seed in (42, 43, 44)]


def test_every_tensor_is_the_mean_and_sentence_transformers_agrees(runs, tmp_path):
    with open(os.path.join(runs[0], "my-notes.txt"), "w") as f:
        f.write("the user's\n")
    soup = str(tmp_path / "soup")
    model_soup.main([*runs, "--output-dir", soup])
    averaged = load_file(os.path.join(soup, "model.safetensors"))
    weights = [load_file(os.path.join(run, "model.safetensors")) for run in runs]
    assert averaged.keys() == weights[0].keys()
    for name, tensor in averaged.items():
        by_hand = (weights[0][name].double() + weights[1][name].double() + weights[2][name].double()) / 3
        assert torch.allclose(tensor.double(), by_hand, atol=1e-7), name
    assert not os.path.exists(os.path.join(soup, "my-notes.txt"))  # the user's file stays the user's
    assert all(run in open(os.path.join(soup, "README.md")).read() for run in runs)
    assert not [e for e in os.listdir(tmp_path) if e.startswith(".")]  # no temporary folder left behind

    ours = encode(load_encoder(soup, "cpu"), TEXTS)
    assert not torch.allclose(ours, encode(load_encoder(runs[0], "cpu"), TEXTS), atol=1e-3)  # a new model
    st = pytest.importorskip("sentence_transformers")
    theirs = st.SentenceTransformer(soup, device="cpu").encode(TEXTS, convert_to_tensor=True)
    assert torch.allclose(ours, theirs, atol=1e-5), (ours - theirs).abs().max()


def test_an_existing_output_folder_is_refused_and_left_alone(runs, tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine\n")
    one_line_error(lambda: model_soup.main([*runs[:2], "--output-dir", str(taken)]), str(taken), "already exists")
    assert os.listdir(taken) == ["keep.txt"] and (taken / "keep.txt").read_text() == "mine\n"


def test_runs_of_another_model_are_refused_naming_the_folder(runs, tmp_path, tiny_model_dir):
    from transformers import BertConfig, BertModel
    other = tmp_path / "wider"
    shutil.copytree(tiny_model_dir, other)
    BertModel(BertConfig.from_pretrained(tiny_model_dir, hidden_size=64), add_pooling_layer=False).save_pretrained(
        other)
    one_line_error(lambda: model_soup.main([runs[0], str(other), "--output-dir", str(tmp_path / "soup")]),
                   os.path.join(str(other), "config.json"), "differs")
    # the same config but other tensors (a file edited by hand): named too, before anything is written
    shutil.copy(os.path.join(runs[0], "config.json"), other / "config.json")
    one_line_error(lambda: model_soup.main([runs[0], str(other), "--output-dir", str(tmp_path / "soup")]),
                   str(other), "shape")
    one_line_error(lambda: model_soup.main([runs[0], "--output-dir", str(tmp_path / "soup")]), "two or more")
    assert not os.path.exists(tmp_path / "soup")


def test_a_soup_of_one_runs_checkpoints_leaves_their_training_state_out(runs, tmp_path):
    """Checkpoints along one run (--save-every) average as runs do (latest weight averaging); each one's
    training_state.pt (optimiser moments, RNG of its step) is the step's, not the soup's: never copied."""
    from mnr import outdir
    from mnr.checkpoint import STATE_FILE
    for run in runs[1:]:
        torch.save({"step": 1}, os.path.join(run, STATE_FILE))
        outdir.write_manifest(run)  # listed as the checkpoint's own file, as mnr/checkpoint.py lists it
        # a checkpoint's tokenizer.json keeps the padding of the last batch it tokenized, the final folder none
        tokenizer = json.load(open(os.path.join(run, "tokenizer.json")))
        tokenizer["padding"] = {"strategy": "BatchLongest", "direction": "Right", "pad_to_multiple_of": None,
                                "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"}
        json.dump(tokenizer, open(os.path.join(run, "tokenizer.json"), "w"))
    soup = str(tmp_path / "soup")
    model_soup.main([*runs[1:], runs[0], "--output-dir", soup])
    assert not os.path.exists(os.path.join(soup, STATE_FILE))
    assert os.path.isfile(os.path.join(soup, "config.json"))
    # another vocabulary is another model, padding or not: refused
    tokenizer["model"]["vocab"]["[UNUSED-X]"] = len(tokenizer["model"]["vocab"])
    json.dump(tokenizer, open(os.path.join(runs[2], "tokenizer.json"), "w"))
    one_line_error(lambda: model_soup.main([*runs, "--output-dir", str(tmp_path / "soup2")]),
                   os.path.join(runs[2], "tokenizer.json"), "differs")


def test_overwrite_replaces_a_soup_of_ours_and_never_a_folder_with_the_users_files(runs, tmp_path):
    soup = str(tmp_path / "soup")
    model_soup.main([*runs[:2], "--output-dir", soup])
    model_soup.main([runs[1], runs[2], "--output-dir", soup, "--overwrite"])  # compare_runs remaking a soup
    weights = [load_file(os.path.join(run, "model.safetensors")) for run in runs[1:]]
    for name, tensor in load_file(os.path.join(soup, "model.safetensors")).items():
        assert torch.allclose(tensor.double(), (weights[0][name].double() + weights[1][name].double()) / 2,
                              atol=1e-7), name
    assert runs[2] in open(os.path.join(soup, "README.md")).read()
    assert not [e for e in os.listdir(tmp_path) if e.startswith(".")]  # neither the old soup nor a temporary left
    with open(os.path.join(soup, "notes.txt"), "w") as f:
        f.write("the user's\n")
    before = load_file(os.path.join(soup, "model.safetensors"))
    one_line_error(lambda: model_soup.main([*runs[:2], "--output-dir", soup, "--overwrite"]), soup, "notes.txt")
    assert open(os.path.join(soup, "notes.txt")).read() == "the user's\n"
    assert all(torch.equal(t, before[n]) for n, t in load_file(os.path.join(soup, "model.safetensors")).items())
