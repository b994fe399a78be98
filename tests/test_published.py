"""Importing the published MiniALBERT checkpoints, against an independent re-implementation of their layout.

The authors' code does not run here (it fails to import on transformers 5), so `PublishedMiniAlbert` below
rebuilds their model from the published description: transformers' own `AlbertModel` for the modules (its
`embedding_hidden_mapping_in` removed, as in the checkpoints), a hand-written forward with the E->H projector
after the embedding LayerNorm, post-norm adapters around ALBERT's attention block, and the published heads.
Random weights, saved under the published key names, are imported and must give the same outputs.
"""

import json
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers
from torch import nn
from torch.nn import functional as F
from transformers import AlbertConfig, AlbertModel, AutoTokenizer

from minialbert import OnnxRuntimeModel, export_student
from minialbert.convert import ConversionArguments
from minialbert.convert_job import convert_and_save
from minialbert.published_job import import_published

from .conftest import assert_remote_code_load_matches, booby_trap


class PublishedAdapter(nn.Module):
    def __init__(self, hidden: int, reduction: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.Linear(hidden, hidden // reduction), nn.GELU(), nn.Linear(hidden // reduction, hidden)
        )
        self.norm = nn.LayerNorm(hidden, eps=1e-12)

    def forward(self, x):
        return self.norm(x + self.block(x))


class PublishedBody(nn.Module):
    def __init__(self, config: AlbertConfig):
        super().__init__()
        self.config = config
        self.albert = AlbertModel(config, add_pooling_layer=True)
        del self.albert.encoder.embedding_hidden_mapping_in
        if config.embedding_size != config.hidden_size:  # as the authors' code: no projector where E == H
            self.projector = nn.Linear(config.embedding_size, config.hidden_size)
        if config.use_adapter:
            self.att_adapters = nn.ModuleList(
                PublishedAdapter(config.hidden_size, config.reduction_factor) for _ in range(config.num_hidden_layers)
            )
            self.mlp_adapters = nn.ModuleList(
                PublishedAdapter(config.hidden_size, config.reduction_factor) for _ in range(config.num_hidden_layers)
            )

    def forward(self, input_ids, attention_mask, token_type_ids):
        layer = self.albert.encoder.albert_layer_groups[0].albert_layers[0]
        h = self.albert.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        h = self.projector(h) if hasattr(self, "projector") else h
        additive = (1.0 - attention_mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        states, maps = [h], []
        for i in range(self.config.num_hidden_layers):
            x = self.att_adapters[i](h) if self.config.use_adapter else h
            x, probabilities = layer.attention(x, additive)
            x = self.mlp_adapters[i](x) if self.config.use_adapter else x
            h = layer.full_layer_layer_norm(x + layer.ffn_output(F.gelu(layer.ffn(x))))
            states.append(h)
            maps.append(probabilities)
        return states, maps


class PublishedMiniAlbert(nn.Module):
    """The published model with one of its heads ("masked-lm", "sequence", "token")."""

    def __init__(self, config: AlbertConfig, head: str):
        super().__init__()
        self.head = head
        self.albert = PublishedBody(config)
        if head == "masked-lm":
            self.vocab_transform = nn.Linear(config.hidden_size, config.hidden_size)
            self.vocab_layer_norm = nn.LayerNorm(config.hidden_size, eps=1e-12)
            self.vocab_projector = nn.Linear(config.hidden_size, config.vocab_size)
        else:
            self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, input_ids, attention_mask, token_type_ids):
        states, maps = self.albert(input_ids, attention_mask, token_type_ids)
        last = states[-1]
        if self.head == "masked-lm":
            logits = self.vocab_projector(self.vocab_layer_norm(F.gelu(self.vocab_transform(last))))
        else:
            logits = self.classifier(last[:, 0] if self.head == "sequence" else last)
        return logits, states, maps


ARCHITECTURES = {
    "masked-lm": "MiniAlbertForMaskedLM",
    "sequence": "MiniAlbertForSequenceClassification",
    "token": "MiniAlbertForTokenClassification",
}


def published_checkpoint(
    folder: Path, head: str, use_adapter: bool, embedding_size: int, tokenizer, model_type="albert"
):
    """Random published weights under the published key names, with the config the authors' code writes."""
    config = AlbertConfig(
        vocab_size=tokenizer.vocab_size,
        embedding_size=embedding_size,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=37,
        hidden_act="gelu",
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        max_position_embeddings=128,
        num_labels=3,
        attn_implementation="eager",
    )
    config.use_adapter, config.reduction_factor = use_adapter, 4
    torch.manual_seed(len(head) + embedding_size + use_adapter)
    model = PublishedMiniAlbert(config, head).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.2)
    folder.mkdir(parents=True)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    values = config.to_dict() | {"architectures": [ARCHITECTURES[head]], "model_type": model_type}
    values.pop("attn_implementation", None)
    (folder / "config.json").write_text(json.dumps(values))
    tokenizer.save_pretrained(folder)
    return model


