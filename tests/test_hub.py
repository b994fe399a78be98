"""Sharing on the Hub, end to end over real HTTP against the stand-in Hub of `hub_server.py`.

The client side runs in subprocesses: huggingface_hub reads `HF_ENDPOINT` at import time. Loading runs in a process
where `import minialbert` fails, so the models come from the uploaded code alone; with
`MINIALBERT_TRANSFORMERS4_PYTHON` set (as `.ci/run` does) the same checks run under transformers 4.57.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import peft
import pytest
import torch
from huggingface_hub import EvalResult, ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results
from transformers import AutoTokenizer

import minialbert
from minialbert import ConversionArguments
from minialbert.cli import main
from minialbert.convert_job import convert_and_save
from minialbert.distillation import RECIPES
from minialbert.hub import RESULTS_NAME, check_shareable, model_card, push_to_hub, save_results
from minialbert.tuning import enable_tuning, save_tuned

from .conftest import TRANSFORMERS4_PYTHON, booby_trap, requires_transformers4, tiny_config
from .hub_server import LocalHub

HEADS = {
    "AutoModel": minialbert.MiniAlbertModel,
    "AutoModelForSequenceClassification": minialbert.MiniAlbertForSequenceClassification,
    "AutoModelForTokenClassification": minialbert.MiniAlbertForTokenClassification,
    "AutoModelForQuestionAnswering": minialbert.MiniAlbertForQuestionAnswering,
    "AutoModelForMultipleChoice": minialbert.MiniAlbertForMultipleChoice,
}
SHARED_FILES = {"config.json", "configuration_minialbert.py", "modeling_minialbert.py", "model.safetensors"}

PUSH_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    import transformers
    from minialbert.cli import main
    from minialbert.tuning import load_tuned

    plan = json.loads(open(sys.argv[1]).read())
    for folder, auto_class, repo_id in plan["stock"]:
        getattr(transformers, auto_class).from_pretrained(folder).push_to_hub(repo_id)
    for folder, repo_id, options in plan["cli"]:
        assert main(["push", folder, repo_id, *options]) == 0
    for repo_id, inputs_path, output_path in plan["load_tuned"]:
        model = load_tuned(repo_id).eval()
        with torch.no_grad():
            torch.save(model(**torch.load(inputs_path)).to_tuple(), output_path)
    """
)

