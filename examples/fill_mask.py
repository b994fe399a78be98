"""Run fill-mask on a saved MiniAlbert folder, loaded as remote code exactly as a Hub user would.

    python examples/fill_mask.py outputs/student --text "The stock market [MASK] sharply today."

The folder needs a tokenizer beside the weights (`minialbert convert` saves the teacher's).
"""

import argparse

from transformers import pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="A MiniAlbert folder or Hub id with a masked-LM head and a tokenizer.")
    parser.add_argument("--text", default="The stock market [MASK] sharply after the announcement.")
    parser.add_argument("--top_k", type=int, default=5)
    args = parser.parse_args()

    fill_mask = pipeline("fill-mask", model=args.model, trust_remote_code=True)
    print(f"{type(fill_mask.model).__name__} from {type(fill_mask.model).__module__}")
    for prediction in fill_mask(args.text.replace("[MASK]", fill_mask.tokenizer.mask_token), top_k=args.top_k):
        print(f"  {prediction['score']:.4f}  {prediction['sequence']}")


if __name__ == "__main__":
    main()
