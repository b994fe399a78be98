import json
from collections import Counter

import pytest
from datasets import Dataset, DatasetDict
from transformers import AutoTokenizer

from minialbert import corpora
from minialbert.corpora import BBC_NEWS_TOPICS, SourceNotInstalled, bbc_news_splits, load_bbc_news
from minialbert.data import DataArguments, draw_mix, load_text_corpus, split_sentences, tokenize_windows


def test_bbc_news_is_read_in_a_fixed_order_with_named_topics():
    articles = load_bbc_news()
    assert len(articles) == 2127 == len(set(articles["text"])), "the 98 repeated articles are dropped"
    assert articles.features["label"].names == list(BBC_NEWS_TOPICS)
    assert Counter(articles["label"]) == {0: 503, 1: 369, 2: 403, 3: 505, 4: 347}
    assert all(text.strip() for text in articles["text"])


def test_bbc_news_splits_are_seeded_disjoint_and_stratified():
    splits = bbc_news_splits()
    again = bbc_news_splits()
    assert {name: len(split) for name, split in splits.items()} == {"train": 1701, "validation": 213, "test": 213}
    for name in splits:
        assert list(splits[name]["text"]) == list(again[name]["text"])
    texts = [set(split["text"]) for split in splits.values()]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    test_share = Counter(splits["test"]["label"])
    for label, count in Counter(load_bbc_news()["label"]).items():
        assert abs(test_share[label] / 213 - count / 2127) < 0.01
    assert list(bbc_news_splits(seed=7)["test"]["text"]) != list(splits["test"]["text"])


@pytest.fixture(scope="module")
def tokenizer(teacher_path):
    return AutoTokenizer.from_pretrained(teacher_path)


def test_documents_are_cut_into_overlapping_windows(tokenizer):
    arguments = DataArguments(max_seq_length=16, stride=4)
    text = " ".join(f"word{i}" for i in range(60))
    corpus = DatasetDict(train=Dataset.from_dict({"text": [text]}), validation=Dataset.from_dict({"text": ["x"]}))
    windows = tokenize_windows(corpus, tokenizer, arguments)["train"]["input_ids"]
    assert len(windows) > 3 and all(len(window) <= 16 for window in windows)
    content = [window[1:-1] for window in windows]  # without [CLS] and [SEP]
    for previous, current in zip(content, content[1:], strict=False):
        assert previous[-4:] == current[:4]
    full = tokenizer(text, add_special_tokens=False)["input_ids"]
    rebuilt = content[0] + [token for window in content[1:] for token in window[4:]]
    assert rebuilt == full


def test_sentence_samples_join_the_training_windows_only(tokenizer):
    article = "Shares rose by 5% on Monday. Mr Smith said so! Is that all? Yes."
    corpus = DatasetDict(
        train=Dataset.from_dict({"text": [article, "One two three four five six."]}),
        validation=Dataset.from_dict({"text": [article]}),
    )
    assert split_sentences(article) == ["Shares rose by 5% on Monday.", "Mr Smith said so!", "Is that all?", "Yes."]
    plain = tokenize_windows(corpus, tokenizer, DataArguments())
    mixed = tokenize_windows(corpus, tokenizer, DataArguments(sentence_samples=True))
    decoded = sorted(tokenizer.decode(ids, skip_special_tokens=True) for ids in mixed["train"]["input_ids"])
    expected = [tokenizer.decode(ids, skip_special_tokens=True) for ids in plain["train"]["input_ids"]]
    expected += ["shares rose by 5 % on monday.", "mr smith said so!"]
    # Sentences of fewer than 4 words are left out, and a one-sentence document is not repeated as a sentence.
    assert decoded == sorted(expected)
    assert mixed["validation"]["input_ids"] == plain["validation"]["input_ids"]
    assert (
        len(tokenize_windows(corpus, tokenizer, DataArguments(sentence_samples=True, max_train_samples=3))["train"])
        == 3
    )


def test_local_text_files_and_folders(tmp_path):
    folder = tmp_path / "corpus"
    (folder / "nested").mkdir(parents=True)
    (folder / "a.txt").write_text("First paragraph here.\n\nSecond paragraph here.\n")
    (folder / "nested" / "b.txt").write_text("Another document.\n")
    (folder / "ignored.md").write_text("# not text\n")
    corpus = load_text_corpus(DataArguments(train_files=[str(folder)], validation_split_percentage=34))
    texts = sorted(text.strip() for text in list(corpus["train"]["text"]) + list(corpus["validation"]["text"]))
    assert texts == ["Another document.", "First paragraph here.", "Second paragraph here."]
    whole = load_text_corpus(
        DataArguments(train_files=[str(folder)], sample_by="document", validation_split_percentage=50)
    )
    assert len(whole["train"]) + len(whole["validation"]) == 2


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda folder: (folder / "empty.txt").write_text("\n\n  \n"), "holds 0 non-empty documents"),
        (lambda folder: (folder / "image.txt").write_bytes(bytes(range(256)) * 10), "is not UTF-8 text"),
        (lambda folder: (folder / "notes.md").write_text("hello"), "holds no *.txt files"),
    ],
)
def test_bad_local_input_is_refused(tmp_path, make, message):
    make(tmp_path)
    with pytest.raises(ValueError) as error:
        load_text_corpus(DataArguments(train_files=[str(tmp_path)]))
    assert message in str(error.value)


