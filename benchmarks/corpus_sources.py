"""The corpus sources installed on this machine (`minialbert.corpora.SOURCES`): documents and words of each, and
how many go to training and to the held-out part with the default split.

    python benchmarks/corpus_sources.py     # prints the table of sources in docs/distillation.md
"""

import re

from minialbert.corpora import SOURCES, SourceNotInstalled, read_source, source_splits
from minialbert.data import DataArguments


def main() -> None:
    arguments = DataArguments()
    print("| source | domain | licence | installs with | documents | words | training / held-out documents |")
    print("|---|---|---|---|---:|---:|---:|")
    for name, source in SOURCES.items():
        try:
            documents = read_source(name)
        except SourceNotInstalled as missing:
            print(f"| `{name}` | {source.domain} | {source.licence} | `{source.install}` | missing: {missing} | | |")
            continue
        words = sum(len(re.findall(r"[A-Za-z]+", text)) for text in documents)
        train, held_out = source_splits(name, arguments.validation_split_percentage / 100, arguments.split_seed)
        print(
            f"| `{name}` | {source.domain} | {source.licence} | `{source.install}` | {len(documents):,} | "
            f"{words / 1e6:.2f}M | "
            f"{len(train):,} / {len(held_out):,} |"
        )


if __name__ == "__main__":
    main()
