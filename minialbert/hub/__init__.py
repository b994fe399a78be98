"""Share students and adapters on the Hugging Face Hub, with a generated model card: `checks` (what may be
shared), `card` (the model card), `upload` (`push_to_hub`).

`push_to_hub` takes a folder written by `minialbert convert`, `minialbert distill`, a fine-tuning run, `save_tuned`
or PEFT's `save_pretrained`; checks that it is complete and loads; and uploads exactly the files a user needs
(config, weights, tokenizer and the installed package's two code files, or the adapter files) plus a
`README.md` model card. Training
states, checkpoints, data and tokens never leave the machine. Authentication is huggingface_hub's own
(`hf auth login` or `HF_TOKEN`).
"""

from .card import CITATION, RESULTS_NAME, model_card, save_results
from .checks import Artifact, check_shareable
from .upload import push_to_hub

__all__ = ["CITATION", "RESULTS_NAME", "Artifact", "check_shareable", "model_card", "push_to_hub", "save_results"]
