"""Elastic depth: what each number of recursions keeps of a student's agreement with its teacher, and its speed.

    python benchmarks/elastic_depth.py                      # outputs/student and outputs/student-elastic
    python benchmarks/elastic_depth.py FOLDER [FOLDER ...]

The folders are the main job's student (`minialbert distill --output_dir outputs/student`) and the same job with
multi-depth distillation (`minialbert distill --output_dir outputs/student-elastic --elastic_depth sum`). For each,
at each depth d (`num_recursions=d`): sentence agreement with the teacher on the held-out sets `minialbert distill`
scores (256 BBC validation windows, 256 Python-reference sentences, the broad sources' held-out sentences), and
PyTorch fp32 real tokens/s on 256 BBC test paragraphs in padded batches of 32, every (folder, depth) alternating in
one process, median of 7 passes. Writes benchmarks/elastic_depth.json and prints a Markdown table.
"""

import argparse
import json
import sys
from pathlib import Path

import torch
from transformers import AutoTokenizer

from minialbert.corpora import bbc_paragraphs
from minialbert.data import DataArguments, load_text_corpus, tokenize_windows
from minialbert.distillation import DistillationSummary, agreement_by_depth, running_depth
from minialbert.held_out import held_out_sets
from minialbert.modeling_minialbert import MiniAlbertForMaskedLM
from minialbert.sentence_embeddings import sentence_batches
from minialbert.teacher import bundled_teacher_path, load_teacher

sys.path.insert(0, str(Path(__file__).parent))
from run import median_seconds  # noqa: E402

DEFAULT_FOLDERS = ["outputs/student", "outputs/student-elastic"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="*", default=DEFAULT_FOLDERS)
    parser.add_argument("--repeats", type=int, default=7)
    arguments = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    teacher = load_teacher(bundled_teacher_path())
    tokenizer = AutoTokenizer.from_pretrained(arguments.folders[0])
    # The held-out sets of the main job: its default data options, windows cut by its tokenizer.
    data = DataArguments(sentence_samples=True)
    windows = tokenize_windows(load_text_corpus(data), tokenizer, data)
    sets = held_out_sets(windows["validation"], tokenizer, batch_size=8).agreement_sets()

    students = {folder: MiniAlbertForMaskedLM.from_pretrained(folder).eval() for folder in arguments.folders}
    # How each student was distilled (elastic depth or not), from the summary `minialbert distill` wrote beside it.
    summaries = {folder: DistillationSummary.read(folder) for folder in arguments.folders}
    results = {folder: agreement_by_depth(student, teacher, sets) for folder, student in students.items()}

    paragraphs = sentence_batches(tokenizer, bbc_paragraphs("test", 256), 32)
    real_tokens = sum(int(batch["attention_mask"].sum()) for batch in paragraphs)

    def encode(student, depth):
        def run():
            with torch.inference_mode(), running_depth(student, depth):
                for batch in paragraphs:
                    student.minialbert(**batch)

        return run

    contenders = {
        (folder, depth): encode(student, depth)
        for folder, student in students.items()
        for depth in range(1, student.config.num_hidden_layers + 1)
    }
    contenders[("teacher", 0)] = lambda: [teacher.bert(**batch) for batch in paragraphs]
    with torch.inference_mode():
        seconds = median_seconds(contenders, arguments.repeats, warmup=1)
    teacher_speed = real_tokens / seconds[("teacher", 0)]
    for folder, rows in results.items():
        full = rows[-1]
        for row in rows:
            speed = real_tokens / seconds[(folder, row["num_recursions"])]
            row["tokens_per_second"] = round(speed)
            row["speed_vs_full_depth"] = round(speed * seconds[(folder, full["num_recursions"])] / real_tokens, 3)
            row["speed_vs_teacher"] = round(speed / teacher_speed, 3)
            for name in sets:
                row[f"{name}_share_of_full_depth"] = round(row[name] / full[name], 4)
    report = {
        "threads": torch.get_num_threads(),
        "real_tokens": real_tokens,
        "teacher_tokens_per_second": round(teacher_speed),
        "students": results,
        "distillation": {
            folder: summary and {"recipe": summary.recipe.describe(), "global_step": summary.global_step}
            for folder, summary in summaries.items()
        },
    }
    Path(__file__).with_name("elastic_depth.json").write_text(json.dumps(report, indent=2))
    print("| student | recursions | BBC | Python reference | broad | tokens/s | vs full depth | vs teacher |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for folder, rows in results.items():
        for row in rows:
            shares = [
                f"{row[name]:.4f} ({row[f'{name}_share_of_full_depth']:.2f})"
                for name in ("sentence_spearman", "ood_sentence_spearman", "broad_sentence_spearman")
                if name in row
            ]
            print(f"| {folder} | {row['num_recursions']} | {' | '.join(shares)} | {row['tokens_per_second']:,} | "
                  f"{row['speed_vs_full_depth']:.2f}x | {row['speed_vs_teacher']:.2f}x |")  # fmt: skip
    print(f"teacher: {report['teacher_tokens_per_second']:,} tokens/s")
    for folder, distillation in report["distillation"].items():
        print(f"{folder}: " + (f"{distillation['recipe']}; {distillation['global_step']} steps" if distillation
                               else "no distillation summary"))  # fmt: skip


if __name__ == "__main__":
    main()
