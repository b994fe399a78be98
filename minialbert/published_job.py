"""`minialbert import-published`: read a checkpoint the paper's authors published (`minialbert.published`) as data,
check that every weight finds its place, and write it as a MiniAlbert folder, atomically."""

import json
import logging
import os
from pathlib import Path

from .errors import BadInputError
from .folders import claim_output, write_folder
from .published import (
    ImportArguments,
    config_from_published,
    describe_other_kinds,
    head_class,
    load_weights,
    map_keys,
    published_tokenizer,
    read_checkpoint,
)

logger = logging.getLogger(__name__)


def import_published(
    source: str | os.PathLike,
    output_dir: str | os.PathLike,
    arguments: ImportArguments | None = None,
    overwrite: bool = False,
) -> Path:
    """Import a published MiniALBERT checkpoint (folder or Hub id) into a MiniAlbert folder at `output_dir`.

    Every key must find its place and every place its key, with the shape the config gives it; any other
    checkpoint is refused with what it is and which command fits. Nothing is written on failure.
    """
    with claim_output(output_dir, overwrite):  # checked and locked before the checkpoint is read
        return _import_published(source, output_dir, arguments or ImportArguments(), overwrite)


def _import_published(
    source: str | os.PathLike, output_dir: str | os.PathLike, arguments: ImportArguments, overwrite: bool
) -> Path:
    folder, commit = read_checkpoint(source, arguments.revision)
    if not (folder / "config.json").is_file():
        raise BadInputError(f"{source} has no config.json; it is not a model checkpoint.")
    try:
        published = json.loads((folder / "config.json").read_text())
    except ValueError as error:
        raise BadInputError(
            f"{folder / 'config.json'} is not JSON ({error}): the file is cut off or corrupted; download or copy "
            "it again."
        ) from error
    weights = load_weights(folder)
    describe_other_kinds(published, set(weights), folder)
    head = head_class(published, set(weights), folder)
    config = config_from_published(published, head, folder)
    config.source_checkpoint = str(source)
    config.source_revision = commit or arguments.revision
    tokenizer = published_tokenizer(folder, arguments.tokenizer)

    model = head(config)
    state, sources = map_keys(weights, head, config.num_hidden_layers)
    expected = model.state_dict()
    missing, unplaced = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing:
        names = ", ".join(sources.get(key, key) for key in missing[:8])
        raise BadInputError(f"{source} lacks weights its config calls for: {names}.")
    if unplaced:
        raise BadInputError(f"{source} has weights its config has no place for: {', '.join(unplaced[:8])}.")
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise BadInputError(
                f"{source}: {key} has shape {tuple(tensor.shape)}, the config calls for {tuple(expected[key].shape)}."
            )
    model.load_state_dict(state, strict=True)
    if len(tokenizer) > config.vocab_size:
        raise BadInputError(f"{source}'s tokenizer has {len(tokenizer)} tokens for {config.vocab_size} embeddings.")

    def write(staging: Path) -> None:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)

    path = write_folder(output_dir, write, overwrite)
    logger.info("Imported %s (%s) into %s.", source, head.__name__, path)
    return path