LOAD_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.modules["minialbert"] = None  # only the uploaded code may run
    import torch
    import transformers

    for check in json.loads(open(sys.argv[1]).read()):
        auto_class = getattr(transformers, check["auto_class"])
        if check.get("adapter"):
            from peft import PeftModel

            base = auto_class.from_pretrained(check["repo_id"], trust_remote_code=True)
            model = PeftModel.from_pretrained(base, check["adapter"])
        else:
            revision = check.get("revision")
            model = auto_class.from_pretrained(check["repo_id"], revision=revision, trust_remote_code=True)
            assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
        expected = torch.load(check["expected"])
        with torch.no_grad():
            outputs = model.eval()(**expected["inputs"]).to_tuple()
        for got, want in zip(outputs, expected["outputs"], strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=0)
        print("loaded", check["name"], transformers.__version__)
    """
)


def client_env(hub: LocalHub, home: Path) -> dict[str, str]:
    """Point a client process at the stand-in Hub; its caches (and remote code) live in `home`."""
    return dict(
        os.environ,
        HF_ENDPOINT=hub.endpoint,
        HF_HOME=str(home),
        HF_MODULES_CACHE=str(home / "modules"),
        HF_HUB_OFFLINE="0",
        TRANSFORMERS_OFFLINE="0",
        HF_HUB_DISABLE_XET="1",
        HF_TOKEN="hf_local_test_token",
    )


def run_client(python: str, script: str, argument: Path, env: dict, cwd: Path) -> str:
    result = subprocess.run([python, "-c", script, str(argument)], capture_output=True, text=True, env=env, cwd=cwd)
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


def expected_outputs(model: torch.nn.Module, inputs: dict, path: Path) -> str:
    with torch.no_grad():
        torch.save({"inputs": inputs, "outputs": model.eval()(**inputs).to_tuple()}, path)
    return str(path)


def perturbed(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Move every weight (zero-initialised adapters and relaxations included) so round trips test real values."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return model


def head_inputs(auto_class: str, inputs: dict) -> dict:
    if auto_class == "AutoModelForMultipleChoice":
        return {key: value.unsqueeze(1).expand(-1, 2, -1).contiguous() for key, value in inputs.items()}
    return inputs


@pytest.fixture(scope="module")
def hub():
    with LocalHub() as hub:
        yield hub


@pytest.fixture(scope="module")
def shared(hub, tmp_path_factory, tiny_bert_path, teacher_path):
    """Push, once for the module: a converted student twice (the second with new weights), every head (one with
    transformers' own `push_to_hub`), a PEFT LoRA and a `save_tuned` artifact; return what each load must give."""
    work = tmp_path_factory.mktemp("hub")
    tokenizer = AutoTokenizer.from_pretrained(teacher_path)
    batch = dict(tokenizer(["a recursive student", "shared on the hub today"], padding=True, return_tensors="pt"))
    checks, plan = [], {"cli": [], "stock": [], "load_tuned": []}

    student = work / "student"
    convert_and_save(tiny_bert_path, student, ConversionArguments(embedding_size=16, recursion_lora_rank=2))
    for junk in ("checkpoint-5/optimizer.pt", "training_args.bin", "train.txt"):
        (student / junk).parent.mkdir(exist_ok=True)
        (student / junk).write_bytes(b"never uploaded")
    first = perturbed(minialbert.MiniAlbertForMaskedLM.from_pretrained(student), seed=1)
    first.save_pretrained(student)
    (student / "modeling_minialbert.py").write_text("# a stale copy from an older minialbert\n")
    first_expected = expected_outputs(first, batch, work / "student-1.pt")
    # The second push happens in a later client run, after the first one is read back.
    second_folder = work / "student-2"
    convert_and_save(tiny_bert_path, second_folder, ConversionArguments(embedding_size=16, recursion_lora_rank=2))
    second = perturbed(minialbert.MiniAlbertForMaskedLM.from_pretrained(second_folder), seed=2)
    second.save_pretrained(second_folder)
    checks.append(
        {"name": "student@main", "repo_id": "me/student", "auto_class": "AutoModelForMaskedLM", "expected": ""}
    )
    checks[-1]["expected"] = expected_outputs(second, batch, work / "student-2.pt")
    plan["cli"].append([str(student), "me/student", ["--commit_message", "first student"]])

    for index, (auto_class, model_class) in enumerate(HEADS.items()):
        torch.manual_seed(index)
        config = tiny_config(vocab_size=tokenizer.vocab_size, use_adapters=True, recursion_lora_rank=2)
        model = perturbed(model_class(config), seed=10 + index)
        folder = work / auto_class
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        repo_id = f"me/{auto_class.lower()}"
        if auto_class == "AutoModelForSequenceClassification":
            plan["stock"].append([str(folder), auto_class, repo_id])
        else:
            plan["cli"].append([str(folder), repo_id, []])
        inputs = head_inputs(auto_class, batch)
        path = expected_outputs(model, inputs, work / f"{auto_class}.pt")
        checks.append({"name": auto_class, "repo_id": repo_id, "auto_class": auto_class, "expected": path})

    # Adapters for the sequence classifier, saved against its local folder and pushed with --base_model.
    base_folder, base_repo = work / "AutoModelForSequenceClassification", "me/automodelforsequenceclassification"
    lora = peft.get_peft_model(
        minialbert.MiniAlbertForSequenceClassification.from_pretrained(base_folder),
        peft.LoraConfig(task_type="SEQ_CLS", target_modules=["query", "value", "ffn"], r=4),
    )
    perturbed(lora.base_model.model.minialbert.encoder.layer.attention.query.lora_B, seed=3)
    lora.save_pretrained(work / "lora")
    plan["cli"].append([str(work / "lora"), "me/lora", ["--base_model", base_repo]])
    checks.append(
        {
            "name": "lora",
            "repo_id": base_repo,
            "adapter": "me/lora",
            "auto_class": "AutoModelForSequenceClassification",
            "expected": expected_outputs(lora, batch, work / "lora.pt"),
        }
    )
    tuned = minialbert.MiniAlbertForSequenceClassification.from_pretrained(base_folder)
    enable_tuning(tuned, "adapters")
    perturbed(tuned.minialbert.encoder.adapters, seed=4)
    save_tuned(tuned, work / "tuned", base_model=base_repo)
    plan["cli"].append([str(work / "tuned"), "me/tuned", []])
    torch.save(batch, work / "inputs.pt")
    plan["load_tuned"].append(["me/tuned", str(work / "inputs.pt"), str(work / "tuned-loaded.pt")])
    with torch.no_grad():
        tuned_expected = tuned.eval()(**batch).to_tuple()

    env = client_env(hub, work / "pusher")
    (work / "plan.json").write_text(json.dumps(plan))
    run_client(sys.executable, PUSH_SCRIPT, work / "plan.json", env, work)
    first_card = hub.state.uploaded("me/student")["README.md"][0].decode()
    second_plan = {
        "cli": [
            [str(second_folder), "me/student", []],
            [str(student), "me/student", ["--create_pr"]],
            [str(student), "me/branchy", ["--revision", "experiment", "--private"]],
        ],
        "stock": [],
        "load_tuned": [],
    }
    (work / "plan-2.json").write_text(json.dumps(second_plan))
    run_client(sys.executable, PUSH_SCRIPT, work / "plan-2.json", env, work)
    first_revision = re.search(r'revision = "([0-9a-f]{40})"', first_card).group(1)
    checks.append(
        {
            "name": "student@first-push",
            "repo_id": "me/student",
            "revision": first_revision,
            "auto_class": "AutoModelForMaskedLM",
            "expected": first_expected,
        }
    )
    for name, repo_id, revision in (("student@pr", "me/student", "refs/pr/1"), ("branch", "me/branchy", "experiment")):
        checks.append(
            {
                "name": name,
                "repo_id": repo_id,
                "revision": revision,
                "auto_class": "AutoModelForMaskedLM",
                "expected": first_expected,
            }
        )
    (work / "checks.json").write_text(json.dumps(checks))
    return {
        "work": work,
        "checks": checks,
        "tuned": (torch.load(work / "tuned-loaded.pt"), tuned_expected),
        "first_card": first_card,
    }


def test_push_uploads_exactly_the_files_a_user_needs(hub, shared):
    files = hub.state.uploaded("me/student")
    assert set(files) == SHARED_FILES | {".gitattributes", "README.md", "tokenizer.json", "tokenizer_config.json"}
    assert files["model.safetensors"][1] and not files["config.json"][1]  # LFS and regular uploads
    package = Path(minialbert.__file__).parent
    for name in ("configuration_minialbert.py", "modeling_minialbert.py"):
        assert files[name][0] == (package / name).read_bytes()  # the code that checked the weights
    config = json.loads(files["config.json"][0])
    assert config["auto_map"] == minialbert.configuration_minialbert.AUTO_MAP
    assert set(hub.state.uploaded("me/lora")) == {
        ".gitattributes",
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
    }
    assert set(hub.state.uploaded("me/tuned")) == {
        ".gitattributes",
        "README.md",
        "minialbert_tuning.json",
        "tuned_parameters.safetensors",
    }
    assert ("POST", "/me/student.git/info/lfs/objects/batch") in hub.state.requests
    assert any(method == "PUT" and path.startswith("/lfs-upload/") for method, path in hub.state.requests)


def test_every_push_loads_back_with_trust_remote_code_identically(hub, shared):
    env = client_env(hub, shared["work"] / "loader")
    output = run_client(sys.executable, LOAD_SCRIPT, shared["work"] / "checks.json", env, shared["work"])
    assert output.count("loaded") == len(shared["checks"])
    got, want = shared["tuned"]
    for got_tensor, want_tensor in zip(got, want, strict=True):
        torch.testing.assert_close(got_tensor, want_tensor, rtol=0, atol=0)


@requires_transformers4
def test_uploaded_code_gives_identical_outputs_under_transformers_4(hub, shared):
    env = client_env(hub, shared["work"] / "loader-4")
    python = TRANSFORMERS4_PYTHON
    output = run_client(python, LOAD_SCRIPT, shared["work"] / "checks.json", env, shared["work"])
    assert output.count("loaded") == len(shared["checks"])
    assert " 4.57." in output


def test_revision_pull_request_and_private_options(hub, shared):
    student = hub.state.repos["me/student"]
    assert student.refs["main"] != student.refs["refs/pr/1"]  # the pull request left main alone
    pr_card = hub.state.uploaded("me/student", "refs/pr/1")["README.md"][0].decode()
    pr_upload = re.search(r'revision = "([0-9a-f]{40})"', pr_card).group(1)
    assert student.messages[pr_upload].startswith("Upload MiniAlbert model")
    branchy = hub.state.repos["me/branchy"]
    assert branchy.private
    assert set(hub.state.uploaded("me/branchy", "main")) == {".gitattributes"}
    assert "model.safetensors" in hub.state.uploaded("me/branchy", "experiment")


def test_card_metadata_usage_and_pinned_revision(hub, shared):
    repo = hub.state.repos["me/student"]
    upload_commit = next(oid for oid, message in repo.messages.items() if message == "first student")
    assert f'revision = "{upload_commit}"' in shared["first_card"]
    card = ModelCard(shared["first_card"])
    assert card.data.library_name == "transformers"
    assert card.data.pipeline_tag == "fill-mask"
    assert {"minialbert", "distillation", "recursive-transformer"} <= set(card.data.tags)
    assert 'AutoModelForMaskedLM.from_pretrained("me/student", revision=revision, trust_remote_code=True)' in card.text
    lora_card = ModelCard(hub.state.uploaded("me/lora")["README.md"][0].decode())
    assert lora_card.data.library_name == "peft"
    assert lora_card.data.base_model == "me/automodelforsequenceclassification"
    assert lora_card.data.pipeline_tag == "text-classification"
    assert re.search(r"Size: 0\.\d{3}M trained parameters", lora_card.text) and "Size: 0.000M" not in lora_card.text
    tuned_card = ModelCard(hub.state.uploaded("me/tuned")["README.md"][0].decode())
    assert 'load_tuned("me/tuned", revision=' in tuned_card.text


CARD_SNIPPETS = textwrap.dedent(
    """
    import re, sys

    card = open(sys.argv[1]).read()
    snippets = re.findall(r"```python\\n(.*?)```", card, re.S)
    for snippet in snippets:
        exec(snippet, {})  # as a user would paste it
    print("ran", len(snippets))
    """
)


@pytest.mark.parametrize("repo_id", ["me/student", "me/lora", "me/tuned"])
def test_every_card_snippet_runs_against_the_hub(hub, shared, repo_id):
    card = shared["work"] / f"{repo_id.replace('/', '--')}.md"
    card.write_text(hub.state.uploaded(repo_id)["README.md"][0].decode())
    env = client_env(hub, shared["work"] / "card-reader")
    assert run_client(sys.executable, CARD_SNIPPETS, card, env, shared["work"]).strip() == "ran 1"


def test_card_carries_measured_results_as_model_index(tmp_path, teacher_path):
    model = minialbert.MiniAlbertForSequenceClassification(tiny_config(vocab_size=30522))
    model.config.teacher_name_or_path = teacher_path
    model.save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(teacher_path).save_pretrained(tmp_path)
    results = [
        EvalResult("text-classification", "SetFit/bbc-news", "BBC News", "accuracy", 0.94, dataset_split="test"),
        EvalResult("text-classification", "SetFit/bbc-news", "BBC News", "f1", 0.93, dataset_split="test"),
    ]
    save_results(tmp_path, results)
    recipe = {"name": "paper", "reason": "--recipe paper", "sentence_pooling": "mean", "depth_weights": None}
    recipe |= {option: values for option, values in RECIPES["paper"].items() if not option.endswith("_weight")}
    recipe["weights"] = {"mlm": 1.0, "attention": 3.0, "hidden": 3.0, "logit": 0.0, "embedding": 0.0, "sentence": 0.0}
    summary = {
        "teacher": "sentence-transformers/all-MiniLM-L6-v2",
        "teacher_parameters": 22565376,
        "student_parameters": 6270000,
        "layer_map": [2, 4, 6],
        "recipe": recipe,
        "bf16_autocast": False,
        "train_samples": 40000,
        "held_out_windows": 256,
        "out_of_domain_sentences": 256,
        "broad_held_out_sentences": {},
        "trained_on_sources": [],
        "global_step": 561,
        "processes": 1,
        "train_runtime_seconds": 900.0,
        "train_tokens_per_second": 5000,
        "at_initialisation": {"hidden_cosine": 0.2613},
        "after_distillation": {"hidden_cosine": 0.7696},
        "agreement_by_depth": [],
        "agreement_curve": [],
        "teacher_figures": {},
    }
    (tmp_path / "distillation_summary.json").write_text(json.dumps(summary))
    card = model_card(tmp_path, "me/classifier", check_shareable(tmp_path), revision="abc")
    reloaded = ModelCard(str(card))
    assert reloaded.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"  # the bundled teacher's Hub id
    assert reloaded.data.datasets == ["SetFit/bbc-news"]
    name, parsed = model_index_to_eval_results(reloaded.data.to_dict()["model-index"])
    assert name == "classifier" and [(r.metric_type, r.metric_value) for r in parsed] == [
        ("accuracy", 0.94),
        ("f1", 0.93),
    ]
    assert "| hidden_cosine | 0.2613 | 0.7696 |" in card.text
    assert "mlm 1.0, attention 3.0, hidden 3.0" in card.text
    assert RESULTS_NAME not in check_shareable(tmp_path).files


def test_broken_folders_are_refused_before_any_upload(tmp_path, tiny_bert_path, teacher_path, capsys):
    # HF_HUB_OFFLINE=1 here: a push that reached the network would fail with an offline error instead.
    with pytest.raises(ValueError, match="'bert' model, not a MiniAlbert one"):
        push_to_hub(tiny_bert_path, "me/x")
    assert main(["push", str(tiny_bert_path), "me/x"]) == 2
    assert "minialbert push: error:" in capsys.readouterr().err
    model = minialbert.MiniAlbertForMaskedLM(tiny_config(vocab_size=30522))
    model.save_pretrained(tmp_path / "no-tokenizer")
    with pytest.raises(ValueError, match="has no tokenizer"):
        push_to_hub(tmp_path / "no-tokenizer", "me/x")
    model.save_pretrained(tmp_path / "small-vocab")
    config = json.loads((tmp_path / "small-vocab" / "config.json").read_text())
    AutoTokenizer.from_pretrained(teacher_path).save_pretrained(tmp_path / "small-vocab")
    (tmp_path / "small-vocab" / "config.json").write_text(json.dumps(config | {"hidden_size": 64}))
    with pytest.raises(ValueError, match="does not match its config"):
        push_to_hub(tmp_path / "small-vocab", "me/x")
    model.save_pretrained(tmp_path / "no-weights")
    AutoTokenizer.from_pretrained(teacher_path).save_pretrained(tmp_path / "no-weights")
    (tmp_path / "no-weights" / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="lacks model.safetensors"):
        push_to_hub(tmp_path / "no-weights", "me/x")
    enable_tuning(model, "adapters")
    save_tuned(model, tmp_path / "tuned", base_model=str(tmp_path / "no-tokenizer"))
    with pytest.raises(ValueError, match="not a Hub id"):
        push_to_hub(tmp_path / "tuned", "me/x")
    with pytest.raises(ValueError, match="is not a MiniAlbert folder"):
        push_to_hub(tmp_path, "me/x")
    config = json.loads((tmp_path / "no-tokenizer" / "config.json").read_text())
    (tmp_path / "no-tokenizer" / "config.json").write_text(
        json.dumps(config | {"architectures": ["MiniAlbertForFoo"]})
    )
    capsys.readouterr()
    assert main(["push", str(tmp_path / "no-tokenizer"), "me/x"]) == 2
    assert "Unknown MiniAlbert head 'MiniAlbertForFoo'; the heads are MiniAlbertModel," in capsys.readouterr().err


def test_checking_a_folder_never_runs_its_code(tmp_path, teacher_path):
    marker = tmp_path / "marker"
    for name, model_type in (("ours", None), ("foreign", "evil")):
        minialbert.MiniAlbertForMaskedLM(tiny_config(vocab_size=30522)).save_pretrained(tmp_path / name)
        AutoTokenizer.from_pretrained(teacher_path).save_pretrained(tmp_path / name)
        booby_trap(tmp_path / name, marker, model_type)
    assert check_shareable(tmp_path / "ours").head == "MiniAlbertForMaskedLM"
    with pytest.raises(ValueError, match="'evil' model, not a MiniAlbert one"):
        check_shareable(tmp_path / "foreign")
    assert not marker.exists()


SENTENCE_SCRIPT = textwrap.dedent(
    """
    import re, sys
    sys.modules["minialbert"] = None  # only the uploaded code may run
    import torch
    import transformers

    card, expected = open(sys.argv[1]).read(), torch.load(sys.argv[1].replace(".md", ".pt"))
    snippet = re.search(r"```python\\n(from sentence_transformers import .*?)```", card, re.S).group(1)
    namespace = {}
    exec(snippet, namespace)  # the card's own snippet, as a user would paste it
    torch.testing.assert_close(torch.as_tensor(namespace["embeddings"]), expected, rtol=1e-4, atol=1e-5)
    print("encoded with transformers", transformers.__version__)
    """
)


def _plan(work: Path, cli: list) -> Path:
    (work / "plan.json").write_text(json.dumps({"cli": cli, "stock": [], "load_tuned": []}))
    return work / "plan.json"


@pytest.fixture(scope="module")
def sentence_student(hub, tmp_path_factory, tiny_bert_path):
    """A student with sentence-transformers modules (mean pooling, normalised), pushed with the CLI; the card and
    the embeddings its snippet must give."""
    from minialbert.sentence_embeddings import SentenceModules, pool, save_sentence_modules

    work = tmp_path_factory.mktemp("sentence-hub")
    folder = work / "student"
    convert_and_save(tiny_bert_path, folder, ConversionArguments(embedding_size=16))
    model = perturbed(minialbert.MiniAlbertModel.from_pretrained(folder), seed=5)
    model.save_pretrained(folder)
    save_sentence_modules(SentenceModules("mean", normalize=True, max_seq_length=64), folder, model.config.hidden_size)
    run_client(
        sys.executable, PUSH_SCRIPT, _plan(work, [[str(folder), "me/sentences", []]]), client_env(hub, work), work
    )
    card = hub.state.uploaded("me/sentences")["README.md"][0].decode()
    (work / "card.md").write_text(card)
    batch = AutoTokenizer.from_pretrained(folder)(
        ["The first sentence.", "Another one."], padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        states = model.eval()(**batch).last_hidden_state
    torch.save(torch.nn.functional.normalize(pool(states, batch["attention_mask"]), dim=-1), work / "card.pt")
    return work, card


def test_sentence_students_push_their_modules_and_the_card_snippet_encodes(hub, sentence_student):
    work, card = sentence_student
    files = hub.state.uploaded("me/sentences")
    assert {"modules.json", "sentence_bert_config.json", "1_Pooling/config.json"} <= set(files)
    assert json.loads(files["1_Pooling/config.json"][0])["pooling_mode_mean_tokens"] is True
    data = ModelCard(card).data
    assert {"sentence-transformers", "sentence-similarity"} <= set(data.tags)
    assert "mean pooling and L2 normalisation" in card
    output = run_client(sys.executable, SENTENCE_SCRIPT, work / "card.md", client_env(hub, work / "st"), work)
    assert "encoded with transformers 5." in output


@requires_transformers4
def test_sentence_transformers_loads_students_under_transformers_4(hub, sentence_student):
    work, _ = sentence_student
    python = TRANSFORMERS4_PYTHON
    output = run_client(python, SENTENCE_SCRIPT, work / "card.md", client_env(hub, work / "st-4"), work)
    assert "encoded with transformers 4.57." in output


ONNX_CARD_SCRIPT = textwrap.dedent(
    """
    import os, re, sys

    card, client = open(sys.argv[1]).read(), os.environ["CARD_CLIENT"]
    if client != "minialbert":
        sys.modules["minialbert"] = None  # transformers, optimum and sentence-transformers users have the Hub files


    def client_of(snippet):
        if "optimum" in snippet or "sentence_transformers" in snippet:
            return "optimum"
        return "transformers" if "transformers.exporters" in snippet else "minialbert"


    snippets = re.findall(r"```python\\n(.*?)```", card[card.index("## ONNX") :], re.S)
    selected = [snippet for snippet in snippets if client_of(snippet) == client]
    for snippet in selected:
        exec(snippet, {})  # as a user would paste it
    print("ran", len(selected))
    """
)


@pytest.fixture(scope="module")
def onnx_student(hub, sentence_student):
    """The sentence student exported to ONNX (fp32, dynamic and static int8, with the runtime report of --bench) and
    pushed with --with_onnx; its card."""
    from minialbert import ExportArguments, export_student

    work, _ = sentence_student
    arguments = ExportArguments(task="feature-extraction", quantize=["int8", "int8-static"], bench=True)
    export_student(work / "student", arguments=arguments)
    run_client(
        sys.executable,
        PUSH_SCRIPT,
        _plan(work, [[str(work / "student"), "me/sentences-onnx", ["--with_onnx"]]]),
        client_env(hub, work),
        work,
    )
    card = work / "onnx-card.md"
    card.write_text(hub.state.uploaded("me/sentences-onnx")["README.md"][0].decode())
    return work, card


def test_push_with_onnx_uploads_the_checked_export_and_its_card_snippet_runs(hub, onnx_student):
    work, card = onnx_student
    files = hub.state.uploaded("me/sentences-onnx")
    expected = {"export.json", "model.onnx", "model.onnx.data", "model_quantized.onnx", "model_static_quantized.onnx",
                "runtime_report.json", "config.json", "tokenizer.json"}  # fmt: skip
    assert {f"onnx/{name}" for name in expected} <= set(files)
    for name in ("export.json", "model.onnx", "model.onnx.data"):
        assert files[f"onnx/{name}"][0] == (work / "student" / "onnx" / name).read_bytes()
    # Its code comes from the repository's root, which `ExportedModel.from_pretrained` does not download beside it.
    assert not {"onnx/modeling_minialbert.py", "onnx/configuration_minialbert.py"} & set(files)
    auto_map = json.loads(files["onnx/config.json"][0])["auto_map"]
    assert auto_map["AutoConfig"] == "me/sentences-onnx--configuration_minialbert.MiniAlbertConfig"
    assert "onnx" in ModelCard(card.read_text()).data.tags
    # The card says which runtime path won on the machine that exported it, with the measured table.
    report = json.loads(files["onnx/runtime_report.json"][0])
    assert f"| **{report['winner']}** |" in card.read_text()
    assert "Measured by `minialbert export --bench` on" in card.read_text()
    for client in ("transformers", "minialbert"):  # the transformers one in a process without minialbert
        env = client_env(hub, work / f"onnx-5-{client}") | {"CARD_CLIENT": client}
        output = run_client(sys.executable, ONNX_CARD_SCRIPT, card, env, work)
        assert re.search(r"torch\.Size\(\[1, \d+, 32\]\)", output) and "ran 1" in output, client


@requires_transformers4
def test_onnx_card_snippets_run_in_optimum_and_sentence_transformers(hub, onnx_student):
    work, card = onnx_student
    python = TRANSFORMERS4_PYTHON
    output = run_client(
        python, ONNX_CARD_SCRIPT, card, client_env(hub, work / "onnx-4") | {"CARD_CLIENT": "optimum"}, work
    )
    assert "ran 2" in output


def test_push_with_onnx_refuses_a_missing_or_stale_export(tmp_path, onnx_student):
    work, _ = onnx_student
    folder = tmp_path / "student"
    shutil.copytree(work / "student", folder)
    manifest = json.loads((folder / "onnx" / "export.json").read_text())
    (folder / "onnx" / "export.json").unlink()  # an export written before transformers' layout
    with pytest.raises(ValueError, match=r"onnx/export.json is missing or unreadable .*; re-export with `minialbert"):
        check_shareable(folder, with_onnx=True)
    manifest["components"]["model"]["file"] = "other.onnx"
    (folder / "onnx" / "export.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"describes a onnx export of \{'model': 'other.onnx'\}, not the one ONNX"):
        check_shareable(folder, with_onnx=True)
    manifest["components"]["model"]["file"] = "model.onnx"
    (folder / "onnx" / "export.json").write_text(json.dumps(manifest))
    perturbed(minialbert.MiniAlbertModel.from_pretrained(folder), seed=9).save_pretrained(folder)  # trained on
    with pytest.raises(ValueError, match="it was exported from other weights"):
        check_shareable(folder, with_onnx=True)
    shutil.rmtree(folder / "onnx")
    with pytest.raises(ValueError, match="export it first with `minialbert export"):
        check_shareable(folder, with_onnx=True)
