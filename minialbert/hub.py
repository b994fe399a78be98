"""Share students and adapters on the Hugging Face Hub, with a generated model card.

`push_to_hub` takes a folder written by `minialbert convert`, `minialbert distill`, a fine-tuning run, `save_tuned`
or PEFT's `save_pretrained`; checks that it is complete and loads; and uploads exactly the files a user needs
(config, weights, tokenizer and the installed package's two code files, or the adapter files) plus a
`README.md` model card. Training
states, checkpoints, data and tokens never leave the machine. Authentication is huggingface_hub's own
(`hf auth login` or `HF_TOKEN`).
"""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub import CommitInfo, CommitOperationAdd, EvalResult, HfApi, ModelCard, ModelCardData
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from transformers import AutoTokenizer

from . import modeling_minialbert
from .configuration_minialbert import AUTO_MAP, MiniAlbertConfig, head_of
from .distillation.summary import DistillationSummary
from .errors import BadInputError, as_bad_input
from .export import (
    ONNX_FILE,
    ONNX_TASKS,
    PARITY_TOLERANCE,
    QUANTIZATIONS,
    QUANTIZED_ONNX_FILE,
    STATIC_QUANTIZED_ONNX_FILE,
    task_of,
)
from .folders import CODE_FILES, TOKENIZER_FILES, read_minialbert_config, reading_weights
from .runtimes import RUNTIME_REPORT_FILE, OnnxRuntimeModel, RuntimeReport, max_difference
from .sentence_embeddings import SENTENCE_FILES, SentenceModules, read_sentence_modules
from .teacher import BUNDLED_TEACHER_FOLDER, BUNDLED_TEACHER_HUB_ID
from .tuning import TUNED_CONFIG_NAME, TUNED_WEIGHTS_NAME, load_tuned, trainable_parameters

RESULTS_NAME = "minialbert_results.json"
CITATION = "\n".join(
    [
        "@inproceedings{nouriborji2023minialbert,",
        "  title     = {MiniALBERT: Model Distillation via Parameter-Efficient Recursive Transformers},",
        "  author    = {Nouriborji, Mohammadmahdi and Rohanian, Omid and Kouchaki, Samaneh and Clifton, David A.},",
        "  booktitle = {Proceedings of the 17th Conference of the European Chapter of the Association for "
        "Computational Linguistics},",
        "  year      = {2023}",
        "}",
    ]
)


@dataclass
class Artifact:
    """A folder checked for sharing: its kind, the files to upload (path in repo -> bytes) and what the card needs."""

    kind: str  # "model", "tuned" (minialbert.save_tuned) or "peft"
    files: dict[str, bytes]
    head: str
    config: MiniAlbertConfig
    base_model: str | None
    parameters: dict[str, float] = field(default_factory=dict)
    sentence_modules: SentenceModules | None = None
    onnx_task: str | None = None  # set when the upload carries an ONNX export (onnx/)


def _is_hub_id(name: str | None) -> bool:
    if not name or os.path.exists(name):
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _hub_base_model(name: str | None) -> str | None:
    """The Hub id a card can name as base model: copies of the bundled teacher map to its Hub id. Matched by the
    package's folder name, so it works where the package is not installed and for paths from other machines."""
    if name and Path(name).parts[-2:] == BUNDLED_TEACHER_FOLDER:
        return BUNDLED_TEACHER_HUB_ID
    return name if _is_hub_id(name) else None


def _read(folder: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in names if (folder / name).is_file()}


