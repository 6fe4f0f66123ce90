"""All settings of the project, read from the environment (one module for every deployment)."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import dj_database_url

from project import caches, filesystem_broker, redis_transport
from project.env import env_bool, env_float, env_int, env_list

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("PAYMENTS_VAR_DIR", BASE_DIR / "var"))

# pytest (8.2+) sets PYTEST_VERSION for the whole session, subprocesses included.
TESTING = "PYTEST_VERSION" in os.environ or "pytest" in sys.modules

DEBUG = env_bool("DJANGO_DEBUG", default=False)

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
# Required unless debug is on. Commands that sign nothing (migrate, makemigrations, check,
# collectstatic) still run without one; the web process refuses to start (project/wsgi.py) and
# `manage.py check --deploy` reports it.
SECRET_KEY_MISSING = not SECRET_KEY and not (DEBUG or TESTING)
if not SECRET_KEY:
    SECRET_KEY = "unset-" + secrets.token_urlsafe(32)

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# Outside debug the site is served over HTTPS (behind a proxy that sets X-Forwarded-Proto).
_SECURE = env_bool("DJANGO_SECURE", default=not DEBUG)
SESSION_COOKIE_SECURE = _SECURE
CSRF_COOKIE_SECURE = _SECURE
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
if _SECURE:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", default=0)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "payments",
    "workers",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "payments.middleware.DatabaseUnavailableMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

# Tests run on PostgreSQL; a first local run with nothing configured uses a SQLite file.
if TESTING:
    _default_db = "postgres://postgres@127.0.0.1:5432/payments"
else:
    _default_db = f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
# Web requests and worker tasks alike keep their connection for DATABASE_CONN_MAX_AGE seconds
# (0: a new one each time), checked before reuse (project/celery.py applies Django's request
# rules around every task). Behind a transaction-pooling PgBouncer set DATABASE_POOLER=pgbouncer:
# server-side cursors off (DATABASE_DISABLE_SERVER_SIDE_CURSORS, on by default then) and no
# prepared statements; README, "Across several hosts".
DATABASE_POOLER = os.environ.get("DATABASE_POOLER", "").strip().lower()
if DATABASE_POOLER not in ("", "pgbouncer"):
    raise RuntimeError(f"DATABASE_POOLER must be empty or pgbouncer; got {DATABASE_POOLER!r}.")
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", _default_db),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", default=60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = env_bool(
        "DATABASE_DISABLE_SERVER_SIDE_CURSORS", default=DATABASE_POOLER == "pgbouncer"
    )
    if DATABASE_POOLER == "pgbouncer":
        # PgBouncer before 1.21 cannot follow a prepared statement from one transaction to the
        # next: psycopg must never prepare one (Django's default, kept whatever the URL says).
        DATABASES["default"]["OPTIONS"] = {
            **DATABASES["default"].get("OPTIONS", {}),
            "prepare_threshold": None,
        }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # Serialise writers instead of failing with "database is locked" under worker + web.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# The end users' pages (payments/pages/) sign in at /login/ and open on the account page.
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "account"
LOGOUT_REDIRECT_URL = "login"

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("DJANGO_STATIC_ROOT", VAR_DIR / "static"))
# The admin's static files are served by the app itself (whitenoise): from the apps in debug,
# from STATIC_ROOT (filled by `collectstatic` in the release step and the image) otherwise.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = DEBUG
STATIC_ROOT.mkdir(parents=True, exist_ok=True)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "filters": {
        # The NowPayments client warns before each retry of each request: with NowPayments down
        # that is the same line for every call of every poll. The first an hour says it; the
        # repeats go to DEBUG (payments/logs.py). Only this message, of only this logger.
        "provider_retries": {
            "()": "payments.logs.RepeatFilter",
            "template": "nowpayments %s %s failed (%s); retry %d/%d in %.2f s",
        },
        # Celery's six-line warning when a retry outlives the task's expiry: a periodic tick
        # retried while NowPayments is down, past its expire_seconds (workers/schedules.py).
        # The retry is then dropped and the next tick does the work; once an hour says so.
        "expired_retries": {
            "()": "payments.logs.RepeatFilter",
            "contains": "has an expiration date in the past",
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "payments.services.providers.nowpayments.transport": {"filters": ["provider_retries"]},
        "celery.app.base": {"filters": ["expired_retries"]},
        # Django's own console handler (debug) would print each of its warnings a second time,
        # unformatted: its records go to the root handler only.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}

# The user API (payments/api/): an API key (Authorization: Bearer pk_..., or X-API-Key) or the
# pages' session; JSON only; every error a {"code", "message"} body.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "payments.api.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["payments.api.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "payments.api.errors.exception_handler",
    "DEFAULT_PAGINATION_CLASS": "payments.api.filters.Pagination",
    "PAGE_SIZE": 50,
    "COERCE_DECIMAL_TO_STRING": True,
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    # How many proxies in front of the web process add themselves to X-Forwarded-For: the
    # client address of throttles and sign-in lockouts is the one the nearest proxy saw.
    # 0 trusts no header (REMOTE_ADDR); outside debug the site sits behind one proxy.
    "NUM_PROXIES": env_int("DJANGO_NUM_PROXIES", default=1 if _SECURE else 0),
}
# Rates ("<count>/<second|minute|hour|day>") of the creates, per user; each is also read from
# its environment variable, e.g. PAYMENTS_THROTTLE_DEPOSIT_CREATE=10/min.
PAYMENTS_THROTTLE_RATES = {
    "deposit_create": os.environ.get("PAYMENTS_THROTTLE_DEPOSIT_CREATE", "10/min"),
    "withdrawal_create": os.environ.get("PAYMENTS_THROTTLE_WITHDRAWAL_CREATE", "5/min"),
    "api_key_create": os.environ.get("PAYMENTS_THROTTLE_API_KEY_CREATE", "10/hour"),
}
# Failed sign-ins (pages) and bad API keys: this many from one client address, or for one
# username, within the window lock that address or username out for the lockout (seconds).
PAYMENTS_AUTH_FAILURE_LIMIT = env_int("PAYMENTS_AUTH_FAILURE_LIMIT", default=10)
PAYMENTS_AUTH_FAILURE_WINDOW_SECONDS = env_int("PAYMENTS_AUTH_FAILURE_WINDOW_SECONDS", default=900)
PAYMENTS_AUTH_LOCKOUT_SECONDS = env_int("PAYMENTS_AUTH_LOCKOUT_SECONDS", default=900)
# Active API keys a user may hold at once.
PAYMENTS_API_KEYS_PER_USER = env_int("PAYMENTS_API_KEYS_PER_USER", default=10)

# The OpenAPI schema (/payments/api/schema/) and its Swagger UI and ReDoc pages, served to
# anyone (they describe the API, not its data) from drf-spectacular-sidecar's static files.
SPECTACULAR_SETTINGS = {
    "TITLE": "Payments API",
    "DESCRIPTION": (
        "Deposits in cryptocurrency through NowPayments, a USD balance kept in an append-only "
        "ledger, and withdrawals an operator approves. Authenticate with an API key "
        "(`Authorization: Bearer pk_...` or `X-API-Key: pk_...`, created on the API keys page) "
        "or the pages' session (with its CSRF token on POST). Every error is a JSON body "
        '`{"code", "message"}` with a stable `code`; a validation error adds `errors` per '
        "field. Creates are rate-limited per user (429 with Retry-After), and repeated bad API "
        "keys lock the client address out for a while. Lists are paginated: `page` and "
        "`page_size` (default 50; larger than 200 is served as 200). A POST may carry an "
        "`Idempotency-Key`: the same key with the same body replays the first response."
    ),
    "VERSION": "1.0.0",
    "SCHEMA_PATH_PREFIX": "/payments/api/",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PUBLIC": True,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "PaymentStatusEnum": "payments.models.payment.PaymentStatus",
        "WithdrawalStatusEnum": "payments.models.withdrawal.WithdrawalStatus",
        "TransactionTypeEnum": "payments.models.transaction.TransactionType",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "payments.api.schema.add_error_responses",
    ],
}

# --- payments -----------------------------------------------------------------------------
PAYMENTS_ENABLED = env_bool("PAYMENTS_ENABLED", default=True)
PAYMENTS_PUBLIC_BASE_URL = os.environ.get("PAYMENTS_PUBLIC_BASE_URL", "")
# Where the admin's "View site" leads: the user pages, at the root unless set elsewhere (an
# empty value hides the link).
PAYMENTS_SITE_URL = os.environ.get("PAYMENTS_SITE_URL", "/")
NOWPAYMENTS_API_URL = os.environ.get("NOWPAYMENTS_API_URL", "https://api.nowpayments.io/v1")
NOWPAYMENTS_API_KEY = os.environ.get("NOWPAYMENTS_API_KEY", "")
NOWPAYMENTS_IPN_SECRET = os.environ.get("NOWPAYMENTS_IPN_SECRET", "")
NOWPAYMENTS_EMAIL = os.environ.get("NOWPAYMENTS_EMAIL", "")
NOWPAYMENTS_PASSWORD = os.environ.get("NOWPAYMENTS_PASSWORD", "")
NOWPAYMENTS_TOTP_SECRET = os.environ.get("NOWPAYMENTS_TOTP_SECRET", "")
NOWPAYMENTS_TIMEOUT = env_float("NOWPAYMENTS_TIMEOUT", default=10.0)
# A payment made through the ORM (the seed's Payment.objects.create) is registered with
# NowPayments before the call returns, waiting at most this long; past it a worker retries.
PAYMENTS_REGISTER_TIMEOUT = env_float("PAYMENTS_REGISTER_TIMEOUT", default=5.0)
# Send approved withdrawals through NowPayments payouts (needs email, password and the 2FA
# secret); off, operators pay out elsewhere and mark withdrawals completed in the admin.
PAYMENTS_PAYOUTS_ENABLED = env_bool("PAYMENTS_PAYOUTS_ENABLED", default=False)
# Where a payout exists, withdrawals move only on NowPayments' word (DESIGN.md §3). A payout
# reported FAILED may still be processed (spec 3.2): its withdrawal is failed (refunded) only if
# NowPayments still reports it failed this many seconds after the poller first saw it so.
PAYMENTS_PAYOUT_FAILED_SETTLE_SECONDS = env_int(
    "PAYMENTS_PAYOUT_FAILED_SETTLE_SECONDS", default=1800
)
# A withdrawal claimed for its payout whose worker never got to send it (it died, or lost its
# database connection, between the claim and the call) is claimed again and sent by the payout
# sweep after this many seconds. One whose call may have gone out is never sent again.
PAYMENTS_PAYOUT_UNSENT_RETRY_SECONDS = env_int("PAYMENTS_PAYOUT_UNSENT_RETRY_SECONDS", default=60)
# A worker whose claim or send mark got no answer from PostgreSQL reads the withdrawal back,
# trying again for this many seconds while the database cannot answer.
PAYMENTS_PAYOUT_READ_BACK_SECONDS = env_int("PAYMENTS_PAYOUT_READ_BACK_SECONDS", default=30)
# A payout or a coin's terms whose NowPayments call keeps failing is backed off on its own row
# (payments/services/backoff.py): this many seconds after the first failure, doubling, at most
# the maximum; the sweeps go on with the others meanwhile.
PAYMENTS_ITEM_RETRY_SECONDS = env_int("PAYMENTS_ITEM_RETRY_SECONDS", default=60)
PAYMENTS_ITEM_RETRY_MAX_SECONDS = env_int("PAYMENTS_ITEM_RETRY_MAX_SECONDS", default=3600)
# Fees charged on a withdrawal (strings, parsed as Decimal), taken out of its amount. The
# network fee is the currency's own (from NowPayments' payout fee, or set in the admin); this
# one applies where a currency has none. The service fee is the fixed amount plus the percent.
PAYMENTS_WITHDRAWAL_NETWORK_FEE_USD = os.environ.get("PAYMENTS_WITHDRAWAL_NETWORK_FEE_USD", "1.00")
PAYMENTS_WITHDRAWAL_SERVICE_FEE_USD = os.environ.get("PAYMENTS_WITHDRAWAL_SERVICE_FEE_USD", "0.50")
PAYMENTS_WITHDRAWAL_SERVICE_FEE_PERCENT = os.environ.get(
    "PAYMENTS_WITHDRAWAL_SERVICE_FEE_PERCENT", "0"
)
# Deposit minimums synced from NowPayments' /min-amount are raised by this factor, since rates
# move between that estimate and a payment's creation.
PAYMENTS_MIN_AMOUNT_MARGIN = os.environ.get("PAYMENTS_MIN_AMOUNT_MARGIN", "1.05")
# The PostgreSQL role web, worker and beat log in as (created and granted by `manage.py
# db_roles`, run as the owner after every migrate): no superuser, owns nothing, no DELETE on money.
PAYMENTS_DB_APP_ROLE = os.environ.get("PAYMENTS_DB_APP_ROLE", "payments_app")

# The deposit policy (payments/services/deposits/policy.py; README, "When a payment goes wrong"):
# what a deposit credits is what NowPayments reports as received, never more than the price.
# Underpaid: "credit_received" credits the received share of the price once the payment is
# final; "review" holds it for an operator. Overpaid: "record" credits the price and records
# the excess as a finding; "credit" credits the received value. A partially paid payment is
# settled by the underpayment policy this many hours after NowPayments last moved it.
PAYMENTS_UNDERPAYMENT_POLICY = os.environ.get("PAYMENTS_UNDERPAYMENT_POLICY", "credit_received")
PAYMENTS_OVERPAYMENT_POLICY = os.environ.get("PAYMENTS_OVERPAYMENT_POLICY", "record")
# A refund NowPayments makes after a credit reverses it; without an IPN the poller looks at each
# payment credited in the last 7 days again at most this often (seconds).
PAYMENTS_REFUND_RECHECK_SECONDS = env_float("PAYMENTS_REFUND_RECHECK_SECONDS", default=300.0)
PAYMENTS_PARTIAL_PAYMENT_FINAL_HOURS = env_float(
    "PAYMENTS_PARTIAL_PAYMENT_FINAL_HOURS", default=24.0
)

# Who applies a verified, stored IPN: "worker" (the webhook answers once the event is committed,
# and a worker drains the stored events in batches) or "inline" (the webhook applies it before
# answering; one payment per request, no worker needed for it). payments/webhooks.py.
PAYMENTS_IPN_APPLY = os.environ.get("PAYMENTS_IPN_APPLY", "worker").strip().lower()
if PAYMENTS_IPN_APPLY not in ("worker", "inline"):
    raise RuntimeError(f"PAYMENTS_IPN_APPLY must be worker or inline; got {PAYMENTS_IPN_APPLY!r}.")

# --- e-mail and operator notifications ----------------------------------------------------
# Operators are e-mailed through Django's mail backends: SMTP when EMAIL_HOST is set outside
# debug, the console backend (mail printed to the log) in debug or with nothing configured.
EMAIL_HOST = os.environ.get("EMAIL_HOST", "")
EMAIL_PORT = env_int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", default=False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", default=False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", default=10)  # seconds; a send holds its row this long
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "") or "payments@localhost"
SERVER_EMAIL = DEFAULT_FROM_EMAIL
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST and not DEBUG
    else "django.core.mail.backends.console.EmailBackend"
)
# Who is e-mailed (comma list); empty: the active staff of the approver, operator and
# supervisor groups and the active superusers, those of them with an e-mail address.
PAYMENTS_OPERATOR_EMAILS = env_list("PAYMENTS_OPERATOR_EMAILS", default=[])
# A pending withdrawal is reported once it has waited this long.
PAYMENTS_NOTIFY_WITHDRAWAL_WAITING_MINUTES = env_int(
    "PAYMENTS_NOTIFY_WITHDRAWAL_WAITING_MINUTES", default=30
)
# Only events of this window are e-mailed (a first install reports nothing older), and an
# unsent e-mail is tried again within it, at most this many times.
PAYMENTS_NOTIFY_LOOKBACK_HOURS = env_int("PAYMENTS_NOTIFY_LOOKBACK_HOURS", default=24)
PAYMENTS_NOTIFY_MAX_ATTEMPTS = env_int("PAYMENTS_NOTIFY_MAX_ATTEMPTS", default=12)
# The admin dashboard: a payout processing longer than this is shown as stuck; the broker is
# given this long (seconds) to report its queue depth.
PAYMENTS_PAYOUT_STUCK_MINUTES = env_int("PAYMENTS_PAYOUT_STUCK_MINUTES", default=60)
PAYMENTS_DASHBOARD_BROKER_TIMEOUT = env_float("PAYMENTS_DASHBOARD_BROKER_TIMEOUT", default=0.5)
# Signed webhooks to the host application (payments/services/host_webhooks): each POST waits
# this long (seconds) for an answer; a failed delivery is tried again after the first retry
# delay, three times longer each time (capped at an hour), and given up after the last attempt.
PAYMENTS_WEBHOOK_TIMEOUT = env_float("PAYMENTS_WEBHOOK_TIMEOUT", default=5.0)
PAYMENTS_WEBHOOK_MAX_ATTEMPTS = env_int("PAYMENTS_WEBHOOK_MAX_ATTEMPTS", default=12)
PAYMENTS_WEBHOOK_RETRY_SECONDS = env_float("PAYMENTS_WEBHOOK_RETRY_SECONDS", default=10.0)
# An API request's Idempotency-Key is remembered this long (then the key may be used afresh).
PAYMENTS_IDEMPOTENCY_TTL_HOURS = env_int("PAYMENTS_IDEMPOTENCY_TTL_HOURS", default=24)

# --- celery -------------------------------------------------------------------------------
# Redis in production; with nothing configured, kombu's filesystem transport needs no server.
# Its messages and exchange tables all live in var/broker; a worker expires the queues nobody
# reads any more (project/filesystem_broker.py).
CELERY_BROKER_URL = filesystem_broker.broker_url(os.environ.get("CELERY_BROKER_URL", ""))
filesystem_broker.use_atomic_transport()  # kombu's own loses a message a reader races
redis_transport.use_redis_transport()  # kombu's own can end a worker when Redis goes away
if filesystem_broker.is_filesystem(CELERY_BROKER_URL):
    CELERY_BROKER_TRANSPORT_OPTIONS = filesystem_broker.transport_options(VAR_DIR)
    # An event queue (Flower's) unread this long is expired (Celery's default, 60 s). Events
    # stay on for every worker and task-sent too: Flower shows nothing without them.
    CELERY_EVENT_QUEUE_EXPIRES = env_float("CELERY_EVENT_QUEUE_EXPIRES", default=60.0)
else:
    # Unacknowledged tasks come back after this long; every time limit is well below it.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 1800}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", default=240)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", default=300)
CELERY_WORKER_MAX_TASKS_PER_CHILD = env_int("CELERY_WORKER_MAX_TASKS_PER_CHILD", default=5000)
# Celery's Django fix-up closes the database connection before and after every task unless this
# is set (then only every this many tasks): workers keep theirs as web requests do, by
# DATABASE_CONN_MAX_AGE and its health check, applied around each task in project/celery.py.
CELERY_DB_REUSE_MAX = 1_000_000
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_TASK_SEND_SENT_EVENT = True
CELERY_TASK_DEFAULT_QUEUE = "default"
# Each task's queue is named once, in workers/queues.py (project/celery.py routes by it).
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"

# --- cache: the API's throttles and the sign-in lockouts, shared by every web worker --------
# CACHE_URL (redis://, rediss://, unix://, file:///path, locmem://), else REDIS_URL, else the
# broker when it is Redis; with none of them, files under var/cache (project/caches.py).
CACHES = {
    "default": caches.cache_config(
        caches.cache_url(
            cache=os.environ.get("CACHE_URL", ""),
            redis=os.environ.get("REDIS_URL", ""),
            broker=CELERY_BROKER_URL,
        ),
        var_dir=VAR_DIR,
        testing=TESTING,
    )
}

# Flower: "user:password" pairs, comma-separated; required outside debug.
FLOWER_BASIC_AUTH = os.environ.get("FLOWER_BASIC_AUTH", "")
