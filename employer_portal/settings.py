"""Django settings for the Employer Portal.

Configuration comes from the environment (django-environ); see ``.env.example``.
The database is ``EMPLOYER_PORTAL_DB_URL``, else ``DATABASE_URL``, else an embedded
PostgreSQL started from the ``pgserver`` package in ``.pgdata/`` of the checkout.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

import tenancy

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=True)

if DEBUG:
    SECRET_KEY = env.str("SECRET_KEY", default="dev-only-insecure-secret-key-change-me")
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", ".localhost", "127.0.0.1"])
else:
    # Production must say what it means: no silent development defaults.
    try:
        SECRET_KEY = env.str("SECRET_KEY")
        ALLOWED_HOSTS = env.list("ALLOWED_HOSTS")
    except ImproperlyConfigured as exc:
        raise ImproperlyConfigured(f"{exc} (required when DEBUG is off)") from exc

# --- database -----------------------------------------------------------------------------
# The app's URL may go through a connection pooler; EMPLOYER_PORTAL_DB_POOLER says which kind
# (none, session or transaction). Sessions are needed by the migration engine (session-level
# advisory locks), the job worker and long runs: EMPLOYER_PORTAL_DIRECT_DB_URL, when set, is a
# direct connection to the same database that the engine always uses, and that management
# commands (manage.py marks its process; runserver excepted) use for everything.
# docs/deployment.md explains each setup.
POOLER_MODES = ("none", "session", "transaction")
_app_url = env.str("EMPLOYER_PORTAL_DB_URL", default="") or env.str("DATABASE_URL", default="")
_direct_url = env.str("EMPLOYER_PORTAL_DIRECT_DB_URL", default="")
_pooler = env.str("EMPLOYER_PORTAL_DB_POOLER", default="none").lower()
if _pooler not in POOLER_MODES:
    raise ImproperlyConfigured(
        f"EMPLOYER_PORTAL_DB_POOLER must be one of {', '.join(POOLER_MODES)}, not {_pooler!r}"
    )
_command_process = env.str("EMPLOYER_PORTAL_PROCESS", default="") == "command"
_default_is_direct = bool(_direct_url) and _command_process


def _int(name: str, default: int, minimum: int = 0) -> int:
    """A whole-number setting from the environment; a bad one is a configuration error
    that names it (one line from manage.py), never a traceback."""
    raw = env.str(name, default="").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be {minimum} or more, not {value}")
    return value


def _help_only() -> bool:
    """``manage.py``, ``manage.py help …`` or ``manage.py CMD --help``: nothing that needs a
    database, so the embedded server is not started for it."""
    import sys

    args = sys.argv[1:] if _command_process else ["?"]
    return not args or args[0] == "help" or "--help" in args or "-h" in args


def _database(url: str) -> dict:
    if url:
        db = _parse_url(url)
    elif _help_only():
        db = {"NAME": env.str("EMPLOYER_PORTAL_DB_NAME", default="employer_portal")}
    else:
        from employer_portal.embedded_db import embedded_database_settings

        db = embedded_database_settings(
            env.str("EMPLOYER_PORTAL_DB_NAME", default="employer_portal")
        )
    # django-tenants' backend with the tenant context kept in transactions (no session state).
    db["ENGINE"] = "tenancy.postgresql_backend"
    db.setdefault("TEST", {})["NAME"] = env.str(
        "EMPLOYER_PORTAL_TEST_DB_NAME", default=f"test_{db['NAME']}"
    )
    return db


def _parse_url(url: str) -> dict:
    """A database URL as Django settings; a malformed one is a configuration error that
    names the problem (one line from manage.py), never a traceback."""
    shown = "…@" + url.rsplit("@", 1)[1] if "@" in url else url  # no password in messages
    try:
        with warnings.catch_warnings():  # django-environ warns before we can say it better
            warnings.simplefilter("ignore")
            db = env.db_url_config(url)
        port = db.get("PORT")
        if port not in (None, ""):
            int(port)
    except (ValueError, KeyError, TypeError) as exc:
        raise ImproperlyConfigured(
            f"The database URL {shown!r} cannot be read ({exc}); expected "
            "postgresql://user:password@host:port/database"
        ) from exc
    if not db.get("NAME") or "postgres" not in str(db.get("ENGINE", "")):
        raise ImproperlyConfigured(
            f"The database URL {shown!r} is not a PostgreSQL URL with a database name; "
            "expected postgresql://user:password@host:port/database"
        )
    return db


_db = _database(_direct_url if _default_is_direct else _app_url)
# What the connection goes through: the backend refuses what a transaction pooler breaks.
_db["POOLER"] = "none" if _default_is_direct else _pooler
# Django's own connection pool (psycopg_pool), off by default: its maximum size.
_pool_size = _int("EMPLOYER_PORTAL_DB_POOL", 0)
if _pool_size > 0:
    _db.setdefault("OPTIONS", {})["pool"] = {"min_size": 1, "max_size": _pool_size}
DATABASES = {"default": _db}
if _direct_url:
    DATABASES["direct"] = {**_database(_direct_url), "TEST": {"MIRROR": "default"}}
# Tenancy's own tables always in public (tenancy/routers.py), then django-tenants' router.
DATABASE_ROUTERS = ("tenancy.routers.PublicTablesRouter", "django_tenants.routers.TenantSyncRouter")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- django-tenants -----------------------------------------------------------------------
# The public schema holds Django's own tables and the tenancy registry. A tenant schema's
# business tables come from migrations_sql/tenant/, not from Django migrations, so the only
# tenant app is `portal`, whose models are unmanaged views of those SQL-defined tables:
# creating a tenant never replays a pile of Django migrations.
SHARED_APPS = [
    # tenancy, then what it needs: django-tenants, and django-tasks with its database
    # backend (the admin's job queue: tasks live in a public table, run by `db_worker`).
    "tenancy",
    *tenancy.REQUIRED_APPS,
    # The admin without autodiscovery at start-up: urls.py discovers the admin modules, so
    # management commands do not import the admin's views (a faster start for every command).
    "django.contrib.admin.apps.SimpleAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Throttles repeated failed admin logins (its tables live in public).
    "axes",
]
TENANT_APPS = [
    "employer_portal.portal",
    # A Django tenant app: its migrations run in every tenant schema through the engine.
    "employer_portal.candidate_notes",
]
INSTALLED_APPS = SHARED_APPS + [app for app in TENANT_APPS if app not in SHARED_APPS]

TENANT_MODEL = "tenancy.Tenant"
TENANT_DOMAIN_MODEL = "tenancy.Domain"
# Hosts that match no tenant (localhost, 127.0.0.1) are served from the public schema:
# that is where the admin lives, and no placeholder "public" row pollutes tenant_registry.
SHOW_PUBLIC_IF_NO_TENANT_FOUND = True
PUBLIC_SCHEMA_URLCONF = "employer_portal.urls"
ROOT_URLCONF = "employer_portal.tenant_urls"

MIDDLEWARE = [
    "tenancy.middleware.TenantMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: it answers a locked-out login before the view runs.
    "axes.middleware.AxesMiddleware",
]

if not DEBUG:
    # Static files from the application server itself, after `collectstatic` (in
    # development runserver serves them).
    MIDDLEWARE.insert(MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
                      "whitenoise.middleware.WhiteNoiseMiddleware")  # fmt: skip

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # refuses logins while an address is locked out
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = _int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_HOURS", default=0.25)  # hours
# Lock the pair (username, address): one attacker cannot lock every admin out.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
# The client's address: behind TRUSTED_PROXIES proxies (see below), the entry the outermost
# one appended to X-Forwarded-For; what a client sends itself stays to the left, unread.
AXES_CLIENT_IP_CALLABLE = "employer_portal.settings.client_ip"


def client_ip(request: object) -> str | None:
    """The address axes locks out (docs/deployment.md, failed admin logins)."""
    from django.conf import settings

    meta = getattr(request, "META", {})
    proxies = int(getattr(settings, "TRUSTED_PROXIES", 0))
    hops = [h.strip() for h in meta.get("HTTP_X_FORWARDED_FOR", "").split(",") if h.strip()]
    if proxies <= 0 or len(hops) < proxies:
        return meta.get("REMOTE_ADDR")
    return hops[-proxies]


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

WSGI_APPLICATION = "employer_portal.wsgi.application"

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

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- production security (docs/deployment.md) ---------------------------------------------
# With DEBUG off the site is served over TLS, usually by a proxy that terminates it and says
# so in X-Forwarded-Proto. Each setting can be turned off from the environment.
_production = not DEBUG
_behind_proxy = env.bool("TRUST_X_FORWARDED_PROTO", default=_production)
if _behind_proxy:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# How many proxies append to X-Forwarded-For before the app (client_ip above): 1 behind
# the TLS proxy, 0 (REMOTE_ADDR) without one.
TRUSTED_PROXIES = _int("TRUSTED_PROXIES", 1 if _behind_proxy else 0)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=_production)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=_production)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=_production)
SECURE_HSTS_SECONDS = _int("SECURE_HSTS_SECONDS", 31536000 if _production else 0)
# Tenants are served on subdomains (org-<id>.<suffix>): HSTS covers them too.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=_production)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=_production)

# --- the tenancy engine -------------------------------------------------------------------
TENANCY = {
    # Where the SQL migrations live: <dir>/public/*.sql and <dir>/tenant/*.sql.
    "MIGRATIONS_DIR": env.path("TENANCY_MIGRATIONS_DIR", default=BASE_DIR / "migrations_sql"),
    # DDL gives up after this long waiting for a table lock (readers that arrive meanwhile
    # queue behind it, so keep it short), then retries after a jittered backoff.
    "LOCK_TIMEOUT_MS": _int("TENANCY_LOCK_TIMEOUT_MS", 500),
    "LOCK_RETRIES": _int("TENANCY_LOCK_RETRIES", 10),
    # How long a run waits for a schema another run is migrating before failing it.
    "SCHEMA_LOCK_WAIT_S": env.float("TENANCY_SCHEMA_LOCK_WAIT_S", default=600.0),
    "MAX_TENANTS": _int("TENANCY_MAX_TENANTS", 10000),
    "MAX_CREATIONS_PER_HOUR": _int("TENANCY_MAX_CREATIONS_PER_HOUR", 100),
    # Tenant schemas built ahead and claimed by creations (docs/tenants.md, the warm pool):
    # 5 by default, in every shell (make run, tenant_create, the worker's refills alike);
    # TENANCY_POOL_SIZE=0 turns the pool off. (tenancy's own default, without this line, is 0.)
    "POOL_SIZE": _int("TENANCY_POOL_SIZE", 5),
    # Where tenant_backup / tenant_restore take pg_dump and pg_restore (else looked for).
    "PG_BIN_DIR": env.str("TENANCY_PG_BIN_DIR", default="") or None,
    # Development domains: <org id>.localhost
    "DOMAIN_SUFFIX": env.str("TENANCY_DOMAIN_SUFFIX", default="localhost"),
    # The database alias the engine connects to, and the pooler between it and PostgreSQL.
    "ENGINE_DATABASE": "direct" if _direct_url else "default",
    "ENGINE_POOLER": "none" if _direct_url else _pooler,
    # `manage.py lint_migrations`: rule → "error" | "warning" | "off", e.g.
    # {"drop-column": "error", "squawk:renaming-column": "off"}; refusal rules stay errors.
    "LINT": {},
    # A run that fails, is refused or is interrupted POSTs its alert (JSON) here, with a
    # short timeout and a few retries that never fail or stall the run (docs/deployment.md).
    "ALERT_WEBHOOK_URL": env.str("TENANCY_ALERT_WEBHOOK_URL", default=""),
    "ALERT_TIMEOUT_S": env.float("TENANCY_ALERT_TIMEOUT_S", default=3.0),
    "ALERT_RETRIES": _int("TENANCY_ALERT_RETRIES", 2),
    # /metrics (Prometheus) answers this bearer token, or a logged-in staff user.
    "METRICS_TOKEN": env.str("TENANCY_METRICS_TOKEN", default=""),
    # A migration file over this size, or of more statements, is refused in one line
    # before it is parsed (parsing is the slow part of a dry run and of lint).
    "MAX_FILE_BYTES": _int("TENANCY_MAX_FILE_BYTES", 5 * 1024 * 1024, 1),
    "MAX_STATEMENTS": _int("TENANCY_MAX_STATEMENTS", 10_000, 1),
    # The migration guide's tenants: Auth0 organization ids (org_ then words of ASCII
    # letters and digits joined by single underscores; its CI example uses
    # org_test_<timestamp>), each in schema tenant_<id, lower-cased>.
    "ORG_ID_PATTERN": r"org_[A-Za-z0-9]+(?:_[A-Za-z0-9]+)*",
    "ORG_ID_LABEL": "Auth0 organization id",
    "ORG_ID_EXAMPLE": "org_ayHu5XNaTNHMasO5",
    "ORG_ID_RULE": (
        "'org_' followed by letters and digits, optionally in words joined by single "
        "underscores (org_test_1795599878 too)"
    ),
    "SCHEMA_PREFIX": "tenant_",
    # No database URL: the embedded PostgreSQL (employer_portal/embedded_db.py) serves.
    "EMBEDDED_SERVER": not (_app_url or _direct_url),
}
# The same alerts are mailed to ADMINS (comma-separated addresses) through EMAIL_URL
# (django-environ's form, e.g. smtp+tls://user:password@smtp.example.com:587).
ADMINS = [(address.split("@")[0], address) for address in env.list("ADMINS", default=[])]
# Error reports (the 500 mails to ADMINS, the debug page) hide the webhook's URL as well.
DEFAULT_EXCEPTION_REPORTER_FILTER = "tenancy.services.alerts.ExceptionReporterFilter"
if env.str("EMAIL_URL", default=""):
    vars().update(env.email_url("EMAIL_URL"))
SERVER_EMAIL = env.str("SERVER_EMAIL", default="root@localhost")

# --- background jobs (django-tasks, database backend) ----------------------------------------
# The admin enqueues migration runs here; `manage.py db_worker` (started by `make run`)
# executes them in its own process, never in a web request.
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

_log_level = env.str("LOG_LEVEL", default="WARNING").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # The handler's own level too: Django's loggers print their INFO lines themselves
    # (runserver's "Watching for file changes", with DEBUG on) and also pass them up to
    # the root logger, whose level does not filter what comes up: each line came twice.
    "handlers": {"console": {"class": "logging.StreamHandler", "level": _log_level}},
    "root": {"handlers": ["console"], "level": _log_level},
    # The engine's pools replace a connection the server closed (a restart, a pooler's idle
    # timeout) by themselves; psycopg_pool's warning about it is not the user's to act on.
    "loggers": {"psycopg.pool": {"level": env.str("POOL_LOG_LEVEL", default="ERROR")}},
}
