"""Test settings: the base settings, only faster. Tests still use the real database and Redis."""

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production")
# Keep the suite's state apart from a `make run` stack on the same machine: its own var/ folder
# (SQLite test database, filesystem broker) and its own key prefixes in a shared Redis.
os.environ.setdefault(
    "BODYBROKER_VAR_DIR",
    os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "var", "test"),
)
os.environ.setdefault("BODYBROKER_CACHE_PREFIX", "bbtest")
os.environ.setdefault("BODYBROKER_CHANNEL_PREFIX", "bbtest-asgi")
os.environ.setdefault("BODYBROKER_CELERY_PREFIX", "bbtest:")
os.environ.setdefault("BODYBROKER_WORKER_HEARTBEAT_S", "1")

from bodybroker.settings.base import *  # noqa: E402, F403
from bodybroker.settings.base import DATABASES, VAR_DIR  # noqa: E402

# Servers the tests start run in threads of the test process: none of them goes real-time.
BODYBROKER_EVENT_LOOP_RT_PRIORITY = 0
# The suite starts many in-process servers; each would load the lore embedder at start-up.
# tests/bodybroker/test_startup.py turns it on where start-up itself is tested.
BODYBROKER_PRELOAD_MODELS = False
# Tests run their own intent updater where they need one.
BODYBROKER_INTENT_UPDATER_IN_PROCESS = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
ALLOWED_HOSTS = ["*"]
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not :memory:, so a real Celery worker process sees the same test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
