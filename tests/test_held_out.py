import pytest
import torch
from transformers import AutoTokenizer

from minialbert.data import DataArguments, load_text_corpus
from minialbert.held_out import broad_held_out_sentences, held_out_sets, python_docs_sentences
from minialbert.sentence_embeddings import sentence_batches

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


def test_held_out_sets_are_fixed_by_their_seed_and_unmask_to_the_original_windows(teacher_path):
    tokenizer = AutoTokenizer.from_pretrained(teacher_path)
    texts = [f"Held-out window number {index} about markets, films and the weather today." for index in range(10)]
    windows = [dict(tokenizer(text, return_special_tokens_mask=True)) for text in texts]

    def sets(seed):
        return held_out_sets(windows, tokenizer, batch_size=4, mlm_probability=0.3, seed=seed, broad_sentences=0)

    first, again, other = sets(42), sets(42), sets(7)
    assert [len(batch["input_ids"]) for batch in first.masked_windows] == [4, 4, 2]
    for one, two in zip(first.masked_windows, again.masked_windows, strict=True):
        assert torch.equal(one["input_ids"], two["input_ids"]) and torch.equal(one["labels"], two["labels"])
    assert any(
        not torch.equal(one["labels"], two["labels"])
        for one, two in zip(first.masked_windows, other.masked_windows, strict=True)
    )
    originals = sentence_batches(tokenizer, texts, 4)
    for restored, original in zip(first.unmasked_windows, originals, strict=True):
        assert set(restored) == {"input_ids", "token_type_ids", "attention_mask"}
        assert torch.equal(restored["input_ids"], original["input_ids"])
    assert first.sentences == {"python_reference": python_docs_sentences()}  # no broad sentences asked for
    assert list(first.agreement_sets()) == ["sentence_spearman", "ood_sentence_spearman"]
    assert first.agreement_sets()["sentence_spearman"] is first.unmasked_windows  # one set: one teacher encoding