def _check_onnx(folder: Path, model: modeling_minialbert.MiniAlbertPreTrainedModel) -> tuple[str, dict[str, bytes]]:
    """The export in `folder/onnx` (`minialbert export-onnx`): it must compute what the weights being uploaded
    compute (an export left from before further training is refused). Returns its task and files."""
    export = folder / "onnx"
    if not (export / ONNX_FILE).is_file():
        raise BadInputError(
            f"{folder} has no onnx/{ONNX_FILE}: export it first with `minialbert export-onnx {folder}`."
        )
    runner = OnnxRuntimeModel.from_pretrained(export)
    task_of(model.config, runner.task)  # an export of another head: a BadInputError naming what this one exports to
    reference = model.base_model if runner.task == "feature-extraction" else model
    difference = max_difference(reference.eval(), runner, runner.task)
    if difference > PARITY_TOLERANCE:
        raise BadInputError(
            f"{export}/{ONNX_FILE} does not compute what {folder}/model.safetensors does (difference "
            f"{difference:.2e}): it was exported from other weights. Re-export with `minialbert export-onnx "
            f"{folder} --overwrite_output_dir`."
        )
    files = _read(
        export,
        (
            ONNX_FILE,
            *QUANTIZATIONS.values(),
            RUNTIME_REPORT_FILE,
            "config.json",
            *TOKENIZER_FILES,
        ),
    )
    files |= _read(Path(modeling_minialbert.__file__).parent, CODE_FILES)
    return runner.task, {f"onnx/{name}": content for name, content in files.items()}


def _check_model(folder: Path, with_onnx: bool = False) -> Artifact:
    config = MiniAlbertConfig.from_pretrained(folder)
    if not (folder / "model.safetensors").is_file():
        raise BadInputError(f"{folder} lacks model.safetensors: save the model with save_pretrained.")
    head = (config.architectures or ["MiniAlbertModel"])[0]
    with as_bad_input(f"{folder}: "):  # an unknown head: the message names the known ones
        head_of(head)
    try:
        with reading_weights(str(folder), "save the model again (save_pretrained) or copy the folder again."):
            model, info = getattr(modeling_minialbert, head).from_pretrained(folder, output_loading_info=True)
    except RuntimeError as error:  # shapes that contradict the config
        raise BadInputError(f"{folder}/model.safetensors does not match its config ({head}): {error}") from error
    problems = {key: value for key, value in info.items() if value and key != "error_msgs"}
    if problems:
        raise BadInputError(f"{folder}/model.safetensors does not match its config ({head}): {problems}")

    tokenizer_files = _read(folder, TOKENIZER_FILES)
    if not {"tokenizer.json", "vocab.txt"} & set(tokenizer_files):
        raise BadInputError(
            f"{folder} has no tokenizer (tokenizer.json or vocab.txt): save the teacher's tokenizer into it with "
            "AutoTokenizer.from_pretrained(teacher).save_pretrained(folder)."
        )
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if len(tokenizer) > config.vocab_size:
        raise BadInputError(
            f"{folder}'s tokenizer has {len(tokenizer)} tokens but the model only {config.vocab_size} embeddings."
        )
    # Folders saved before every head was mapped get the complete auto_map, so each Auto class loads the upload.
    config_json = json.loads((folder / "config.json").read_text())
    config_json["auto_map"] = AUTO_MAP
    files = {
        "config.json": (json.dumps(config_json, indent=2, sort_keys=True) + "\n").encode(),
        **_read(folder, ("model.safetensors",)),
        # The installed package's code, the code that just loaded these weights (a folder's copy may be older).
        **_read(Path(modeling_minialbert.__file__).parent, CODE_FILES),
        **tokenizer_files,
    }
    # Sentence-transformers modules (written by `minialbert distill` for sentence-embedding teachers), read as data.
    sentence_modules = read_sentence_modules(str(folder)) if (folder / "modules.json").is_file() else None
    if sentence_modules is not None:
        files |= _read(folder, SENTENCE_FILES)
    onnx_task = None
    if with_onnx:
        onnx_task, onnx_files = _check_onnx(folder, model)
        files |= onnx_files
    return Artifact(
        "model",
        files,
        head,
        config,
        _hub_base_model(config.teacher_name_or_path or config.source_checkpoint),
        {"parameters": model.num_parameters()},
        sentence_modules,
        onnx_task,
    )


