"""Fine-tune on the bundled BBC News topics with every tuning mode and measure accuracy and size.

    python benchmarks/tuning_bbc.py --student outputs/distilled [--student converted] [--epochs 2]

For each student (a MiniAlbert folder, or `converted` for the bundled teacher converted with default options):
full fine-tuning, the paper's adapter tuning, relaxed-recursion tuning (rank 8) and PEFT LoRA (rank 8,
all linear layers); plus the teacher (all-MiniLM-L6-v2 with BERT's classification head) fine-tuned in full as
the reference row. Same seeded split (`minialbert.data.bbc_news_splits`), 128 tokens per article, the stock
Trainer. Reports test accuracy and macro-F1, parameters, trainable parameters, the size of what must be stored
per task, and training time. Writes benchmarks/tuning_bbc.json and prints the Markdown table in README.md.
"""

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import peft  # noqa: E402
from sklearn.metrics import accuracy_score, f1_score  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    set_seed,
)

from minialbert import convert_bert_to_minialbert  # noqa: E402
from minialbert.data import BBC_NEWS_TOPICS, bbc_news_splits, bundled_teacher_path  # noqa: E402
from minialbert.tuning import enable_tuning, save_tuned, trainable_parameters  # noqa: E402

LEARNING_RATES = {"full": 1e-4, "adapters": 1e-3, "relaxed": 1e-3, "lora": 1e-3}


def folder_size(path: Path) -> int:
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())


def build(model_path: str, mode: str):
    model = AutoModelForSequenceClassification.from_pretrained(
        model_path,
        num_labels=len(BBC_NEWS_TOPICS),
        id2label=dict(enumerate(BBC_NEWS_TOPICS)),
        label2id={topic: index for index, topic in enumerate(BBC_NEWS_TOPICS)},
    )
    if mode in ("adapters", "relaxed"):
        enable_tuning(model, mode, rank=8)
    elif mode == "lora":
        model = peft.get_peft_model(model, peft.LoraConfig(task_type="SEQ_CLS", target_modules="all-linear", r=8))
    return model


def save_artifact(model, mode: str, folder: Path) -> int:
    """What must be stored per task: the whole model for full fine-tuning, else only what was tuned."""
    if mode in ("adapters", "relaxed"):
        return save_tuned(model, folder)
    model.save_pretrained(folder)
    return folder_size(folder)


def run(name: str, model_path: str, mode: str, splits, tokenizer, epochs: float, workdir: Path) -> dict:
    set_seed(0)
    model = build(model_path, mode)
    counts = trainable_parameters(model)
    arguments = TrainingArguments(
        output_dir=str(workdir / "trainer"),
        num_train_epochs=epochs,
        learning_rate=LEARNING_RATES[mode],
        per_device_train_batch_size=16,
        per_device_eval_batch_size=64,
        weight_decay=0.01,
        warmup_steps=0.1,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        use_cpu=True,
        seed=0,
    )
    trainer = Trainer(
        model=model,
        args=arguments,
        train_dataset=splits["train"],
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    predictions = np.argmax(trainer.predict(splits["test"]).predictions, axis=-1)
    labels = np.array(splits["test"]["label"])
    row = {
        "model": name,
        "tuning": mode,
        "accuracy": round(accuracy_score(labels, predictions), 4),
        "macro_f1": round(f1_score(labels, predictions, average="macro"), 4),
        "parameters": counts["total"],
        "trainable": counts["trainable"],
        "artifact_bytes": save_artifact(model, mode, workdir / f"{name}-{mode}"),
        "train_seconds": round(seconds, 1),
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", action="append", default=None, help="MiniAlbert folder, or 'converted'.")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--max_length", type=int, default=128)
    parser.add_argument("--output", type=Path, default=Path(__file__).with_suffix(".json"))
    args = parser.parse_args()
    logging.getLogger("minialbert").setLevel(logging.ERROR)

    teacher = bundled_teacher_path()
    tokenizer = AutoTokenizer.from_pretrained(teacher)
    splits = bbc_news_splits().map(
        lambda batch: tokenizer(batch["text"], truncation=True, max_length=args.max_length),
        batched=True,
        remove_columns=["text"],
    )
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        workdir = Path(workdir)
        rows.append(run("teacher", teacher, "full", splits, tokenizer, args.epochs, workdir))
        for student in args.student or ["converted"]:
            path = student
            if student == "converted":
                path = str(workdir / "converted")
                convert_bert_to_minialbert(teacher).save_pretrained(path)
            for mode in ("full", "adapters", "relaxed", "lora"):
                rows.append(run(Path(student).name, path, mode, splits, tokenizer, args.epochs, workdir))
    args.output.write_text(json.dumps({"epochs": args.epochs, "max_length": args.max_length, "rows": rows}, indent=1))

    print("\n| model | tuning | accuracy | macro-F1 | parameters | trainable | stored per task | train time |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['model']} | {row['tuning']} | {row['accuracy']:.4f} | {row['macro_f1']:.4f} | "
            f"{row['parameters'] / 1e6:.2f}M | {row['trainable'] / 1e6:.3f}M | "
            f"{row['artifact_bytes'] / 2**20:.2f} MiB | {row['train_seconds']:.0f} s |"
        )


if __name__ == "__main__":
    main()
