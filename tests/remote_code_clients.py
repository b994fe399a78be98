"""Run saved MiniAlbert folders through the clients users reach them with, from the uploaded code alone.

`python remote_code_clients.py FOLDERS [CHECK ...]`: FOLDERS holds one saved model per head (`model`, `fill-mask`,
`text-classification`, `token-classification`, `question-answering`), each with a tokenizer. CHECK is one of
`pipelines`, `gradient-checkpointing`, `compile`, `export`, `no-mask`; all of them by default.
`tests/test_remote_code.py` runs it under each transformers version it tests, in a process where `import minialbert`
fails.
"""

import copy
import sys

sys.modules["minialbert"] = None  # `import minialbert` now raises ImportError

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoTokenizer, pipeline  # noqa: E402
from transformers.pipelines import SUPPORTED_TASKS  # noqa: E402
from transformers.testing_utils import CaptureLogger  # noqa: E402

TEXTS = ["The cat sat on the mat.", "A much longer sentence, padded less than the short one is padded."]


def load(folder: str, auto_class: str = "AutoModel") -> torch.nn.Module:
    model = getattr(transformers, auto_class).from_pretrained(folder, trust_remote_code=True).eval()
    assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
    return model


def check_pipelines(folders: str) -> None:
    tokenizer = AutoTokenizer.from_pretrained(f"{folders}/model", trust_remote_code=True)
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")

    # Pipelines batch and pad: batch_size=2 runs the padded path of the remote code.
    extractor = pipeline("feature-extraction", model=f"{folders}/model", trust_remote_code=True, batch_size=2)
    with torch.no_grad():
        hidden = extractor.model(**batch).last_hidden_state
    for row, features in enumerate(extractor(TEXTS)):
        length = int(batch["attention_mask"][row].sum())
        torch.testing.assert_close(torch.tensor(features[0])[:length], hidden[row, :length], rtol=1e-4, atol=1e-5)

    fill_mask = pipeline("fill-mask", model=f"{folders}/fill-mask", trust_remote_code=True)
    text = f"The cat sat on the {tokenizer.mask_token}."
    encoded = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        logits = fill_mask.model(**encoded).logits[0, encoded["input_ids"][0] == tokenizer.mask_token_id][0]
    best = fill_mask(text, top_k=1)[0]
    assert best["token"] == int(logits.argmax()), best
    assert abs(best["score"] - float(logits.softmax(-1).max())) < 1e-5, best

    classifier = pipeline(
        "text-classification", model=f"{folders}/text-classification", trust_remote_code=True, batch_size=2
    )
    with torch.no_grad():
        probabilities = classifier.model(**batch).logits.softmax(-1)
    for row, scores in enumerate(classifier(TEXTS, top_k=None)):
        for score in scores:
            label_id = classifier.model.config.label2id[score["label"]]
            assert abs(score["score"] - float(probabilities[row, label_id])) < 1e-5, score

    tagger = pipeline("token-classification", model=f"{folders}/token-classification", trust_remote_code=True)
    encoded = tokenizer(TEXTS[1], return_tensors="pt")
    with torch.no_grad():
        probabilities = tagger.model(**encoded).logits[0].softmax(-1)
    entities = tagger(TEXTS[1])
    assert entities, "no tokens tagged"
    for entity in entities:
        label_id = tagger.model.config.label2id[entity["entity"]]
        assert label_id == int(probabilities[entity["index"]].argmax()), entity
        assert abs(entity["score"] - float(probabilities[entity["index"], label_id])) < 1e-5, entity

    if "question-answering" in SUPPORTED_TASKS:  # transformers 5 removed the extractive QA pipeline
        answerer = pipeline("question-answering", model=f"{folders}/question-answering", trust_remote_code=True)
        context = "MiniAlbert applies one shared transformer layer several times over factorised embeddings."
        answer = answerer(question="What does MiniAlbert share?", context=context)
        assert answer["answer"] == context[answer["start"] : answer["end"]] and answer["answer"], answer
        assert 0 < answer["score"] <= 1, answer
    print("pipelines ok")


