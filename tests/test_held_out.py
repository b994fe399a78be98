import pytest

from minialbert.data import DataArguments, load_text_corpus
from minialbert.held_out import broad_held_out_sentences, python_docs_sentences

from .test_data import fake_sources


def test_out_of_domain_sentences_are_fixed_prose_from_the_python_reference():
    sentences = python_docs_sentences()
    assert len(sentences) == len(set(sentences)) == 256 and sentences == python_docs_sentences()
    assert all(8 <= len(sentence.split()) <= 30 and sentence.endswith(".") for sentence in sentences)
    assert python_docs_sentences(seed=1) != sentences
    with pytest.raises(ValueError, match="ask for at most that many"):
        python_docs_sentences(count=100_000)


def test_broad_held_out_sentences_come_from_the_parts_training_never_sees(monkeypatch):
    documents = fake_sources(monkeypatch)
    held_out = broad_held_out_sentences(per_source=12, held_out_share=0.3)
    assert set(held_out) == {"wordnet", "fortunes"}, "gcide is not installed; bbc is scored on its windows"
    corpus = load_text_corpus(DataArguments(corpus="wordnet,fortunes", validation_split_percentage=30))
    train = " ".join(corpus["train"]["text"])
    for name, sentences in held_out.items():
        assert len(sentences) == len(set(sentences)) == 12
        assert all(sentence in " ".join(documents[name]) and sentence not in train for sentence in sentences)
    assert broad_held_out_sentences(per_source=0) == {}
