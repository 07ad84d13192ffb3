"""Data parallel: 2 CPU processes (gloo, started by torchrun) train exactly like 1 process on the same global batch.

Dropout is off and the forward in fp32 (bf16 would round the two runs' differently shaped batches differently)
so the two runs are comparable; the learning rate is large so one step moves the weights well
beyond float noise. Hard negatives are on: once a negative column is gathered, wrong labels would pair
anchors with their own negatives (a bug the peer library shipped), and a gradient scaled by the world size
(another) would show up as a different update."""
import json
import os

import pytest
from safetensors.torch import load_file

import data_prep
from conftest import run_script, write_tsv

COMMON = ["--max-steps", "2", "--batch-size", "16", "--lr", "1e-3", "--dropout", "0", "--hard-negatives",
          "--warmup-ratio", "0", "--precision", "fp32"]


def run(tmp_path, name, script, *extra, processes=1):
    out = str(tmp_path / name)
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"] if processes > 1 else []
    result = run_script(*launcher, script, *extra, "--output-dir", out, OMP_NUM_THREADS="1")
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(out, "train_log.jsonl")) as f:
        steps = [json.loads(line) for line in f if '"loss"' in line]
    return [(r["loss"], r["grad_norm"], r.get("false_negatives")) for r in steps], load_file(os.path.join(out, "model.safetensors"))


@pytest.mark.parametrize("script,extra", [
    ("train_mnr.py", []),
    ("train_bidirectional.py", ["--loss", "bidirectional", "--mini-batch-size", "3"]),
    # --train-data with two negative columns, Matryoshka cuts, GradCache and GIST at once (the guide's candidates
    # are gathered too, so both runs leave out the same false negatives)
    ("train_mnr.py", ["--train-data", "QUADRUPLES", "--matryoshka-dims", "32,16,8", "--mini-batch-size", "5",
                      "--guide-model", "MINILM", "--false-negative-margin", "0.1"])])
def test_two_processes_equal_one(tmp_path, tiny_model_dir, nli_dir, minilm_path, script, extra):
    extra = [str(minilm_path) if flag == "MINILM" else flag for flag in extra]
    if "QUADRUPLES" in extra:
        triplets = data_prep.make_rows(data_prep.load_nli(nli_dir), hard_negatives=True)
        extra[extra.index("QUADRUPLES")] = write_tsv(tmp_path / "quadruples.tsv", ("a", "p", "n1", "n2"), [
            (*row, other[2]) for row, other in zip(triplets[:200], triplets[300:500])])
        data = []
        common = [flag for flag in COMMON if flag != "--hard-negatives"]
    else:
        data, common = ["--nli-data", nli_dir], COMMON
    args = ["--model-name", tiny_model_dir, *data, *common, *extra]
    one_loss, one = run(tmp_path, "one", script, *args)
    two_loss, two = run(tmp_path, "two", script, *args, processes=2)
    start = load_file(os.path.join(tiny_model_dir, "model.safetensors"))
    assert len(one_loss) == len(two_loss) == 2
    # The loss of the global batch, and the norm of its gradient before clipping: a gradient scaled by the
    # world size, or labels pointing at a rank's own hard negatives, would show here.
    for (loss_1, norm_1, left_out_1), (loss_2, norm_2, left_out_2) in zip(one_loss, two_loss):
        assert left_out_1 == left_out_2 and (left_out_1 is None) == ("--guide-model" not in extra)
        assert loss_2 == pytest.approx(loss_1, abs=1e-5)
        assert norm_2 == pytest.approx(norm_1, rel=1e-4)
    moved = max((one[k] - start[k]).abs().max().item() for k in one)
    assert moved > 1e-4  # the steps did change the weights...
    for k in one:  # ...and the same way in both runs. Adam turns a gradient of ~0 into +-lr, so an entry whose
        # gradient is rounding noise may move differently: allow one in a thousand, no more.
        assert ((one[k] - two[k]).abs() > 2e-5).float().mean() < 1e-3, k
