"""The fine-tuning table of docs/tuning.md: `examples/run_classification.py` on the bundled BBC News topics.

    python benchmarks/classification_bbc.py --student distilled=outputs/student \
        [--student converted=outputs/converted] [--output_root outputs/bbc]

Runs the example once for the teacher (full fine-tuning) and once per tuning mode of each student, with the
same seeded split and hyper-parameters, then collects each run's `all_results.json` into
benchmarks/classification_bbc.json and prints the Markdown table and the exact commands. A run whose output
folder already holds `all_results.json` is not repeated (delete the folder to measure it again).
"""

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

from minialbert.teacher import bundled_teacher_path

COMMON = [
    "--do_train",
    "--do_eval",
    "--do_predict",
    "--num_train_epochs", "2",
    "--per_device_train_batch_size", "16",
    "--per_device_eval_batch_size", "64",
    "--warmup_steps", "0.1",
    "--weight_decay", "0.01",
    "--save_strategy", "no",
    "--report_to", "none",
    "--disable_tqdm", "true",
    "--seed", "0",
    "--overwrite_output_dir",
]  # fmt: skip
LEARNING_RATES = {"full": "1e-4", "adapters": "1e-3", "relaxed": "1e-3", "lora": "1e-3"}


def command(model: str, tuning: str, output_dir: Path) -> list[str]:
    return [
        "python",
        "examples/run_classification.py",
        "--model_name_or_path", model,
        "--tuning", tuning,
        "--learning_rate", LEARNING_RATES[tuning],
        "--output_dir", str(output_dir),
        *COMMON,
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--student", action="append", required=True, help="NAME=FOLDER of a MiniAlbert student; repeatable."
    )
    parser.add_argument("--output_root", type=Path, default=Path("outputs/bbc"))
    parser.add_argument("--output", type=Path, default=Path(__file__).with_suffix(".json"))
    args = parser.parse_args()

    runs = [("teacher", "full", command(bundled_teacher_path(), "full", args.output_root / "teacher-full"))]
    for name, folder in (student.split("=", 1) for student in args.student):
        runs += [
            (name, tuning, command(folder, tuning, args.output_root / f"{name}-{tuning}"))
            for tuning in ("full", "adapters", "relaxed", "lora")
        ]
    rows = []
    for model, tuning, argv in runs:
        output_dir = Path(argv[argv.index("--output_dir") + 1])
        if not (output_dir / "all_results.json").is_file():
            print("$", shlex.join(argv), flush=True)
            subprocess.run([sys.executable, *argv[1:]], check=True, stdout=subprocess.DEVNULL)
        results = json.loads((output_dir / "all_results.json").read_text())
        rows.append({"model": model, "tuning": tuning, "command": shlex.join(argv), **results})
    args.output.write_text(json.dumps(rows, indent=1) + "\n")

    print("\n".join(row["command"] for row in rows))

    print(
        "\n| model | tuning | test accuracy | test macro-F1 | parameters | trainable | stored per task | train time |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['model']} | {row['tuning']} | {row['test_accuracy']:.4f} | {row['test_f1']:.4f} | "
            f"{row['total_parameters'] / 1e6:.2f}M | {row['trainable_parameters'] / 1e6:.3f}M | "
            f"{row['artifact_bytes'] / 2**20:.2f} MiB | {row['train_wall_seconds']:.0f} s |"
        )


if __name__ == "__main__":
    main()
