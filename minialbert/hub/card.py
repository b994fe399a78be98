"""The model card of a shared folder (`model_card`): what it is, how it was made (the distillation summary, the
recipe, the runtime report), its scores (`save_results`), and usage snippets pinned to the upload's revision."""

import json
import os
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..configuration_minialbert import MiniAlbertConfig, head_of
from ..distillation.summary import DistillationSummary
from ..export import (
    ONNX_TASKS,
    QUANTIZED_ONNX_FILE,
    STATIC_QUANTIZED_ONNX_FILE,
)
from ..runtimes import RUNTIME_REPORT_FILE, RuntimeReport
from .checks import Artifact

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
        f"`onnx/` holds {quantized}`onnx/model.onnx` (fp32), exported with `minialbert export` for "
        f"`{artifact.onnx_task}` and checked against the PyTorch weights of this upload. It is an export of "
        "transformers' own exporters: with transformers and ONNX Runtime alone "
        "(`pip install onnxruntime onnxscript`):",
        f"""```python
from transformers import AutoTokenizer
from transformers.exporters import ExportedModel

model = ExportedModel.from_pretrained("{repo_id}", subfolder="onnx", revision="{revision}", trust_remote_code=True)
tokenizer = AutoTokenizer.from_pretrained("{repo_id}", revision="{revision}", trust_remote_code=True)
outputs = model(**tokenizer(["ONNX Runtime runs the student."], return_tensors="pt"))
print(outputs.{output}.shape)
```""",
        "minialbert's runner runs padded batches faster (rows of similar length together) and runs the int8 "
        "copies too:",
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
            f"Which way runs fastest depends on the machine. Measured by `minialbert export --bench` on "
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
