"""What may be shared: `check_shareable` checks that a folder is a complete student, `save_tuned` artifact or PEFT
adapter that loads (and, with an ONNX export, that the export computes what the weights do), and collects exactly the
files to upload (`Artifact`)."""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from transformers import AutoTokenizer

from .. import modeling_minialbert
from ..configuration_minialbert import AUTO_MAP, MiniAlbertConfig, head_of
from ..errors import BadInputError, as_bad_input
from ..export import (
    EXPORT_MANIFEST_FILE,
    ONNX_FILE,
    PARITY_TOLERANCE,
    QUANTIZATIONS,
    task_of,
)
from ..folders import CODE_FILES, TOKENIZER_FILES, read_minialbert_config, reading_weights
from ..runtimes import RUNTIME_REPORT_FILE, OnnxRuntimeModel, max_difference
from ..sentence_embeddings import SENTENCE_FILES, SentenceModules, read_sentence_modules
from ..teacher import BUNDLED_TEACHER_FOLDER, BUNDLED_TEACHER_HUB_ID
from ..tuning import TUNED_CONFIG_NAME, TUNED_WEIGHTS_NAME, load_tuned, trainable_parameters


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


def hub_base_model(name: str | None) -> str | None:
    """The Hub id a card can name as base model: copies of the bundled teacher map to its Hub id. Matched by the
    package's folder name, so it works where the package is not installed and for paths from other machines."""
    if name and Path(name).parts[-2:] == BUNDLED_TEACHER_FOLDER:
        return BUNDLED_TEACHER_HUB_ID
    return name if _is_hub_id(name) else None


def _read(folder: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in names if (folder / name).is_file()}


def _check_onnx(folder: Path, model: modeling_minialbert.MiniAlbertPreTrainedModel) -> tuple[str, dict[str, bytes]]:
    """The export in `folder/onnx` (`minialbert export`): it must compute what the weights being uploaded
    compute (an export left from before further training is refused). Returns its task and files."""
    export = folder / "onnx"
    if not (export / ONNX_FILE).is_file():
        raise BadInputError(f"{folder} has no onnx/{ONNX_FILE}: export it first with `minialbert export {folder}`.")
    _check_manifest(export)
    runner = OnnxRuntimeModel.from_pretrained(export)
    task_of(model.config, runner.task)  # an export of another head: a BadInputError naming what this one exports to
    reference = model.base_model if runner.task == "feature-extraction" else model
    difference = max_difference(reference.eval(), runner, runner.task)
    if difference > PARITY_TOLERANCE:
        raise BadInputError(
            f"{export}/{ONNX_FILE} does not compute what {folder}/model.safetensors does (difference "
            f"{difference:.2e}): it was exported from other weights. Re-export with `minialbert export "
            f"{folder} --overwrite_output_dir`."
        )
    files = _read(
        export,
        (
            EXPORT_MANIFEST_FILE,
            ONNX_FILE,
            f"{ONNX_FILE}.data",
            *QUANTIZATIONS.values(),
            RUNTIME_REPORT_FILE,
            "config.json",
            *TOKENIZER_FILES,
        ),
    )
    return runner.task, {f"onnx/{name}": content for name, content in files.items()}


def _check_manifest(export: Path) -> None:
    """`export` is the single-graph ONNX `ExportedModel` `minialbert export` writes: its manifest (read as data)
    names `model.onnx`, which `ExportedModel.from_pretrained(repo_id, subfolder="onnx")` then fetches."""
    fix = f"re-export with `minialbert export {export.parent} --overwrite_output_dir`"
    try:
        manifest = json.loads((export / EXPORT_MANIFEST_FILE).read_text(encoding="utf-8"))
        components = {name: entry["file"] for name, entry in manifest["components"].items()}
        export_format = manifest["export_format"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise BadInputError(f"{export}/{EXPORT_MANIFEST_FILE} is missing or unreadable ({error}); {fix}.") from error
    if export_format != "onnx" or components != {"model": ONNX_FILE}:
        raise BadInputError(
            f"{export}/{EXPORT_MANIFEST_FILE} describes a {export_format} export of {components}, not the one ONNX "
            f"graph {ONNX_FILE}; {fix}."
        )


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
        hub_base_model(config.teacher_name_or_path or config.source_checkpoint),
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
