"""Settings in both modes, read in a fresh interpreter exactly as a process would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import json, django; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({'db': s.DATABASES['default']['ENGINE'], "
    "'db_name': str(s.DATABASES['default']['NAME']), "
    "'cache': s.CACHES['default']['BACKEND'], 'layer': s.CHANNEL_LAYERS['default']['BACKEND'], "
    "'broker': s.CELERY_BROKER_URL, 'embedded': s.EMBEDDED, "
    "'gold': s.BODYBROKER_TIERS['gold']['urls']}))"
)
SERVICE_VARS = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG", "BODYBROKER_GOLD_URLS")


def read_settings(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in SERVICE_VARS}
    clean.update(
        DJANGO_SETTINGS_MODULE="bodybroker.settings.base", BODYBROKER_VAR_DIR=str(tmp_path)
    )
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_no_variables_gives_the_embedded_default(tmp_path: Path) -> None:
    result = read_settings(tmp_path, DEBUG="1")
    assert result.returncode == 0, result.stderr
    conf = json.loads(result.stdout)
    assert conf["embedded"] is True
    assert conf["db"] == "django.db.backends.sqlite3"
    assert conf["db_name"] == str(tmp_path / "db.sqlite3")
    assert conf["cache"].endswith("LocMemCache")
    assert conf["layer"] == "channels.layers.InMemoryChannelLayer"
    assert conf["broker"] == "filesystem://"
    assert conf["gold"] == ["http://127.0.0.1:8101"]


def test_database_and_redis_urls_switch_to_production_services(tmp_path: Path) -> None:
    result = read_settings(
        tmp_path,
        SECRET_KEY="s3cret",
        DATABASE_URL="postgres://bb:pw@db.internal:5433/bodybroker",
        REDIS_URL="redis://cache.internal:6379/2",
        BODYBROKER_GOLD_URLS="http://gpu-a:8000, http://gpu-b:8000",
    )
    assert result.returncode == 0, result.stderr
    conf = json.loads(result.stdout)
    assert conf["embedded"] is False
    assert conf["db"] == "django.db.backends.postgresql"
    assert conf["db_name"] == "bodybroker"
    assert conf["cache"] == "django.core.cache.backends.redis.RedisCache"
    assert conf["layer"] == "bodybroker.channel_layer.BoundedPubSubChannelLayer"
    assert conf["broker"] == "redis://cache.internal:6379/2"
    assert conf["gold"] == ["http://gpu-a:8000", "http://gpu-b:8000"]


def test_secret_key_is_required_when_debug_is_off(tmp_path: Path) -> None:
    result = read_settings(tmp_path, DEBUG="0")
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_secret_key_can_come_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
    result = read_settings(tmp_path, DEBUG="0", SECRET_KEY_FILE=str(secret))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("name", "value", "complaint"),
    [
        ("DEBUG", "maybe", "is not a boolean"),
        ("BODYBROKER_CONNECT_TIMEOUT_S", "soon", "is not a number"),
        ("DATABASE_URL", "mysql://x/y", "scheme 'mysql' is not supported"),
    ],
)
def test_a_bad_value_fails_at_start_naming_the_variable(
    tmp_path: Path, name: str, value: str, complaint: str
) -> None:
    result = read_settings(tmp_path, SECRET_KEY="x", **{name: value})
    assert result.returncode != 0
    assert name in result.stderr or complaint in result.stderr
    assert complaint in result.stderr
