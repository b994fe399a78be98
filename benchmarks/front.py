"""The student beside what a user would try instead: each contender distilled from the bundled teacher
(all-MiniLM-L6-v2) on the same text for the same wall-clock budget, then scored on the same held-out sets.

    python benchmarks/front.py                                    # every contender, 120 s each, seed 0
    python benchmarks/front.py --seed 1 --seed 2 \\
        --contender "MiniAlbert, 3 recursions, relaxed rank 96, layers 1, 4, 6" \\
        --contender "no recursion: one layer once, E=196 (the default's parameters)"   # the claim's spread
    python benchmarks/front.py --budget 600 --contender ...       # the top contenders at the longer budget
    python benchmarks/front.py --table --plot                     # docs/distillation.md's table, benchmarks/front.png

Contenders (`CONTENDERS`): MiniAlbert students converted with the calibrated start at several capacities (the
default relaxed student, `DEFAULT`, also under each `--depth_schedule` and learning rate; the paper-shaped one),
one layer applied once (no recursion; with E=196, the default student's parameters), the
layer-dropped teacher trained as sentence-transformers' distillation example does (keep teacher layers 2, 4 and 6
with the teacher's own embeddings, `SentenceTransformerTrainer` with `MSELoss` on the teacher's embeddings; the
teacher's encoding time counts in its budget), and model2vec's static embeddings (`model2vec.distill`, no
training; the `benchmarks` extra). The MiniAlbert students train with `DistillationTrainer` and the main job's
recipe, drawing their batches from the same shuffled samples of the main job's text
(`minialbert.data.DEFAULT_CORPUS`) with the same seed; every trained contender gets a linear learning-rate schedule
over its budget. Scoring (`held_out.agreement`):
Spearman agreement of pairwise similarities with the teacher on 256 BBC News validation windows, 256
Python-reference sentences and the held-out sentences of the broad sources, plus parameters, safetensors size and
PyTorch fp32 tokens/s (real tokens of the held-out texts, batches of 32, the machine's threads).

Results are kept in benchmarks/front.json per (contender, budget, seed, machine kind) as soon as each finishes,
each row with its machine (`minialbert.devices.machine`); a rerun skips finished ones (--rerun repeats them).
`--table` prints one table per machine kind: times compare only within one.
"""

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from held_out import Encoder, agreement, held_out_texts, transformer_encoder  # noqa: E402
from recipe_study import BudgetedSchedule, BudgetedTrainer, TimeBudget, budgeted_arguments  # noqa: E402

from minialbert import ConversionArguments, convert_bert_to_minialbert  # noqa: E402
from minialbert.data import DataArguments, load_text_corpus, tokenize_windows  # noqa: E402
from minialbert.devices import machine  # noqa: E402
from minialbert.teacher import (
    bundled_teacher_path,  # noqa: E402
    load_teacher,  # noqa: E402
)

RESULTS = Path(__file__).with_name("front.json")
PLOT = Path(__file__).with_name("front.png")
LAYER_DROP = "layer drop: teacher layers 2, 4, 6 (sentence-transformers MSE)"
MODEL2VEC = "model2vec static embeddings"
DEFAULT = "MiniAlbert, 3 recursions, relaxed rank 96, layers 1, 4, 6"  # `minialbert convert`'s default student
# name -> overrides of a MiniAlbert contender (ConversionArguments; `train.NAME`: DistillationArguments), or the name
# of another kind of contender.
CONTENDERS: dict[str, dict | str] = {
    "MiniAlbert, 3 recursions": {"student_shape": "paper"},
    "MiniAlbert, 3 recursions, relaxed rank 32": {"student_shape": "paper", "recursion_lora_rank": 32},
    "MiniAlbert, 3 recursions, relaxed rank 96": {"student_shape": "paper", "recursion_lora_rank": 96},
    DEFAULT: {"train.depth_schedule": "full"},
    **{
        f"{DEFAULT}, depth schedule {schedule}": {"train.depth_schedule": schedule}
        for schedule in ("switch:0.2", "switch:0.35", "switch:0.5", "ramp:0.5", "grow:0.5", "sample:0.5")
    },
    **{
        f"{DEFAULT}, learning rate {rate:g}": {"train.depth_schedule": "full", "train.learning_rate": rate}
        for rate in (1e-3, 2e-3)
    },
    "three distinct layers (full-rank relaxation), E=128": {"student_shape": "paper", "recursion_lora_rank": 384},
    "no recursion: one layer once": {"student_shape": "paper", "num_recursions": 1},
    # The default student's parameters (8.07M against 8.05M) in one layer: the wider embeddings take the rest.
    "no recursion: one layer once, E=196 (the default's parameters)": {
        "student_shape": "paper",
        "num_recursions": 1,
        "embedding_size": 196,
    },
    LAYER_DROP: "layer_drop",
    MODEL2VEC: "model2vec",
}
KEPT_TEACHER_LAYERS = (1, 3, 5)  # 0-based: teacher layers 2, 4 and 6, the ones the 3-recursion students follow


