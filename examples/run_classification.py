"""Fine-tune a MiniAlbert student (or any sequence classifier) on a text classification or regression task.

Single sentences or sentence pairs, from any `datasets` data set (GLUE tasks included), local CSV/JSON files,
or, by default, the bundled BBC News topics with a fixed seeded split. `--tuning` picks full fine-tuning, the
paper's adapters, relaxed-recursion tuning or a PEFT LoRA. Metrics come from the `evaluate` modules minialbert
ships (offline): accuracy, macro-F1 and Matthews correlation for classification, Pearson and Spearman for
regression, GLUE's own metric for GLUE tasks.

    python examples/run_classification.py --model_name_or_path outputs/student --output_dir outputs/bbc \\
        --do_train --do_eval --do_predict --tuning adapters --learning_rate 1e-3 --num_train_epochs 2

    python examples/run_classification.py --model_name_or_path me/student --dataset_name nyu-mll/glue \\
        --dataset_config_name mrpc --output_dir outputs/mrpc --do_train --do_eval
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
)

import minialbert  # noqa: F401  (registers MiniAlbert with the Auto classes)
from minialbert.corpora import bbc_news_splits
from minialbert.finetuning import (
    ModelArguments,
    TaskRun,
    TuningArguments,
    data_files,
    parse_arguments,
    prepare_for_tuning,
    tokenize_splits,
)
from minialbert.metrics import load_metric

GLUE_TEXT_COLUMNS = {
    "cola": ("sentence", None),
    "mnli": ("premise", "hypothesis"),
    "mrpc": ("sentence1", "sentence2"),
    "qnli": ("question", "sentence"),
    "qqp": ("question1", "question2"),
    "rte": ("sentence1", "sentence2"),
    "sst2": ("sentence", None),
    "stsb": ("sentence1", "sentence2"),
    "wnli": ("sentence1", "sentence2"),
}


@dataclass
class DataTrainingArguments:
    dataset_name: str | None = field(
        default=None, metadata={"help": "A `datasets` name (e.g. nyu-mll/glue). Default: the bundled BBC News."}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Its configuration (e.g. mrpc)."})
    train_file: str | None = field(default=None, metadata={"help": "A CSV or JSON (lines) training file."})
    validation_file: str | None = field(default=None, metadata={"help": "A CSV or JSON validation file."})
    test_file: str | None = field(default=None, metadata={"help": "A CSV or JSON test file (for --do_predict)."})
    text_column_names: str | None = field(
        default=None, metadata={"help": "One column, or two comma-separated for pairs. Default: guessed."}
    )
    label_column_name: str = field(default="label", metadata={"help": "The label (or score) column."})
    max_seq_length: int = field(default=128, metadata={"help": "Tokens per example after truncation."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Truncate the training set."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Truncate the validation set."})
    max_predict_samples: int | None = field(default=None, metadata={"help": "Truncate the test set."})
    split_seed: int = field(default=42, metadata={"help": "Seed of the bundled data set's split."})

    def __post_init__(self):
        for path in (self.train_file, self.validation_file, self.test_file):
            if path is not None and Path(path).suffix not in (".csv", ".json", ".jsonl"):
                raise ValueError(f"{path} is neither CSV nor JSON; pass .csv, .json or .jsonl files.")


def dataset_label(data_args: DataTrainingArguments) -> str:
    """How the model card names the data."""
    if data_args.dataset_name:
        return data_args.dataset_name
    if data_args.train_file or data_args.validation_file:
        return Path(data_args.train_file or data_args.validation_file).parent.name
    return "bbc-news"


def load_raw_data(data_args: DataTrainingArguments) -> datasets.DatasetDict:
    if data_args.dataset_name:
        raw = datasets.load_dataset(data_args.dataset_name, data_args.dataset_config_name)
        if "validation" not in raw and "validation_matched" in raw:  # MNLI
            raw["validation"] = raw["validation_matched"]
        return raw
    files = data_files(data_args)
    if files:
        return datasets.load_dataset(
            "csv" if next(iter(files.values())).endswith(".csv") else "json", data_files=files
        )
    return bbc_news_splits(seed=data_args.split_seed)


def text_columns(data_args: DataTrainingArguments, columns: list[str]) -> tuple[str, str | None]:
    if data_args.text_column_names:
        names = [name.strip() for name in data_args.text_column_names.split(",")]
    elif data_args.dataset_config_name in GLUE_TEXT_COLUMNS:
        names = [name for name in GLUE_TEXT_COLUMNS[data_args.dataset_config_name] if name]
    else:
        names = next(
            (
                list(pair)
                for pair in (("sentence1", "sentence2"), ("text",), ("sentence",))
                if set(pair) <= set(columns)
            ),
            [],
        )
    missing = [name for name in names if name not in columns]
    if not names or missing or len(names) > 2:
        raise ValueError(
            f"Cannot use text columns {names or '(none found)'}; the data has {columns}. Pass "
            "--text_column_names with one column, or two comma-separated for sentence pairs."
        )
    return names[0], names[1] if len(names) == 2 else None


def label_space(train: datasets.Dataset, label_column: str) -> list | None:
    """The class names, or None for regression (float labels)."""
    if label_column not in train.column_names:
        raise ValueError(f"No label column {label_column!r} in {train.column_names}; pass --label_column_name.")
    feature = train.features[label_column]
    if isinstance(feature, datasets.ClassLabel):
        return feature.names
    if feature.dtype in ("float32", "float64"):
        return None
    return sorted(set(train[label_column]))


def build_model(model_args: ModelArguments, tuning_args: TuningArguments, labels: list | None) -> nn.Module:
    kwargs = {"revision": model_args.model_revision, "trust_remote_code": model_args.trust_remote_code}
    if labels is None:
        config = AutoConfig.from_pretrained(model_args.model_name_or_path, num_labels=1, **kwargs)
    else:
        config = AutoConfig.from_pretrained(
            model_args.model_name_or_path,
            num_labels=len(labels),
            id2label=dict(enumerate(map(str, labels))),
            label2id={str(label): index for index, label in enumerate(labels)},
            **kwargs,
        )
    model = AutoModelForSequenceClassification.from_pretrained(model_args.model_name_or_path, config=config, **kwargs)
    return prepare_for_tuning(model, tuning_args, "SEQ_CLS")


def metric_function(data_args: DataTrainingArguments, regression: bool, num_labels: int):
    if data_args.dataset_name and data_args.dataset_name.split("/")[-1] == "glue":
        metrics = [(load_metric("glue", data_args.dataset_config_name), {})]
    elif regression:
        metrics = [(load_metric("pearsonr"), {}), (load_metric("spearmanr"), {})]
    else:
        metrics = [
            (load_metric("accuracy"), {}),
            (load_metric("f1"), {"average": "macro" if num_labels > 2 else "binary"}),
            (load_metric("matthews_correlation"), {}),
        ]

    def compute_metrics(prediction):
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        predictions = np.squeeze(logits) if regression else np.argmax(logits, axis=-1)
        scores = {}
        for metric, kwargs in metrics:
            scores.update(metric.compute(predictions=predictions, references=prediction.label_ids, **kwargs))
        return scores

    return compute_metrics


def main() -> None:
    model_args, tuning_args, data_args, training_args, output_args = parse_arguments(DataTrainingArguments)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    run = TaskRun(
        model_args,
        tuning_args,
        training_args,
        "text-classification",
        dataset_label(data_args),
        data_args.dataset_config_name,
        output_args,
        data_args,
    )
    if run.done:  # the output folder holds this run finished: nothing to do
        return

    raw = load_raw_data(data_args)
    reference = raw["train"] if "train" in raw else next(iter(raw.values()))
    labels = label_space(reference, data_args.label_column_name)
    first, second = text_columns(data_args, reference.column_names)
    # Labels that are not a ClassLabel (strings or integers from files) become indices into `labels`.
    is_class_label = isinstance(reference.features[data_args.label_column_name], datasets.ClassLabel)
    label_ids = None if labels is None or is_class_label else {label: index for index, label in enumerate(labels)}
    if labels is not None and "test" in raw and min(raw["test"][data_args.label_column_name]) == -1:
        del raw["test"]  # GLUE's test labels are hidden (-1): nothing to score

    tokenizer = AutoTokenizer.from_pretrained(
        model_args.model_name_or_path,
        revision=model_args.model_revision,
        trust_remote_code=model_args.trust_remote_code,
    )

    def preprocess(batch):
        texts = (batch[first],) if second is None else (batch[first], batch[second])
        encoded = tokenizer(*texts, truncation=True, max_length=data_args.max_seq_length)
        values = batch[data_args.label_column_name]
        if labels is None:
            encoded["labels"] = [float(value) for value in values]
        else:
            encoded["labels"] = [label_ids[value] for value in values] if label_ids else list(values)
        return encoded

    splits = tokenize_splits(raw, preprocess, data_args, training_args)
    trainer = Trainer(
        model=build_model(model_args, tuning_args, labels),
        args=training_args,
        train_dataset=splits.get("train"),
        eval_dataset=splits.get("validation"),
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=metric_function(data_args, labels is None, len(labels or [0])),
    )
    run.run(trainer, splits)


if __name__ == "__main__":
    main()