def _check_tuned(folder: Path, base_model: str | None) -> Artifact:
    description = json.loads((folder / TUNED_CONFIG_NAME).read_text())
    base = base_model or description.get("base_model")
    if not _is_hub_id(base):
        raise BadInputError(
            f"{folder}/{TUNED_CONFIG_NAME} names base model {base!r}, which is not a Hub id: push the base student "
            "first and pass its repo id as base_model (--base_model)."
        )
    if not (folder / TUNED_WEIGHTS_NAME).is_file():
        raise BadInputError(f"{folder} lacks {TUNED_WEIGHTS_NAME}: write it with minialbert.save_tuned.")
    try:
        model = load_tuned(folder, base)
    except OSError as error:
        raise BadInputError(f"Cannot load the base model {base!r} of {folder}: {error}") from error
    description["base_model"] = base
    files = {
        TUNED_CONFIG_NAME: (json.dumps(description, indent=2) + "\n").encode(),
        TUNED_WEIGHTS_NAME: (folder / TUNED_WEIGHTS_NAME).read_bytes(),
    }
    return Artifact("tuned", files, description["head"], model.config, base, _tuned_counts(model, description))


def _tuned_counts(model, description: dict) -> dict[str, float]:
    tuned = set(description["parameters"])
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name in tuned)
    return trainable_parameters(model)


def _check_peft(folder: Path, base_model: str | None) -> Artifact:
    from peft import PeftConfig, PeftModel

    peft_config = PeftConfig.from_pretrained(folder)
    base = base_model or peft_config.base_model_name_or_path
    if not _is_hub_id(base):
        raise BadInputError(
            f"{folder}/adapter_config.json names base model {base!r}, which is not a Hub id: push the base student "
            "first and pass its repo id as base_model (--base_model)."
        )
    if not (folder / "adapter_model.safetensors").is_file():
        raise BadInputError(
            f"{folder} lacks adapter_model.safetensors: save the adapter with PeftModel.save_pretrained."
        )
    # The base's config.json is read as data and the base loads through the installed package's own classes, so
    # no code stored in the base repository runs.
    base_config = read_minialbert_config(
        base, f"The adapter's base model {base!r}", "pass the Hub id of the MiniAlbert student it was trained on."
    )
    head = (base_config.architectures or ["MiniAlbertModel"])[0]
    with as_bad_input(f"{folder}: "):  # an unknown head: the message names the known ones
        head_of(head)
    base_instance = getattr(modeling_minialbert, head).from_pretrained(base)
    config = base_instance.config
    # Trainable, so the card can count the adapter's parameters.
    model = PeftModel.from_pretrained(base_instance, folder, is_trainable=True)
    adapter_config = json.loads((folder / "adapter_config.json").read_text())
    adapter_config["base_model_name_or_path"] = base
    files = {
        "adapter_config.json": (json.dumps(adapter_config, indent=2, sort_keys=True) + "\n").encode(),
        **_read(folder, ("adapter_model.safetensors",)),
    }
    trainable, total = model.get_nb_trainable_parameters()
    counts = {"trainable": trainable, "total": total, "share": round(trainable / total, 4)}
    return Artifact("peft", files, head, config, base, counts)


def check_shareable(folder: str | os.PathLike, base_model: str | None = None, with_onnx: bool = False) -> Artifact:
    """Check that `folder` is a complete student, `save_tuned` artifact or PEFT adapter that loads, and collect the
    files to upload (with `with_onnx`, a student's ONNX export too). Raises BadInputError naming what is wrong and how
    to fix it; nothing is uploaded then."""
    path = Path(folder)
    if not path.is_dir():
        raise BadInputError(f"{folder!r} is not a folder.")
    if with_onnx and not (path / "config.json").is_file():
        raise BadInputError(f"--with_onnx shares a student's ONNX export; {folder} is an adapter, not a student.")
    if (path / "adapter_config.json").is_file():
        return _check_peft(path, base_model)
    if (path / TUNED_CONFIG_NAME).is_file():
        return _check_tuned(path, base_model)
    if (path / "config.json").is_file():
        read_minialbert_config(path, str(folder), "convert it first with `minialbert convert`.")
        return _check_model(path, with_onnx)
    raise BadInputError(
        f"{folder} is not a MiniAlbert folder: expected config.json (a student), {TUNED_CONFIG_NAME} (save_tuned) "
        "or adapter_config.json (PEFT)."
    )


def save_results(folder: str | os.PathLike, results: list[EvalResult]) -> None:
    """Record measured results next to a model; `push_to_hub` puts them into the card's `model-index`."""
    records = [{key: value for key, value in vars(result).items() if value is not None} for result in results]
    Path(folder, RESULTS_NAME).write_text(json.dumps(records, indent=2) + "\n")


