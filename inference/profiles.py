"""Launch profiles: how each tier's model server is started, per engine, as data.

The profiles live in ``profiles.toml`` beside this module. This module reads them, picks one for
a tier and engine, checks that the engine is installed (without importing it: importing vLLM or
TensorRT-LLM takes seconds and initialises CUDA), and turns it into an argv.

Environment:

* ``BODYBROKER_ENGINE``: default engine (``cpu`` when unset; ``gpu`` picks each tier's GPU engine).
* ``BODYBROKER_<TIER>_MODEL``: model path or hub id for that tier, e.g. ``BODYBROKER_GOLD_MODEL``.
* ``BODYBROKER_<TIER>_EXTRA_ARGS``: extra engine flags, shell-quoted, appended to the argv.
* ``BODYBROKER_CPU_THREADS``: ``{n_threads}`` for the cpu engine (default from the profile, 2).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shlex
import shutil
import string
import sys
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference.errors import EngineNotInstalled, ProfileError, UnknownProfile

PROFILES_PATH = Path(__file__).with_name("profiles.toml")
DEFAULT_ENGINE = "cpu"
ENGINE_ENV = "BODYBROKER_ENGINE"
THREADS_ENV = "BODYBROKER_CPU_THREADS"
BUNDLED_PREFIX = "bundled:"

# Flags by which each engine is told its context window: llama.cpp, vLLM, TensorRT-LLM.
CONTEXT_FLAGS = frozenset({"--n_ctx", "--max-model-len", "--max_seq_len"})
_PLACEHOLDERS = frozenset({"python", "model_path", "host", "port", "alias", "n_threads"})


@dataclass(frozen=True, slots=True)
class Profile:
    """How to launch one tier's model server with one engine."""

    tier: str
    engine: str
    description: str
    argv: tuple[str, ...]
    port: int
    health_path: str
    served_model_name: str
    model: str
    requires_module: str | None = None
    requires_executable: str | None = None
    n_threads: int | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    nice: int = 0

    @property
    def model_env_var(self) -> str:
        """Environment variable that overrides this tier's model, e.g. BODYBROKER_GOLD_MODEL."""
        return f"BODYBROKER_{self.tier.upper()}_MODEL"

    @property
    def extra_args_env_var(self) -> str:
        """Environment variable whose shell-quoted flags are appended to the argv."""
        return f"BODYBROKER_{self.tier.upper()}_EXTRA_ARGS"

    def base_url(self, host: str = "127.0.0.1", port: int | None = None) -> str:
        """Root URL of the server (no ``/v1``), as ``EngineClient`` expects it."""
        return f"http://{host}:{port or self.port}"

    def resolve_model(self, model_path: str | None = None) -> str:
        """The model to serve: ``model_path`` if given, else the tier's env override, else the
        profile's default; ``bundled:<package>`` becomes the path of the GGUF in that package.

        Raises ``ModelNotFound`` when a bundled model is not installed.
        """
        model = model_path or os.environ.get(self.model_env_var) or self.model
        if model.startswith(BUNDLED_PREFIX):
            from inference.cpu_model import locate_bundled_gguf

            return str(locate_bundled_gguf(model.removeprefix(BUNDLED_PREFIX)))
        return model

    def resolve_threads(self, n_threads: int | None = None) -> int:
        """``n_threads`` if given, else ``BODYBROKER_CPU_THREADS``, else the profile's default."""
        if n_threads is not None:
            return n_threads
        raw = os.environ.get(THREADS_ENV)
        if raw:
            try:
                return int(raw)
            except ValueError:
                raise ProfileError(f"{THREADS_ENV}={raw!r} is not an integer") from None
        return self.n_threads or 1

    def command(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        model_path: str | None = None,
        *,
        n_threads: int | None = None,
        python: str | None = None,
    ) -> list[str]:
        """The argv that starts this server on ``host:port`` (``port`` defaults to the tier's)."""
        values = {
            "python": python or sys.executable,
            "model_path": self.resolve_model(model_path),
            "host": host,
            "port": str(port or self.port),
            "alias": self.served_model_name,
            "n_threads": str(self.resolve_threads(n_threads)),
        }
        argv = [part.format_map(values) for part in self.argv]
        extra = os.environ.get(self.extra_args_env_var)
        if extra:
            argv.extend(shlex.split(extra))
        return argv

    @property
    def served_context(self) -> int | None:
        """The context window (tokens, prompt and answer together) this server is launched
        with, read from its flags (extra flags from the environment included; the last one
        given wins), or None when the flags do not say."""
        args = list(self.argv)
        extra = os.environ.get(self.extra_args_env_var)
        if extra:
            args.extend(shlex.split(extra))
        found: int | None = None
        for index, arg in enumerate(args):
            name, has_value, value = arg.partition("=")
            if name not in CONTEXT_FLAGS:
                continue
            if not has_value:
                value = args[index + 1] if index + 1 < len(args) else ""
            if value.isdigit() and int(value) > 0:
                found = int(value)
        return found

    def missing_requirement(self) -> str | None:
        """What is missing to run this engine here, or None when it looks installed.

        Uses ``shutil.which`` and ``importlib.util.find_spec`` on a top-level name only, so the
        engine itself is never imported.
        """
        if self.requires_executable and shutil.which(self.requires_executable) is None:
            return f"executable {self.requires_executable!r} is not on PATH"
        if self.requires_module and importlib.util.find_spec(self.requires_module) is None:
            return f"Python module {self.requires_module!r} is not installed in {sys.executable}"
        return None

    def is_installed(self) -> bool:
        """Whether the engine's executable/module is present."""
        return self.missing_requirement() is None

    def check_installed(self) -> None:
        """Raise ``EngineNotInstalled`` with a hint on how to install the engine."""
        missing = self.missing_requirement()
        if missing is None:
            return
        if self.engine == DEFAULT_ENGINE:
            hint = "run scripts/install_cpu_engine.sh <venv>"
        else:
            hint = (
                "install it from requirements-gpu.txt on a GPU host and put its bin/ on PATH, "
                f"or use the cpu engine ({ENGINE_ENV}=cpu)"
            )
        raise EngineNotInstalled(
            f"engine {self.engine!r} for tier {self.tier!r} is not installed: {missing}; {hint}"
        )


