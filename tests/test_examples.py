"""The examples end to end for a few steps on bundled or fixture data, and the shipped metric modules."""

import csv
import json
import math
import runpy
import signal
import subprocess
import sys
from pathlib import Path

import peft
import pytest
import seqeval.metrics
import torch
from datasets import Dataset, DatasetDict
from sklearn.metrics import accuracy_score
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer, Trainer

import minialbert
from minialbert import ConversionArguments
from minialbert.convert_job import convert_and_save
from minialbert.corpora import bbc_news_splits
from minialbert.metrics import METRICS, load_metric
from minialbert.tuning import load_tuned

from .conftest import entries, run_training
from .hub_server import LocalHub
from .test_hub import client_env

EXAMPLES = Path(__file__).parent.parent / "examples"
FIXTURES = Path(__file__).parent / "fixtures"
SPLITS = ("train", "validation")
TINY_RUN = [
    "--max_steps", "3",
    "--per_device_train_batch_size", "4",
    "--per_device_eval_batch_size", "8",
    "--max_seq_length", "64",
    "--report_to", "none",
    "--save_strategy", "no",
    "--disable_tqdm", "true",
    "--seed", "0",
]  # fmt: skip


def run_example(name: str, arguments: list[str], monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", [name, *arguments])
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")


@pytest.fixture(scope="module")
def student(tmp_path_factory, tiny_bert_path) -> Path:
    """A small real student: the tiny BERT converted with adapters, with the bundled teacher's tokenizer."""
    folder = tmp_path_factory.mktemp("examples") / "student"
    convert_and_save(tiny_bert_path, folder, ConversionArguments(embedding_size=16))
    return folder


# -- metric modules --------------------------------------------------------------------------------------------


def test_metric_modules_give_the_reference_metrics_documented_values():
    """Small cases worked by hand (the working is in the comments), several of them the examples of the
    `evaluate` metric cards these modules stand in for."""

    def compute(name, predictions, references, config=None, **options):
        return load_metric(name, config).compute(predictions=predictions, references=references, **options)

    # 3 of 6 right.
    assert compute("accuracy", [0, 1, 1, 2, 1, 0], [0, 1, 2, 0, 1, 2]) == {"accuracy": 0.5}
    # Binary: 1 true positive, 1 false positive, 1 false negative: F1 = 2 / (2 + 1 + 1).
    assert compute("f1", [0, 0, 1, 1, 0], [0, 1, 0, 1, 0]) == {"f1": 0.5}
    # Class 0: precision 2/3, recall 1, F1 0.8; classes 1 and 2: F1 0. Macro: 0.8 / 3; micro: 2 of 6 right.
    multiclass = ([0, 2, 1, 0, 0, 1], [0, 1, 2, 0, 1, 2])
    assert compute("f1", *multiclass, average="macro")["f1"] == pytest.approx(0.8 / 3)
    assert compute("f1", *multiclass, average="micro")["f1"] == pytest.approx(1 / 3)
    # 3 of 6 right; predicted class counts (1, 3, 1, 1), true ones (1, 1, 2, 2):
    # (3 * 6 - 8) / sqrt((36 - 12) * (36 - 10)).
    mcc = compute("matthews_correlation", [1, 2, 1, 0, 3, 1], [1, 3, 2, 0, 3, 2])["matthews_correlation"]
    assert mcc == pytest.approx(10 / 624**0.5)
    # Deviations (-2, -1, 0, 1, 2) and (3.7, 2.7, -3.8, -0.3, -2.3): r = -15 / sqrt(10 * 40.8).
    pearson = compute("pearsonr", [10, 9, 2.5, 6, 4], [0, 1, 2, 3, 4])["pearsonr"]
    assert pearson == pytest.approx(-15 / (10 * 40.8) ** 0.5)
    # Prediction ranks (5, 4, 1, 3, 2): sum of squared rank differences 34, rho = 1 - 6 * 34 / (5 * 24).
    assert compute("spearmanr", [10, 9, 2.5, 6, 4], [1, 2, 3, 4, 5])["spearmanr"] == pytest.approx(-0.7)
    assert compute("glue", [0, 1], [0, 1], "mrpc") == {"accuracy": 1.0, "f1": 1.0}
    assert compute("glue", [1, 1], [0, 1], "cola") == {"matthews_correlation": 0.0}
    stsb = compute("glue", [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], "stsb")
    assert stsb == pytest.approx({"pearson": 1.0, "spearmanr": 1.0})
    with pytest.raises(KeyError, match="Unknown GLUE task"):
        load_metric("glue", "squad")
    with pytest.raises(ValueError, match="minialbert ships"):
        load_metric("bleu")
    assert set(METRICS) == {"accuracy", "f1", "glue", "matthews_correlation", "pearsonr", "seqeval", "spearmanr"}


def test_seqeval_module_gives_the_documented_values():
    # The MISC entity starts one token early (wrong), the PER one is right: 1 of 2 entities, 8 of 10 tokens.
    predictions = [["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    references = [["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    scores = load_metric("seqeval").compute(predictions=predictions, references=references)
    assert scores == {
        "MISC": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "number": 1},
        "PER": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "number": 1},
        "overall_precision": 0.5,
        "overall_recall": 0.5,
        "overall_f1": 0.5,
        "overall_accuracy": 0.8,
    }


# -- run_classification.py -------------------------------------------------------------------------------------


def accuracy_of(model, tokenizer, split, limit: int) -> float:
    """Test accuracy recomputed from a reloaded model, outside the Trainer."""
    rows = split.select(range(limit))
    batch = tokenizer(list(rows["text"]), truncation=True, max_length=64, padding=True, return_tensors="pt")
    with torch.no_grad():
        predictions = model.eval()(**batch).logits.argmax(-1).numpy()
    return accuracy_score(list(rows["label"]), predictions)


@pytest.mark.parametrize("tuning", ["full", "adapters", "relaxed", "lora"])
def test_run_classification_on_bbc_news_reloads_to_the_same_scores(student, tuning, tmp_path, monkeypatch):
    output = tmp_path / "run"
    learning_rate = "1e-3" if tuning != "full" else "1e-4"
    extra = ["--tuning", tuning, "--learning_rate", learning_rate, "--max_train_samples", "24"]
    extra += ["--max_eval_samples", "8", "--max_predict_samples", "16", "--do_train", "--do_eval", "--do_predict"]
    run_example(
        "run_classification.py",
        ["--model_name_or_path", str(student), "--output_dir", str(output), *TINY_RUN, *extra],
        monkeypatch,
    )

    results = json.loads((output / "all_results.json").read_text())
    for key in ("eval_accuracy", "eval_f1", "eval_matthews_correlation", "test_accuracy", "test_f1"):
        assert 0 <= results[key] <= 1 or key.endswith("matthews_correlation")
    assert results["trainable_parameters"] < results["total_parameters"] or tuning == "full"
    assert results["artifact_bytes"] > 0
    card_results = json.loads((output / "minialbert_results.json").read_text())
    assert {(r["dataset_split"], r["metric_type"]) for r in card_results} >= {
        ("test", "accuracy"),
        ("validation", "f1"),
    }

    if tuning == "full":
        model = AutoModelForSequenceClassification.from_pretrained(output)
    elif tuning == "lora":
        base = AutoModelForSequenceClassification.from_pretrained(student, num_labels=5)
        model = peft.PeftModel.from_pretrained(base, output)
    else:
        model = load_tuned(output)
    if tuning != "lora":  # a PEFT adapter carries no label names: the base model is built with num_labels
        assert model.config.id2label[0] == "business"
    tokenizer = AutoTokenizer.from_pretrained(output)
    assert accuracy_of(model, tokenizer, bbc_news_splits()["test"], 16) == pytest.approx(results["test_accuracy"])


def test_run_classification_sentence_pair_regression_from_csv(student, tmp_path, monkeypatch):
    rows = [("a cat sat on the mat", "a cat was on the mat", 4.6), ("stocks fell", "the team won", 0.2)]
    rows += [("rain is expected", "it will rain", 4.0), ("he sings", "markets rallied", 0.5)] * 3
    for split in ("train", "validation"):
        with open(tmp_path / f"{split}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["sentence1", "sentence2", "score"])
            writer.writerows(rows)
    arguments = ["--model_name_or_path", str(student), "--output_dir", str(tmp_path / "run"), *TINY_RUN]
    arguments += ["--train_file", str(tmp_path / "train.csv"), "--validation_file", str(tmp_path / "validation.csv")]
    arguments += ["--label_column_name", "score", "--do_train", "--do_eval"]
    run_example("run_classification.py", arguments, monkeypatch)
    results = json.loads((tmp_path / "run" / "eval_results.json").read_text())
    assert {"eval_pearsonr", "eval_spearmanr"} <= set(results)
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run")
    assert model.config.num_labels == 1 and model.config.problem_type == "regression"


def test_run_classification_refuses_bad_options(student, tmp_path, monkeypatch):
    base = ["--model_name_or_path", str(student), *TINY_RUN, "--do_train"]
    with pytest.raises(ValueError, match="--tuning 'prefix' is not one of full, adapters, relaxed, lora"):
        run_example(
            "run_classification.py", [*base, "--output_dir", str(tmp_path / "a"), "--tuning", "prefix"], monkeypatch
        )
    with pytest.raises(ValueError, match="neither CSV nor JSON"):
        run_example(
            "run_classification.py",
            [*base, "--output_dir", str(tmp_path / "b"), "--train_file", "x.parquet"],
            monkeypatch,
        )
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not empty and holds no checkpoint"):
        run_example("run_classification.py", [*base, "--output_dir", str(tmp_path / "c")], monkeypatch)
    assert (tmp_path / "c" / "notes.txt").read_text() == "keep me"


@pytest.mark.slow
def test_run_classification_survives_sigkill_and_an_overwrite_that_fails(student, tmp_path, monkeypatch):
    arguments = ["--model_name_or_path", str(student), *TINY_RUN, "--do_train", "--max_train_samples", "24"]
    arguments += ["--max_steps", "6", "--save_strategy", "steps", "--save_steps", "2"]
    killed, uninterrupted = tmp_path / "killed", tmp_path / "uninterrupted"
    command = [str(EXAMPLES / "run_classification.py"), *arguments]
    result = run_training([*command, "--output_dir", str(killed)], kill="saving:4")
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    assert not (killed / "checkpoint-4" / "trainer_state.json").exists()

    # The same command, not killed (one thread, as conftest.run_training runs it: runs then equal exactly).
    runs = {
        output_dir: run_training([*command, "--output_dir", str(output_dir)]) for output_dir in (killed, uninterrupted)
    }
    assert all(run.returncode == 0 for run in runs.values()), [run.stderr[-3000:] for run in runs.values()]
    assert f"Resuming from {killed / 'checkpoint-2'}" in runs[killed].stderr
    assert "Resuming from" not in runs[uninterrupted].stderr
    for name in ("model.safetensors", "checkpoint-6/optimizer.pt"):
        assert (killed / name).read_bytes() == (uninterrupted / name).read_bytes(), name

    # The same command again on the finished folder: nothing to do, nothing touched.
    times = {path: path.stat().st_mtime_ns for path in uninterrupted.rglob("*")}
    rerun = run_training([*command, "--output_dir", str(uninterrupted)])
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"{uninterrupted} holds the finished result of this command: nothing to do." in rerun.stderr
    assert {path: path.stat().st_mtime_ns for path in uninterrupted.rglob("*")} == times

    # --overwrite_output_dir that fails part way (a full disk while saving checkpoint-4): the old result stays whole,
    # and the replacement stays beside it to resume from its checkpoint-2.
    before = {path: path.read_bytes() for path in uninterrupted.rglob("*") if path.is_file()}

    def disk_full(self, output_dir):
        if self.state.global_step == 4:
            raise OSError(28, "No space left on device")
        original_save(self, output_dir)

    original_save = Trainer._save_optimizer_and_scheduler
    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", disk_full)
    sibling = tmp_path / ".uninterrupted.overwrite"
    with pytest.raises(OSError, match=rf"Training into {sibling} failed \(No space left on device\); the last "
                                      rf"complete checkpoint is {sibling / 'checkpoint-2'}"):  # fmt: skip
        run_example(
            "run_classification.py",
            [*arguments, "--output_dir", str(uninterrupted), "--overwrite_output_dir", "--seed", "1"],
            monkeypatch,
        )
    assert {path: path.read_bytes() for path in uninterrupted.rglob("*") if path.is_file()} == before
    assert entries(tmp_path) == [".uninterrupted.overwrite", "killed", "uninterrupted"]


def test_run_classification_pushes_with_a_card_carrying_its_results(student, tmp_path):
    with LocalHub() as hub:
        arguments = ["--model_name_or_path", str(student), "--output_dir", str(tmp_path / "run"), *TINY_RUN]
        arguments += ["--max_train_samples", "16", "--max_eval_samples", "8", "--do_train", "--do_eval"]
        arguments += ["--push_to_hub", "--hub_model_id", "me/bbc-topics"]
        result = subprocess.run(
            [sys.executable, str(EXAMPLES / "run_classification.py"), *arguments],
            capture_output=True,
            text=True,
            env=client_env(hub, tmp_path / "home"),
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        files = hub.state.uploaded("me/bbc-topics")
    assert "model.safetensors" in files and "training_args.bin" not in files and "all_results.json" not in files
    card = files["README.md"][0].decode()
    assert "pipeline_tag: text-classification" in card and "model-index:" in card and "type: accuracy" in card


# -- run_ner.py ------------------------------------------------------------------------------------------------


def test_read_conll_and_label_alignment():
    ner = runpy.run_path(str(EXAMPLES / "run_ner.py"))
    data = ner["read_conll"](str(FIXTURES / "ner" / "validation.conll"))
    assert data["tokens"][0] == ["Emma", "Wilson", "moved", "to", "Vienna", "."]
    assert data["ner_tags"][0] == ["B-PER", "I-PER", "O", "O", "B-LOC", "O"]
    # [CLS] Merkel -> mer ##kel, spoke [SEP]; tags: O=0, B-PER=1, I-PER=2
    word_ids, tags, continuation = [None, 0, 0, 1, None], [1, 0], [0, 2, 2]
    assert ner["align_labels"](word_ids, tags, None) == [-100, 1, -100, 0, -100]
    assert ner["align_labels"](word_ids, tags, continuation) == [-100, 1, 2, 0, -100]


@pytest.mark.parametrize("tuning", ["full", "lora"])
def test_run_ner_on_conll_files_reloads_to_the_same_scores(student, tuning, tmp_path, monkeypatch):
    output = tmp_path / "run"
    arguments = ["--model_name_or_path", str(student), "--output_dir", str(output), *TINY_RUN, "--tuning", tuning]
    arguments += ["--train_file", str(FIXTURES / "ner" / "train.conll")]
    arguments += ["--validation_file", str(FIXTURES / "ner" / "validation.conll")]
    arguments += ["--do_train", "--do_eval", "--learning_rate", "1e-3", "--label_all_tokens"]
    run_example("run_ner.py", arguments, monkeypatch)
    results = json.loads((output / "eval_results.json").read_text())
    assert {"eval_precision", "eval_recall", "eval_f1", "eval_accuracy"} <= set(results)

    ner = runpy.run_path(str(EXAMPLES / "run_ner.py"))
    raw = DatasetDict(
        {split: Dataset.from_dict(ner["read_conll"](str(FIXTURES / "ner" / f"{split}.conll"))) for split in SPLITS}
    )
    names, _ = ner["tag_names"](raw, "ner_tags")
    assert names[0] == "O" and set(names) == {"O", *(f"{p}-{e}" for p in "BI" for e in ("PER", "LOC", "ORG", "MISC"))}
    if tuning == "full":
        model = AutoModelForTokenClassification.from_pretrained(output)
        assert [model.config.id2label[index] for index in range(len(names))] == names
    else:
        base = AutoModelForTokenClassification.from_pretrained(student, num_labels=len(names))
        model = peft.PeftModel.from_pretrained(base, output)
        assert not any("classifier.lora" in name for name, _ in model.named_parameters())
    # Recompute the entity F1 from the reloaded model (labels on first pieces and continuations, as trained).
    data = raw["validation"]
    tokenizer = AutoTokenizer.from_pretrained(output)
    ids = {name: index for index, name in enumerate(names)}
    continuation = [
        ids.get("I-" + name[2:], index) if name.startswith("B-") else index for index, name in enumerate(names)
    ]
    predictions, references = [], []
    for words, tags in zip(data["tokens"], data["ner_tags"], strict=True):
        encoded = tokenizer(words, is_split_into_words=True, return_tensors="pt")
        labels = ner["align_labels"](encoded.word_ids(0), [ids[tag] for tag in tags], continuation)
        with torch.no_grad():
            predicted = model.eval()(**encoded).logits.argmax(-1)[0].tolist()
        predictions.append([names[p] for p, label in zip(predicted, labels, strict=True) if label != -100])
        references.append([names[label] for label in labels if label != -100])
    assert seqeval.metrics.f1_score(references, predictions) == pytest.approx(results["eval_f1"])


# -- run_distillation.py ---------------------------------------------------------------------------------------


def test_run_distillation_with_an_extra_loss(tiny_bert_path, tmp_path, monkeypatch):
    output = tmp_path / "student"
    arguments = ["--teacher", str(tiny_bert_path), "--output_dir", str(output), "--embedding_size", "16"]
    arguments += ["--max_steps", "2", "--per_device_train_batch_size", "4", "--max_seq_length", "32", "--stride", "8"]
    arguments += ["--max_train_samples", "16", "--max_eval_samples", "8", "--contrastive_weight", "1.0"]
    arguments += ["--report_to", "none", "--disable_tqdm", "true", "--logit_weight", "1.0"]
    run_example("run_distillation.py", arguments, monkeypatch)
    results = json.loads((output / "eval_results.json").read_text())
    assert {"eval_contrastive_loss", "eval_logit_loss", "eval_hidden_loss", "eval_mlm_loss"} <= set(results)
    assert 0 < results["eval_contrastive_loss"] < 2 * math.log(4)  # batches of 4: log(4) is a uniform guess
    reloaded = minialbert.MiniAlbertForMaskedLM.from_pretrained(output)
    assert reloaded.config.embedding_size == 16