def measure(model: nn.Module, encoder: Encoder, texts: dict[str, list[str]], teacher, tokenizer) -> dict:
    """Parameters, safetensors size, fp32 tokens/s and agreement of a trained contender."""
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        megabytes = Path(folder, "model.safetensors").stat().st_size / 2**20
    every_text = [text for name in texts for text in texts[name]]
    tokens = sum(len(ids) for ids in tokenizer(every_text)["input_ids"])
    start = time.perf_counter()
    encoder(every_text)
    seconds = time.perf_counter() - start
    return {
        "parameters": model.num_parameters(),
        "safetensors_mb": round(megabytes, 2),
        "fp32_tokens_per_second": round(tokens / seconds),
        **agreement(encoder, texts, teacher),
    }


def train_minialbert(options: dict, budget: float, seed: int, shared: dict) -> tuple[nn.Module, Encoder, dict]:
    torch.manual_seed(seed)
    training = {key.removeprefix("train."): value for key, value in options.items() if key.startswith("train.")}
    conversion = {key: value for key, value in options.items() if not key.startswith("train.")}
    student = convert_bert_to_minialbert(shared["teacher"], ConversionArguments(**conversion))
    arguments = budgeted_arguments(tempfile.mkdtemp(), seed=seed, **training)
    trainer = BudgetedTrainer(
        shared["teacher"],
        student,
        arguments,
        train_dataset=shared["windows"],
        processing_class=shared["tokenizer"],
        budget=TimeBudget(budget),
    )
    trainer.train()
    model = student.minialbert.eval()
    return model, transformer_encoder(model, shared["teacher_path"]), {"steps": trainer.state.global_step}


def train_layer_drop(budget: float, seed: int, shared: dict) -> tuple[nn.Module, Encoder, dict]:
    """sentence-transformers' layer-reduction distillation: the teacher with some layers kept, trained with MSE on
    the teacher's sentence embeddings. Encoding the teacher's targets is part of the budget."""
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import MSELoss

    class BudgetedSentenceTrainer(BudgetedSchedule, SentenceTransformerTrainer):
        """sentence-transformers' trainer on the wall-clock schedule of the MiniAlbert contenders."""

    torch.manual_seed(seed)
    started = time.perf_counter()
    student = SentenceTransformer(shared["teacher_path"], device="cpu")
    bert = student.transformers_model
    bert.encoder.layer = nn.ModuleList(bert.encoder.layer[i] for i in KEPT_TEACHER_LAYERS)
    bert.config.num_hidden_layers = len(KEPT_TEACHER_LAYERS)
    texts, teacher = shared["texts"], transformer_encoder(shared["teacher"].bert, shared["teacher_path"])
    # The targets of as many samples as the student can train on in the time left: a sample costs its target (one
    # teacher pass, timed on a first chunk) and a training step (about 1.5: half the layers, forward and backward).
    first = teacher(texts[:256])
    per_text = (time.perf_counter() - started) / 256
    count = min(len(texts), max(256, int(budget / (2.5 * per_text))))
    # The teacher's sentence-transformers embeddings, as its Normalize module gives them: what the student learns.
    targets = F.normalize(torch.cat([first, teacher(texts[256:count])]) if count > 256 else first, dim=-1)
    remaining = budget - (time.perf_counter() - started)
    dataset = Dataset.from_dict({"text": texts[:count], "label": targets.tolist()})
    arguments = SentenceTransformerTrainingArguments(
        output_dir=tempfile.mkdtemp(),
        max_steps=1_000_000,
        per_device_train_batch_size=16,
        learning_rate=1e-4,
        warmup_steps=0.06,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=seed,
    )
    trainer = BudgetedSentenceTrainer(
        model=student, args=arguments, train_dataset=dataset, loss=MSELoss(student), budget=TimeBudget(remaining)
    )
    trainer.train()
    # Scored through the path every other contender takes (the same batches, truncation and mean pooling).
    return (
        bert,
        transformer_encoder(bert, shared["teacher_path"]),
        {
            "steps": trainer.state.global_step,
            "target_samples": count,
        },
    )