@dataclass(frozen=True, slots=True)
class Profiles:
    """All profiles of a profiles file, plus engine aliases (``gpu`` -> per-tier engine)."""

    by_key: Mapping[tuple[str, str], Profile]
    aliases: Mapping[str, Mapping[str, str]]

    @property
    def tiers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(tier for tier, _ in self.by_key))

    def engines(self, tier: str | None = None) -> tuple[str, ...]:
        return tuple(dict.fromkeys(eng for t, eng in self.by_key if tier is None or t == tier))

    def get(self, tier: str, engine: str | None = None) -> Profile:
        """The profile for ``tier`` and ``engine`` (default: ``BODYBROKER_ENGINE`` or cpu)."""
        engine = engine or os.environ.get(ENGINE_ENV) or DEFAULT_ENGINE
        if tier not in self.tiers:
            raise UnknownProfile(f"unknown tier {tier!r}; known tiers: {', '.join(self.tiers)}")
        resolved = self.aliases.get(engine, {}).get(tier, engine)
        profile = self.by_key.get((tier, resolved))
        if profile is None:
            known = ", ".join([*self.engines(tier), *self.aliases])
            raise UnknownProfile(
                f"no {engine!r} engine for tier {tier!r}; engines for {tier}: {known}"
            )
        return profile

    def __iter__(self) -> Iterator[Profile]:
        return iter(self.by_key.values())


def _parse_profile(tier: str, engine: str, table: Mapping[str, Any], source: Path) -> Profile:
    where = f"[{tier}.{engine}] in {source}"
    try:
        argv = tuple(str(part) for part in table["argv"])
        profile = Profile(
            tier=tier,
            engine=engine,
            description=str(table.get("description", "")),
            argv=argv,
            port=int(table["port"]),
            health_path=str(table["health_path"]),
            served_model_name=str(table["served_model_name"]),
            model=str(table["model"]),
            requires_module=table.get("requires_module"),
            requires_executable=table.get("requires_executable"),
            n_threads=table.get("n_threads"),
            env={str(k): str(v) for k, v in table.get("env", {}).items()},
            nice=int(table.get("nice", 0)),
        )
    except KeyError as exc:
        raise ProfileError(f"{where} lacks required field {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise ProfileError(f"{where} is malformed: {exc}") from None
    for part in argv:
        for name in _format_fields(part):
            if name not in _PLACEHOLDERS:
                raise ProfileError(
                    f"{where}: unknown placeholder {{{name}}}; use {sorted(_PLACEHOLDERS)}"
                )
    if not profile.health_path.startswith("/"):
        raise ProfileError(f"{where}: health_path must start with '/'")
    return profile


def _format_fields(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]


def load_profiles(path: Path | str | None = None) -> Profiles:
    """Read a profiles file (default: the ``profiles.toml`` shipped with this package)."""
    if path is None:
        return _load_default()
    return _load(Path(path))


@functools.cache
def _load_default() -> Profiles:
    return _load(PROFILES_PATH)


def _load(path: Path) -> Profiles:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ProfileError(f"cannot read profiles file {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"invalid TOML in {path}: {exc}") from exc
    aliases_raw = data.pop("engine_aliases", {})
    by_key: dict[tuple[str, str], Profile] = {}
    for tier, engines in data.items():
        if not isinstance(engines, dict):
            raise ProfileError(f"{path}: top-level key {tier!r} must be a table of engines")
        for engine, table in engines.items():
            if not isinstance(table, dict):
                raise ProfileError(f"{path}: [{tier}.{engine}] must be a table")
            by_key[(tier, engine)] = _parse_profile(tier, engine, table, path)
    aliases = {
        str(alias): {str(t): str(e) for t, e in mapping.items()}
        for alias, mapping in aliases_raw.items()
    }
    return Profiles(by_key=by_key, aliases=aliases)


def get_profile(tier: str, engine: str | None = None) -> Profile:
    """The shipped profile for ``tier`` and ``engine``.

    ``engine`` defaults to ``BODYBROKER_ENGINE``, then ``cpu``. Raises ``UnknownProfile`` for
    an unknown tier or engine. Does not check that the engine is installed; call
    ``Profile.check_installed()`` for that.
    """
    return load_profiles().get(tier, engine)
