"""bf16 where the processor computes it natively (mnr/precision.py), and the one encoder every evaluator and the
miner use (pooling.encode): packed equals padded, the caller's order comes back, bf16 stays close to fp32."""
import json
import os

import pytest
import torch
import torch.nn.functional as F

import train_mnr
from conftest import run_script
from mnr import precision
from mnr.errors import ConfigError
from mnr.models import load_encoder
from pooling import embed, encode

CPU = torch.device("cpu")


def cpuinfo(tmp_path, flags):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    return str(path)


@pytest.mark.parametrize("flags,native", [("fpu sse2 avx2 avx512f", False), ("fpu avx512f avx512_bf16", True),
                                          ("fpu amx_bf16 amx_tile", True), ("", False)])
def test_native_bf16_is_read_from_the_cpu_flags(tmp_path, flags, native):
    assert precision.cpu_has_native_bf16(cpuinfo(tmp_path, flags)) is native


def test_no_cpuinfo_means_no_native_bf16(tmp_path):
    assert precision.cpu_has_native_bf16(str(tmp_path / "absent")) is False


def test_cpu_info_reads_the_model_name_and_the_first_flags_line(tmp_path):
    assert precision.cpu_info(cpuinfo(tmp_path, "fpu avx512_bf16")) == ("Some CPU", {"fpu", "avx512_bf16"})
    assert precision.cpu_info(str(tmp_path / "absent")) == (None, set())


def test_the_machine_line_names_the_cpu_and_its_bf16(tmp_path, monkeypatch):
    """Every results table and benchmark header says which CPU its figures came from (mnr/report.machine)."""
    from mnr import report
    monkeypatch.setattr(report, "cpu_info", lambda: precision.cpu_info(cpuinfo(tmp_path, "fpu amx_bf16")))
    assert "(Some CPU; native bf16: yes)" in report.machine()
    monkeypatch.setattr(report, "cpu_info", lambda: precision.cpu_info(cpuinfo(tmp_path, "fpu avx2")))
    assert "(Some CPU; native bf16: no)" in report.machine() and "unreadable" not in report.machine()
    monkeypatch.setattr(report, "cpu_info", lambda: (None, set()))
    assert report.machine().endswith("(CPU flags unreadable)")


@pytest.mark.parametrize("asked,native,got", [("auto", True, "bf16"), ("auto", False, "fp32"), ("fp32", True, "fp32"),
                                              ("bf16", False, "bf16")])
def test_auto_is_bf16_only_where_native_on_cpu(asked, native, got):
    assert precision.resolve(asked, CPU, cpu_native_bf16=native) == got


def test_an_unknown_precision_is_one_line():
    with pytest.raises(ConfigError, match="--precision fp16: choose one of auto, fp32, bf16"):
        precision.resolve("fp16", CPU)


def test_autocast_is_on_only_for_bf16():
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    with precision.autocast(CPU, "bf16"):
        assert (a @ b).dtype == torch.bfloat16
    with precision.autocast(CPU, "fp32"):
        assert (a @ b).dtype == torch.float32


def losses_and_config(out):
    with open(os.path.join(out, "train_log.jsonl")) as f:
        losses = [json.loads(line)["loss"] for line in f if '"loss"' in line]
    with open(os.path.join(out, "training_config.json")) as f:
        return losses, json.load(f)


def test_a_cpu_without_native_bf16_trains_as_before_in_fp32(tmp_path, tiny_model_dir, nli_dir, monkeypatch):
    """The fallback: `auto` on a CPU without AVX512-BF16 or AMX is fp32, the same losses as --precision fp32."""
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda *a: False)
    common = ["--model-name", tiny_model_dir, "--nli-data", nli_dir, "--batch-size", "8", "--max-steps", "2"]
    train_mnr.train(train_mnr.parse_args([*common, "--output-dir", str(tmp_path / "auto")]))
    train_mnr.train(train_mnr.parse_args([*common, "--precision", "fp32", "--output-dir", str(tmp_path / "fp32")]))
    (auto, config), (fp32, _) = losses_and_config(tmp_path / "auto"), losses_and_config(tmp_path / "fp32")
    assert config["PRECISION"] == "fp32" and auto == fp32


def test_bf16_training_saves_fp32_weights_and_records_its_precision(tmp_path, tiny_model_dir, nli_dir):
    from safetensors.torch import load_file
    out = tmp_path / "bf16"
    train_mnr.train(train_mnr.parse_args(["--model-name", tiny_model_dir, "--nli-data", nli_dir, "--batch-size", "8",
                                          "--max-steps", "2", "--precision", "bf16", "--output-dir", str(out)]))
    losses, config = losses_and_config(out)
    assert config["PRECISION"] == "bf16" and all(map(lambda x: x == x, losses))
    assert all(t.dtype == torch.float32 for t in load_file(os.path.join(out, "model.safetensors")).values())


def test_resume_refuses_a_changed_precision(tmp_path, tiny_model_dir, nli_dir):
    args = ["train_mnr.py", "--model-name", tiny_model_dir, "--nli-data", nli_dir, "--batch-size", "8",
            "--max-steps", "4", "--save-every", "2", "--output-dir", str(tmp_path / "out")]
    assert run_script(*args, "--precision", "fp32").returncode == 0
    result = run_script(*args, "--precision", "bf16", "--resume")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "cannot resume with --precision 'bf16'; the checkpoint was written with 'fp32'" in result.stderr


TEXTS = ["A man is playing a guitar.", "Someone", "A much longer sentence about a dog that runs across a green field "
         "after a red ball while children watch.", "Two people talk.", "Someone", "x " * 80]


@pytest.mark.parametrize("pack", [True, False])
def test_encode_equals_one_text_at_a_time_in_the_callers_order(tiny_model_dir, pack):
    encoder = load_encoder(tiny_model_dir, "cpu")
    got = encode(encoder, TEXTS, batch_size=4, pack=pack)
    with torch.no_grad():
        alone = torch.cat([embed(encoder.model, encoder.tokenizer([t], truncation=True, max_length=encoder.max_length,
                                                                  return_tensors="pt"), encoder.pooling) for t in TEXTS])
    assert got.shape == (len(TEXTS), encoder.model.config.hidden_size) and got.dtype == torch.float32
    torch.testing.assert_close(got, alone, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got[1], got[4], atol=1e-6, rtol=0)  # the same text, the same vector, wherever it sits


def test_encode_in_bf16_is_close_to_fp32(minilm_path):
    encoder = load_encoder(str(minilm_path), "cpu")
    fp32, bf16 = encode(encoder, TEXTS), encode(encoder, TEXTS, precision="bf16")
    assert bf16.dtype == torch.float32 and not torch.equal(fp32, bf16)  # computed in bf16, handed back as fp32
    assert F.cosine_similarity(fp32, bf16).min() > 0.99


def test_encode_of_nothing(tiny_model_dir):
    assert encode(load_encoder(tiny_model_dir, "cpu"), []).shape == (0, 32)
