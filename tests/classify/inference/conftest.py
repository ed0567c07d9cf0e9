"""The inference tests need Keras; their ``tiny_bundle`` is the shared one (``tests/conftest.py``)."""

import pytest

pytest.importorskip("keras")