def _load_results(folder: Path) -> list[EvalResult]:
    path = folder / RESULTS_NAME
    return [EvalResult(**record) for record in json.loads(path.read_text())] if path.is_file() else []


def _recipe(config: MiniAlbertConfig, summary: DistillationSummary | None) -> list[str]:
    rows = [
        ("recursions of the shared layer", config.num_hidden_layers),
        ("hidden size H / embedding size E", f"{config.hidden_size} / {config.embedding_size}"),
        ("attention heads / FFN size", f"{config.num_attention_heads} / {config.intermediate_size}"),
        (
            "per-recursion adapters",
            f"yes (reduction {config.adapter_reduction_factor})" if config.use_adapters else "no",
        ),
        ("per-recursion relaxation rank", config.recursion_lora_rank or "none"),
        ("teacher layer per recursion", config.teacher_layer_map or "-"),
        ("initialised from", config.conversion_init or "-"),
    ]
    if config.source_checkpoint:
        revision = f" at revision `{config.source_revision}`" if config.source_revision else ""
        rows.append(("imported from", f"`{config.source_checkpoint}`{revision} (`minialbert import-published`)"))
    if summary:
        rows += [
            ("distillation recipe", f"{summary.recipe.name}: {summary.recipe.reason}"),
            (
                "distillation loss weights",
                _weights({name: value for name, value in summary.recipe.weights.items() if value}),
            ),
            ("distillation steps", summary.global_step),
        ]
    return ["| | |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)]


def _weights(weights: dict[str, float] | None) -> str:
    return ", ".join(f"{name} {value}" for name, value in weights.items() if value) or "-"


def _usage(artifact: Artifact, repo_id: str, revision: str) -> str:
    auto_class = head_of(artifact.head).auto_class
    if artifact.sentence_modules is not None:
        steps = f"{artifact.sentence_modules.pooling} pooling" + (
            " and L2 normalisation" if artifact.sentence_modules.normalize else ""
        )
        sentence_usage = f"""Sentence embeddings ({steps}, as the teacher computes them), with sentence-transformers:

```python
from sentence_transformers import SentenceTransformer

model = SentenceTransformer("{repo_id}", revision="{revision}", trust_remote_code=True)
embeddings = model.encode(["The first sentence.", "Another one."])
```

Or the bare model with transformers:

"""
    else:
        sentence_usage = ""
    if artifact.kind == "model":
        return (
            sentence_usage
            + f"""```python
from transformers import AutoTokenizer, {auto_class}

# trust_remote_code runs this repository's configuration and modeling code: pin the revision you reviewed.
revision = "{revision}"
tokenizer = AutoTokenizer.from_pretrained("{repo_id}", revision=revision, trust_remote_code=True)
model = {auto_class}.from_pretrained("{repo_id}", revision=revision, trust_remote_code=True)
```"""
        )
    if artifact.kind == "peft":
        return f"""```python
from peft import PeftModel
from transformers import {auto_class}

base = {auto_class}.from_pretrained("{artifact.base_model}", trust_remote_code=True)
model = PeftModel.from_pretrained(base, "{repo_id}", revision="{revision}")
```"""
    return f"""```python
from minialbert import load_tuned  # pip install minialbert

model = load_tuned("{repo_id}", revision="{revision}")  # loads {artifact.base_model} and puts the tuned weights on
```"""


def _onnx_usage(artifact: Artifact, repo_id: str, revision: str) -> list[str]:
    """The card's ONNX section: the minialbert runner (any transformers), optimum and sentence-transformers
    (their ONNX support needs optimum-onnx, which installs beside transformers < 4.58)."""
    output, ort_class = ONNX_TASKS[artifact.onnx_task].output_names[0], ONNX_TASKS[artifact.onnx_task].ort_model_class
    quantized = "".join(
        f"`onnx/{file_name}` ({kind}) and "
        for file_name, kind in ((QUANTIZED_ONNX_FILE, "dynamic int8"), (STATIC_QUANTIZED_ONNX_FILE, "static int8"))
        if f"onnx/{file_name}" in artifact.files
    )
    sections = [
        "## ONNX",
        f"`onnx/` holds {quantized}`onnx/model.onnx` (fp32), exported with `minialbert export-onnx` for "
        f"`{artifact.onnx_task}` and checked against the PyTorch weights of this upload. With ONNX Runtime alone:",
        f"""```python
from huggingface_hub import snapshot_download
from transformers import AutoTokenizer

from minialbert import OnnxRuntimeModel  # pip install "minialbert[onnx]"

folder = snapshot_download("{repo_id}", revision="{revision}", allow_patterns=["onnx/*"]) + "/onnx"
model = OnnxRuntimeModel.from_pretrained(folder)  # file_name="model_quantized.onnx" for int8
tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
outputs = model(**tokenizer(["ONNX Runtime runs the student."], return_tensors="pt"))
print(outputs.{output}.shape)
```""",
        'With optimum (`pip install "optimum-onnx[onnxruntime]"`, which needs transformers < 4.58):',
        f"""```python
from optimum.onnxruntime import {ort_class}
from transformers import AutoTokenizer

model = {ort_class}.from_pretrained("{repo_id}", subfolder="onnx", revision="{revision}", trust_remote_code=True)
tokenizer = AutoTokenizer.from_pretrained("{repo_id}", revision="{revision}", trust_remote_code=True)
outputs = model(**tokenizer(["ONNX Runtime runs the student."], return_tensors="pt"))
```""",
    ]
    report = artifact.files.get(f"onnx/{RUNTIME_REPORT_FILE}")
    if report is not None:
        report = RuntimeReport.from_dict(json.loads(report))
        sections += [
            f"Which way runs fastest depends on the machine. Measured by `minialbert export-onnx --bench` on "
            f"{report.cpu} ({report.threads} threads), fastest first; `minialbert bench` measures yours:",
            report.table(),
        ]
    if artifact.sentence_modules is not None and artifact.onnx_task == "feature-extraction":
        sections += [
            "sentence-transformers' ONNX backend (through optimum) finds the file itself:",
            f"""```python
from sentence_transformers import SentenceTransformer

model = SentenceTransformer("{repo_id}", backend="onnx", revision="{revision}", trust_remote_code=True)
embeddings = model.encode(["The first sentence.", "Another one."])
```""",
        ]
    return sections


def model_card(folder: str | os.PathLike, repo_id: str, artifact: Artifact, revision: str = "main") -> ModelCard:
    """The README.md of a shared student or adapter: Hub metadata, the recipe, measured results, usage, citation."""
    path = Path(folder)
    summary = DistillationSummary.read(path)
    results = _load_results(path)
    library = {"model": "transformers", "peft": "peft", "tuned": None}[artifact.kind]
    data = ModelCardData(
        language="en",
        license="apache-2.0",
        library_name=library,
        pipeline_tag=head_of(artifact.head).pipeline_tag,
        tags=["minialbert", "distillation", "recursive-transformer", "parameter-efficient", "custom_code"]
        + (["adapter"] if artifact.kind != "model" else [])
        + (["sentence-transformers", "sentence-similarity"] if artifact.sentence_modules else [])
        + (["onnx"] if artifact.onnx_task else []),
        base_model=artifact.base_model,
        datasets=sorted({result.dataset_type for result in results}) or None,
        model_name=repo_id.split("/")[-1],
        eval_results=results or None,
    )
    what = {
        "model": f"a MiniALBERT student (`{artifact.head}`): one transformer layer applied "
        f"{artifact.config.num_hidden_layers} times over factorised embeddings",
        "peft": f"a PEFT adapter for the MiniALBERT student [{artifact.base_model}](https://huggingface.co/"
        f"{artifact.base_model}) (`{artifact.head}`)",
        "tuned": f"parameter-efficient tuned weights (minialbert `save_tuned`) for the MiniALBERT student "
        f"[{artifact.base_model}](https://huggingface.co/{artifact.base_model}) (`{artifact.head}`)",
    }[artifact.kind]
    counts = artifact.parameters
    if "parameters" in counts:
        size = f"{counts['parameters'] / 1e6:.2f}M parameters"
        if summary:
            size += f" (teacher: {summary.teacher_parameters / 1e6:.2f}M)"
    else:
        size = f"{counts['trainable'] / 1e6:.3f}M trained parameters of {counts['total'] / 1e6:.2f}M"
    sections = [
        f"# {repo_id.split('/')[-1]}",
        f"This repository holds {what}, made with [minialbert](https://pypi.org/project/minialbert/) "
        f"(MiniALBERT, Nouriborji et al., EACL 2023). Size: {size}.",
        "## Recipe",
        "\n".join(_recipe(artifact.config, summary)),
    ]
    if summary:
        rows = [
            f"| {name} | {summary.at_initialisation[name]:.4f} | {value:.4f} |"
            for name, value in summary.after_distillation.items()
        ]
        sections += [
            "## Distillation",
            f"Agreement with the teacher on {summary.held_out_windows} held-out windows (`ood_`: "
            f"{summary.out_of_domain_sentences} sentences from another source"
            + (
                f"; `broad_`: {sum(summary.broad_held_out_sentences.values())} held-out sentences of "
                f"{', '.join(summary.broad_held_out_sentences)}"
                if summary.broad_held_out_sentences
                else ""
            )
            + f"), before and after {summary.global_step} distillation steps:",
            "\n".join(["| metric | at initialisation | distilled |", "|---|---|---|", *rows]),
        ]
    if results:
        rows = [
            f"| {result.dataset_name} ({result.dataset_split or '-'}) | {result.metric_type} | {result.metric_value} |"
            for result in results
        ]
        sections += ["## Results", "\n".join(["| data | metric | value |", "|---|---|---|", *rows])]
    sections += [
        "## Usage",
        _usage(artifact, repo_id, revision),
        "`trust_remote_code=True` runs the Python code stored in the repository on your machine. Read "
        "`modeling_minialbert.py` and pin `revision` to the commit you read, so later pushes cannot change the code "
        "you run. The code supports transformers 4.57 and 5.x.",
        *(_onnx_usage(artifact, repo_id, revision) if artifact.onnx_task else []),
        "## Citation",
        f"```bibtex\n{CITATION}\n```",
    ]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n\n".join(sections) + "\n")


def push_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    create_pr: bool = False,
    base_model: str | None = None,
    with_onnx: bool = False,
    token: str | None = None,
) -> CommitInfo:
    """Upload a student or adapter folder with its model card; returns the commit that carries the card.

    Two commits: the files with a card pinned to `revision` (or main), then the card again, its usage snippet
    pinned to the first commit, so copying the snippet pins exactly the code and weights that were checked.

    Args:
        folder: a student folder (convert, distill, fine-tuning), a `save_tuned` folder or a PEFT adapter folder.
        repo_id: `namespace/name` on the Hub; created when missing.
        private: create the repository private (existing repositories keep their visibility).
        revision: branch to push to; created from main when missing.
        commit_message: message of the upload commit.
        create_pr: open a pull request instead of committing to the branch.
        base_model: Hub id of the base student, for adapters whose folder names a local path.
        with_onnx: also upload the student's ONNX export (`minialbert export-onnx`, in `folder/onnx`), once it is
            checked against the weights being uploaded; the card shows how to run it.
        token: a Hub token; by default huggingface_hub's own (`hf auth login`, `HF_TOKEN`).
    """
    with as_bad_input(f"repo_id {repo_id!r}: "):
        validate_repo_id(repo_id)
    artifact = check_shareable(folder, base_model, with_onnx)
    api = HfApi(token=token)
    card = model_card(folder, repo_id, artifact, revision or "main")
    api.create_repo(repo_id, private=private, exist_ok=True)
    if revision:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    operations = [CommitOperationAdd(path, content) for path, content in sorted(artifact.files.items())]
    operations.append(CommitOperationAdd("README.md", str(card).encode()))
    upload = api.create_commit(
        repo_id,
        operations,
        commit_message=commit_message or f"Upload MiniAlbert {artifact.kind} ({artifact.head})",
        revision=revision,
        create_pr=create_pr,
    )
    card = model_card(folder, repo_id, artifact, upload.oid)
    return api.create_commit(
        repo_id,
        [CommitOperationAdd("README.md", str(card).encode())],
        commit_message="Pin the model card's usage snippet to the upload commit",
        revision=upload.pr_revision or revision,
    )
