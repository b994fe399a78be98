"""The held-out sets every benchmark scores a student on, as plain texts, and the one scoring function.

The three sets of `minialbert distill`'s summary: 256 BBC News validation windows of 128 tokens (decoded back to
text, so that models with other tokenizers read the same words), 256 sentences of the Python language reference
(never trained on) and 64 held-out sentences of each installed broad corpus source. A contender is any function
from texts to embeddings; `agreement` is the Spearman correlation of its pairwise cosine similarities with the
teacher's (`minialbert.sentence_embeddings.similarity_spearman`).
"""

from collections.abc import Callable

import torch
from transformers import AutoTokenizer

from minialbert.data import (
    DataArguments,
    load_text_corpus,
    tokenize_windows,
)
from minialbert.held_out import broad_held_out_sentences, python_docs_sentences
from minialbert.sentence_embeddings import encode, sentence_batches, similarity_spearman

Encoder = Callable[[list[str]], torch.Tensor]


def held_out_texts(tokenizer_path: str, windows: int = 256) -> dict[str, list[str]]:
    """`{"bbc": ..., "python_reference": ..., "broad": ...}` as the default distill job holds them out."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    arguments = DataArguments(corpus="bbc", corpus_samples=0, sentence_samples=False)
    validation = tokenize_windows(load_text_corpus(arguments), tokenizer, arguments)["validation"]
    bbc = tokenizer.batch_decode(list(validation["input_ids"][:windows]), skip_special_tokens=True)
    broad = [text for texts in broad_held_out_sentences().values() for text in texts]
    return {"bbc": bbc, "python_reference": python_docs_sentences(), "broad": broad}


def transformer_encoder(model: torch.nn.Module, tokenizer_path: str, batch_size: int = 32) -> Encoder:
    """Mean-pooled last hidden states of a bare encoder (`MiniAlbertModel`, `BertModel`), the teacher's pooling."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    return lambda texts: encode(model.eval(), sentence_batches(tokenizer, texts, batch_size))


def agreement(encoder: Encoder, texts: dict[str, list[str]], teacher: dict[str, torch.Tensor]) -> dict[str, float]:
    """Agreement with the teacher's embeddings `teacher` (by set) on each held-out set."""
    with torch.no_grad():
        return {name: round(similarity_spearman(encoder(texts[name]), teacher[name]), 4) for name in texts}
