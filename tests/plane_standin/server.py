#!/usr/bin/env python3
"""A stand-in for the Plane v1.2.x API backend (makeplane/plane, apps/api/), for tests only.

Python 3.11 standard library only; all state in memory; never opens an outgoing
connection.  Every behaviour copied from Plane carries a comment naming the Plane
source file it copies (paths relative to makeplane/plane).  Things that are NOT
Plane (fault injection, the state dump) live under /__standin__/ and are marked so.

Run:  python3 server.py [--host 0.0.0.0] [--port 8000]
Env:  API_KEY_RATE_LIMIT (default 60/minute), WEB_URL (default http://localhost),
      ADMIN_BASE_URL, ENABLE_SIGNUP (default 1), PLANE_STANDIN_FAULTS (JSON, see README).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import math
import os
import re
import secrets
import string
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

# --------------------------------------------------------------------------
# Constants copied from Plane
# --------------------------------------------------------------------------

# apps/api/plane/authentication/adapter/error.py (subset used by the flows here)
ERR = {
    "INSTANCE_NOT_CONFIGURED": 5000,
    "INVALID_EMAIL": 5005,
    "SIGNUP_DISABLED": 5015,
    "PASSWORD_TOO_WEAK": 5021,
    "USER_ALREADY_EXIST": 5030,
    "REQUIRED_EMAIL_PASSWORD_SIGN_UP": 5040,
    "INVALID_EMAIL_SIGN_UP": 5045,
    "USER_DOES_NOT_EXIST": 5060,
    "AUTHENTICATION_FAILED_SIGN_IN": 5065,
    "REQUIRED_EMAIL_PASSWORD_SIGN_IN": 5070,
    "INVALID_EMAIL_SIGN_IN": 5075,
    "ADMIN_ALREADY_EXIST": 5150,
    "REQUIRED_ADMIN_EMAIL_PASSWORD_FIRST_NAME": 5155,
    "INVALID_ADMIN_EMAIL": 5160,
    "ADMIN_USER_ALREADY_EXIST": 5180,
    "RATE_LIMIT_EXCEEDED": 5900,
}

# apps/api/plane/db/models/workspace.py: ROLE_CHOICES
ADMIN, MEMBER, GUEST = 20, 15, 5
ROLES = (ADMIN, MEMBER, GUEST)

# Cookie names from apps/api/plane/settings/common.py (SESSION_COOKIE_NAME,
# ADMIN_SESSION_COOKIE_NAME) as chosen by apps/api/plane/authentication/middleware/session.py
APP_SESSION_COOKIE = "session-id"
ADMIN_SESSION_COOKIE = "admin-session-id"
CSRF_COOKIE = "csrftoken"

# apps/api/plane/utils/constants.py: RESTRICTED_WORKSPACE_SLUGS (subset)
RESTRICTED_WORKSPACE_SLUGS = {
    "404", "accounts", "api", "create-workspace", "god-mode", "installations",
    "invitations", "onboarding", "profile", "spaces", "workspace-invitations",
    "password", "flags", "monitor", "monitoring", "ingest", "plane-pro",
    "plane-ultimate", "enterprise", "plane-enterprise", "disco", "silo", "chat",
    "calendar", "drive", "channels", "upgrade", "billing", "sign-in", "sign-up",
    "signin", "signup", "config", "live", "admin",
}

# apps/api/plane/utils/paginator.py: MAX_LIMIT and BasePaginator defaults
PAGINATOR_MAX_LIMIT = 1000
DEFAULT_PER_PAGE = 1000

# Django's django.middleware.csrf constants (Plane uses Django's CsrfViewMiddleware)
CSRF_SECRET_LENGTH = 32
CSRF_TOKEN_LENGTH = 2 * CSRF_SECRET_LENGTH
CSRF_ALLOWED_CHARS = string.ascii_letters + string.digits

# apps/api/templates/csrf_failure.html, rendered by csrf_failure() in
# apps/api/plane/authentication/views/common.py with django.shortcuts.render:
# status 200, not Django's default 403.
CSRF_FAILURE_HTML = """<!-- templates/csrf_failure.html -->
<!doctype html>
<html lang="en">
  <head>
    <meta charset="UTF-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1.0" />
    <title>CSRF Verification Failed</title>
  </head>
  <body>
    <div class="card">
      <div class="card-header">
        <h3>CSRF Verification Failed</h3>
      </div>
      <div class="card-body">
        <p>
          It looks like your form submission has expired or there was a problem
          with your request.
        </p>
        <p>Please try the following:</p>
        <ul>
          <li>Refresh the page and try submitting the form again.</li>
          <li>Ensure that cookies are enabled in your browser.</li>
        </ul>
        <a href="{root_url}" class="btn-primary">Go to Home Page</a>
      </div>
    </div>
  </body>
