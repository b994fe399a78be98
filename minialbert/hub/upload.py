"""`push_to_hub`: check a folder (`minialbert.hub.checks`), upload exactly its shareable files with its model card
(`minialbert.hub.card`), then pin the card's snippets to that upload."""

import json
import os

from huggingface_hub import CommitInfo, CommitOperationAdd, HfApi
from huggingface_hub.utils import validate_repo_id

from ..errors import as_bad_input
from .card import model_card
from .checks import check_shareable


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
        with_onnx: also upload the student's ONNX export (`minialbert export`, in `folder/onnx`), once it is
            checked against the weights being uploaded; the card shows how to run it.
        token: a Hub token; by default huggingface_hub's own (`hf auth login`, `HF_TOKEN`).
    """
    with as_bad_input(f"repo_id {repo_id!r}: "):
        validate_repo_id(repo_id)
    artifact = check_shareable(folder, base_model, with_onnx)
    if with_onnx:
        artifact.files["onnx/config.json"] = _config_with_code_from(artifact.files["onnx/config.json"], repo_id)
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


def _config_with_code_from(config: bytes, repo_id: str) -> bytes:
    """The export's config with its code classes referenced in `repo_id` (`repo_id--module.Class`, transformers'
    syntax): `ExportedModel.from_pretrained(repo_id, subfolder="onnx")` downloads the files its manifest names and the
    config, not code files beside them, so the config's code comes from the repository's root, where the student's
    own code files are (from its main branch, where transformers looks for code referenced this way)."""
    values = json.loads(config)
    values["auto_map"] = {
        auto: f"{repo_id}--{reference.split('--')[-1]}" for auto, reference in values["auto_map"].items()
    }
    return (json.dumps(values, indent=2, sort_keys=True) + "\n").encode()
