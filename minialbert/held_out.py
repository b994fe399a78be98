"""The held-out sets a distillation run scores its student on, built from plain values (windows, texts, a batch
size, a masking rate, seeds), so that a benchmark builds the very sets `minialbert distill` scores without its
argument objects:

- the held-out windows of the training text, masked once with a fixed seed (`held_out_batches`), and the same
  windows as inference sees them (`unmasked`);
- sentences of the Python language reference, a source no run trains on (`python_docs_sentences`);
- sentences of the held-out part of every installed broad corpus source (`broad_held_out_sentences`).
"""

import logging
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from .corpora import SOURCES, split_sources
from .data import masked_lm_collator, split_sentences
from .errors import BadInputError, MissingExtraError
from .sentence_embeddings import sentence_batches

logger = logging.getLogger(__name__)

Batch = dict[str, torch.Tensor]


def held_out_batches(
    windows: Sequence[dict], tokenizer: PreTrainedTokenizerBase, mlm_probability: float, seed: int, batch_size: int
) -> list[Batch]:
    """Held-out windows in padded batches, masked once with a fixed seed, so before/after reports score the same
    predictions."""
    collator = masked_lm_collator(tokenizer, mlm_probability, seed)
    return [
        collator([windows[i] for i in range(start, min(start + batch_size, len(windows)))])
        for start in range(0, len(windows), batch_size)
    ]


def unmasked(batch: Batch) -> Batch:
    """A batch's model inputs as inference sees them: original tokens restored where it was masked (`labels`), no
    labels, no special-tokens mask."""
    inputs = dict(batch)
    inputs.pop("special_tokens_mask", None)
    labels = inputs.pop("labels", None)
    if labels is not None:
        inputs["input_ids"] = torch.where(labels != -100, labels, inputs["input_ids"])
    return inputs


def python_docs_sentences(count: int = 256, seed: int = 42) -> list[str]:
    """Short English prose sentences from the Python language reference (`pydoc_data.topics`, part of every
    Python installation): an out-of-domain held-out set for sentence agreement, never used for training.

    Indented blocks (code) are skipped, and sentences of 8-30 words without code symbols or digits are kept;
    `count` of them are drawn with `seed`, in a fixed order.
    """
    try:
        from pydoc_data.topics import topics
    except ImportError as error:
        raise MissingExtraError(
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
        raise BadInputError(f"Only {len(sentences)} sentences qualify; ask for at most that many, not {count}.")
    return random.Random(seed).sample(sorted(sentences), count)


def broad_held_out_sentences(
    per_source: int = 64, held_out_share: float = 0.05, split_seed: int = 42, seed: int = 42
) -> dict[str, list[str]]:
    """Held-out sentences of every installed corpus source but BBC News (whose held-out set is its validation
    windows): `per_source` sentences of 6-40 words each, drawn with `seed` from the part of the source that a
    corpus split with `held_out_share` and `split_seed` (`DataArguments.validation_split_percentage / 100` and
    `split_seed`) never trains on. Sources with too few such sentences, or not installed, are left out with a
    warning."""
    found = {}
    if not per_source:
        return found
    for name, (_, held_out) in split_sources(
        [name for name in SOURCES if name != "bbc"], held_out_share, split_seed
    ).items():
        candidates = sorted(
            {
                sentence
                for text in held_out
                for sentence in split_sentences(text)
                if 6 <= len(sentence.split()) <= 40 and sentence[0].isalpha()
            }
        )
        if len(candidates) < per_source:
            logger.warning(
                "Corpus source %r has %d held-out sentences, fewer than %d.", name, len(candidates), per_source
            )
            continue
        found[name] = random.Random(seed).sample(candidates, per_source)
    return found


@dataclass
class HeldOutSets:
    """What a distillation run scores its student on (`held_out_sets`)."""

    masked_windows: list[Batch]  # the held-out windows, masked once with a fixed seed
    unmasked_windows: list[Batch]  # the same windows as inference sees them
    sentence_sets: dict[str, list[Batch]]  # unmasked sentence batches by score name (ood_, broad_sentence_spearman)
    sentences: dict[str, list[str]]  # their texts by source: "python_reference" and each broad source's name

    def agreement_sets(self) -> dict[str, list[Batch]]:
        """Every unmasked set by score name, the held-out windows (`sentence_spearman`) first."""
        return {"sentence_spearman": self.unmasked_windows} | self.sentence_sets


def held_out_sets(
    windows: Sequence[dict],
    tokenizer: PreTrainedTokenizerBase,
    batch_size: int,
    mlm_probability: float = 0.15,
    seed: int = 42,
    broad_sentences: int = 64,
    held_out_share: float = 0.05,
) -> HeldOutSets:
    """The held-out sets of `minialbert distill`: `windows` masked with `seed`; the Python reference's sentences
    (never trained on), scored as `ood_sentence_spearman`; and `broad_sentences` held-out sentences of each broad
    corpus source (split with `held_out_share` and `seed`), pooled into `broad_sentence_spearman`: in domain for
    the sources a run trains on, out of domain for the others."""
    masked = held_out_batches(windows, tokenizer, mlm_probability, seed, batch_size)
    sentences = {"python_reference": python_docs_sentences()} | broad_held_out_sentences(
        broad_sentences, held_out_share, seed
    )
    sentence_sets = {
        name: sentence_batches(tokenizer, texts, batch_size)
        for name, texts in {
            "ood_sentence_spearman": sentences["python_reference"],
            "broad_sentence_spearman": [text for source, texts in sentences.items() if source != "python_reference"
                                        for text in texts],
        }.items()
        if texts
    }  # fmt: skip
    return HeldOutSets(masked, [unmasked(batch) for batch in masked], sentence_sets, sentences)
