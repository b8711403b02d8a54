"""``python -m inference``: serve (dry run and refusals) and the profile listing."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from inference.__main__ import main

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BODYBROKER_ENGINE", "BODYBROKER_GOLD_MODEL", "BODYBROKER_SILVER_MODEL"):
        monkeypatch.delenv(name, raising=False)


def test_dry_run_prints_the_llama_cpp_command_for_gold(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--tier", "gold", "--port", "9123", "--dry-run"]) == 0

    env, *argv = shlex.split(capsys.readouterr().out)
    assert env == "OMP_WAIT_POLICY=PASSIVE"
    assert argv[:3] == ["nice", "-n", "19"]  # the engine yields the CPU to the web process
    argv = argv[3:]
    assert argv[0] == sys.executable
    assert argv[1:3] == ["-m", "inference.llama_server"]  # llama_cpp.server, stopping on hang-up
    assert argv[argv.index("--port") + 1] == "9123"
    assert argv[argv.index("--model_alias") + 1] == "gold"


def test_dry_run_shows_a_gpu_command_even_where_the_engine_is_not_installed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BODYBROKER_ENGINE", "gpu")

    assert main(["serve", "--tier", "silver", "--dry-run"]) == 0

    argv = shlex.split(capsys.readouterr().out)
    assert argv[:2] == ["vllm", "serve"]
    assert argv[argv.index("--port") + 1] == "8102"


def test_serving_a_missing_gpu_engine_exits_2_with_a_hint(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))

    assert main(["serve", "--tier", "gold", "--engine", "trtllm"]) == 2

    err = capsys.readouterr().err
    assert "'trtllm-serve' is not on PATH" in err
    assert "BODYBROKER_ENGINE=cpu" in err


def test_unknown_engine_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--tier", "gold", "--engine", "vllm", "--dry-run"]) == 2
    assert "no 'vllm' engine for tier 'gold'" in capsys.readouterr().err


def test_unknown_tier_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exc_info:
        main(["serve", "--tier", "bronze", "--dry-run"])
    assert exc_info.value.code == 2


def test_profiles_lists_every_tier_and_engine(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profiles"]) == 0

    rows = [line.split()[:3] for line in capsys.readouterr().out.splitlines()[1:5]]
    assert rows == [
        ["gold", "cpu", "8101"],
        ["gold", "trtllm", "8101"],
        ["silver", "cpu", "8102"],
        ["silver", "vllm", "8102"],
    ]


def test_module_entry_point_runs_from_any_directory(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "BODYBROKER_ENGINE": "cpu"}
    result = subprocess.run(  # noqa: S603 - fixed argv
        [sys.executable, "-m", "inference", "serve", "--tier", "silver", "--dry-run"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "--model_alias silver" in result.stdout
    assert "--port 8102" in result.stdout
