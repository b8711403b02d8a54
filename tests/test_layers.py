"""The layer contracts ``make lint`` checks (``.importlinter``, run by import-linter).

The real tree keeps every contract; a copy of the tree with one deliberate violation added
breaks the contract that forbids it, so the check cannot pass whatever the code imports.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("apps", "bodybroker", "inference", "npc_runtime")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


NO_DJANGO = "inference and npc_runtime import no Django, apps or bodybroker"
LAYERS = "Layers: project wiring > apps > inference | npc_runtime"
NO_SETTINGS = "Settings are read through django.conf, not bodybroker.settings"
ROUTER_ALONE = "apps.router imports no other app of ours but apps.security"
ROUTER_TABLES = "Other apps reach the router's tables through its selectors/services"
CONTRACTS = (NO_DJANGO, LAYERS, NO_SETTINGS, ROUTER_ALONE, ROUTER_TABLES)


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` run in ``root`` with its ``.importlinter``, as ``make lint`` runs it."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        # rich wraps the report at the terminal's width, 80 columns without a terminal
        env={**os.environ, "COLUMNS": "1000"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def verdicts(output: str) -> dict[str, str]:
    """Each contract's name and its verdict (``KEPT`` or ``BROKEN``) from the report."""
    found = re.findall(r"^(.+?) ?(KEPT|BROKEN)\b", output, flags=re.MULTILINE)
    return {name.strip(): verdict for name, verdict in found}


def test_the_tree_keeps_every_layer_contract() -> None:
    result = lint_imports(ROOT)

    assert result.returncode == 0, result.stdout + result.stderr
    assert verdicts(result.stdout) == dict.fromkeys(CONTRACTS, "KEPT")


@pytest.mark.parametrize(
    ("module", "line", "broken", "offence"),
    [
        ("inference/errors.py", "import django", {NO_DJANGO}, "inference.errors -> django"),
        (
            "npc_runtime/policies.py",
            "import inference.profiles",
            {LAYERS},
            "npc_runtime.policies -> inference.profiles",
        ),
        (
            "apps/story/selectors.py",
            "import bodybroker.urls",
            {LAYERS},
            "apps.story.selectors -> bodybroker.urls",
        ),
        (
            "apps/npcs/selectors.py",
            "from bodybroker.settings import base",
            # bodybroker.settings belongs to the project wiring, so the layers break too
            {NO_SETTINGS, LAYERS},
            "apps.npcs.selectors -> bodybroker.settings.base",
        ),
        (
            "apps/router/chains.py",
            "import apps.npcs.selectors",
            {ROUTER_ALONE},
            "apps.router.chains -> apps.npcs.selectors",
        ),
        (
            "apps/npcs/selectors.py",
            "from apps.router.models import Job",
            {ROUTER_TABLES},
            "apps.npcs.selectors -> apps.router.models",
        ),
    ],
)
def test_a_new_layering_violation_fails_the_lint(
    tmp_path: Path, module: str, line: str, broken: set[str], offence: str
) -> None:
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package,
            tmp_path / package,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    with (tmp_path / module).open("a") as source:
        source.write(f"\n{line}  # a deliberate layering violation\n")

    result = lint_imports(tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    found = verdicts(result.stdout)
    assert {name for name, verdict in found.items() if verdict == "BROKEN"} == broken
    assert set(found) == set(CONTRACTS)
    assert offence in result.stdout