def test_missing_files_are_refused(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_text_corpus(DataArguments(train_files=[str(tmp_path / "nope.txt")]))


def test_datasets_by_name_need_a_text_column(tmp_path):
    rows = [{"body": f"Story number {i} about trade.", "count": i} for i in range(20)]
    (tmp_path / "data.jsonl").write_text("\n".join(json.dumps(row) for row in rows))
    with pytest.raises(ValueError, match=r"has no column 'text'; its columns are \['body', 'count'\]"):
        load_text_corpus(DataArguments(dataset_name=str(tmp_path)))
    with pytest.raises(ValueError, match="Column 'count' .* not text"):
        load_text_corpus(DataArguments(dataset_name=str(tmp_path), text_column="count"))
    corpus = load_text_corpus(DataArguments(dataset_name=str(tmp_path), text_column="body"))
    assert len(corpus["train"]) + len(corpus["validation"]) == 20
    assert corpus["train"].column_names == ["text"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"dataset_name": "x", "train_files": ["y"]}, "either --dataset_name or --train_files"),
        ({"sample_by": "sentence"}, "--sample_by must be"),
        ({"max_seq_length": 4}, "--max_seq_length must be at least 8"),
        ({"max_seq_length": 32, "stride": 17}, "--stride (17) must be in [0, max_seq_length / 2] = [0, 16]"),
        ({"validation_split_percentage": 0}, "--validation_split_percentage must be in (0, 100)"),
        ({"corpus": "bbc,wikipedia"}, "--corpus names 'wikipedia', not a corpus source; known: bbc, wordnet"),
        ({"corpus": "bbc,wordnet:0"}, "--corpus weight of 'wordnet' is 0; weights must be positive"),
        ({"corpus": "fortunes:-1"}, "--corpus weight of 'fortunes' is -1; weights must be positive"),
        ({"corpus": "gcide:lots"}, "--corpus weight 'lots' of 'gcide' is not a number; write gcide:2"),
        ({"corpus": "bbc,foldoc,bbc:2"}, "--corpus names 'bbc' twice"),
        ({"corpus": "bbc", "train_files": ["notes.txt"]}, "Pass one of --corpus, --dataset_name and --train_files"),
        ({"corpus_samples": -5}, "--corpus_samples must be 0 (every sample) or positive, got -5"),
        ({"broad_eval_sentences": -1}, "--broad_eval_sentences must be 0 (none) or positive, got -1"),
    ],
)
def test_bad_data_options_are_refused(options, message):
    with pytest.raises(ValueError) as error:
        DataArguments(**options)
    assert message in str(error.value)


def fake_sources(monkeypatch, missing=("gcide",)):
    """wordnet and fortunes as small in-memory sources (200 one-sentence and 100 two-sentence documents), the
    `missing` ones not installed."""
    documents = {
        "wordnet": tuple(f"Definition number {index} of a word." for index in range(200)),
        "fortunes": tuple(
            f"Fortune number {index} says so today. This fortune number {index} is wise to hear."
            for index in range(100)
        ),
    }

    def read_source(name):
        if name in missing or name not in documents:
            raise SourceNotInstalled(f"{name} is missing: install it with `apt-get install -y {name}-package`.")
        return documents[name]

    monkeypatch.setattr(corpora, "read_source", read_source)
    return documents


def test_draw_mix_takes_each_source_in_the_ratio_of_its_weight():
    rows = {"input_ids": list(range(130)), "source": ["a"] * 100 + ["b"] * 30}
    drawn = draw_mix(Dataset.from_dict(rows), {"a": 1.0, "b": 3.0}, total=200, seed=0)
    assert Counter(drawn["source"]) == {"a": 50, "b": 150}
    counts = Counter(drawn["input_ids"])
    assert len({i for i in counts if i < 100}) == 50 and max(counts[i] for i in range(100)) == 1
    # b has 30 samples for a share of 150: every one five times.
    assert all(counts[i] == 5 for i in range(100, 130))
    assert drawn["input_ids"] != sorted(drawn["input_ids"]), "shuffled"
    again = draw_mix(Dataset.from_dict(rows), {"a": 1.0, "b": 3.0}, total=200, seed=0)
    assert drawn["input_ids"] == again["input_ids"]


def test_a_corpus_mix_skips_missing_sources_by_name_and_keeps_held_out_parts_apart(monkeypatch, tokenizer, caplog):
    documents = fake_sources(monkeypatch)
    arguments = DataArguments(corpus="wordnet:3,fortunes,gcide", corpus_samples=80, sentence_samples=True)
    with caplog.at_level("WARNING"):
        corpus = load_text_corpus(arguments)
    assert "Corpus source 'gcide' is not installed" in caplog.text
    assert "apt-get install -y gcide-package" in caplog.text
    train, held_out = set(corpus["train"]["text"]), set(corpus["validation"]["text"])
    assert not train & held_out
    for name, texts in documents.items():
        assert len(held_out & set(texts)) == round(0.05 * len(texts)), name  # no BBC: each source's held-out part
    # At most each source's share of the draw is read: 60 wordnet and 20 fortunes documents.
    assert Counter(corpus["train"]["source"]) == {"wordnet": 60, "fortunes": 20}

    samples = tokenize_windows(corpus, tokenizer, arguments)
    assert len(samples["train"]) == 80 and samples["train"].column_names == samples["validation"].column_names
    decoded = Counter(
        "fortune" if "fortune" in text else "definition"
        for text in (tokenizer.decode(ids, skip_special_tokens=True) for ids in samples["train"]["input_ids"])
    )
    assert decoded == {"definition": 60, "fortune": 20}  # fortunes' documents and sentences share its 20 samples


def test_a_corpus_mix_with_no_source_installed_is_refused_before_any_work(monkeypatch):
    fake_sources(monkeypatch, missing=("wordnet", "fortunes", "gcide"))
    with pytest.raises(ValueError) as error:
        load_text_corpus(DataArguments(corpus="wordnet,gcide"))
    message = str(error.value)
    assert "No source of --corpus wordnet,gcide is installed" in message
    assert "apt-get install -y wordnet-base" in message and "apt-get install -y dict-gcide" in message
