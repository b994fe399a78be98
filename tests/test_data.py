from collections import Counter

from minialbert.data import BBC_NEWS_TOPICS, bbc_news_splits, load_bbc_news


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
        assert splits[name]["text"] == again[name]["text"]
    texts = [set(split["text"]) for split in splits.values()]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    test_share = Counter(splits["test"]["label"])
    for label, count in Counter(load_bbc_news()["label"]).items():
        assert abs(test_share[label] / 213 - count / 2127) < 0.01
    assert bbc_news_splits(seed=7)["test"]["text"] != splits["test"]["text"]
