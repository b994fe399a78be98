"""Stand-in for transformers' `tests/generation/test_utils.py`, which the sdist does not ship.

MiniAlbert is an encoder: no head can `generate`, so the common tests require that the tester does *not* inherit
`GenerationTesterMixin` (`test_generation_tester_mixin_inheritance`), and only the class itself is needed.
"""


class GenerationTesterMixin:
    pass