@pytest.fixture(scope="module")
def tokenizer(teacher_path):
    return AutoTokenizer.from_pretrained(teacher_path)


def batch_of(tokenizer):
    texts = ["The published student, imported.", "A second and longer sentence, so there is padding here."]
    return dict(tokenizer(texts, ["pair"] * 2, padding=True, return_tensors="pt"))


@pytest.mark.parametrize("head", list(ARCHITECTURES))
@pytest.mark.parametrize("use_adapter, embedding_size", [(True, 16), (False, 16), (True, 32), (False, 32)])
def test_imported_models_reproduce_the_published_layout(head, use_adapter, embedding_size, tokenizer, tmp_path):
    reference = published_checkpoint(tmp_path / "published", head, use_adapter, embedding_size, tokenizer)
    folder = import_published(tmp_path / "published", tmp_path / "imported")
    config = json.loads((folder / "config.json").read_text())
    assert config["source_checkpoint"] == str(tmp_path / "published")
    assert (config["embedding_layout"], config["adapter_layout"], config["mlm_decoder"]) == (
        "albert",
        "post_norm",
        "untied",
    )
    model = getattr(
        transformers,
        "AutoModelForMaskedLM"
        if head == "masked-lm"
        else f"AutoModelFor{'Sequence' if head == 'sequence' else 'Token'}Classification",
    ).from_pretrained(folder)
    batch = batch_of(tokenizer)
    with torch.no_grad():
        logits, states, maps = reference(**batch)
        outputs = model.eval()(**batch, output_hidden_states=True, output_attentions=True)
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(
        outputs.logits[real] if head != "sequence" else outputs.logits,
        logits[real] if head != "sequence" else logits,
        rtol=1e-5,
        atol=1e-5,
    )
    for ours, theirs in zip(outputs.hidden_states, states, strict=True):
        torch.testing.assert_close(ours[real], theirs[real], rtol=1e-5, atol=1e-5)
    for ours, theirs in zip(outputs.attentions, maps, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def corrupt(folder: Path, change) -> None:
    weights = torch.load(folder / "pytorch_model.bin", weights_only=True)
    change(weights)
    torch.save(weights, folder / "pytorch_model.bin")


def test_other_checkpoints_and_broken_ones_are_refused_and_nothing_is_written(tokenizer, tiny_bert_path, tmp_path):
    albert = tmp_path / "albert"
    AlbertModel(AlbertConfig(vocab_size=99, embedding_size=8, hidden_size=16, num_attention_heads=2,
                             intermediate_size=20, num_hidden_layers=2)).save_pretrained(albert)  # fmt: skip
    ours = convert_and_save(tiny_bert_path, tmp_path / "ours", ConversionArguments(embedding_size=16))
    cases = {"bert": (tiny_bert_path, "holds a BERT model ('bert'): make a student of it with `minialbert convert`"),
             "albert": (albert, "holds an ALBERT model"),
             "ours": (ours, "already holds a MiniAlbert model of this package")}  # fmt: skip
    for name, edit, message in [
        ("unexpected", lambda w: w.update({"albert.extra.weight": torch.zeros(2)}), "Keys with no place"),
        ("missing", lambda w: w.pop("albert.mlp_adapters.2.norm.bias"), "calls for: albert.mlp_adapters.2.norm.bias"),
        ("shape", lambda w: w.update({"classifier.weight": torch.zeros(3, 31)}), "has shape (3, 31)"),
    ]:
        published_checkpoint(tmp_path / name, "sequence", True, 16, tokenizer)
        corrupt(tmp_path / name, edit)
        cases[name] = (tmp_path / name, message)
    published_checkpoint(tmp_path / "gelu-new", "sequence", True, 16, tokenizer)
    config = json.loads((tmp_path / "gelu-new" / "config.json").read_text())
    (tmp_path / "gelu-new" / "config.json").write_text(json.dumps(config | {"hidden_act": "gelu_new"}))
    cases["gelu-new"] = (tmp_path / "gelu-new", "has hidden_act 'gelu_new'")
    for name, (source, message) in cases.items():
        with pytest.raises(ValueError, match=re.escape(message)):
            import_published(source, tmp_path / "out")
        assert not (tmp_path / "out").exists(), name


def test_the_cli_never_runs_the_checkpoints_code(tokenizer, tmp_path):
    """A checkpoint with its own remote code (as nlpie/new-miniAlbert-128 has) is read as data only."""
    source = tmp_path / "with-code"
    published_checkpoint(source, "masked-lm", True, 16, tokenizer, model_type="MiniAlbert")
    config = json.loads((source / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "configuration_minialbert.MiniAlbertConfig",
                          "AutoModelForMaskedLM": "modeling_minialbert.MiniAlbertForMaskedLM"}  # fmt: skip
    (source / "config.json").write_text(json.dumps(config))
    booby_trap(source, tmp_path / "marker")
    command = [sys.executable, "-m", "minialbert.cli", "import-published", str(source)]
    result = subprocess.run(command + ["--output_dir", str(tmp_path / "out")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (tmp_path / "marker").exists()
    assert json.loads((tmp_path / "out" / "config.json").read_text())["architectures"] == ["MiniAlbertForMaskedLM"]


def test_imported_folders_work_with_the_rest_of_the_project(tokenizer, tmp_path, monkeypatch):
    """Remote-code loading without the package, adapter tuning and LoRA, the classification example, the push
    card, ONNX export and the benchmark's inference measurements, on an imported published masked-LM checkpoint."""
    import peft

    from minialbert.hub import check_shareable, model_card
    from minialbert.tuning import enable_tuning

    published_checkpoint(tmp_path / "published", "masked-lm", True, 16, tokenizer)
    folder = import_published(tmp_path / "published", tmp_path / "imported")
    model = transformers.AutoModelForMaskedLM.from_pretrained(folder).eval()
    assert_remote_code_load_matches(model, folder, "AutoModelForMaskedLM", batch_of(tokenizer), tmp_path)

    classifier = transformers.AutoModelForSequenceClassification.from_pretrained(folder, num_labels=5)
    assert 0 < enable_tuning(classifier, "adapters")["share"] < 0.5
    classifier = transformers.AutoModelForSequenceClassification.from_pretrained(folder, num_labels=5)
    lora = peft.get_peft_model(
        classifier, peft.LoraConfig(task_type="SEQ_CLS", target_modules=["query", "value"], r=2)
    )
    lora(**batch_of(tokenizer), labels=torch.tensor([0, 4])).loss.backward()

    monkeypatch.setattr(sys, "argv", ["run_classification.py", "--model_name_or_path", str(folder),
        "--output_dir", str(tmp_path / "run"), "--max_steps", "2", "--per_device_train_batch_size", "4",
        "--max_seq_length", "32", "--max_train_samples", "8", "--max_eval_samples", "4", "--do_train", "--do_eval",
        "--report_to", "none", "--save_strategy", "no", "--disable_tqdm", "true"])  # fmt: skip
    runpy.run_path(str(Path(__file__).parent.parent / "examples" / "run_classification.py"), run_name="__main__")
    assert "eval_accuracy" in json.loads((tmp_path / "run" / "all_results.json").read_text())

    card = str(model_card(folder, "me/imported", check_shareable(folder)))
    assert f"imported from | `{tmp_path / 'published'}`" in card

    runner = OnnxRuntimeModel.from_pretrained(export_student(folder))
    batch, real = batch_of(tokenizer), batch_of(tokenizer)["attention_mask"].bool()
    with torch.no_grad():
        torch.testing.assert_close(runner(**batch).logits[real], model(**batch).logits[real], rtol=1e-4, atol=1e-4)

    benchmark = runpy.run_path(str(Path(__file__).parent.parent / "benchmarks" / "run.py"))
    measured = benchmark["inference"](folder, 1, 0, False)
    assert measured["tokens_per_second"]["student"] > 0


def test_adapters_added_to_an_imported_model_without_them_start_as_identities(tokenizer, tmp_path):
    """Tuning adds adapters to a published checkpoint that has none in the branch-normalised layout: they leave its
    outputs exactly as they were, and the saved tuning loads back with that layout."""
    from minialbert.tuning import enable_tuning, load_tuned, save_tuned

    published_checkpoint(tmp_path / "published", "sequence", False, 16, tokenizer)
    folder = import_published(tmp_path / "published", tmp_path / "imported")
    model = transformers.AutoModelForSequenceClassification.from_pretrained(folder).eval()
    batch = batch_of(tokenizer)
    with torch.no_grad():
        before = model(**batch).logits
        enable_tuning(model, "adapters")
        torch.testing.assert_close(model.eval()(**batch).logits, before, rtol=0, atol=0)
        for adapters in model.minialbert.encoder.adapters:
            adapters.before_ffn.up.weight.normal_()
        tuned = model(**batch).logits
    save_tuned(model, tmp_path / "tuned", base_model=str(folder))
    with torch.no_grad():
        torch.testing.assert_close(load_tuned(tmp_path / "tuned").eval()(**batch).logits, tuned, rtol=0, atol=0)


HUB_IMPORT = """
import json, sys
from huggingface_hub import HfApi
from minialbert.cli import main

plan = json.loads(open(sys.argv[1]).read())
api = HfApi()
api.create_repo(plan["repo_id"], exist_ok=True)
commit = api.upload_folder(folder_path=plan["published"], repo_id=plan["repo_id"]).oid
api.upload_file(path_or_fileobj=b"{}", path_in_repo="later.json", repo_id=plan["repo_id"])  # main moves on
assert main(["import-published", plan["repo_id"], "--revision", commit, "--output_dir", plan["output"]]) == 0
print("commit", commit)
"""


def test_import_by_hub_id_downloads_data_only_and_records_the_revision(tokenizer, tmp_path):
    from minialbert.hub import check_shareable, model_card

    from .hub_server import LocalHub
    from .test_hub import client_env, run_client

    reference = published_checkpoint(tmp_path / "published", "masked-lm", True, 16, tokenizer)
    booby_trap(tmp_path / "published", tmp_path / "marker")  # code files in the repository, never downloaded
    plan = {
        "repo_id": "nlpie/miniALBERT-128",
        "published": str(tmp_path / "published"),
        "output": str(tmp_path / "out"),
    }
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    with LocalHub() as hub:
        output = run_client(
            sys.executable, HUB_IMPORT, tmp_path / "plan.json", client_env(hub, tmp_path / "home"), tmp_path
        )
    commit = output.split("commit ")[1].split()[0]
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert (config["source_checkpoint"], config["source_revision"]) == ("nlpie/miniALBERT-128", commit)
    assert not (tmp_path / "marker").exists()
    card = model_card(tmp_path / "out", "me/minialbert-128", check_shareable(tmp_path / "out"))
    assert card.data.base_model == "nlpie/miniALBERT-128"
    assert f"| imported from | `nlpie/miniALBERT-128` at revision `{commit}` (`minialbert import-published`) |" in str(
        card
    )
    model = transformers.AutoModelForMaskedLM.from_pretrained(tmp_path / "out").eval()
    batch = batch_of(tokenizer)
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits[real], reference(**batch)[0][real], rtol=1e-5, atol=1e-5)
