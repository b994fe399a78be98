"""Fine-tune a MiniAlbert student (or any token classifier) for named-entity recognition or other tagging.

Data: any `datasets` token-classification set with word and tag columns (conll2003, ncbi_disease, ...), or local
CoNLL files (one token per line, its tag in the last column, a blank line between sentences) or JSON lines
with `tokens` and `ner_tags`. Word-piece alignment: the first sub-token of each word carries its tag and the
rest are ignored (or, with `--label_all_tokens`, carry its I- tag). Entity-level precision, recall and F1
come from the `seqeval` module minialbert ships (offline).

    python examples/run_ner.py --model_name_or_path outputs/student --train_file train.conll \\
        --validation_file dev.conll --output_dir outputs/ner --do_train --do_eval --tuning lora
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
from transformers import (
    AutoConfig,
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorForTokenClassification,
    Trainer,
)

import minialbert  # noqa: F401  (registers MiniAlbert with the Auto classes)
from minialbert.finetuning import TaskRun, data_files, parse_arguments, prepare_for_tuning, tokenize_splits
from minialbert.metrics import load_metric

CONLL_SUFFIXES = (".conll", ".txt", ".iob", ".bio")


@dataclass
class DataTrainingArguments:
    dataset_name: str | None = field(default=None, metadata={"help": "A `datasets` name (e.g. conll2003)."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "Its configuration."})
    train_file: str | None = field(default=None, metadata={"help": "CoNLL (.conll/.txt) or JSON lines file."})
    validation_file: str | None = field(default=None, metadata={"help": "CoNLL or JSON lines validation file."})
    test_file: str | None = field(default=None, metadata={"help": "CoNLL or JSON lines test file (--do_predict)."})
    tokens_column_name: str = field(default="tokens", metadata={"help": "The column of words."})
    tags_column_name: str = field(default="ner_tags", metadata={"help": "The column of tags."})
    max_seq_length: int = field(default=128, metadata={"help": "Word pieces per sentence after truncation."})
    label_all_tokens: bool = field(
        default=False, metadata={"help": "Tag every word piece (I- tags after the first) instead of the first only."}
    )
    return_entity_level_metrics: bool = field(default=False, metadata={"help": "Report each entity type too."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Truncate the training set."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Truncate the validation set."})
    max_predict_samples: int | None = field(default=None, metadata={"help": "Truncate the test set."})

    def __post_init__(self):
        if not (self.dataset_name or self.train_file or self.validation_file):
            raise ValueError("Pass --dataset_name (e.g. conll2003) or --train_file/--validation_file (CoNLL or JSON).")


def read_conll(path: str) -> dict[str, list[list[str]]]:
    """Sentences of a CoNLL file: a token per line with its tag in the last column; -DOCSTART- lines skipped."""
    sentences, tokens, tags = [], [], []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-":
            if tokens:
                sentences.append((tokens, tags))
                tokens, tags = [], []
            continue
        if len(fields) < 2:
            raise ValueError(f"{path}:{number}: expected a token and its tag, got {line!r}.")
        tokens.append(fields[0])
        tags.append(fields[-1])
    if tokens:
        sentences.append((tokens, tags))
    if not sentences:
        raise ValueError(f"{path} holds no sentences.")
    return {"tokens": [words for words, _ in sentences], "ner_tags": [labels for _, labels in sentences]}


def dataset_label(data_args: DataTrainingArguments) -> str:
    """How the model card names the data."""
    return data_args.dataset_name or Path(data_args.train_file or data_args.validation_file).parent.name


def load_raw_data(data_args: DataTrainingArguments) -> datasets.DatasetDict:
    if data_args.dataset_name:
        return datasets.load_dataset(data_args.dataset_name, data_args.dataset_config_name)
    files = data_files(data_args)
    if next(iter(files.values())).endswith(CONLL_SUFFIXES):
        return datasets.DatasetDict(
            {split: datasets.Dataset.from_dict(read_conll(path)) for split, path in files.items()}
        )
    return datasets.load_dataset("json", data_files=files)


def tag_names(raw: datasets.DatasetDict, column: str) -> tuple[list[str], bool]:
    """The tag names, and whether the column holds indices into them (a ClassLabel sequence)."""
    reference = raw["train"] if "train" in raw else next(iter(raw.values()))
    if column not in reference.column_names:
        raise ValueError(f"No tag column {column!r} in {reference.column_names}; pass --tags_column_name.")
    feature = reference.features[column]
    inner = getattr(feature, "feature", None)
    if isinstance(inner, datasets.ClassLabel):
        return inner.names, True
    names = sorted({tag for split in raw.values() for tags in split[column] for tag in tags})
    # "O" first, as the usual convention; the rest sorted.
    return sorted(names, key=lambda tag: (tag != "O", tag)), False


def align_labels(word_ids: list[int | None], tags: list[int], continuation: list[int] | None) -> list[int]:
    """One label per word piece: the word's tag on its first piece; on the others -100 (ignored by the loss and
    the metric) or, given `continuation` (tag -> its I- tag), the continuation tag. Special tokens get -100."""
    labels, previous = [], None
    for word in word_ids:
        if word is None:
            labels.append(-100)
        elif word != previous:
            labels.append(tags[word])
        else:
            labels.append(continuation[tags[word]] if continuation is not None else -100)
        previous = word
    return labels


def main() -> None:
    model_args, tuning_args, data_args, training_args, output_args = parse_arguments(DataTrainingArguments)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    run = TaskRun(
        model_args,
        tuning_args,
        training_args,
        "token-classification",
        dataset_label(data_args),
        data_args.dataset_config_name,
        output_args,
        data_args,
    )
    if run.done:  # the output folder holds this run finished: nothing to do
        return

    raw = load_raw_data(data_args)
    names, indexed = tag_names(raw, data_args.tags_column_name)
    tag_ids = {name: index for index, name in enumerate(names)}
    # With --label_all_tokens, continuation pieces of a B- word get its I- tag (when the tag set has one).
    continuation = [
        tag_ids.get("I-" + name[2:], index) if name.startswith("B-") else index for index, name in enumerate(names)
    ]

    kwargs = {"revision": model_args.model_revision, "trust_remote_code": model_args.trust_remote_code}
    tokenizer = AutoTokenizer.from_pretrained(model_args.model_name_or_path, **kwargs)
    if not tokenizer.is_fast:
        raise ValueError(f"{model_args.model_name_or_path} has no fast tokenizer, which word alignment needs.")

    def preprocess(batch):
        encoded = tokenizer(
            batch[data_args.tokens_column_name],
            is_split_into_words=True,
            truncation=True,
            max_length=data_args.max_seq_length,
        )
        encoded["labels"] = [
            align_labels(
                encoded.word_ids(index),
                tags if indexed else [tag_ids[tag] for tag in tags],
                continuation if data_args.label_all_tokens else None,
            )
            for index, tags in enumerate(batch[data_args.tags_column_name])
        ]
        return encoded

    splits = tokenize_splits(raw, preprocess, data_args, training_args)

    config = AutoConfig.from_pretrained(
        model_args.model_name_or_path,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id=tag_ids,
        **kwargs,
    )
    model = AutoModelForTokenClassification.from_pretrained(model_args.model_name_or_path, config=config, **kwargs)
    seqeval = load_metric("seqeval")

    def compute_metrics(prediction):
        keep = prediction.label_ids != -100
        rows = zip(np.argmax(prediction.predictions, axis=-1), prediction.label_ids, keep, strict=True)
        predictions, references = [], []
        for predicted, labels, kept in rows:
            predictions.append([names[index] for index in predicted[kept]])
            references.append([names[index] for index in labels[kept]])
        scores = seqeval.compute(predictions=predictions, references=references)
        metrics = {key.removeprefix("overall_"): value for key, value in scores.items() if key.startswith("overall_")}
        if data_args.return_entity_level_metrics:
            for entity, values in scores.items():
                if isinstance(values, dict):
                    metrics |= {f"{entity}_{name}": value for name, value in values.items()}
        return metrics

    trainer = Trainer(
        model=prepare_for_tuning(model, tuning_args, "TOKEN_CLS"),
        args=training_args,
        train_dataset=splits.get("train"),
        eval_dataset=splits.get("validation"),
        processing_class=tokenizer,
        data_collator=DataCollatorForTokenClassification(tokenizer),
        compute_metrics=compute_metrics,
    )
    run.run(trainer, splits)


if __name__ == "__main__":
    main()