def distil_model2vec(shared: dict) -> tuple[nn.Module, Encoder, dict]:
    from model2vec.distill import distill

    static = distill(model_name=shared["teacher_path"], device="cpu")
    embedding = nn.Embedding.from_pretrained(torch.from_numpy(static.embedding))

    class Static(nn.Module):  # save_pretrained and num_parameters for `measure`
        def __init__(self):
            super().__init__()
            self.embedding = embedding

        def num_parameters(self) -> int:
            return self.embedding.weight.numel()

        def save_pretrained(self, folder: str) -> None:
            static.save_pretrained(folder)

    return Static(), lambda texts: torch.from_numpy(static.encode(texts)), {"steps": 0}


def run(name: str, budget: float, seed: int, shared: dict) -> dict:
    kind = CONTENDERS[name]
    start = time.perf_counter()
    if kind == "layer_drop":
        model, encoder, extra = train_layer_drop(budget, seed, shared)
    elif kind == "model2vec":
        model, encoder, extra = distil_model2vec(shared)
    else:
        model, encoder, extra = train_minialbert(kind, budget, seed, shared)
    trained = time.perf_counter() - start
    return (
        {"budget_seconds": budget, "seed": seed, "train_seconds": round(trained, 1), **extra}
        | measure(model, encoder, shared["held_out"], shared["teacher_embeddings"], shared["tokenizer"])
        | {"machine": machine()}
    )


def shared_material(need_training: bool) -> dict:
    teacher_path = bundled_teacher_path()
    teacher = load_teacher(teacher_path)
    tokenizer = AutoTokenizer.from_pretrained(teacher_path)
    texts = held_out_texts(teacher_path)
    teacher_encoder = transformer_encoder(teacher.bert, teacher_path)
    with torch.no_grad():
        teacher_embeddings = {name: teacher_encoder(batch) for name, batch in texts.items()}
    shared = {
        "teacher_path": teacher_path,
        "teacher": teacher,
        "tokenizer": tokenizer,
        "held_out": texts,
        "teacher_embeddings": teacher_embeddings,
        "teacher_row": measure(teacher.bert, teacher_encoder, texts, teacher_embeddings, tokenizer),
    }
    if need_training:
        data = DataArguments()
        data.sentence_samples = True  # as the main job sets it for the sentence recipe
        windows = tokenize_windows(load_text_corpus(data), tokenizer, data)["train"].shuffle(seed=0)
        shared["windows"] = windows
        shared["texts"] = tokenizer.batch_decode(list(windows["input_ids"]), skip_special_tokens=True)
    return shared


def key(name: str, budget: float, seed: int, kind: str) -> str:
    return f"{name} | {budget:g} s | seed {seed} | {kind}"


def machine_kind(machine: dict) -> str:
    """Rows compare only within one kind of machine: its CPU and whether it has native bf16."""
    return f"{machine['cpu']}, {'avx512_bf16' if machine['native_bf16'] else 'AVX2 only'}"


def rows_by_contender(results: dict, budget: float, kind: str) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for row in results.get("runs", {}).values():
        if machine_kind(row["machine"]) == kind and (row["budget_seconds"] == budget or row["contender"] == MODEL2VEC):
            grouped.setdefault(row["contender"], []).append(row)
    return grouped


def teacher_row(results: dict, kind: str) -> dict:
    return next(row for row in results["teachers"] if machine_kind(row["machine"]) == kind)


def spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def table(results: dict, budget: float, kind: str) -> str:
    teacher = teacher_row(results, kind)
    machine = teacher["machine"]
    lines = [
        f"{kind} ({'VNNI, ' if machine['vnni'] else ''}{machine['threads']} threads, torch {machine['torch']}, "
        f"transformers {machine['transformers']}), {budget:g} s each:",
        "",
        "| contender | parameters | safetensors MB | fp32 tokens/s | steps | BBC | Python reference | broad | seeds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| teacher (all-MiniLM-L6-v2) | {teacher['parameters'] / 1e6:.2f}M | {teacher['safetensors_mb']:.1f} | "
        f"{teacher['fp32_tokens_per_second']:,} | | 1 | 1 | 1 | |",
    ]
    grouped = rows_by_contender(results, budget, kind)
    for name in sorted(grouped, key=lambda name: -statistics.mean(r["bbc"] for r in grouped[name])):
        rows = grouped[name]
        first = rows[0]
        lines.append(
            f"| {name} | {first['parameters'] / 1e6:.2f}M | {first['safetensors_mb']:.1f} | "
            f"{round(statistics.mean(r['fp32_tokens_per_second'] for r in rows)):,} | "
            f"{round(statistics.mean(r['steps'] for r in rows))} | "
            + " | ".join(spread([r[s] for r in rows]) for s in ("bbc", "python_reference", "broad"))
            + f" | {len(rows)} |"
        )
    return "\n".join(lines)