def check_gradient_checkpointing(folders: str) -> None:
    reference = load(f"{folders}/text-classification", "AutoModelForSequenceClassification").train()
    checkpointed = copy.deepcopy(reference)
    checkpointed.gradient_checkpointing_enable()
    tokenizer = AutoTokenizer.from_pretrained(f"{folders}/model", trust_remote_code=True)
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    for model in (reference, checkpointed):
        model(**batch, labels=torch.tensor([0, 2])).loss.backward()
    gradients = dict(reference.named_parameters())
    for name, parameter in checkpointed.named_parameters():
        torch.testing.assert_close(parameter.grad, gradients[name].grad, rtol=1e-5, atol=1e-6, msg=name)
    print("gradient-checkpointing ok")


def padded_batches(vocab_size: int) -> list[dict[str, torch.Tensor]]:
    """Batches of several shapes, padded and unpadded."""
    generator = torch.Generator().manual_seed(0)
    batches = []
    for batch_size, length, padded_rows in [(2, 9, 1), (3, 14, 2), (1, 6, 0)]:
        input_ids = torch.randint(1000, vocab_size, (batch_size, length), generator=generator)
        attention_mask = torch.ones_like(input_ids)
        for row in range(padded_rows):
            attention_mask[row, length - 3 - row :] = 0
        batches.append({"input_ids": input_ids * attention_mask, "attention_mask": attention_mask})
    return batches


def check_compile(folders: str) -> None:
    model = load(f"{folders}/model")
    compiled = torch.compile(model, dynamic=True, fullgraph=True)
    with torch.no_grad():
        for batch in padded_batches(model.config.vocab_size):
            expected = model(**batch).last_hidden_state
            got = compiled(**batch).last_hidden_state
            real = batch["attention_mask"].bool()
            torch.testing.assert_close(got[real], expected[real], rtol=1e-4, atol=1e-5)
    print("compile ok")


def check_export(folders: str) -> None:
    model = load(f"{folders}/text-classification", "AutoModelForSequenceClassification")
    batches = padded_batches(model.config.vocab_size)
    batch_dim, sequence_dim = torch.export.Dim("batch", max=64), torch.export.Dim("sequence", max=128)
    exported = torch.export.export(
        model,
        args=(),
        kwargs=batches[0],
        dynamic_shapes={name: {0: batch_dim, 1: sequence_dim} for name in batches[0]},
    )
    with torch.no_grad():
        for batch in batches:
            expected = model(**batch).logits
            got = exported.module()(**batch).logits
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    print("export ok")


def check_no_mask(folders: str) -> None:
    """A padded batch without an attention mask: every head attends everywhere, as with the all-ones mask, and
    warns as BERT does (transformers 5 reads `bos_token_id`/`eos_token_id` from the config to word it)."""
    tokenizer = AutoTokenizer.from_pretrained(f"{folders}/model", trust_remote_code=True)
    input_ids = tokenizer(TEXTS, padding=True, return_tensors="pt")["input_ids"]
    assert (input_ids == tokenizer.pad_token_id).any()
    logger = transformers.utils.logging.get_logger("transformers.modeling_utils")
    for task, auto_class in TASK_CLASSES.items():
        model = load(f"{folders}/{task}", auto_class)
        transformers.utils.logging.warning_once.cache_clear()
        with CaptureLogger(logger) as captured, torch.no_grad():
            unmasked = model(input_ids).to_tuple()
        assert "attention_mask" in captured.out, (task, captured.out)
        with torch.no_grad():
            all_ones = model(input_ids, attention_mask=torch.ones_like(input_ids)).to_tuple()
        for left, right in zip(unmasked, all_ones, strict=True):
            torch.testing.assert_close(left, right, rtol=0, atol=0)
    print("no-mask ok")


TASK_CLASSES = {
    "model": "AutoModel",
    "fill-mask": "AutoModelForMaskedLM",
    "text-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
    "question-answering": "AutoModelForQuestionAnswering",
}
CHECKS = {
    "pipelines": check_pipelines,
    "gradient-checkpointing": check_gradient_checkpointing,
    "compile": check_compile,
    "export": check_export,
    "no-mask": check_no_mask,
}

if __name__ == "__main__":
    folders, *names = sys.argv[1:]
    for name in names or CHECKS:  # one process for all of them by default: each start costs seconds
        CHECKS[name](folders)
