"""Body Broker settings, read from the environment.

With no variable set this is the *embedded default*: SQLite under ``var/``, the in-process cache
and channel layer, Celery on a filesystem broker, and the local CPU engines on loopback. Setting
``DATABASE_URL`` switches to PostgreSQL (psycopg 3) and ``REDIS_URL`` to Redis for the cache, the
channel layer and Celery's broker. The README lists every variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
    local_secret_key,
    sqlite_database,
)

# Lets code subscript Django's generics (``ModelAdmin[Job]``) at run time, as mypy wants; DRF's
# are patched in ``bodybroker.api`` (importing DRF here would load settings recursively).
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(env_str("BODYBROKER_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)  # SQLite, the filesystem broker and beat live here

DEBUG = env_bool("DEBUG", default=False)
# SECRET_KEY, SECRET_KEY_FILE, or the key a machine's own stack keeps in VAR_DIR/secret_key:
# `make run` (and any DEBUG process) writes one there once, so `manage.py` commands typed in a
# plain shell beside it read the same key. A deployment with neither fails here.
LOCAL_SECRET_KEY_FILE = VAR_DIR / "secret_key"
SECRET_KEY = env_secret("SECRET_KEY") or local_secret_key(LOCAL_SECRET_KEY_FILE, create=DEBUG)
if not SECRET_KEY:
    raise ImproperlyConfigured(
        f"SECRET_KEY (or SECRET_KEY_FILE) is required when DEBUG is off and there is no "
        f"{LOCAL_SECRET_KEY_FILE} (`make run` writes one)"
    )

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
    "bodybroker.middleware.ApiErrorMetricsMiddleware",  # outermost: sees every API error
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "apps.admin_ops.middleware.RequestIdMiddleware",  # request ids + audit actor
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
            # channels-redis' pub/sub layer with a bound per socket (bodybroker/channel_layer.py):
            # a process gets each group message once instead of one Redis round trip per
            # socket per message.
            "BACKEND": "bodybroker.channel_layer.BoundedPubSubChannelLayer",
            "CONFIG": {
                "hosts": [REDIS_URL],
                "prefix": env_str("BODYBROKER_CHANNEL_PREFIX", "bb-asgi"),
                "capacity": env_int("BODYBROKER_CHANNEL_CAPACITY", 100, minimum=1),
            },
        }
    }
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        # Longer than the longest Bronze job: an unacknowledged task is redelivered after this.
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=1),
        # How often a worker sweeps for messages a lost worker left unacknowledged.
        "unacked_restore_interval": env_int("CELERY_UNACKED_RESTORE_INTERVAL_S", 10, minimum=1),
        "unacked_restore_throttle": env_int("CELERY_UNACKED_RESTORE_THROTTLE", 10, minimum=1),
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
    "expire-change-requests": {
        "task": "apps.admin_ops.tasks.expire_change_requests",
        "schedule": 60.0,
    },
}
BODYBROKER_WORKER_HEARTBEAT_S = env_float("BODYBROKER_WORKER_HEARTBEAT_S", 5.0, minimum=0.5)

# --- AWS (admin cloud actions and queries through boto3) ---------------------------------------
# Credentials come from boto3's usual chain (env, AWS_PROFILE, instance role), never from here.
# BODYBROKER_AWS_ENDPOINT_URL points boto3 at a stand-in (moto server, LocalStack).
BODYBROKER_AWS_REGION = env_str("BODYBROKER_AWS_REGION", "us-east-1")
BODYBROKER_AWS_ENDPOINT_URL = env_str("BODYBROKER_AWS_ENDPOINT_URL") or None

# --- Tiers and engines ------------------------------------------------------------------------
# Each tier is one or more OpenAI-compatible base URLs (comma-separated replicas) and the model
# name the engine serves, plus the fallback pool of its "smaller model" link. The defaults are
# the local CPU engines `make run` starts; on the CPU each tier falls back to the other engine.
_GOLD_URLS = env_list("BODYBROKER_GOLD_URLS", ["http://127.0.0.1:8101"])
_SILVER_URLS = env_list("BODYBROKER_SILVER_URLS", ["http://127.0.0.1:8102"])
BODYBROKER_TIERS: dict[str, dict[str, Any]] = {
    "gold": {
        "urls": _GOLD_URLS,
        "model": env_str("BODYBROKER_GOLD_MODEL_NAME", "gold"),
        "engine": env_str("BODYBROKER_GOLD_ENGINE", "cpu"),
        "fallback_urls": env_list("BODYBROKER_GOLD_FALLBACK_URLS", _SILVER_URLS),
        "fallback_model": env_str("BODYBROKER_GOLD_FALLBACK_MODEL_NAME", "silver"),
    },
    "silver": {
        "urls": _SILVER_URLS,
        "model": env_str("BODYBROKER_SILVER_MODEL_NAME", "silver"),
        "engine": env_str("BODYBROKER_SILVER_ENGINE", "cpu"),
        "fallback_urls": env_list("BODYBROKER_SILVER_FALLBACK_URLS", _GOLD_URLS),
        "fallback_model": env_str("BODYBROKER_SILVER_FALLBACK_MODEL_NAME", "gold"),
    },
    "bronze": {
        # Bronze runs as Celery jobs; by default against the local Silver engine, then Gold's.
        "urls": env_list("BODYBROKER_BRONZE_URLS", _SILVER_URLS),
        "model": env_str("BODYBROKER_BRONZE_MODEL_NAME", "silver"),
        "engine": env_str("BODYBROKER_BRONZE_ENGINE", "cpu"),
        "fallback_urls": env_list("BODYBROKER_BRONZE_FALLBACK_URLS", _GOLD_URLS),
        "fallback_model": env_str("BODYBROKER_BRONZE_FALLBACK_MODEL_NAME", "gold"),
    },
}
BODYBROKER_INTENT_TTL_MS = env_int("BODYBROKER_INTENT_TTL_MS", 2000, minimum=100)
# The embedded default's cache and channel layer are per process, so its web process runs the
# intent updater itself; with Redis, `manage.py run_intents` shards run beside the web tier.
BODYBROKER_INTENT_UPDATER_IN_PROCESS = env_bool(
    "BODYBROKER_INTENT_UPDATER_IN_PROCESS", default=not REDIS_URL
)
# Gold asks the intent updater keeps in flight (0: the Gold tier's real-time slots per endpoint
# × endpoints, split between shards). NPCs past it get cache/policy intents at once.
BODYBROKER_INTENT_MODEL_SLOTS = env_int("BODYBROKER_INTENT_MODEL_SLOTS", 0, minimum=0)
# Channel-layer groups pushed intents travel in (NPCs share them by a hash of their id).
BODYBROKER_INTENT_PUSH_GROUPS = env_int("BODYBROKER_INTENT_PUSH_GROUPS", 8, minimum=1)
# SCHED_FIFO priority of the web process's event loop thread (0, the default: none), where the
# process may take one (CAP_SYS_NICE or RLIMIT_RTPRIO): game frames then preempt the CPU engines
# and the rest at once instead of waiting up to a scheduler tick. Opt-in, since it also runs
# before everything else on a shared host; `make run` turns it on for the CPU default
# (bodybroker/realtime.py).
BODYBROKER_EVENT_LOOP_RT_PRIORITY = env_int("BODYBROKER_EVENT_LOOP_RT_PRIORITY", 0, minimum=0)
if BODYBROKER_EVENT_LOOP_RT_PRIORITY > 99:
    raise ImproperlyConfigured("BODYBROKER_EVENT_LOOP_RT_PRIORITY must be 0-99")
BODYBROKER_WS_RATE_PER_S = env_int("BODYBROKER_WS_RATE_PER_S", 2000, minimum=1)
BODYBROKER_ROUTING_POLICY = env_str("BODYBROKER_ROUTING_POLICY", "apps.router.policy:route")
# Per endpoint: real-time requests and background requests wait in separate lines (the seed's
# real-time queue of 4 and background queue of 32).
BODYBROKER_REALTIME_CONCURRENCY = env_int("BODYBROKER_REALTIME_CONCURRENCY", 4, minimum=1)
BODYBROKER_BACKGROUND_CONCURRENCY = env_int("BODYBROKER_BACKGROUND_CONCURRENCY", 32, minimum=1)
BODYBROKER_HEALTH_INTERVAL_S = env_float("BODYBROKER_HEALTH_INTERVAL_S", 5.0, minimum=0.1)
BODYBROKER_RESPONSE_CACHE_SIZE = env_int("BODYBROKER_RESPONSE_CACHE_SIZE", 1000, minimum=0)
BODYBROKER_RESPONSE_CACHE_TTL_S = env_float("BODYBROKER_RESPONSE_CACHE_TTL_S", 300.0, minimum=0)
# Price table (cost per request = GPU-hour price ÷ throughput). Instances are the seed's, at
# on-demand prices; throughputs are planning figures for batched serving — replace them with
# measured ones (BODYBROKER_PRICES_JSON='{"gold": {"gpu_hour_usd": …, "tokens_per_s": …}, …}').
BODYBROKER_PRICES: dict[str, dict[str, float]] = {
    "gold": {"gpu_hour_usd": 0.8048, "tokens_per_s": 2500.0},  # g6.xlarge, 1× L4
    "silver": {"gpu_hour_usd": 4.6016, "tokens_per_s": 2000.0},  # g6.12xlarge, 4× L4
    "bronze": {"gpu_hour_usd": 393.28, "tokens_per_s": 4000.0},  # 4× p5.48xlarge
}
if env_str("BODYBROKER_PRICES_JSON"):
    import json as _json

    BODYBROKER_PRICES.update(_json.loads(env_str("BODYBROKER_PRICES_JSON")))
BODYBROKER_REFERENCE_USD_PER_1K_TOKENS = env_float(
    "BODYBROKER_REFERENCE_USD_PER_1K_TOKENS", 0.01, minimum=0
)
# Per-key limits when a key sets none (0 = no limit); keys can set their own in the admin. The
# defaults stop one runaway integration from taking every engine slot while leaving room for an
# interactive game or tool (several requests a second, long prompts); benches set their own.
BODYBROKER_DEFAULT_RPM = env_int("BODYBROKER_DEFAULT_RPM", 600, minimum=0)
BODYBROKER_DEFAULT_TPM = env_int("BODYBROKER_DEFAULT_TPM", 200_000, minimum=0)
BODYBROKER_DEFAULT_DAILY_BUDGET_USD = env_float(
    "BODYBROKER_DEFAULT_DAILY_BUDGET_USD", 0.0, minimum=0
)  # 0 = none
# Failed sign-ins (the login page and the admin's) allowed per username and per client address
# in each window before the login page answers 429; counted in the cache (Redis when set).
BODYBROKER_SIGNIN_FAILURES_PER_USERNAME = env_int(
    "BODYBROKER_SIGNIN_FAILURES_PER_USERNAME", 5, minimum=1
)
BODYBROKER_SIGNIN_FAILURES_PER_ADDRESS = env_int(
    "BODYBROKER_SIGNIN_FAILURES_PER_ADDRESS", 20, minimum=1
)
BODYBROKER_SIGNIN_WINDOW_S = env_int("BODYBROKER_SIGNIN_WINDOW_S", 300, minimum=1)
BODYBROKER_BRONZE_SYNC_WAIT_S = env_float("BODYBROKER_BRONZE_SYNC_WAIT_S", 300.0, minimum=1)
# The tool relay (apps/router/tools.py): model/tool rounds per request, each tool call's time
# limit, and the whole request's deadline when it sets none.
BODYBROKER_TOOL_RELAY = {
    "max_rounds": env_int("BODYBROKER_TOOL_MAX_ROUNDS", 3, minimum=1),
    "tool_timeout_s": env_float("BODYBROKER_TOOL_TIMEOUT_S", 10.0, minimum=0.01),
    "deadline_s": env_float("BODYBROKER_TOOL_DEADLINE_S", 60.0, minimum=1),
}
BODYBROKER_ENGINE_TIMEOUTS = {
    "connect": env_float("BODYBROKER_CONNECT_TIMEOUT_S", 1.0, minimum=0.01),
    "first_token": env_float("BODYBROKER_FIRST_TOKEN_TIMEOUT_S", 10.0, minimum=0.01),
    "total": env_float("BODYBROKER_TOTAL_TIMEOUT_S", 60.0, minimum=0.01),
}
# Bronze backends, in order (engine, engine-fallback, sagemaker); empty = the default order.
BODYBROKER_BRONZE_BACKENDS = env_list("BODYBROKER_BRONZE_BACKENDS")
BODYBROKER_BRONZE_TRIES_PER_BACKEND = env_int("BODYBROKER_BRONZE_TRIES_PER_BACKEND", 3, minimum=1)
BODYBROKER_BRONZE_BACKOFF_BASE_S = env_float("BODYBROKER_BRONZE_BACKOFF_BASE_S", 2.0, minimum=0)
BODYBROKER_SAGEMAKER_ENDPOINT = env_str("BODYBROKER_SAGEMAKER_ENDPOINT")
BODYBROKER_SAGEMAKER_S3_URI = env_str("BODYBROKER_SAGEMAKER_S3_URI", "s3://bodybroker-bronze/jobs")
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
    "DEFAULT_PARSER_CLASSES": ["bodybroker.parsers.BoundedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "bodybroker.openapi.BodyBrokerAutoSchema",
    "EXCEPTION_HANDLER": "apps.security.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Body Broker API",
    "DESCRIPTION": (
        "Inference across the Gold, Silver and Bronze tiers, jobs, lore, NPCs and operations. "
        "The OpenAI-compatible door (`POST /v1/chat/completions`, `GET /v1/models`) is not "
        "described here: it follows OpenAI's own API reference, errors included."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Request bodies get their own components, so each lists exactly the fields it requires.
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "LoreKindEnum": "apps.story.models.LoreKind.values",
        "LoreStatusEnum": "apps.story.models.LoreStatus.values",
        "ChangeRequestStatusEnum": "apps.admin_ops.models.ChangeRequestStatus",
        "JobStatusEnum": "apps.router.models.JobStatus",
    },
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
STORAGES: dict[str, dict[str, object]] = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if STATIC_ROOT
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Lore (apps.story): retrieval index, limits, asset storage --------------------------------
BODYBROKER_LORE_MAX_BODY_CHARS = env_int("BODYBROKER_LORE_MAX_BODY_CHARS", 100_000, minimum=100)
BODYBROKER_LORE_INDEX = env_str("BODYBROKER_LORE_INDEX", "embedded")  # or "opensearch"
# Load the lore embedder (and the embedded index's passages) while the web process starts,
# before it accepts a connection, so no game socket or search ever waits for a model load.
BODYBROKER_PRELOAD_MODELS = env_bool("BODYBROKER_PRELOAD_MODELS", default=True)
if BODYBROKER_LORE_INDEX not in ("embedded", "opensearch"):
    raise ImproperlyConfigured("BODYBROKER_LORE_INDEX must be 'embedded' or 'opensearch'")
# Who publishes lore: "approvals" (a lore.publish change request an approver who is not the
# requester decides) or "editors" (a studio's opt-out: editors publish at once, still audited).
BODYBROKER_LORE_PUBLISH = env_str("BODYBROKER_LORE_PUBLISH", "approvals")
if BODYBROKER_LORE_PUBLISH not in ("approvals", "editors"):
    raise ImproperlyConfigured("BODYBROKER_LORE_PUBLISH must be 'approvals' or 'editors'")
BODYBROKER_OPENSEARCH_URL = env_str("BODYBROKER_OPENSEARCH_URL")
BODYBROKER_OPENSEARCH_PREFIX = env_str("BODYBROKER_OPENSEARCH_PREFIX", "lore")
BODYBROKER_ASSET_MAX_BYTES = env_int("BODYBROKER_ASSET_MAX_BYTES", 20 * 1024 * 1024, minimum=1)
# Assets: files under var/media by default; BODYBROKER_ASSET_BUCKET puts them in S3 (boto3).
MEDIA_ROOT = env_str("MEDIA_ROOT", str(VAR_DIR / "media"))
MEDIA_URL = "media/"
_ASSET_BUCKET = env_str("BODYBROKER_ASSET_BUCKET")
STORAGES["assets"] = (
    {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": _ASSET_BUCKET,
            "region_name": env_str("BODYBROKER_AWS_REGION", "us-east-1"),
            "endpoint_url": env_str("BODYBROKER_AWS_ENDPOINT_URL") or None,
            "default_acl": None,
            "querystring_auth": True,
            "file_overwrite": False,
        },
    }
    if _ASSET_BUCKET
    else {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": MEDIA_ROOT},
    }
)

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