</html>
"""

# Django's non-DEBUG 404 page (django.views.defaults.page_not_found)
NOT_FOUND_HTML = (
    '<!doctype html>\n<html lang="en">\n<head>\n  <title>Not Found</title>\n</head>\n'
    "<body>\n  <h1>Not Found</h1><p>The requested resource was not found on this server.</p>\n"
    "</body>\n</html>\n"
)

# Django's non-DEBUG 500 page (django.views.defaults.server_error; Plane sets no
# handler500 in apps/api/plane/urls.py and has no templates/500.html)
SERVER_ERROR_HTML = (
    '<!doctype html>\n<html lang="en">\n<head>\n  <title>Server Error (500)</title>\n</head>\n'
    "<body>\n  <h1>Server Error (500)</h1><p></p>\n</body>\n</html>\n"
)

# apps/api/plane/app/views/base.py and apps/api/plane/api/views/base.py
# handle_exception: what an unexpected exception in a view becomes
PLANE_500 = {"error": "Something went wrong please try again later"}

# apps/api/plane/settings/common.py: SESSION_COOKIE_AGE (default 7 days) and
# ADMIN_SESSION_COOKIE_AGE (default 1 hour), the latter applied by
# apps/api/plane/authentication/utils/login.py user_login (session.set_expiry)
SESSION_COOKIE_AGE = 604800
ADMIN_SESSION_COOKIE_AGE = 3600

# apps/api/plane/settings/common.py REST_FRAMEWORK DEFAULT_THROTTLE_RATES["anon"]
ANON_RATE = "30/minute"

DRF_NOT_AUTHENTICATED = {"detail": "Authentication credentials were not provided."}
DRF_PERMISSION_DENIED = {"detail": "You do not have permission to perform this action."}


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------------
# Email validation: django.core.validators.EmailValidator (Plane calls
# validate_email in apps/api/plane/authentication/views/app/email.py and
# apps/api/plane/license/api/views/admin.py)
# --------------------------------------------------------------------------

_USER_RE = re.compile(
    r"(^[-!#$%&'*+/=?^_`{}|~0-9A-Z]+(\.[-!#$%&'*+/=?^_`{}|~0-9A-Z]+)*\Z"
    r'|^"([\001-\010\013\014\016-\037!#-\[\]-\177]|\\[\001-\011\013\014\016-\177])*"\Z)',
    re.IGNORECASE,
)
_DOMAIN_RE = re.compile(
    r"((?:[A-Z0-9](?:[A-Z0-9-]{0,61}[A-Z0-9])?\.)+)(?:[A-Z0-9-]{2,63}(?<!-))\Z", re.IGNORECASE
)
_DOMAIN_ALLOWLIST = {"localhost"}


def valid_email(value: str) -> bool:
    if not value or "@" not in value or len(value) > 320:
        return False
    user_part, domain_part = value.rsplit("@", 1)
    if not _USER_RE.match(user_part):
        return False
    if domain_part in _DOMAIN_ALLOWLIST:
        return True
    return bool(_DOMAIN_RE.match(domain_part))


# --------------------------------------------------------------------------
# Password strength.  Plane requires zxcvbn(password)["score"] >= 3
# (apps/api/plane/authentication/adapter/base.py validate_password,
# apps/api/plane/license/api/views/admin.py).  zxcvbn is not in the standard
# library; this is a deliberately CONSERVATIVE approximation (it refuses some
# passwords zxcvbn would accept, e.g. 9-11 random characters; it tries never to
# accept one zxcvbn refuses): common words/passwords (also in leet speak),
# keyboard/alphabet/digit sequences and repeats are removed, then the rest must
# be >= 16 characters, or >= 12 characters from at least two character classes.
# 24+ random URL-safe characters always pass.
# --------------------------------------------------------------------------

COMMON_WORDS = sorted(
    {
        "password", "passwort", "passw0rd", "pass", "admin", "administrator", "root",
        "qwerty", "qwertz", "azerty", "asdf", "zxcv", "letmein", "welcome", "login",
        "master", "monkey", "dragon", "shadow", "sunshine", "princess", "football",
        "baseball", "soccer", "hockey", "batman", "superman", "trustno", "iloveyou",
        "love", "secret", "changeme", "default", "guest", "test", "testing", "user",
        "plane", "makeplane", "deployer", "hello", "freedom", "whatever", "michael",
        "jennifer", "jordan", "hunter", "ranger", "buster", "thomas", "robert",
        "access", "starwars", "computer", "internet", "service", "server", "system",
        "summer", "winter", "spring", "autumn", "january", "february", "october",
        "november", "december", "monday", "friday", "sunday", "company", "example",
        "abc", "abcd", "abcdef", "letme", "please", "secure", "security", "token",
        "github", "google", "apple", "orange", "banana", "cheese", "cookie", "pepper",
        "ninja", "mustang", "killer", "charlie", "donald", "maggie", "ginger",
        "matrix", "silver", "golden", "diamond", "flower", "tigger", "pokemon",
    },
    key=len,
    reverse=True,
)
_LEET = str.maketrans({"0": "o", "1": "l", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"})
_SEQUENCES = [
    "abcdefghijklmnopqrstuvwxyz",
    "0123456789",
    "qwertyuiop",
    "asdfghjkl",
    "zxcvbnm",
    "qwertzuiop",
    "yxcvbnm",
    "azertyuiop",
    "1234567890",
]


def _strip_patterns(pw: str) -> str:
    low = pw.lower()
    keep = [True] * len(pw)
    # common words, plain and leet-decoded
    for variant in {low, low.translate(_LEET)}:
        for word in COMMON_WORDS:
            if len(word) < 3:
                continue
            start = variant.find(word)
            while start != -1:
                for i in range(start, start + len(word)):
                    keep[i] = False
                start = variant.find(word, start + 1)
    # runs of 3+ along a sequence (forwards or backwards) or of one repeated char
    i = 0
    n = len(low)
    while i < n:
        j = i + 1
        while j < n and low[j] == low[i]:
            j += 1
        if j - i >= 3:
            for k in range(i, j):
                keep[k] = False
            i = j
            continue
        best = 1
        for seq in _SEQUENCES:
            for step in (1, -1):
                s = seq if step == 1 else seq[::-1]
                pos = s.find(low[i])
                if pos == -1:
                    continue
                length = 1
                while i + length < n and pos + length < len(s) and low[i + length] == s[pos + length]:
                    length += 1
                best = max(best, length)
        if best >= 3:
            for k in range(i, i + best):
                keep[k] = False
            i += best
        else:
            i += 1
    return "".join(c for c, k in zip(pw, keep) if k)


def password_strong_enough(pw: str) -> bool:
    rest = _strip_patterns(pw)
    # repeated blocks ("abab12abab12") add little: count distinct 3-grams instead of raw length
    classes = sum(
        1
        for cls in (string.ascii_lowercase, string.ascii_uppercase, string.digits)
        if any(c in cls for c in rest)
    ) + (1 if any(not c.isalnum() for c in rest) else 0)
    if len(rest) >= 6:
        grams = {rest[i : i + 3] for i in range(len(rest) - 2)}
        effective = min(len(rest), len(grams) + 2)
    else:
        effective = len(rest)
    if effective >= 16:
        return True
    return effective >= 12 and classes >= 2


# --------------------------------------------------------------------------
# Django CSRF (django/middleware/csrf.py), which Plane's plain Django form views
# (apps/api/plane/authentication/views/app/email.py,
# apps/api/plane/license/api/views/admin.py) are protected by.
# --------------------------------------------------------------------------


def _csrf_secret() -> str:
    return "".join(secrets.choice(CSRF_ALLOWED_CHARS) for _ in range(CSRF_SECRET_LENGTH))


def _csrf_mask(secret: str) -> str:
    mask = _csrf_secret()
    chars = CSRF_ALLOWED_CHARS
    pairs = zip((chars.index(x) for x in secret), (chars.index(x) for x in mask))
    return mask + "".join(chars[(x + y) % len(chars)] for x, y in pairs)


def _csrf_unmask(token: str) -> str:
    mask, token = token[:CSRF_SECRET_LENGTH], token[CSRF_SECRET_LENGTH:]
    chars = CSRF_ALLOWED_CHARS
    pairs = zip((chars.index(x) for x in token), (chars.index(x) for x in mask))
    return "".join(chars[x - y] for x, y in pairs)


def _csrf_well_formed(token: str) -> bool:
    return len(token) in (CSRF_SECRET_LENGTH, CSRF_TOKEN_LENGTH) and all(
        c in CSRF_ALLOWED_CHARS for c in token
    )


def csrf_ok(cookie_secret: str | None, request_token: str | None) -> bool:
    if not cookie_secret or len(cookie_secret) != CSRF_SECRET_LENGTH or not _csrf_well_formed(cookie_secret):
        return False  # "CSRF cookie not set." / "has incorrect length"
    if not request_token or not _csrf_well_formed(request_token):
        return False  # "CSRF token missing." / "has incorrect length"
    if len(request_token) == CSRF_TOKEN_LENGTH:
        request_token = _csrf_unmask(request_token)
    return hmac.compare_digest(request_token, cookie_secret)


# --------------------------------------------------------------------------
# Rate limit: apps/api/plane/api/rate_limit.py ApiKeyRateThrottle on top of
# DRF's SimpleRateThrottle (rest_framework/throttling.py).
# --------------------------------------------------------------------------


def parse_rate(rate: str) -> tuple[int, int]:
    # rest_framework.throttling.SimpleRateThrottle.parse_rate: only the period's first letter counts
    num, period = rate.split("/")
    return int(num), {"s": 1, "m": 60, "h": 3600, "d": 86400}[period.strip()[0]]


class Throttle:
    def __init__(self, rate: str):
        self.set_rate(rate)
        self.history: dict[str, list[float]] = {}

    def set_rate(self, rate: str) -> None:
        self.rate = rate
        self.num_requests, self.duration = parse_rate(rate)

    def check(self, key: str) -> tuple[bool, dict[str, str]]:
        """Return (allowed, headers) like ApiKeyRateThrottle.allow_request + DRF throttled()."""
        now = time.time()
        history = self.history.setdefault(key, [])
        while history and history[-1] <= now - self.duration:
            history.pop()
        if len(history) >= self.num_requests:
            # SimpleRateThrottle.wait(); DRF Throttled rounds up; the exception
            # handler adds Retry-After ("%d" % wait)
            remaining = self.duration - (now - history[-1]) if history else self.duration
            available = self.num_requests - len(history) + 1
            headers = {}
            if available > 0:
                headers["Retry-After"] = "%d" % math.ceil(remaining / float(available))
            return False, headers
        history.insert(0, now)
        # ApiKeyRateThrottle.allow_request: remaining after this call, reset = now + duration
        available = self.num_requests - len(history)
        return True, {
            "X-RateLimit-Remaining": str(max(0, available)),
            "X-RateLimit-Reset": str(int(now + self.duration)),
        }


# --------------------------------------------------------------------------
# In-memory state
# --------------------------------------------------------------------------


class State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        # apps/api/plane/license/models/instance.py: Instance, registered by
        # `register_instance` at api start; is_setup_done flips on admin sign-up.
        self.instance = {
            "id": str(uuid.uuid4()),
            "instance_name": "Plane Community Edition",
            "whitelist_emails": None,
            "instance_id": secrets.token_hex(12),
            "current_version": "v1.2.3",
            "latest_version": "v1.2.3",
            "edition": "PLANE_COMMUNITY",
            "domain": os.environ.get("WEB_URL", "http://localhost"),
            "last_checked_at": now_iso(),
            "namespace": None,
            "is_telemetry_enabled": True,
            "is_support_required": True,
            "is_setup_done": False,
            "is_signup_screen_visited": False,
            "user_count": 0,
            "is_verified": False,
            "created_at": now_iso(),
            "updated_at": now_iso(),
        }
        self.instance_admins: list[str] = []  # user ids
        self.users: dict[str, dict] = {}
        self.users_by_email: dict[str, str] = {}
        self.sessions: dict[str, tuple[str, str, float]] = {}  # key -> (user_id, "app"|"admin", expires)
        self.workspaces: dict[str, dict] = {}  # slug -> workspace
        self.members: dict[str, dict] = {}  # id -> WorkspaceMember
        self.invitations: dict[str, dict] = {}  # id -> WorkspaceMemberInvite
        self.tokens: dict[str, dict] = {}  # id -> APIToken
        self.projects: list[dict] = []
        self.throttle = Throttle(os.environ.get("API_KEY_RATE_LIMIT", "60/minute"))
        # REST framework's AnonRateThrottle, keyed by the client's IP
        self.anon_throttle = Throttle(os.environ.get("PLANE_STANDIN_ANON_RATE", ANON_RATE))
        # NOT Plane: seconds added to the clock sessions expire by (POST /__standin__/clock)
        self.clock_offset = 0.0
        # NOT Plane: anonymous calls to the throttled views, for tests
        self.anonymous_calls = 0
        self.faults = {"fail_next": 0, "status": 500, "path_prefix": "", "csrf_failure": False}
        env_faults = os.environ.get("PLANE_STANDIN_FAULTS")
        if env_faults:
            self.set_faults(json.loads(env_faults))

    # ---- stand-in only --------------------------------------------------
    def set_faults(self, spec: dict) -> dict:
        if "fail_next" in spec:
            self.faults["fail_next"] = max(0, int(spec["fail_next"]))
        if "status" in spec:
            status = int(spec["status"])
            if not 500 <= status <= 599:
                raise ValueError("status must be 5xx")
            self.faults["status"] = status
        if "path_prefix" in spec:
            self.faults["path_prefix"] = str(spec["path_prefix"] or "")
        if "csrf_failure" in spec:
            self.faults["csrf_failure"] = bool(spec["csrf_failure"])
        if "rate_limit" in spec:
            self.throttle.set_rate(str(spec["rate_limit"]))
            self.throttle.history.clear()
        if "anon_rate_limit" in spec:
            self.anon_throttle.set_rate(str(spec["anon_rate_limit"]))
            self.anon_throttle.history.clear()
        return self.fault_view()

    def fault_view(self) -> dict:
        return dict(self.faults, rate_limit=self.throttle.rate, anon_rate_limit=self.anon_throttle.rate)

    def now(self) -> float:
        return time.time() + self.clock_offset

    # ---- helpers --------------------------------------------------------
    def user_by_email(self, email: str) -> dict | None:
        uid = self.users_by_email.get(email)
        return self.users.get(uid) if uid else None

    def membership(self, slug: str, user_id: str, active_only: bool = True) -> dict | None:
        ws = self.workspaces.get(slug)
        if not ws:
            return None
        for m in self.members.values():
            if m["workspace"] == ws["id"] and m["member"] == user_id and (m["is_active"] or not active_only):
                return m
        return None

    def workspace_members(self, slug: str) -> list[dict]:
        ws = self.workspaces[slug]
        return sorted(
            (m for m in self.members.values() if m["workspace"] == ws["id"] and m["is_active"]),
            key=lambda m: m["created_at_ts"],
        )

    def workspace_by_id(self, wid: str) -> dict | None:
        for ws in self.workspaces.values():
            if ws["id"] == wid:
                return ws
        return None


def hash_password(password: str) -> str:
    salt = secrets.token_hex(8)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), 10000).hex()
    return f"pbkdf2_sha256$10000${salt}${digest}"


def check_password(password: str, stored: str) -> bool:
    _, iterations, salt, digest = stored.split("$")
    calc = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), int(iterations)).hex()
    return hmac.compare_digest(calc, digest)


# ---- serializers (shapes of Plane's DRF serializers) ----------------------


# apps/api/plane/utils/url.py URL_PATTERN and contains_url (v1.2.3)
URL_PATTERN = re.compile(
    r"(?i)"
    r"(?:"
    r"https?://[^\s]+"
    r"|"
    r"www\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*"
    r"|"
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]{2,6}"
    r"|"
    r"(?:(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\.){3}(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)"
    r")"
)


def contains_url(value: str) -> bool:
    if len(value) > 1000:
        return False
    return any(URL_PATTERN.search(line[:500]) for line in value.split("\n"))


def user_lite(u: dict) -> dict:
    # apps/api/plane/api/serializers/user.py UserLiteSerializer
    return {
        "id": u["id"],
        "first_name": u["first_name"],
        "last_name": u["last_name"],
        "email": u["email"],
        "avatar": "",
        "avatar_url": None,
        "display_name": u["display_name"],
    }


def user_admin_lite(u: dict) -> dict:
    # apps/api/plane/app/serializers/user.py UserAdminLiteSerializer
    return {
        "id": u["id"],
        "first_name": u["first_name"],
        "last_name": u["last_name"],
        "avatar": "",
        "avatar_url": None,
        "is_bot": False,
        "display_name": u["display_name"],
        "email": u["email"],
        "last_login_medium": u["last_login_medium"],
    }


def user_me(u: dict) -> dict:
    # apps/api/plane/app/serializers/user.py UserMeSerializer (subset)
    return {
        "id": u["id"],
        "avatar": "",
        "avatar_url": None,
        "cover_image": None,
        "cover_image_url": None,
        "date_joined": u["date_joined"],
        "display_name": u["display_name"],
        "email": u["email"],
        "first_name": u["first_name"],
        "last_name": u["last_name"],
        "is_active": u["is_active"],
        "is_bot": False,
        "is_email_verified": False,
        "user_timezone": "UTC",
        "username": u["username"],
        "is_password_autoset": False,
        "last_login_medium": u["last_login_medium"],
    }


def workspace_ser(ws: dict, state: State, role: int | None = None) -> dict:
    # apps/api/plane/app/serializers/workspace.py WorkSpaceSerializer
    data = {k: v for k, v in ws.items() if not k.endswith("_ts")}
    data["total_members"] = sum(
        1 for m in state.members.values() if m["workspace"] == ws["id"] and m["is_active"]
    )
    if role is not None:
        data["role"] = role
    return data


def invitation_ser(inv: dict, state: State) -> dict:
    # apps/api/plane/app/serializers/workspace.py WorkSpaceMemberInviteSerializer
    ws = state.workspace_by_id(inv["workspace"])
    data = {k: v for k, v in inv.items() if not k.endswith("_ts")}
    data["workspace"] = {"id": ws["id"], "name": ws["name"], "slug": ws["slug"]} if ws else None
    data["invite_link"] = f"/workspace-invitations/?invitation_id={inv['id']}&email={inv['email']}&slug={ws['slug'] if ws else ''}"
    return data


def token_ser(t: dict, with_token: bool) -> dict:
    # apps/api/plane/app/serializers/api.py APITokenSerializer (fields "__all__")
    # and APITokenReadSerializer (exclude "token"; is_active computed from expired_at)
    data = {k: v for k, v in t.items() if not k.endswith("_ts")}
    if not with_token:
        data.pop("token", None)
        data["is_active"] = token_unexpired(t)
    return data


def token_unexpired(t: dict) -> bool:
    return t["expired_at_ts"] is None or time.time() < t["expired_at_ts"]


def project_ser(p: dict, state: State, user_id: str) -> dict:
    # apps/api/plane/api/serializers/project.py ProjectSerializer (subset)
    data = {k: v for k, v in p.items() if not k.endswith("_ts") and k != "members"}
    data["is_member"] = user_id in p["members"]
    data["member_role"] = p["members"].get(user_id)
    data["total_members"] = len(p["members"])
    data["total_cycles"] = 0
    data["total_modules"] = 0
    data["is_deployed"] = False
    data["sort_order"] = p["sort_order"] if user_id in p["members"] else None
    return data


# --------------------------------------------------------------------------
# HTTP layer
# --------------------------------------------------------------------------


class Response:
    def __init__(self, status: int, body: bytes = b"", content_type: str | None = "application/json"):
        self.status = status
        self.body = body
        self.headers: list[tuple[str, str]] = []
        if content_type and body:
            self.headers.append(("Content-Type", content_type))
        elif content_type == "application/json":
            # DRF still declares JSON for empty 204 bodies? It does not; keep none.
            pass

    def header(self, name: str, value: str) -> "Response":
        self.headers.append((name, value))
        return self


def json_response(status: int, data) -> Response:
    return Response(status, json.dumps(data).encode(), "application/json")


def html_response(status: int, html: str) -> Response:
    return Response(status, html.encode(), "text/html; charset=utf-8")


def redirect(location: str) -> Response:
    # django.http.HttpResponseRedirect: 302, empty body, Location header
    r = Response(302, b"", "text/html; charset=utf-8")
    r.header("Location", location)
    return r


def cookie_header(name: str, value: str, max_age: int | None = None, httponly: bool = False) -> str:
    parts = [f"{name}={value}"]
    if max_age is not None:
        expires = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + max_age))
        parts.append(f"expires={expires}")
        parts.append(f"Max-Age={max_age}")
    if httponly:
        parts.append("HttpOnly")
    parts.append("Path=/")
    parts.append("SameSite=Lax")
    return "; ".join(parts)


class Request:
    def __init__(self, handler: BaseHTTPRequestHandler, method: str):
        self.method = method
        split = urlsplit(handler.path)
        self.path = split.path
        self.query_string = split.query
        self.query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        self.headers = handler.headers
        self.client_ip = handler.client_address[0]
        # request.META.get("HTTP_USER_AGENT"): None when the header is absent
        self.user_agent = handler.headers.get("User-Agent")
        length = int(handler.headers.get("Content-Length") or 0)
        self.body = handler.rfile.read(length) if length > 0 else b""
        self.cookies: dict[str, str] = {}
        raw = handler.headers.get("Cookie")
        if raw:
            jar = SimpleCookie()
            try:
                jar.load(raw)
            except Exception:  # a malformed cookie header is ignored, as Django does
                jar = SimpleCookie()
            self.cookies = {k: m.value for k, m in jar.items()}
        ctype = (handler.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        self.content_type = ctype
        # django.http.HttpRequest.POST: only form encodings are parsed
        self.POST: dict[str, str] = {}
        if ctype == "application/x-www-form-urlencoded":
            self.POST = {
                k: v[-1] for k, v in parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True).items()
            }
        elif ctype == "multipart/form-data":
            self.POST = {}  # not supported by the stand-in; treated as an empty form

    def json(self):
        """DRF request.data (rest_framework/request.py Request._parse) with the default
        parsers JSONParser, FormParser, MultiPartParser (apps/api/plane/settings/common.py
        sets no DEFAULT_PARSER_CLASSES): no body is empty data; a body of another media
        type, or none declared, is UnsupportedMediaType (415); bad JSON is ParseError (400)."""
        if not self.body:
            return {}
        if self.content_type == "application/x-www-form-urlencoded":
            return dict(self.POST)
        if self.content_type == "multipart/form-data":
            return {}
        if self.content_type != "application/json":
            raise UnsupportedMediaType(self.content_type)
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            # rest_framework/parsers.py JSONParser.parse
            raise ParseError(f"JSON parse error - {e}")


class ParseError(Exception):
    def __init__(self, detail: str):
        self.detail = detail


class UnsupportedMediaType(Exception):
    # rest_framework/exceptions.py UnsupportedMediaType (415)
    def __init__(self, media_type: str):
        self.detail = f'Unsupported media type "{media_type}" in request.'


# route table: (method-set, regex, handler name, kind)
# kind: "django" (plain Django View, CSRF protected), "app" (DRF session API),
# "v1" (DRF public API with X-API-Key), "plain" (no auth), "standin"
ROUTES: list[tuple[re.Pattern, dict[str, str], str]] = []


def route(pattern: str, kind: str, **methods: str):
    ROUTES.append((re.compile("^" + pattern + "$"), {m.upper(): h for m, h in methods.items()}, kind))


SLUG = r"(?P<slug>[^/]+)"
UUID = r"(?P<pk>[0-9a-fA-F-]{32,36})"

# apps/api/plane/web/urls.py -> apps/api/plane/web/views.py health_check
route(r"/", "plain", get="health")
# apps/api/plane/license/urls.py -> apps/api/plane/license/api/views/instance.py InstanceEndpoint
route(r"/api/instances/", "plain", get="instance_get")
# apps/api/plane/license/urls.py -> apps/api/plane/license/api/views/admin.py InstanceAdminSignUpEndpoint
route(r"/api/instances/admins/sign-up/", "django", post="admin_sign_up")
# apps/api/plane/authentication/urls.py
route(r"/auth/get-csrf-token/", "plain", get="csrf_token")
route(r"/auth/sign-up/", "django", post="sign_up")
route(r"/auth/sign-in/", "django", post="sign_in")
# apps/api/plane/app/urls/user.py, workspace.py, api.py
route(r"/api/users/me/", "app", get="me", patch="me_patch")
route(r"/api/workspace-slug-check/", "app", get="slug_check")
route(r"/api/workspaces/", "app", get="workspaces_list", post="workspace_create")
route(r"/api/users/me/workspaces/", "app", get="my_workspaces")
route(r"/api/workspaces/" + SLUG + r"/invitations/", "app", get="ws_invitations_list", post="ws_invite")
route(r"/api/users/me/workspaces/invitations/", "app", get="my_invitations", post="accept_invitations")
route(r"/api/workspaces/" + SLUG + r"/members/", "app", get="ws_members")
route(r"/api/workspaces/" + SLUG + r"/members/" + UUID + "/", "app", get="ws_member_get", patch="ws_member_patch")
route(r"/api/users/api-tokens/", "app", get="tokens_list", post="token_create")
route(r"/api/users/api-tokens/" + UUID + "/", "app", get="token_get", delete="token_delete")
# apps/api/plane/api/urls/user.py, member.py, project.py
route(r"/api/v1/users/me/", "v1", get="v1_me")
route(r"/api/v1/workspaces/" + SLUG + r"/members/", "v1", get="v1_members")
route(r"/api/v1/workspaces/" + SLUG + r"/projects/", "v1", get="v1_projects", post="v1_project_create")
# NOT Plane: test-only endpoints
route(r"/__standin__/faults", "standin", get="standin_faults_get", post="standin_faults")
route(r"/__standin__/state", "standin", get="standin_state")
route(r"/__standin__/reset", "standin", post="standin_reset")
route(r"/__standin__/clock", "standin", post="standin_clock")
route(r"/__standin__/manage", "standin", post="standin_manage")


# DRF views with permission_classes = [AllowAny] that the anonymous throttle covers:
# apps/api/plane/license/api/views/instance.py InstanceEndpoint.get and
# apps/api/plane/authentication/views/common.py CSRFTokenEndpoint. (GET / is a plain
# Django view, apps/api/plane/web/views.py, and the form views are django.views.View:
# no throttle.)
DRF_ALLOW_ANY = {"instance_get", "csrf_token"}


class NotNullViolation(Exception):
    """User.last_login_uagent is a NOT NULL TextField (apps/api/plane/db/models/user.py):
    saving a user without a User-Agent raises IntegrityError."""


def resolve(path: str):
    for regex, methods, kind in ROUTES:
        m = regex.match(path)
        if m:
            return methods, kind, m.groupdict()
    return None


class App:
    def __init__(self, state: State):
        self.state = state
        # NOT Plane: the server answers each request on its own thread (as
        # gunicorn's workers do), so the Set-Cookie values a request collects are
        # per thread; one shared list let a concurrent request (the container's
        # health check) wipe a sign-up's session cookie.
        self._per_request = threading.local()

    @property
    def set_cookies(self) -> list[str]:
        return self._per_request.set_cookies

    @set_cookies.setter
    def set_cookies(self, value: list[str]) -> None:
        self._per_request.set_cookies = value

    # ---- config ---------------------------------------------------------
    @staticmethod
    def web_url() -> str:
        return os.environ.get("WEB_URL", "http://localhost")

    def admin_base(self) -> str:
        # apps/api/plane/authentication/utils/host.py base_host(is_admin=True)
        base = os.environ.get("ADMIN_BASE_URL") or self.web_url()
        return base + "/god-mode/"

    def app_redirect(self, params: dict, next_path: str | None = None) -> Response:
        # apps/api/plane/utils/path_validator.py get_safe_redirect_url
        base = self.web_url().rstrip("/")
        parts = []
        if next_path and next_path.startswith("/") and ".." not in next_path and len(next_path) <= 500:
            parts.append(f"next_path={next_path}")
        if params:
            parts.append(urlencode(params))
        return redirect(f"{base}/?{'&'.join(parts)}" if parts else base)

    def admin_redirect(self, params: dict) -> Response:
        # apps/api/plane/license/api/views/admin.py: urljoin(base_host(is_admin), "?" + urlencode(...))
        return redirect(urljoin(self.admin_base(), "?" + urlencode(params)))

    # ---- dispatch -------------------------------------------------------
    def handle(self, req: Request) -> tuple[Response, list[str]]:
        """Returns (response, Set-Cookie values)."""
        self.set_cookies = []
        resp = self._handle(req)
        return resp, self.set_cookies

    def _handle(self, req: Request) -> Response:
        st = self.state
        match = resolve(req.path)
        if match is None:
            # django.middleware.common.CommonMiddleware APPEND_SLASH: a 404 whose
            # path + "/" resolves becomes a 301 to it (any method when DEBUG is off)
            if not req.path.endswith("/") and resolve(req.path + "/") is not None:
                loc = req.path + "/" + ("?" + req.query_string if req.query_string else "")
                r = Response(301, b"", "text/html; charset=utf-8")
                return r.header("Location", loc)
            return html_response(404, NOT_FOUND_HTML)
        methods, kind, kwargs = match

        # NOT Plane: fault injection (never applies to /__standin__/ itself)
        if kind != "standin":
            with st.lock:
                f = st.faults
                if f["fail_next"] > 0 and req.path.startswith(f["path_prefix"]):
                    f["fail_next"] -= 1
                    if f["status"] == 500:
                        # apps/api/plane/api/views/base.py / app/views/base.py handle_exception
                        return json_response(500, {"error": "Something went wrong please try again later"})
                    return html_response(
                        f["status"], f"<html><body><h1>{f['status']} (stand-in fault)</h1></body></html>\n"
                    )

        if req.method == "HEAD" and "GET" in methods:
            name = methods["GET"]
        elif req.method not in methods:
            if kind == "django":
                # django.views.View.http_method_not_allowed: 405, empty body
                r = Response(405, b"", "text/html; charset=utf-8")
                return r.header("Allow", ", ".join(sorted(methods) + ["OPTIONS"]))
            return json_response(405, {"detail": f'Method "{req.method}" not allowed.'})
        else:
            name = methods[req.method]

        if kind == "django":
            # django.middleware.csrf.CsrfViewMiddleware (Plane's form views are not csrf_exempt);
            # failure renders CSRF_FAILURE_VIEW = csrf_failure, HTTP 200
            # (apps/api/plane/authentication/views/common.py)
            token = req.POST.get("csrfmiddlewaretoken") or req.headers.get("X-CSRFToken")
            with st.lock:
                forced = st.faults["csrf_failure"]
            if forced or not csrf_ok(req.cookies.get(CSRF_COOKIE), token):
                return html_response(200, CSRF_FAILURE_HTML.format(root_url=self.web_url()))
        if name in DRF_ALLOW_ANY:
            # DRF APIView.initial: authentication, permissions (AllowAny), then
            # throttles: REST_FRAMEWORK DEFAULT_THROTTLE_CLASSES = AnonRateThrottle
            # (apps/api/plane/settings/common.py), which skips authenticated users
            # and keys the others by IP (rest_framework/throttling.py)
            with st.lock:
                session_kind = "admin" if "instances" in req.path else "app"
                if self.session_user(req, session_kind) is None:
                    st.anonymous_calls += 1  # NOT Plane: counted for /__standin__/state
                    allowed, headers = st.anon_throttle.check("anon:" + req.client_ip)
                    if not allowed:
                        # apps/api/plane/authentication/adapter/exception.py
                        # auth_exception_handler: Throttled -> 429 with Plane's body;
                        # DRF's exception_handler adds Retry-After
                        r = json_response(
                            429, {"error_code": ERR["RATE_LIMIT_EXCEEDED"], "error_message": "RATE_LIMIT_EXCEEDED"}
                        )
                        for k, v in headers.items():
                            r.header(k, v)
                        return r
        try:
            with st.lock:
                if kind == "app":
                    user = self.session_user(req, "app")
                    if user is None:
                        # DRF NotAuthenticated -> 401 by auth_exception_handler
                        # (apps/api/plane/authentication/adapter/exception.py)
                        return json_response(401, DRF_NOT_AUTHENTICATED)
                    return getattr(self, name)(req, user, **kwargs)
                if kind == "v1":
                    return self.v1_dispatch(req, name, kwargs)
                return getattr(self, name)(req, **kwargs)
        except ParseError as e:
            return json_response(400, {"detail": e.detail})
        except UnsupportedMediaType as e:
            return json_response(415, {"detail": e.detail})
        except KeyError:
            # handle_exception in apps/api/plane/app/views/base.py (and api/views/base.py)
            if kind in ("app", "v1"):
                return json_response(400, {"error": "The required key does not exist."})
            return html_response(500, SERVER_ERROR_HTML)
        except (ValueError, TypeError, AttributeError, IndexError):
            # the same handle_exception: anything else is a 500 with Plane's body;
            # outside DRF (the plain Django form views) Django's 500 page
            if kind in ("app", "v1"):
                return json_response(500, PLANE_500)
            return html_response(500, SERVER_ERROR_HTML)
        except NotNullViolation:
            # an IntegrityError raised by user.save() in a plain Django view: Django's 500 page
            return html_response(500, SERVER_ERROR_HTML)

    # ---- sessions -------------------------------------------------------
    def session_user(self, req: Request, kind: str) -> dict | None:
        # apps/api/plane/authentication/middleware/session.py: paths containing
        # "instances" read admin-session-id, everything else session-id
        cookie = ADMIN_SESSION_COOKIE if "instances" in req.path else APP_SESSION_COOKIE
        key = req.cookies.get(cookie)
        if not key:
            return None
        sess = self.state.sessions.get(key)
        if not sess or sess[1] != kind:
            return None
        if self.state.now() >= sess[2]:
            # django.contrib.sessions: an expired session loads as empty (anonymous)
            del self.state.sessions[key]
            return None
        return self.state.users.get(sess[0])

    def login(self, user: dict, kind: str) -> None:
        # django.contrib.auth.login + Plane's user_login
        # (apps/api/plane/authentication/utils/login.py): new session key, and
        # django.middleware.csrf.rotate_token -> a fresh csrftoken cookie
        key = secrets.token_hex(16)
        age = ADMIN_SESSION_COOKIE_AGE if kind == "admin" else SESSION_COOKIE_AGE
        self.state.sessions[key] = (user["id"], kind, self.state.now() + age)
        name = ADMIN_SESSION_COOKIE if kind == "admin" else APP_SESSION_COOKIE
        self.set_cookies.append(cookie_header(name, key, max_age=age, httponly=True))
        self.set_cookies.append(cookie_header(CSRF_COOKIE, _csrf_secret(), max_age=31449600))

    # ---- plain endpoints ------------------------------------------------
    def health(self, req: Request) -> Response:
        # apps/api/plane/web/views.py health_check
        return json_response(200, {"status": "OK"})

    def instance_get(self, req: Request) -> Response:
        # apps/api/plane/license/api/views/instance.py InstanceEndpoint.get
        st = self.state
        inst = dict(st.instance)
        inst["user_count"] = len(st.users)
        inst["is_activated"] = True
        inst["workspaces_exist"] = len(st.workspaces) >= 1
        config = {
            "enable_signup": os.environ.get("ENABLE_SIGNUP", "1") == "1",
            "is_workspace_creation_disabled": False,
            "is_google_enabled": False,
            "is_github_enabled": False,
            "is_gitlab_enabled": False,
            "is_gitea_enabled": False,
            "is_oidc_enabled": False,
            "oidc_display_name": "SSO",
            "is_magic_login_enabled": False,
            "is_email_password_enabled": True,
            "github_app_name": "",
            "slack_client_id": None,
            "has_unsplash_configured": False,
            "has_llm_configured": False,
            "file_size_limit": 5242880.0,
            "is_smtp_configured": False,
            "admin_base_url": os.environ.get("ADMIN_BASE_URL"),
            "space_base_url": None,
            "app_base_url": None,
            "instance_changelog_url": "",
            "is_self_managed": True,
        }
        return json_response(200, {"config": config, "instance": inst})

    def csrf_token(self, req: Request) -> Response:
        # apps/api/plane/authentication/views/common.py CSRFTokenEndpoint:
        # django.middleware.csrf.get_token -> masked token in the body, the
        # secret in the csrftoken cookie (reused when the request already has one)
        secret = req.cookies.get(CSRF_COOKIE)
        if not secret or len(secret) != CSRF_SECRET_LENGTH or not _csrf_well_formed(secret):
            secret = _csrf_secret()
        self.set_cookies.append(cookie_header(CSRF_COOKIE, secret, max_age=31449600))
        return json_response(200, {"csrf_token": _csrf_mask(secret)})

    # ---- form views (302 + error_code) -----------------------------------
    def admin_sign_up(self, req: Request) -> Response:
        # apps/api/plane/license/api/views/admin.py InstanceAdminSignUpEndpoint.post
        st = self.state
        if st.instance_admins:
            return self.admin_redirect({"error_code": ERR["ADMIN_ALREADY_EXIST"], "error_message": "ADMIN_ALREADY_EXIST"})
        email = req.POST.get("email") or False
        password = req.POST.get("password") or False
        first_name = req.POST.get("first_name") or False
        last_name = req.POST.get("last_name", "")
        company_name = req.POST.get("company_name", "")
        is_telemetry_enabled = req.POST.get("is_telemetry_enabled", True)

        def payload(code_name: str) -> dict:
            return {
                "error_code": ERR[code_name],
                "error_message": code_name,
                "email": email,
                "first_name": first_name,
                "last_name": last_name,
                "company_name": company_name,
                "is_telemetry_enabled": is_telemetry_enabled,
            }

        if not email or not password or not first_name:
            return self.admin_redirect(payload("REQUIRED_ADMIN_EMAIL_PASSWORD_FIRST_NAME"))
        email = email.strip().lower()
        if not valid_email(email):
            return self.admin_redirect(payload("INVALID_ADMIN_EMAIL"))
        if email in st.users_by_email:
            return self.admin_redirect(payload("ADMIN_USER_ALREADY_EXIST"))
        if not password_strong_enough(password):
            return self.admin_redirect(payload("PASSWORD_TOO_WEAK"))
        user = self.create_user(email, password, first_name, last_name)
        # Profile.objects.create, then user.save() with last_login_uagent =
        # request.META.get("HTTP_USER_AGENT"): without the header that is None in a
        # NOT NULL column, the save fails, and the user and profile rows stay
        # while InstanceAdmin and is_setup_done are never written
        # (apps/api/plane/license/api/views/admin.py, apps/api/plane/db/models/user.py)
        self.save_login(req, user)
        st.instance_admins.append(user["id"])
        st.instance["is_setup_done"] = True
        st.instance["instance_name"] = company_name
        st.instance["is_telemetry_enabled"] = is_telemetry_enabled not in ("False", "false", "0", False)
        self.login(user, "admin")
        return redirect(urljoin(self.admin_base(), "general/"))

    @staticmethod
    def save_login(req: Request, user: dict) -> None:
        # user.last_login_uagent = request.META.get("HTTP_USER_AGENT"); user.save()
        # (apps/api/plane/license/api/views/admin.py, apps/api/plane/authentication/adapter/base.py
        # save_user_data)
        if req.user_agent is None:
            raise NotNullViolation()
        user["last_login_uagent"] = req.user_agent

    def create_user(self, email: str, password: str, first_name: str = "", last_name: str = "") -> dict:
        uid = str(uuid.uuid4())
        user = {
            "id": uid,
            "email": email,
            "password": hash_password(password),
            "first_name": first_name or "",
            "last_name": last_name or "",
            # apps/api/plane/db/models/user.py User.get_display_name (approximated: local part)
            "display_name": email.split("@")[0],
            "username": uuid.uuid4().hex,
            "is_active": True,
            "date_joined": now_iso(),
            "last_login_medium": "email",
            "last_workspace_id": None,
        }
        self.state.users[uid] = user
        self.state.users_by_email[email] = uid
        return user

    def sign_up(self, req: Request) -> Response:
        # apps/api/plane/authentication/views/app/email.py SignUpAuthEndpoint.post
        st = self.state
        next_path = req.POST.get("next_path")
        if not st.instance["is_setup_done"]:
            return self.app_redirect(
                {"error_code": ERR["INSTANCE_NOT_CONFIGURED"], "error_message": "INSTANCE_NOT_CONFIGURED"}, next_path
            )
        email = req.POST.get("email") or False
        password = req.POST.get("password") or False
        if not email or not password:
            return self.app_redirect(
                {
                    "error_code": ERR["REQUIRED_EMAIL_PASSWORD_SIGN_UP"],
                    "error_message": "REQUIRED_EMAIL_PASSWORD_SIGN_UP",
                    "email": str(email),
                },
                next_path,
            )
        email = email.strip().lower()
        if not valid_email(email):
            return self.app_redirect(
                {"error_code": ERR["INVALID_EMAIL_SIGN_UP"], "error_message": "INVALID_EMAIL_SIGN_UP", "email": email},
                next_path,
            )
        if email in st.users_by_email:
            return self.app_redirect(
                {"error_code": ERR["USER_ALREADY_EXIST"], "error_message": "USER_ALREADY_EXIST", "email": email},
                next_path,
            )
        # apps/api/plane/authentication/adapter/base.py complete_login_or_signup:
        # __check_signup (ENABLE_SIGNUP "0" allows only invited emails), then validate_password
        if os.environ.get("ENABLE_SIGNUP", "1") == "0" and not any(
            i["email"] == email for i in st.invitations.values()
        ):
            return self.app_redirect(
                {"error_code": ERR["SIGNUP_DISABLED"], "error_message": "SIGNUP_DISABLED", "email": email}, next_path
            )
        if not password_strong_enough(password):
            return self.app_redirect(
                {"error_code": ERR["PASSWORD_TOO_WEAK"], "error_message": "PASSWORD_TOO_WEAK", "email": email},
                next_path,
            )
        user = self.create_user(email, password)
        # complete_login_or_signup (apps/api/plane/authentication/adapter/base.py): the user
        # and its profile are saved, then save_user_data stores the User-Agent
        self.save_login(req, user)
        # post_user_auth_workflow (apps/api/plane/authentication/utils/workspace_project_join.py)
        # joins only invitations already marked accepted; pending ones stay pending.
        self.login(user, "app")
        return self.app_redirect({}, next_path)

    def sign_in(self, req: Request) -> Response:
        # apps/api/plane/authentication/views/app/email.py SignInAuthEndpoint.post
        # and apps/api/plane/authentication/provider/credentials/email.py
        st = self.state
        next_path = req.POST.get("next_path")
        if not st.instance["is_setup_done"]:
            return self.app_redirect(
                {"error_code": ERR["INSTANCE_NOT_CONFIGURED"], "error_message": "INSTANCE_NOT_CONFIGURED"}, next_path
            )
        email = req.POST.get("email") or False
        password = req.POST.get("password") or False
        if not email or not password:
            return self.app_redirect(
                {
                    "error_code": ERR["REQUIRED_EMAIL_PASSWORD_SIGN_IN"],
                    "error_message": "REQUIRED_EMAIL_PASSWORD_SIGN_IN",
                    "email": str(email),
                },
                next_path,
            )
        email = email.strip().lower()
        if not valid_email(email):
            return self.app_redirect(
                {"error_code": ERR["INVALID_EMAIL_SIGN_IN"], "error_message": "INVALID_EMAIL_SIGN_IN", "email": email},
                next_path,
            )
        user = st.user_by_email(email)
        if not user:
            return self.app_redirect(
                {"error_code": ERR["USER_DOES_NOT_EXIST"], "error_message": "USER_DOES_NOT_EXIST", "email": email},
                next_path,
            )
        if not check_password(password, user["password"]):
            return self.app_redirect(
                {
                    "error_code": ERR["AUTHENTICATION_FAILED_SIGN_IN"],
                    "error_message": "AUTHENTICATION_FAILED_SIGN_IN",
                    "email": email,
                },
                next_path,
            )
        # complete_login_or_signup -> save_user_data (apps/api/plane/authentication/adapter/base.py)
        self.save_login(req, user)
        self.login(user, "app")
        return self.app_redirect({}, next_path)

    # ---- internal JSON API (session-id cookie, no CSRF) ------------------
    # apps/api/plane/authentication/session.py BaseSessionAuthentication.enforce_csrf is a no-op
    def me(self, req: Request, user: dict) -> Response:
        # apps/api/plane/app/views/user/base.py UserEndpoint.retrieve
        return json_response(200, user_me(user))

    def me_patch(self, req: Request, user: dict) -> Response:
        # apps/api/plane/app/views/user/base.py UserEndpoint.partial_update (v1.2.3: the
        # ModelViewSet's) with apps/api/plane/app/serializers/user.py UserSerializer:
        # first_name and last_name are refused only when they contain a URL
        # (apps/api/plane/utils/url.py contains_url); display_name is not checked;
        # missing fields are left as they are.
        data = req.json()
        errors = {}
        for key, label in (("first_name", "First name"), ("last_name", "Last name")):
            if key in data and isinstance(data[key], str) and contains_url(data[key]):
                errors[key] = [f"{label} cannot contain a URL."]
        if errors:
            return json_response(400, errors)
        # names and display_name are writable, email and the system fields read-only (ignored)
        for key in ("first_name", "last_name", "display_name"):
            if key in data and isinstance(data[key], str):
                user[key] = data[key]
        return json_response(200, user_me(user))

    def slug_check(self, req: Request, user: dict) -> Response:
        # apps/api/plane/app/views/workspace/base.py WorkSpaceAvailabilityCheckEndpoint
        slug = req.query.get("slug", "")
        if not slug:
            return json_response(400, {"error": "Workspace Slug is required"})
        taken = slug in self.state.workspaces or slug in RESTRICTED_WORKSPACE_SLUGS
        return json_response(200, {"status": not taken})

    def workspaces_list(self, req: Request, user: dict) -> Response:
        return self.my_workspaces(req, user)

    def workspace_create(self, req: Request, user: dict) -> Response:
        # apps/api/plane/app/views/workspace/base.py WorkSpaceViewSet.create
        st = self.state
        data = req.json()
        slug = data.get("slug") or False
        name = data.get("name") or False
        if not name or not slug:
            return json_response(400, {"error": "Both name and slug are required"})
        if len(name) > 80 or len(slug) > 48:
            return json_response(400, {"error": "The maximum length for name is 80 and for slug is 48"})
        # WorkSpaceSerializer slug validation (restricted slugs) and the unique slug
        # field (DRF UniqueValidator) -> 400 from serializer.is_valid(raise_exception=True)
        if slug in RESTRICTED_WORKSPACE_SLUGS:
            return json_response(400, {"slug": ["Slug is not valid"]})
        if not re.fullmatch(r"[a-zA-Z0-9_-]+", slug):
            return json_response(400, {"slug": ["Enter a valid \u201cslug\u201d consisting of letters, numbers, underscores or hyphens."]})
        if slug in st.workspaces:
            return json_response(400, {"slug": ["workspace with this slug already exists."]})
        ts = time.time()
        ws = {
            "id": str(uuid.uuid4()),
            "name": name,
            "slug": slug,
            "owner": user_lite(user),
            "logo": None,
            "logo_url": None,
            "organization_size": data.get("organization_size"),
            "timezone": "UTC",
            "created_at": now_iso(),
            "updated_at": now_iso(),
            "created_by": user["id"],
            "updated_by": user["id"],
            "created_at_ts": ts,
        }
        st.workspaces[slug] = ws
        self.add_member(ws, user["id"], ADMIN)
        return json_response(201, workspace_ser(ws, st, role=ADMIN))

    def add_member(self, ws: dict, user_id: str, role: int) -> dict:
        for m in self.state.members.values():
            if m["workspace"] == ws["id"] and m["member"] == user_id:
                m["is_active"] = True
                m["role"] = role
                return m
        mid = str(uuid.uuid4())
        m = {
            "id": mid,
            "workspace": ws["id"],
            "member": user_id,
            "role": role,
            "is_active": True,
            "created_at": now_iso(),
            "created_at_ts": time.time(),
        }
        self.state.members[mid] = m
        return m

    def my_workspaces(self, req: Request, user: dict) -> Response:
        # apps/api/plane/app/views/workspace/base.py UserWorkSpacesEndpoint (plain array)
        st = self.state
        out = []
        for ws in sorted(st.workspaces.values(), key=lambda w: w["created_at_ts"]):
            m = st.membership(ws["slug"], user["id"])
            if m:
                out.append(workspace_ser(ws, st, role=m["role"]))
        return json_response(200, out)

    def require_role(self, slug: str, user: dict, roles) -> Response | None:
        # apps/api/plane/app/permissions/workspace.py / base.py allow_permission
        if slug not in self.state.workspaces:
            return json_response(404, {"error": "The requested resource does not exist."})
        m = self.state.membership(slug, user["id"])
        if not m or m["role"] not in roles:
            return json_response(403, {"error": "You don't have the required permissions."})
        return None

    def ws_invitations_list(self, req: Request, user: dict, slug: str) -> Response:
        # apps/api/plane/app/views/workspace/invite.py WorkspaceInvitationsViewset.list (plain array)
        denied = self.require_role(slug, user, (ADMIN, MEMBER))
        if denied:
            return denied
        ws = self.state.workspaces[slug]
        invs = [invitation_ser(i, self.state) for i in self.sorted_invitations() if i["workspace"] == ws["id"]]
        return json_response(200, invs)

    def sorted_invitations(self) -> list[dict]:
        return sorted(self.state.invitations.values(), key=lambda i: i["created_at_ts"])

    def ws_invite(self, req: Request, user: dict, slug: str) -> Response:
        # apps/api/plane/app/views/workspace/invite.py WorkspaceInvitationsViewset.create
        st = self.state
        denied = self.require_role(slug, user, (ADMIN, MEMBER))
        if denied:
            return denied
        emails = req.json().get("emails", [])
        if not emails:
            return json_response(400, {"error": "Emails are required"})
        requester = st.membership(slug, user["id"])
        if any(int(e.get("role", 5)) > requester["role"] for e in emails):
            return json_response(400, {"error": "You cannot invite a user with higher role"})
        ws = st.workspaces[slug]
        wanted = {str(e.get("email")) for e in emails}
        existing = [
            m
            for m in st.workspace_members(slug)
            if st.users[m["member"]]["email"] in wanted
        ]
        if existing:
            return json_response(
                400,
                {
                    "error": "Some users are already member of workspace",
                    "workspace_users": [
                        {"id": m["id"], "member": user_lite(st.users[m["member"]]), "role": m["role"]}
                        for m in existing
                    ],
                },
            )
        new = []
        for e in emails:
            addr = e.get("email")
            if not isinstance(addr, str) or not valid_email(addr):
                return json_response(
                    400, {"error": f"Invalid email - {e} provided a valid email address is required to send the invite"}
                )
            role = int(e.get("role", 5))
            if role not in ROLES:
                # WorkspaceMemberInvite.role has choices; bulk_create does not validate them.
                # Plane would store it; the stand-in refuses so tests notice bad roles.
                return json_response(400, {"error": f"Invalid role {role}"})
            new.append((addr.strip().lower(), role))
        for addr, role in new:
            # bulk_create(..., ignore_conflicts=True): an existing invitation for the
            # same email+workspace is kept unchanged (role not updated)
            if any(i["workspace"] == ws["id"] and i["email"] == addr for i in st.invitations.values()):
                continue
            iid = str(uuid.uuid4())
            st.invitations[iid] = {
                "id": iid,
                "email": addr,
                "accepted": False,
                "token": secrets.token_urlsafe(32),
                "message": None,
                "responded_at": None,
                "role": role,
                "created_at": now_iso(),
                "updated_at": now_iso(),
                "created_by": user["id"],
                "updated_by": user["id"],
                "workspace": ws["id"],
                "created_at_ts": time.time(),
            }
        return json_response(200, {"message": "Emails sent successfully"})

    def my_invitations(self, req: Request, user: dict) -> Response:
        # apps/api/plane/app/views/workspace/invite.py UserWorkspaceInvitationsViewSet (plain array)
        invs = [invitation_ser(i, self.state) for i in self.sorted_invitations() if i["email"] == user["email"]]
        return json_response(200, invs)

    def accept_invitations(self, req: Request, user: dict) -> Response:
        # apps/api/plane/app/views/workspace/invite.py UserWorkspaceInvitationsViewSet.create
        st = self.state
        ids = [str(i) for i in req.json().get("invitations", [])]
        chosen = [i for i in st.invitations.values() if i["id"] in ids and i["email"] == user["email"]]
        for inv in chosen:
            ws = st.workspace_by_id(inv["workspace"])
            if ws:
                self.add_member(ws, user["id"], inv["role"])
            del st.invitations[inv["id"]]
        return Response(204, b"", None)

    def ws_members(self, req: Request, user: dict, slug: str) -> Response:
        # apps/api/plane/app/views/workspace/member.py WorkSpaceMemberViewSet.list:
        # plain array of {"id", "member", "role"}; admins/members see emails
        denied = self.require_role(slug, user, ROLES)
        if denied:
            return denied
        st = self.state
        me = st.membership(slug, user["id"])
        out = []
        for m in st.workspace_members(slug):
            u = st.users[m["member"]]
            member = user_admin_lite(u) if me["role"] > GUEST else user_lite(u)
            if me["role"] <= GUEST:
                member.pop("email", None)
            out.append({"id": m["id"], "member": member, "role": m["role"]})
        return json_response(200, out)

    def ws_member_get(self, req: Request, user: dict, slug: str, pk: str) -> Response:
        denied = self.require_role(slug, user, ROLES)
        if denied:
            return denied
        m = self.state.members.get(pk)
        if not m or m["workspace"] != self.state.workspaces[slug]["id"]:
            return json_response(404, {"error": "The requested resource does not exist."})
        return json_response(200, {"id": m["id"], "member": user_admin_lite(self.state.users[m["member"]]), "role": m["role"]})

    def ws_member_patch(self, req: Request, user: dict, slug: str, pk: str) -> Response:
        # apps/api/plane/app/views/workspace/member.py WorkSpaceMemberViewSet.partial_update
        denied = self.require_role(slug, user, (ADMIN,))
        if denied:
            return denied
        st = self.state
        m = st.members.get(pk)
        if not m or m["workspace"] != st.workspaces[slug]["id"] or not m["is_active"]:
            return json_response(404, {"error": "The requested resource does not exist."})
        if m["member"] == user["id"]:
            return json_response(400, {"error": "You cannot update your own role"})
        data = req.json()
        if "role" in data:
            try:
                role = int(data["role"])
            except (TypeError, ValueError):
                return json_response(400, {"role": ["A valid integer is required."]})
            if role not in ROLES:
                # WorkSpaceMemberSerializer: model field choices
                return json_response(400, {"role": [f'"{data["role"]}" is not a valid choice.']})
            m["role"] = role
        out = {k: v for k, v in m.items() if not k.endswith("_ts")}
        return json_response(200, out)

    def tokens_list(self, req: Request, user: dict) -> Response:
        # apps/api/plane/app/views/api.py ApiTokenEndpoint.get (no token values)
        toks = sorted(
            (t for t in self.state.tokens.values() if t["user"] == user["id"] and not t["is_service"]),
            key=lambda t: -t["created_at_ts"],  # model ordering ("-created_at",)
        )
        return json_response(200, [token_ser(t, with_token=False) for t in toks])

    def token_get(self, req: Request, user: dict, pk: str) -> Response:
        t = self.state.tokens.get(pk)
        if not t or t["user"] != user["id"]:
            return json_response(404, {"error": "The requested resource does not exist."})
        return json_response(200, token_ser(t, with_token=False))

    def token_create(self, req: Request, user: dict) -> Response:
        # apps/api/plane/app/views/api.py ApiTokenEndpoint.post; the value is
        # generate_token() = "plane_api_" + uuid4().hex (apps/api/plane/db/models/api.py)
        data = req.json()
        expired_at = data.get("expired_at")
        expired_ts = None
        if expired_at:
            try:
                dt = datetime.fromisoformat(str(expired_at).replace("Z", "+00:00"))
            except ValueError:
                return json_response(400, {"error": "Please provide valid detail"})
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=timezone.utc)
            expired_ts = dt.timestamp()
        tid = str(uuid.uuid4())
        t = {
            "id": tid,
            "created_at": now_iso(),
            "updated_at": now_iso(),
            "deleted_at": None,
            "label": data.get("label", uuid.uuid4().hex),
            "description": data.get("description", ""),
            "is_active": True,
            "last_used": None,
            "token": "plane_api_" + uuid.uuid4().hex,
            "user_type": 0,
            "expired_at": expired_at,
            "is_service": False,
            "allowed_rate_limit": "60/min",
            "created_by": user["id"],
            "updated_by": user["id"],
            "user": user["id"],
            "workspace": None,
            "created_at_ts": time.time(),
            "expired_at_ts": expired_ts,
        }
        self.state.tokens[tid] = t
        return json_response(201, token_ser(t, with_token=True))

    def token_delete(self, req: Request, user: dict, pk: str) -> Response:
        # apps/api/plane/app/views/api.py ApiTokenEndpoint.delete
        t = self.state.tokens.get(pk)
        if not t or t["user"] != user["id"] or t["is_service"]:
            return json_response(404, {"error": "The requested resource does not exist."})
        del self.state.tokens[pk]
        return Response(204, b"", None)

    # ---- public API v1 --------------------------------------------------
    def v1_dispatch(self, req: Request, name: str, kwargs: dict) -> Response:
        # DRF APIView.initial order: authenticate, check permissions, then throttles.
        # Authentication: apps/api/plane/api/middleware/api_authentication.py
        st = self.state
        key = req.headers.get("X-Api-Key")
        if not key:
            # no credentials -> NotAuthenticated -> 401 (auth_exception_handler,
            # apps/api/plane/authentication/adapter/exception.py)
            return json_response(401, DRF_NOT_AUTHENTICATED)
        token = next((t for t in st.tokens.values() if t["token"] == key), None)
        if token is None or not token["is_active"] or not token_unexpired(token):
            # AuthenticationFailed without WWW-Authenticate -> DRF answers 403
            return json_response(403, {"detail": "Given API token is not valid"})
        token["last_used"] = now_iso()
        user = st.users[token["user"]]
        slug = kwargs.get("slug")
        if slug is not None:
            # permission classes (apps/api/plane/utils/permissions/workspace.py,
            # project.py); the members/projects views 404/400 on unknown workspaces
            m = st.membership(slug, user["id"]) if slug in st.workspaces else None
            roles = (ADMIN, MEMBER) if name in ("v1_members", "v1_project_create") else ROLES
            if m is None or m["role"] not in roles:
                return json_response(403, DRF_PERMISSION_DENIED)
        # Throttle: apps/api/plane/api/rate_limit.py ApiKeyRateThrottle
        allowed, headers = st.throttle.check(key)
        if not allowed:
            # Throttled -> 429 {"error_code": 5900, ...} (exception.py), Retry-After from DRF
            r = json_response(429, {"error_code": ERR["RATE_LIMIT_EXCEEDED"], "error_message": "RATE_LIMIT_EXCEEDED"})
            for k, v in headers.items():
                r.header(k, v)
            return r
        try:
            resp = getattr(self, name)(req, user, **kwargs)
        except ParseError as e:
            resp = json_response(400, {"detail": e.detail})
        # apps/api/plane/api/views/base.py BaseAPIView.finalize_response copies the headers
        for k, v in headers.items():
            resp.header(k, v)
        return resp

    def v1_me(self, req: Request, user: dict) -> Response:
        # apps/api/plane/api/views/user.py UserEndpoint.get -> UserLiteSerializer
        return json_response(200, user_lite(user))

    def v1_members(self, req: Request, user: dict, slug: str) -> Response:
        # apps/api/plane/api/views/member.py WorkspaceMemberAPIEndpoint.get: plain array,
        # UserLiteSerializer + "role"
        out = []
        for m in self.state.workspace_members(slug):
            d = user_lite(self.state.users[m["member"]])
            d["role"] = m["role"]
            out.append(d)
        return json_response(200, out)

    def v1_projects(self, req: Request, user: dict, slug: str) -> Response:
        # apps/api/plane/api/views/project.py ProjectListCreateAPIEndpoint.get -> self.paginate
        ws = self.state.workspaces[slug]
        visible = [
            p
            for p in self.state.projects
            if p["workspace"] == ws["id"] and (user["id"] in p["members"] or p["network"] == 2)
        ]
        # order_by "sort_order" (the member's), ties broken by insertion order
        visible.sort(key=lambda p: (p["sort_order"] if user["id"] in p["members"] else float("inf"), p["created_at_ts"]))
        return json_response(200, paginate(req, visible, lambda rows: [project_ser(p, self.state, user["id"]) for p in rows]))

    def v1_project_create(self, req: Request, user: dict, slug: str) -> Response:
        # apps/api/plane/api/views/project.py ProjectListCreateAPIEndpoint.post
        ws = self.state.workspaces[slug]
        data = req.json()
        name = data.get("name")
        identifier = data.get("identifier")
        errors = {}
        if not name:
            errors["name"] = ["This field is required."]
        if not identifier:
            errors["identifier"] = ["This field is required."]
        if errors:
            return json_response(400, errors)
        identifier = str(identifier).strip().upper()
        same_ws = [p for p in self.state.projects if p["workspace"] == ws["id"]]
        if any(p["identifier"] == identifier for p in same_ws):
            return json_response(409, {"identifier": "The project identifier is already taken"})
        if any(p["name"] == name for p in same_ws):
            return json_response(409, {"name": "The project name is already taken"})
        ts = time.time()
        p = {
            "id": str(uuid.uuid4()),
            "name": name,
            "identifier": identifier,
            "description": data.get("description", ""),
            "network": int(data.get("network", 2)),
            "workspace": ws["id"],
            "created_at": now_iso(),
            "updated_at": now_iso(),
            "created_by": user["id"],
            "updated_by": user["id"],
            "sort_order": 65535.0 + len(same_ws) * 10000,
            "archived_at": None,
            "members": {user["id"]: ADMIN},
            "created_at_ts": ts,
        }
        self.state.projects.append(p)
        return json_response(201, project_ser(p, self.state, user["id"]))

    # ---- NOT Plane: test-only endpoints ---------------------------------
    def standin_faults_get(self, req: Request) -> Response:
        return json_response(200, self.state.fault_view())

    def standin_faults(self, req: Request) -> Response:
        try:
            spec = req.json()
            if not isinstance(spec, dict):
                raise ValueError("expected an object")
            return json_response(200, self.state.set_faults(spec))
        except (ValueError, KeyError, IndexError) as e:
            return json_response(400, {"error": str(e)})

    def standin_clock(self, req: Request) -> Response:
        # {"advance": seconds}: moves the clock sessions expire by
        spec = req.json()
        with self.state.lock:
            self.state.clock_offset += float(spec.get("advance", 0))
            return json_response(200, {"clock_offset": self.state.clock_offset})

    def standin_manage(self, req: Request) -> Response:
        # What an operator does in the api container with manage.py:
        # {"command": "create_instance_admin", "email": E} copies
        # apps/api/plane/db/management/commands/create_instance_admin.py (InstanceAdmin
        # get_or_create; is_setup_done untouched); {"command": "finish_setup"} is
        # `manage.py shell -c "...Instance.objects.update(is_setup_done=True)"`.
        spec = req.json()
        st = self.state
        with st.lock:
            cmd = spec.get("command")
            if cmd == "create_instance_admin":
                user = st.user_by_email(str(spec.get("email", "")))
                if user is None:
                    return json_response(400, {"error": "User with the provided email does not exist."})
                if user["id"] in st.instance_admins:
                    return json_response(400, {"error": "The provided email is already an instance admin."})
                st.instance_admins.append(user["id"])
                return json_response(200, {"message": "Successfully created the admin"})
            if cmd == "finish_setup":
                st.instance["is_setup_done"] = True
                return json_response(200, {"is_setup_done": True})
            return json_response(400, {"error": f"unknown command {cmd!r}"})

    def standin_reset(self, req: Request) -> Response:
        self.state.reset()
        return Response(204, b"", None)

    def standin_state(self, req: Request) -> Response:
        st = self.state
        users = []
        for u in st.users.values():
            users.append(
                {
                    "id": u["id"],
                    "email": u["email"],
                    "display_name": u["display_name"],
                    "is_instance_admin": u["id"] in st.instance_admins,
                    "tokens": sum(1 for t in st.tokens.values() if t["user"] == u["id"]),
                }
            )
        workspaces = []
        for ws in st.workspaces.values():
            workspaces.append(
                {
                    "slug": ws["slug"],
                    "name": ws["name"],
                    "members": [
                        {"email": st.users[m["member"]]["email"], "role": m["role"]} for m in st.workspace_members(ws["slug"])
                    ],
                    "invitations": [
                        {"email": i["email"], "role": i["role"]}
                        for i in self.sorted_invitations()
                        if i["workspace"] == ws["id"]
                    ],
                    "projects": sum(1 for p in st.projects if p["workspace"] == ws["id"]),
                }
            )
        return json_response(
            200,
            {
                "is_setup_done": st.instance["is_setup_done"],
                "users": users,
                "workspaces": workspaces,
                "tokens_count": len(st.tokens),
                "sessions_count": len(st.sessions),
                "anonymous_calls": st.anonymous_calls,
                "faults": st.fault_view(),
            },
        )


def paginate(req: Request, rows: list, on_results) -> dict:
    """apps/api/plane/utils/paginator.py BasePaginator.paginate + OffsetPaginator.get_result."""
    try:
        per_page = int(req.query.get("per_page", DEFAULT_PER_PAGE))
    except ValueError:
        raise ParseError("Invalid per_page parameter.")
    max_per_page = max(PAGINATOR_MAX_LIMIT, DEFAULT_PER_PAGE)
    if per_page > max_per_page:
        raise ParseError(f"Invalid per_page value. Cannot exceed {max_per_page}.")
    raw = req.query.get("cursor", f"{per_page}:0:0")
    try:
        bits = raw.split(":")
        if len(bits) != 3:
            raise ValueError
        value = float(bits[0]) if "." in bits[0] else int(bits[0])
        page, is_prev = int(bits[1]), bool(int(bits[2]))
    except (TypeError, ValueError):
        raise ParseError("Invalid cursor parameter.")
    limit = min(per_page, PAGINATOR_MAX_LIMIT)
    if limit <= 0:
        # Django refuses negative slicing / math.ceil(count / 0): a 500 in Plane
        raise ParseError("Error in parsing")
    offset = page * limit  # "use limit instead of cursor.value for consistent pagination"
    if offset < 0:
        raise ParseError("Error in parsing")  # BadPaginationError -> ParseError
    stop = offset + limit + 1
    window = rows[offset:stop]
    if value != limit and is_prev:
        window = window[-(limit + 1):]
    total_count = len(rows)
    has_next = len(rows[offset:stop]) > limit and (offset + limit) < total_count
    results = on_results(window[:limit])
    return {
        "grouped_by": None,
        "sub_grouped_by": None,
        "total_count": total_count,
        "next_cursor": f"{limit}:{page + 1}:0",
        "prev_cursor": f"{limit}:{page - 1}:1",
        "next_page_results": has_next,
        "prev_page_results": page > 0,
        "count": len(results),
        "total_pages": math.ceil(total_count / limit) if total_count > 0 else 0,
        "total_results": total_count,
        "extra_stats": None,
        "results": results,
    }


def make_handler(app: App):
    class Handler(BaseHTTPRequestHandler):
        server_version = "plane-standin/1"
        sys_version = ""
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # quiet unless asked; never logs bodies or headers
            if os.environ.get("PLANE_STANDIN_LOG"):
                sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

        def _serve(self, method: str):
            try:
                req = Request(self, method)
                resp, cookies = app.handle(req)
            except Exception as e:  # pragma: no cover - last resort
                resp, cookies = json_response(500, {"error": "Something went wrong please try again later"}), []
                sys.stderr.write(f"stand-in error: {type(e).__name__}: {e}\n")
            self.send_response(resp.status)
            for k, v in resp.headers:
                self.send_header(k, v)
            for c in cookies:
                self.send_header("Set-Cookie", c)
            self.send_header("Content-Length", str(len(resp.body)))
            self.end_headers()
            if method != "HEAD" and resp.body:
                self.wfile.write(resp.body)

        def do_GET(self):
            self._serve("GET")

        def do_HEAD(self):
            self._serve("HEAD")

        def do_POST(self):
            self._serve("POST")

        def do_PATCH(self):
            self._serve("PATCH")

        def do_PUT(self):
            self._serve("PUT")

        def do_DELETE(self):
            self._serve("DELETE")

    return Handler


def make_server(host: str = "0.0.0.0", port: int = 8000) -> ThreadingHTTPServer:
    state = State()
    app = App(state)
    server = ThreadingHTTPServer((host, port), make_handler(app))
    server.daemon_threads = True
    server.app = app  # type: ignore[attr-defined]
    return server


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Plane v1.2.x API stand-in (tests only)")
    ap.add_argument("--host", default="0.0.0.0")
    ap.add_argument("--port", type=int, default=8000)
    args = ap.parse_args(argv)
    parse_rate(os.environ.get("API_KEY_RATE_LIMIT", "60/minute"))  # fail fast on a bad rate
    server = make_server(args.host, args.port)
    sys.stderr.write(f"plane stand-in listening on {args.host}:{server.server_address[1]}\n")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
