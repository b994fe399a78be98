"""Where a distillation step's time goes: collation, teacher forward, student forward with the losses, backward and
the optimiser step, for the main job's recipe on the bundled teacher: the default (relaxed) student, the same with
its relaxations run as low-rank pairs instead of merged weights, the paper-shaped student, and larger batches.

    python benchmarks/step_time.py            # writes benchmarks/step_time.json and prints the table

Each row times `--steps` steps (after 5 warm-up steps) of `DistillationTrainer.compute_loss` on the Trainer's own
data loader, in one process, with bf16 autocast decided as the main job decides it (`--auto_bf16`).
"""

import argparse
import json
import logging
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer

from minialbert import ConversionArguments, convert_bert_to_minialbert, distillation, modeling_minialbert
from minialbert.data import DataArguments, load_text_corpus, tokenize_windows
from minialbert.devices import machine
from minialbert.distillation import DistillationArguments, DistillationTrainer
from minialbert.distillation import trainer as trainer_module
from minialbert.teacher import bundled_teacher_path, load_teacher

RESULTS = Path(__file__).with_name("step_time.json")
# name -> (ConversionArguments overrides, batch size, relaxations merged in training); all on the default mix.
SETTINGS = {
    "default student, batch 16 (the main job)": ({}, 16, True),
    "default student, relaxations as low-rank pairs, batch 16": ({}, 16, False),
    "paper-shaped student, batch 16": ({"student_shape": "paper"}, 16, True),
    "default student, batch 32": ({}, 32, True),
}
PARTS = ("collation", "teacher forward", "student forward and losses", "backward", "optimiser step")


def time_steps(
    teacher, tokenizer, conversion: dict, batch_size: int, merged: bool, steps: int, relational_weight: float
) -> dict:
    data = DataArguments(sentence_samples=True, max_train_samples=batch_size * (steps + 5))
    samples = tokenize_windows(load_text_corpus(data), tokenizer, data)["train"]
    student = convert_bert_to_minialbert(teacher, ConversionArguments(**conversion))
    arguments = DistillationArguments(
        output_dir="outputs/step_time",
        report_to="none",
        per_device_train_batch_size=batch_size,
        relational_weight=relational_weight,
    )
    trainer = DistillationTrainer(teacher, student, arguments, train_dataset=samples, processing_class=tokenizer)
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-4)
    seconds = dict.fromkeys(PARTS, 0.0)
    teacher_targets, merges_relaxations = trainer_module.teacher_targets, modeling_minialbert.merges_relaxations

    def timed_teacher(*args, **kwargs):
        start = time.perf_counter()
        targets = teacher_targets(*args, **kwargs)
        seconds["teacher forward"] += time.perf_counter() - start
        return targets

    trainer_module.teacher_targets = timed_teacher
    if not merged:  # the shared linear plus the low-rank pair, as inference without merging runs
        modeling_minialbert.merges_relaxations = lambda linears, deltas: False
    try:
        student.train()
        batches, tokens = iter(trainer.get_train_dataloader()), 0
        for step in range(steps + 5):
            if step == 5:
                seconds, tokens, began = dict.fromkeys(PARTS, 0.0), 0, time.perf_counter()
            start = time.perf_counter()
            batch = next(batches)
            seconds["collation"] += time.perf_counter() - start
            tokens += int(batch["attention_mask"].sum())
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=arguments.bf16):
                loss = trainer.compute_loss(student, batch)
            seconds["student forward and losses"] += time.perf_counter() - start
            start = time.perf_counter()
            loss.backward()
            seconds["backward"] += time.perf_counter() - start
            start = time.perf_counter()
            optimizer.step()
            optimizer.zero_grad()
            seconds["optimiser step"] += time.perf_counter() - start
        total = time.perf_counter() - began
    finally:
        trainer_module.teacher_targets = teacher_targets
        modeling_minialbert.merges_relaxations = merges_relaxations
    seconds["student forward and losses"] -= seconds["teacher forward"]
    return {
        "batch_size": batch_size,
        "bf16_autocast": arguments.bf16,
        "steps_per_second": round(steps / total, 3),
        "real_tokens_per_step": round(tokens / steps, 1),
        "real_tokens_per_second": round(tokens / total),
        "share": {part: round(value / total, 3) for part, value in seconds.items()},
    }


def table(results: dict) -> str:
    rows = [
        f"| setting | steps/s | real tokens/step | real tokens/s | {' | '.join(PARTS)} |",
        "|---|---:|---:|---:|" + "---:|" * len(PARTS),
    ]
    for name, row in results["settings"].items():
        shares = " | ".join(f"{row['share'][part]:.0%}" for part in PARTS)
        rows.append(
            f"| {name} | {row['steps_per_second']:.2f} | {row['real_tokens_per_step']:.0f} | "
            f"{row['real_tokens_per_second']:,} | {shares} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--table", action="store_true", help="Only print the table of stored results.")
    arguments = parser.parse_args()
    if arguments.table:
        print(table(json.loads(RESULTS.read_text())))
        return
    logging.basicConfig(level=logging.ERROR)
    path = bundled_teacher_path()
    teacher, tokenizer = load_teacher(path), AutoTokenizer.from_pretrained(path)
    relational_weight = distillation.RECIPES["sentence"]["relational_weight"]
    results = {
        "machine": machine(),
        "steps": arguments.steps,
        "settings": {
            name: time_steps(teacher, tokenizer, conversion, batch_size, merged, arguments.steps, relational_weight)
            for name, (conversion, batch_size, merged) in SETTINGS.items()
        },
    }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