def plot(results: dict, budget: float, kind: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    # The front itself: the default student's schedule and learning-rate variants are in the table only.
    grouped = {
        name: rows
        for name, rows in rows_by_contender(results, budget, kind).items()
        if not name.startswith(f"{DEFAULT}, ")
    }
    teacher = teacher_row(results, kind)
    figure, axes = pyplot.subplots(1, 2, figsize=(14, 5.5), sharey=True)
    for axis, field, label, scale in (
        (axes[0], "parameters", "parameters (millions)", 1e6),
        (axes[1], "fp32_tokens_per_second", "PyTorch fp32 tokens/s (log scale)", 1),
    ):
        for name, rows in grouped.items():
            x = statistics.mean(r[field] for r in rows) / scale
            y = statistics.mean((r["bbc"] + r["python_reference"] + r["broad"]) / 3 for r in rows)
            axis.scatter(x, y, s=40)
            axis.annotate(name, (x, y), fontsize=7, xytext=(4, 3), textcoords="offset points")
        axis.axvline(teacher[field] / scale, color="grey", linestyle="--", linewidth=1)
        axis.annotate("teacher", (teacher[field] / scale, 0.45), fontsize=7, rotation=90, color="grey")
        axis.set_xlabel(label)
        axis.grid(alpha=0.3)
        axis.margins(x=0.25)
    axes[0].axvline(0.4 * teacher["parameters"] / 1e6, color="grey", linestyle=":", linewidth=1)
    axes[0].annotate("40% of the teacher", (0.4 * teacher["parameters"] / 1e6, 0.45), fontsize=7, rotation=90)
    axes[1].set_xscale("log")
    axes[0].set_ylabel("agreement with the teacher\n(mean of BBC, Python reference, broad)")
    figure.suptitle(f"Students of all-MiniLM-L6-v2 after {budget:g} s of distillation on 2 cores of {kind}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=120.0, help="Seconds of distillation per contender.")
    parser.add_argument("--contender", action="append", help="A contender to run; repeat for several (default: all).")
    parser.add_argument("--seed", type=int, action="append", help="Seeds to run; repeat for several (default: 0).")
    parser.add_argument("--rerun", action="store_true", help="Run contenders that already have a result again.")
    parser.add_argument("--table", action="store_true", help="Only print the table of stored results.")
    parser.add_argument(
        "--plot", action="store_true", help="With --table: also draw benchmarks/front.png of this machine's kind."
    )
    arguments = parser.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    this_kind = machine_kind(machine())
    if arguments.table:
        for kind in sorted({machine_kind(row["machine"]) for row in results["teachers"]}):
            print(table(results, arguments.budget, kind), end="\n\n")
        if arguments.plot:
            plot(results, arguments.budget, this_kind, PLOT)
        return
    names = arguments.contender or list(CONTENDERS)
    unknown = sorted(set(names) - set(CONTENDERS))
    if unknown:
        raise SystemExit(f"Unknown contenders {unknown}; known: {list(CONTENDERS)}")
    seeds = arguments.seed or [0]
    runs = results.setdefault("runs", {})
    todo = [
        (n, s) for n in names for s in seeds if arguments.rerun or key(n, arguments.budget, s, this_kind) not in runs
    ]
    logging.basicConfig(level=logging.WARNING)
    shared = shared_material(any(CONTENDERS[name] != "model2vec" for name, _ in todo))
    teachers = [row for row in results.get("teachers", []) if machine_kind(row["machine"]) != this_kind]
    results["teachers"] = [*teachers, shared["teacher_row"] | {"machine": machine()}]
    for name, seed in todo:
        print(f"{name}, seed {seed} ...", flush=True)
        row = runs[key(name, arguments.budget, seed, this_kind)] = {"contender": name} | run(
            name, arguments.budget, seed, shared
        )
        print(json.dumps(row), flush=True)
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print(table(results, arguments.budget, this_kind))


if __name__ == "__main__":
    main()
