"""Distillation text: the bundled teacher, a mix of the installed corpus sources
(`minialbert.corpora`), any `datasets` data set or local text files, cut into masked-LM windows and sentences."""

import logging
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset, DatasetDict, concatenate_datasets, load_dataset
from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerBase

from .corpora import SOURCES, split_sources
from .errors import BadInputError

logger = logging.getLogger(__name__)

# The main job's training text: BBC News beside broad English from several domains (`minialbert.corpora.SOURCES`);
# benchmarks/recipe_study.py measured the mixes.
DEFAULT_CORPUS = "bbc:3,wordnet,gcide,foldoc,fortunes,shakespeare,linux_docs"
DEFAULT_CORPUS_SAMPLES = 40_000


@dataclass
class DataArguments:
    """Where the distillation text comes from and how it is cut into masked-LM windows.

    Without `dataset_name` or `train_files`, a mix of the corpus sources installed here (`corpus`, default
    `DEFAULT_CORPUS`): each source split into a seeded training and held-out part (BBC News: its seeded training
    and validation splits; its test split is never touched, so it stays clean for the classification examples),
    and `corpus_samples` training samples drawn from the sources in the ratio of their weights.
    """

    dataset_name: str | None = field(
        default=None, metadata={"help": "A `datasets` data set name or path (e.g. 'wikimedia/wikipedia')."}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Its configuration (e.g. '20231101.en')."})
    dataset_split: str = field(default="train", metadata={"help": "The split to read from the data set."})
    train_files: list[str] | None = field(
        default=None, metadata={"help": "Local text files or folders of *.txt files to distil on."}
    )
    corpus: str | None = field(
        default=None,
        metadata={
            "help": f"Installed corpus sources to mix, 'name[:weight],...' (weights are shares of the training "
            f"samples, default 1): any of {', '.join(SOURCES)}. Default without --dataset_name or --train_files: "
            f"{DEFAULT_CORPUS!r}. A source that is not installed is skipped with a warning naming its install command."
        },
    )
    corpus_samples: int | None = field(
        default=DEFAULT_CORPUS_SAMPLES,
        metadata={
            "help": "Training samples (windows and sentences) per epoch drawn from a --corpus mix of several "
            "installed sources by weight (at most --max_train_samples); a source with fewer samples than its share "
            "repeats. 0: every sample of every source, weights ignored. A single source always gives all its samples."
        },
    )
    text_column: str = field(default="text", metadata={"help": "Column holding the text."})
    sample_by: str = field(
        default="paragraph",
        metadata={"help": "How local text files are split into documents: 'line', 'paragraph' or 'document'."},
    )
    max_seq_length: int = field(default=128, metadata={"help": "Window length in tokens (the paper uses 256)."})
    stride: int = field(
        default=32, metadata={"help": "Tokens shared by consecutive windows of one document (the paper: 128 of 256)."}
    )
    validation_split_percentage: float = field(
        default=5.0, metadata={"help": "Share of documents held out for validation when the source has no split."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep at most this many training windows."})
    max_eval_samples: int | None = field(default=256, metadata={"help": "Keep at most this many held-out windows."})
    broad_eval_sentences: int = field(
        default=64,
        metadata={
            "help": "Held-out sentences of each installed broad corpus source that `minialbert distill` scores "
            "agreement on (`broad_sentence_spearman`), whatever the training text; 0: none."
        },
    )
    sentence_samples: bool | None = field(
        default=None,
        metadata={
            "help": "Also train on every sentence of the training documents as a sample of its own, beside the "
            "windows: short inputs like the single sentences sentence-embedding users encode (default: on for "
            "`minialbert distill`'s sentence recipe, else off)."
        },
    )
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for tokenisation."})
    split_seed: int = field(
        default=42, metadata={"help": "Seed of the document-level validation split and of the held-out masks."}
    )

    def __post_init__(self):
        if self.dataset_name and self.train_files:
            raise BadInputError("Pass either --dataset_name or --train_files, not both.")
        if self.corpus and (self.dataset_name or self.train_files):
            raise BadInputError("Pass one of --corpus, --dataset_name and --train_files, not two.")
        if self.broad_eval_sentences < 0:
            raise BadInputError(
                f"--broad_eval_sentences must be 0 (none) or positive, got {self.broad_eval_sentences}."
            )
        if self.corpus_samples is not None and self.corpus_samples < 0:
            raise BadInputError(f"--corpus_samples must be 0 (every sample) or positive, got {self.corpus_samples}.")
        self.corpus_weights()  # an unknown source or a bad weight fails here, before any work
        if self.sample_by not in ("line", "paragraph", "document"):
            raise BadInputError(f"--sample_by must be 'line', 'paragraph' or 'document', got {self.sample_by!r}.")
        if self.max_seq_length < 8:
            raise BadInputError(f"--max_seq_length must be at least 8, got {self.max_seq_length}.")
        if not 0 <= self.stride <= self.max_seq_length // 2:
            raise BadInputError(
                f"--stride ({self.stride}) must be in [0, max_seq_length / 2] = [0, {self.max_seq_length // 2}]."
            )
        if not 0 < self.validation_split_percentage < 100:
            raise BadInputError(
                f"--validation_split_percentage must be in (0, 100), got {self.validation_split_percentage}."
            )

    def corpus_weights(self) -> dict[str, float] | None:
        """The `corpus` mix as {source: weight}; None when the text comes from --dataset_name or --train_files."""
        if self.dataset_name or self.train_files:
            return None
        weights = {}
        for entry in (self.corpus or DEFAULT_CORPUS).split(","):
            name, _, weight = entry.strip().partition(":")
            if name not in SOURCES:
                raise BadInputError(f"--corpus names {name!r}, not a corpus source; known: {', '.join(SOURCES)}.")
            if name in weights:
                raise BadInputError(f"--corpus names {name!r} twice; give each source once, with its weight.")
            try:
                weights[name] = float(weight or 1)
            except ValueError:
                raise BadInputError(
                    f"--corpus weight {weight!r} of {name!r} is not a number; write {name}:2."
                ) from None
            if not weights[name] > 0:
                raise BadInputError(
                    f"--corpus weight of {name!r} is {weights[name]:g}; weights must be positive (leave the source "
                    "out instead)."
                )
        return weights


def _text_files(paths: list[str]) -> list[str]:
    files = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found = sorted(str(file) for file in path.rglob("*.txt"))
            if not found:
                raise BadInputError(f"Folder {name!r} holds no *.txt files; pass text files or folders of them.")
            files.extend(found)
        elif path.is_file():
            files.append(str(path))
        else:
            raise BadInputError(f"Training file {name!r} does not exist.")
    for file in files:
        try:
            with open(file, encoding="utf-8") as handle:
                handle.read(1 << 16)
        except UnicodeDecodeError as error:
            raise BadInputError(f"{file!r} is not UTF-8 text ({error}); pass plain-text files.") from error
    # `datasets` cannot build a text data set from an empty file: leave those out, and say so.
    empty = [file for file in files if Path(file).stat().st_size == 0]
    if empty and len(empty) == len(files):
        raise BadInputError(f"--train_files {' '.join(paths)}: every file is empty; pass files that hold text.")
    for file in empty:
        logger.warning("Training file %r is empty; going on without it.", file)
    return [file for file in files if file not in empty]


def _non_empty(documents: Dataset) -> Dataset:
    return documents.filter(lambda batch: [bool(text and text.strip()) for text in batch["text"]], batched=True)


def _held_out(documents: Dataset, arguments: DataArguments, source: str) -> DatasetDict:
    documents = _non_empty(documents)
    if len(documents) < 2:
        raise BadInputError(
            f"{source} holds {len(documents)} non-empty documents: no text to distil on, or too little to hold any "
            "out for validation. Check the input or --sample_by."
        )
    split = documents.train_test_split(
        test_size=arguments.validation_split_percentage / 100, seed=arguments.split_seed
    )
    return DatasetDict(train=split["train"], validation=split["test"])


def load_text_corpus(arguments: DataArguments) -> DatasetDict:
    """Documents (a `text` column) for training and for held-out validation, from the chosen source."""
    if arguments.train_files:
        documents = load_dataset(
            "text", data_files=_text_files(arguments.train_files), sample_by=arguments.sample_by, split="train"
        )
        return _held_out(documents, arguments, f"--train_files {arguments.train_files}")
    if arguments.dataset_name:
        documents = load_dataset(arguments.dataset_name, arguments.dataset_config_name, split=arguments.dataset_split)
        if arguments.text_column not in documents.column_names:
            raise BadInputError(
                f"{arguments.dataset_name!r} has no column {arguments.text_column!r}; its columns are "
                f"{documents.column_names}. Pass --text_column."
            )
        feature = documents.features[arguments.text_column]
        if getattr(feature, "dtype", None) not in ("string", "large_string"):
            raise BadInputError(
                f"Column {arguments.text_column!r} of {arguments.dataset_name!r} holds {feature}, not text; "
                "pass --text_column naming a string column."
            )
        documents = documents.select_columns([arguments.text_column]).rename_column(arguments.text_column, "text")
        return _held_out(documents, arguments, f"--dataset_name {arguments.dataset_name}")
    return load_corpus_mix(arguments)


def load_corpus_mix(arguments: DataArguments) -> DatasetDict:
    """Training documents of every installed source of the `corpus` mix (a `source` column says which), and
    held-out documents: BBC News' validation split when the mix has it, so held-out windows stay comparable
    between mixes, else the held-out parts of the mix's sources."""
    weights = arguments.corpus_weights()
    sources = split_sources(weights, arguments.validation_split_percentage / 100, arguments.split_seed)
    names = list(sources)
    if not names:
        installs = "; ".join(SOURCES[name].install for name in weights)
        raise BadInputError(f"No source of --corpus {','.join(weights)} is installed here; install one ({installs}).")
    shares = {name: weights[name] / sum(weights[name] for name in names) for name in names}
    total = mix_size(arguments, len(names))
    train, validation, generator = [], [], random.Random(arguments.split_seed)
    for name in names:
        documents, held_out = sources[name]
        if total:
            # Each document gives at least one sample: more than a source's share of documents is never needed.
            needed = round(total * shares[name])
            documents = generator.sample(documents, needed) if needed < len(documents) else documents
        train += [(text, name) for text in documents]
        if "bbc" not in names or name == "bbc":
            validation += [(text, name) for text in held_out]

    def dataset(rows):
        return Dataset.from_dict({"text": [text for text, _ in rows], "source": [name for _, name in rows]})

    return DatasetDict(train=dataset(train), validation=dataset(validation))


def mix_size(arguments: DataArguments, sources: int) -> int:
    """How many training samples to draw from a mix of `sources` installed sources (0: all of them): a single
    source gives all its samples; `max_train_samples` caps the draw, so a small run reads little."""
    if sources < 2 or not arguments.corpus_samples:
        return arguments.max_train_samples or 0
    return min(arguments.corpus_samples, arguments.max_train_samples or arguments.corpus_samples)


def draw_mix(samples: Dataset, weights: dict[str, float], total: int, seed: int) -> Dataset:
    """`total` samples, shuffled, drawn from each `source` in the ratio of `weights`: a source's share is a seeded
    random subset of its samples, or all of them repeated (each pass reshuffled) when it has fewer."""
    sources = samples["source"]
    present = [name for name in weights if name in set(sources)]
    generator = random.Random(seed)
    chosen = []
    for name in present:
        rows = [index for index, source in enumerate(sources) if source == name]
        needed = round(total * weights[name] / sum(weights[name] for name in present))
        while needed > 0:
            take = generator.sample(rows, min(needed, len(rows)))
            chosen += take
            needed -= len(take)
    generator.shuffle(chosen)
    return samples.select(chosen)


def split_sentences(text: str) -> list[str]:
    """The sentences of a text: split after ., ! or ? where the next word starts with a capital letter."""
    return re.split(r"(?<=[.!?])\s+(?=[A-Z])", " ".join(text.split()))


def tokenize_windows(corpus: DatasetDict, tokenizer: PreTrainedTokenizerBase, arguments: DataArguments) -> DatasetDict:
    """Cut every document into overlapping windows of `max_seq_length` tokens (`stride` tokens shared), and with
    `sentence_samples` add each sentence of at least 4 words of every training document of several sentences as a
    sample of its own. Training samples of a `corpus` mix are then drawn by source weight (`corpus_samples`, see
    `draw_mix`), others shuffled with `split_seed`; `max_train_samples` applies last. Held-out data stays windows.

    Uses `datasets.map` (batched, cached next to file-backed data, `preprocessing_num_workers` processes).
    """

    def tokenize(batch):
        encoded = tokenizer(
            batch["text"],
            truncation=True,
            max_length=arguments.max_seq_length,
            stride=arguments.stride,
            return_overflowing_tokens=True,
            return_special_tokens_mask=True,
        )
        documents = encoded.pop("overflow_to_sample_mapping")
        if "source" in batch:
            encoded["source"] = [batch["source"][document] for document in documents]
        return encoded

    def sentences(batch):
        found = {"text": [], "source": []}
        for index, text in enumerate(batch["text"]):
            # A one-sentence document is already a sample of that sentence.
            split = [sentence for sentence in split_sentences(text) if len(sentence.split()) >= 4]
            if len(split) > 1 or split and split[0] != " ".join(text.split()):
                found["text"] += split
                found["source"] += [batch["source"][index] if "source" in batch else ""] * len(split)
        return found if "source" in batch else {"text": found["text"]}

    def windows(documents: DatasetDict | Dataset):
        return documents.map(
            tokenize,
            batched=True,
            num_proc=arguments.preprocessing_num_workers,
            remove_columns=documents.column_names["train"] if isinstance(documents, DatasetDict) else ["text"],
            desc="Tokenising into windows",
        )

    corpus = corpus.select_columns([name for name in ("text", "source") if name in corpus["train"].column_names])
    tokenized = windows(corpus)
    train = tokenized["train"]
    if arguments.sentence_samples:
        split = corpus["train"].map(sentences, batched=True, remove_columns=["text"], desc="Splitting into sentences")
        train = concatenate_datasets([train, windows(split)])
    sources = set(train["source"]) if "source" in train.column_names else set()
    if len(sources) > 1 and arguments.corpus_samples:
        train = draw_mix(train, arguments.corpus_weights(), mix_size(arguments, len(sources)), arguments.split_seed)
    elif arguments.sentence_samples or sources:
        train = train.shuffle(seed=arguments.split_seed)
    tokenized["train"] = train
    limits = {"train": arguments.max_train_samples, "validation": arguments.max_eval_samples}
    return DatasetDict(
        {
            name: (split.select(range(min(len(split), limits[name]))) if limits.get(name) else split).remove_columns(
                [column for column in ("source",) if column in split.column_names]
            )
            for name, split in tokenized.items()
        }
    )


def masked_lm_collator(
    tokenizer: PreTrainedTokenizerBase, mlm_probability: float = 0.15, seed: int | None = None
) -> DataCollatorForLanguageModeling:
    """Pads windows and masks `mlm_probability` of the real tokens (80% [MASK], 10% random, 10% kept); with a
    `seed`, from its own generator, so the same windows always get the same masks."""
    return DataCollatorForLanguageModeling(tokenizer, mlm_probability=mlm_probability, seed=seed)
