"""Body Broker settings, read from the environment.

With no variable set this is the *embedded default*: SQLite under ``var/``, the in-process cache
and channel layer, Celery on a filesystem broker, and the local CPU engines on loopback. Setting
``DATABASE_URL`` switches to PostgreSQL (psycopg 3) and ``REDIS_URL`` to Redis for the cache, the
channel layer and Celery's broker. The README lists every variable.
"""

from __future__ import annotations

from pathlib import Path

import django_stubs_ext
from django.core.exceptions import ImproperlyConfigured

from bodybroker.queues import CELERY_TASK_QUEUES, CELERY_TASK_ROUTES, DEFAULT_QUEUE
from bodybroker.settings.env import (
    database_from_url,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_secret,
    env_str,
    sqlite_database,
)

# Lets code subscript Django's generics (``ModelAdmin[Job]``) at run time, as mypy wants; DRF's
# are patched in ``bodybroker.api`` (importing DRF here would load settings recursively).
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(env_str("BODYBROKER_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)  # SQLite, the filesystem broker and beat live here

DEBUG = env_bool("DEBUG", default=False)
SECRET_KEY = env_secret("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY (or SECRET_KEY_FILE) is required when DEBUG is off")
    SECRET_KEY = "django-insecure-bodybroker-embedded-default-only"  # noqa: S105  (DEBUG only)

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "channels",
    "apps.security",
    "apps.router",
    "apps.npcs",
    "apps.story",
    "apps.admin_ops",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "bodybroker.urls"
ASGI_APPLICATION = "bodybroker.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Services: embedded default unless DATABASE_URL / REDIS_URL are set ----------------------

DATABASE_URL = env_str("DATABASE_URL")
DATABASES = {
    "default": database_from_url(DATABASE_URL)
    if DATABASE_URL
    else sqlite_database(VAR_DIR / "db.sqlite3")
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 0, minimum=0)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

REDIS_URL = env_str("REDIS_URL")
EMBEDDED = not DATABASE_URL and not REDIS_URL

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("BODYBROKER_CACHE_PREFIX", "bb"),
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [REDIS_URL],
                "prefix": env_str("BODYBROKER_CHANNEL_PREFIX", "bb-asgi"),
            },
        }
    }
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        # Longer than the longest Bronze job: an unacknowledged task is redelivered after this.
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=60),
        "global_keyprefix": env_str("BODYBROKER_CELERY_PREFIX", ""),
    }
    CELERY_WORKER_ENABLE_REMOTE_CONTROL = True
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    # A real worker process on a broker that needs no server: kombu's filesystem transport.
    # It has no fan-out exchanges, so worker remote control (celery inspect) is off here; the
    # worker proves it is alive through its heartbeat row instead (see apps.admin_ops).
    CELERY_BROKER_URL = "filesystem://"
    _broker_dir = VAR_DIR / "celery-broker"
    for _folder in ("queue", "control"):
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
    CELERY_WORKER_ENABLE_REMOTE_CONTROL = False

# --- Celery -----------------------------------------------------------------------------------
CELERY_TASK_QUEUES = CELERY_TASK_QUEUES
CELERY_TASK_ROUTES = CELERY_TASK_ROUTES
CELERY_TASK_DEFAULT_QUEUE = DEFAULT_QUEUE
CELERY_TASK_IGNORE_RESULT = True  # results live in job rows, not in a result backend
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "expire-stale-jobs": {
        "task": "apps.router.tasks.fail_stale_jobs",
        "schedule": 60.0,
    },
}
BODYBROKER_WORKER_HEARTBEAT_S = env_float("BODYBROKER_WORKER_HEARTBEAT_S", 5.0, minimum=0.5)

# --- Tiers and engines ------------------------------------------------------------------------
# Each tier is one or more OpenAI-compatible base URLs (comma-separated) and the model name the
# engine serves. The defaults are the local CPU engines that `make run` starts.
BODYBROKER_TIERS = {
    "gold": {
        "urls": env_list("BODYBROKER_GOLD_URLS", ["http://127.0.0.1:8101"]),
        "model": env_str("BODYBROKER_GOLD_MODEL_NAME", "gold"),
    },
    "silver": {
        "urls": env_list("BODYBROKER_SILVER_URLS", ["http://127.0.0.1:8102"]),
        "model": env_str("BODYBROKER_SILVER_MODEL_NAME", "silver"),
    },
    "bronze": {
        # Bronze runs as Celery jobs; by default against the local Silver engine.
        "urls": env_list("BODYBROKER_BRONZE_URLS", ["http://127.0.0.1:8102"]),
        "model": env_str("BODYBROKER_BRONZE_MODEL_NAME", "silver"),
    },
}
BODYBROKER_ENGINE_TIMEOUTS = {
    "connect": env_float("BODYBROKER_CONNECT_TIMEOUT_S", 1.0, minimum=0.01),
    "first_token": env_float("BODYBROKER_FIRST_TOKEN_TIMEOUT_S", 10.0, minimum=0.01),
    "total": env_float("BODYBROKER_TOTAL_TIMEOUT_S", 60.0, minimum=0.01),
}
BODYBROKER_BRONZE_TIMEOUT_S = env_float("BODYBROKER_BRONZE_TIMEOUT_S", 600.0, minimum=1.0)
BODYBROKER_MAX_PROMPT_CHARS = env_int("BODYBROKER_MAX_PROMPT_CHARS", 32_000, minimum=1)

# --- Auth -------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.security.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "apps.security.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Body Broker API",
    "DESCRIPTION": "Inference across the Gold, Silver and Bronze tiers, jobs, and operations.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
}
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("BODYBROKER_MAX_BODY_BYTES", 1_048_576, minimum=1024)

# --- I18N, static -----------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# WhiteNoise serves static files in both modes. With no STATIC_ROOT it serves them straight from
# static/ and the apps (no collectstatic step); a production image sets STATIC_ROOT, runs
# collectstatic, and gets hashed, compressed, long-cached files.
STATIC_ROOT = env_str("STATIC_ROOT") or None
WHITENOISE_USE_FINDERS = STATIC_ROOT is None
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if STATIC_ROOT
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", default=not DEBUG and not EMBEDDED)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # One line per engine call is noise at INFO; failures surface through our own logging.
    "loggers": {
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}
