"""Superset configuration for CityLake, loaded through SUPERSET_CONFIG_PATH by scripts/superset.sh.

Secrets and locations come from the environment, which scripts/superset.sh sets from
citylake.config, so this file holds no path and no secret and is the same on every machine:

- CITYLAKE_SUPERSET_SECRET_KEY: signs sessions and encrypts database credentials; generated once
  into <data root>/secrets/superset_secret_key (mode 600).
- CITYLAKE_SUPERSET_METADATA_URL: Superset's own metadata database (SQLite under
  <data root>/metadata locally, PostgreSQL in production).
"""

from __future__ import annotations

import os


def _required(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise RuntimeError(
            f"{name} is not set: start Superset through scripts/superset.sh, which sets it"
        )
    return value


SECRET_KEY = _required("CITYLAKE_SUPERSET_SECRET_KEY")

SQLALCHEMY_DATABASE_URI = _required("CITYLAKE_SUPERSET_METADATA_URL")
if SQLALCHEMY_DATABASE_URI.startswith("sqlite:") and "check_same_thread" not in (
    SQLALCHEMY_DATABASE_URI
):
    # gunicorn threads share the connection pool; Superset's own default sets this too.
    SQLALCHEMY_DATABASE_URI += "?check_same_thread=false"

# Chinese first, English one click away (Superset ships a zh translation; LANGUAGES is empty by
# default, which hides the language picker).
BABEL_DEFAULT_LOCALE = "zh"
LANGUAGES = {
    "zh": {"flag": "cn", "name": "简体中文"},
    "en": {"flag": "us", "name": "English"},
}

# CSRF stays on for forms and the REST API (the API accepts a JWT instead of a session).
WTF_CSRF_ENABLED = True

# Content-Security-Policy stays on. Superset's default policy also allows map tiles, Scarf
# telemetry pixels and documentation images from the internet; the city's network reaches none of
# them, so the policy names only this server. Styles need 'unsafe-inline' (antd/emotion inject
# style tags), scripts get a per-request nonce.
TALISMAN_ENABLED = True
TALISMAN_CONFIG = {
    "content_security_policy": {
        "base-uri": ["'self'"],
        "default-src": ["'self'"],
        "img-src": ["'self'", "blob:", "data:"],
        "worker-src": ["'self'", "blob:"],
        "connect-src": ["'self'"],
        "object-src": "'none'",
        "style-src": ["'self'", "'unsafe-inline'"],
        "font-src": ["'self'", "data:"],
        "script-src": ["'self'", "'strict-dynamic'"],
    },
    "content_security_policy_nonce_in": ["script-src"],
    # Served on 127.0.0.1 over plain HTTP; TLS, when needed, ends at a reverse proxy.
    "force_https": False,
    "session_cookie_secure": False,
}

# A running Superset must show the newest published serving file: no result cache. Metadata
# (dataset columns, chart forms) may sit in a small per-process cache.
CACHE_CONFIG = {"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": 300}
DATA_CACHE_CONFIG = {"CACHE_TYPE": "NullCache"}

# These equal Superset 6.1's defaults and are pinned so an upgrade cannot turn them on: each
# needs a Celery worker and Redis, which the embedded profile does not run.
FEATURE_FLAGS = {
    "GLOBAL_ASYNC_QUERIES": False,
    "ALERT_REPORTS": False,
    "THUMBNAILS": False,
    # The operations screen is a big screen: every chart renders at once, not only those
    # scrolled into view (which also lets the browser tests see every chart's error state).
    "DASHBOARD_VIRTUALIZATION": False,
}

# SQLite and shillelagh stay blocked as data sources; DuckDB is opened read-only with external
# file access disabled (see dashboards/bundle/databases/CityLake.yaml).
PREVENT_UNSAFE_DB_CONNECTIONS = True

# Offline base map for deck.gl. The maps of the five districts need no tiles, but deck.gl always
# asks a tile server for one; pointing it at the internet would break the CSP and leak requests.
# So Superset serves one blank tile for every (z, x, y) itself, and the charts name it
# (tile://<this server>/citylake/tiles/{z}/{x}/{y}.png, filled in by dashboards/provision.py).
_BLANK_TILE = bytes.fromhex(  # 1×1 PNG, RGB #eef2f5 (the map's background)
    "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de"
    "0000000c4944415478da6378f7e92b0005a702d64c33da520000000049454e44ae426082"
)


def _tiles_blueprint():
    from flask import Blueprint, Response

    tiles = Blueprint("citylake_tiles", __name__, url_prefix="/citylake/tiles")

    @tiles.route("/<int:z>/<int:x>/<int:y>.png")
    def blank_tile(z: int, x: int, y: int) -> Response:
        return Response(
            _BLANK_TILE, mimetype="image/png", headers={"Cache-Control": "public, max-age=86400"}
        )

    return tiles


BLUEPRINTS = [_tiles_blueprint()]
_SUPERSET_URL = os.environ.get("CITYLAKE_SUPERSET_URL", "http://127.0.0.1:8088")
DECKGL_BASE_MAP = [
    [f"tile://{_SUPERSET_URL}/citylake/tiles/{{z}}/{{x}}/{{y}}.png", "空白底图 Blank (offline)"]
]
