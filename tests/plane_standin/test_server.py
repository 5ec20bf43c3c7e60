"""Tests of the Plane stand-in itself (stdlib unittest).

Run: python3 -m unittest discover -s tests/plane_standin
Each test class starts its own server on a free loopback port in a thread.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import sys
import threading
import time
import unittest
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlencode, urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server as standin  # noqa: E402

ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = secrets.token_urlsafe(24)


class Client:
    """A tiny HTTP client with a cookie jar that never follows redirects."""

    def __init__(self, port: int, user_agent: str | None = "stand-in-tests/1"):
        self.port = port
        self.cookies: dict[str, str] = {}
        self.user_agent = user_agent

    def request(self, method, path, body=None, headers=None, form=None, json_body=None, api_key=None):
        headers = dict(headers or {})
        # http.client sends no User-Agent unless told; real Plane needs one
        if self.user_agent is not None:
            headers.setdefault("User-Agent", self.user_agent)
        if form is not None:
            body = urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        if api_key is not None:
            headers["X-API-Key"] = api_key
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        for raw in resp.headers.get_all("Set-Cookie") or []:
            jar = SimpleCookie()
            jar.load(raw)
            for k, m in jar.items():
                self.cookies[k] = m.value
        resp.body = data
        return resp

    def json(self, resp):
        return json.loads(resp.body)

    def csrf(self) -> str:
        r = self.request("GET", "/auth/get-csrf-token/")
        assert r.status == 200, r.status
        return self.json(r)["csrf_token"]

    def form_post(self, path, fields, csrf=True):
        fields = dict(fields)
        if csrf:
            fields["csrfmiddlewaretoken"] = self.csrf()
        return self.request("POST", path, form=fields)


def location_params(resp) -> dict:
    q = urlsplit(resp.getheader("Location")).query
    return {k: v[-1] for k, v in parse_qs(q).items()}


class StandinCase(unittest.TestCase):
    env: dict[str, str] = {}

    @classmethod
    def setUpClass(cls):
        cls._saved_env = {k: os.environ.get(k) for k in cls.env}
        os.environ.update(cls.env)
        cls.server = standin.make_server("127.0.0.1", 0)
        cls.port = cls.server.server_address[1]
        cls.thread = threading.Thread(target=cls.server.serve_forever, daemon=True)
        cls.thread.start()

    @classmethod
    def tearDownClass(cls):
        cls.server.shutdown()
        cls.server.server_close()
        for k, v in cls._saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    def setUp(self):
        self.server.app.state.reset()

    def client(self, user_agent: str | None = "stand-in-tests/1") -> Client:
        return Client(self.port, user_agent)

    # helpers -------------------------------------------------------------
    def setup_admin(self) -> Client:
        c = self.client()
        r = c.form_post(
            "/api/instances/admins/sign-up/",
            {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "first_name": "Ada", "company_name": "Acme"},
        )
        self.assertEqual(r.status, 302)
        self.assertNotIn("error_code", location_params(r))
        return c

    def sign_up(self, email, password=None) -> Client:
        c = self.client()
        r = c.form_post("/auth/sign-up/", {"email": email, "password": password or secrets.token_urlsafe(24)})
        self.assertEqual(r.status, 302, r.body)
        self.assertNotIn("error_code", location_params(r), r.getheader("Location"))
        self.assertIn("session-id", c.cookies)
        return c

    def app_admin(self) -> Client:
        self.setup_admin()
        c = self.client()
        r = c.form_post("/auth/sign-in/", {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
        self.assertEqual(r.status, 302)
        self.assertNotIn("error_code", location_params(r))
        return c

    def workspace(self, c: Client, slug="acme") -> dict:
        r = c.request("POST", "/api/workspaces/", json_body={"name": "Acme", "slug": slug})
        self.assertEqual(r.status, 201, r.body)
        return c.json(r)

    def token(self, c: Client, label="t") -> str:
        r = c.request("POST", "/api/users/api-tokens/", json_body={"label": label, "description": "", "expired_at": None})
        self.assertEqual(r.status, 201, r.body)
        return c.json(r)["token"]


class HealthAndRouting(StandinCase):
    def test_root_health(self):
        r = self.client().request("GET", "/")
        self.assertEqual(r.status, 200)
        self.assertEqual(json.loads(r.body), {"status": "OK"})

    def test_api_health_is_404(self):
        self.assertEqual(self.client().request("GET", "/api/health/").status, 404)

    def test_missing_slash_redirects_301(self):
        r = self.client().request("GET", "/api/instances?x=1")
        self.assertEqual(r.status, 301)
        self.assertEqual(r.getheader("Location"), "/api/instances/?x=1")
        r = self.client().request("GET", "/api/nothing")
        self.assertEqual(r.status, 404)

    def test_head_root(self):
        r = self.client().request("HEAD", "/")
        self.assertEqual(r.status, 200)

    def test_instances_shape(self):
        c = self.client()
        body = c.json(c.request("GET", "/api/instances/"))
        self.assertIn("config", body)
        self.assertIn("instance", body)
        self.assertIs(body["instance"]["is_setup_done"], False)
        self.assertTrue(body["config"]["is_email_password_enabled"])
        self.setup_admin()
        body = c.json(c.request("GET", "/api/instances/"))
        self.assertIs(body["instance"]["is_setup_done"], True)

    def test_wrong_method(self):
        c = self.client()
        self.assertEqual(c.request("GET", "/auth/sign-in/").status, 405)
        self.assertEqual(c.request("PUT", "/api/instances/").status, 405)


class ConcurrentRequests(StandinCase):
    def test_concurrent_request_keeps_the_sign_up_cookies(self):
        # Regression: the Set-Cookie values were one list shared by every server
        # thread, so the container's health check, answered while a sign-up was
        # being answered, wiped the new user's session cookie (the next call of
        # that user then got 401). Here another request runs to completion on its
        # own thread after the sign-up's handler and before its response is sent.
        self.setup_admin()
        app = self.server.app
        original = app._handle

        def with_a_concurrent_request(req):
            resp = original(req)
            if req.path == "/auth/sign-up/":
                t = threading.Thread(target=lambda: self.client().request("GET", "/"))
                t.start()
                t.join()
            return resp

        app._handle = with_a_concurrent_request
        try:
            c = self.sign_up("concurrent@example.com")
        finally:
            del app._handle
        self.assertIn("session-id", c.cookies)
        r = c.request("GET", "/api/users/me/")
        self.assertEqual(r.status, 200, r.body)


class Csrf(StandinCase):
    def test_csrf_token_and_cookie(self):
        c = self.client()
        r = c.request("GET", "/auth/get-csrf-token/")
        token = c.json(r)["csrf_token"]
        self.assertEqual(len(token), 64)
        self.assertEqual(len(c.cookies["csrftoken"]), 32)
        # the cookie's secret is reused on a second call
        secret = c.cookies["csrftoken"]
        c.csrf()
        self.assertEqual(c.cookies["csrftoken"], secret)

    def assertCsrfPage(self, r):
        self.assertEqual(r.status, 200)
        self.assertIn("text/html", r.getheader("Content-Type"))
        self.assertIn(b"CSRF Verification Failed", r.body)

    def test_missing_token(self):
        c = self.client()
        c.csrf()
        self.assertCsrfPage(c.form_post("/auth/sign-in/", {"email": "a@b.cd", "password": "x"}, csrf=False))

    def test_missing_cookie(self):
        c = self.client()
        token = c.csrf()
        c.cookies.clear()
        r = c.request("POST", "/auth/sign-in/", form={"email": "a@b.cd", "password": "x", "csrfmiddlewaretoken": token})
        self.assertCsrfPage(r)

    def test_mismatched_token(self):
        c1, c2 = self.client(), self.client()
        c1.csrf()
        other = c2.csrf()
        r = c1.request("POST", "/auth/sign-in/", form={"email": "a@b.cd", "password": "x", "csrfmiddlewaretoken": other})
        self.assertCsrfPage(r)

    def test_header_token_accepted(self):
        c = self.client()
        token = c.csrf()
        r = c.request("POST", "/auth/sign-in/", form={"email": "a@b.cd", "password": "x"}, headers={"X-CSRFToken": token})
        self.assertEqual(r.status, 302)
        self.assertEqual(location_params(r)["error_code"], "5000")

    def test_unmasked_cookie_value_as_token(self):
        c = self.client()
        c.csrf()
        r = c.request(
            "POST", "/auth/sign-in/", form={"email": "a@b.cd", "password": "x", "csrfmiddlewaretoken": c.cookies["csrftoken"]}
        )
        self.assertEqual(r.status, 302)

    def test_internal_api_needs_no_csrf(self):
        c = self.app_admin()
        r = c.request("POST", "/api/workspaces/", json_body={"name": "A", "slug": "a-1"})
        self.assertEqual(r.status, 201)


class AdminSignUp(StandinCase):
    def test_before_setup_app_auth_refused(self):
        c = self.client()
        for path in ("/auth/sign-up/", "/auth/sign-in/"):
            r = c.form_post(path, {"email": "u@example.com", "password": secrets.token_urlsafe(24)})
            self.assertEqual(r.status, 302)
            p = location_params(r)
            self.assertEqual(p["error_code"], "5000")
            self.assertEqual(p["error_message"], "INSTANCE_NOT_CONFIGURED")

    def test_success_sets_admin_cookie_only(self):
        c = self.client()
        r = c.form_post(
            "/api/instances/admins/sign-up/",
            {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "first_name": "Ada", "last_name": "L",
             "company_name": "Acme", "is_telemetry_enabled": "False"},
        )
        self.assertEqual(r.status, 302)
        self.assertEqual(r.getheader("Location"), "http://localhost/god-mode/general/")
        self.assertIn("admin-session-id", c.cookies)
        self.assertNotIn("session-id", c.cookies)
        # the admin cookie does not authenticate the app API
        self.assertEqual(c.request("GET", "/api/users/me/").status, 401)

    def test_admin_already_exists(self):
        self.setup_admin()
        c = self.client()
        r = c.form_post(
            "/api/instances/admins/sign-up/",
            {"email": "other@example.com", "password": ADMIN_PASSWORD, "first_name": "B"},
        )
        self.assertEqual(r.status, 302)
        self.assertTrue(r.getheader("Location").startswith("http://localhost/god-mode/?"))
        self.assertEqual(location_params(r)["error_code"], "5150")

    def test_weak_password(self):
        c = self.client()
        r = c.form_post("/api/instances/admins/sign-up/", {"email": ADMIN_EMAIL, "password": "password123", "first_name": "A"})
        p = location_params(r)
        self.assertEqual(p["error_code"], "5021")
        self.assertEqual(p["error_message"], "PASSWORD_TOO_WEAK")
        self.assertEqual(p["email"], ADMIN_EMAIL)

    def test_invalid_email(self):
        c = self.client()
        r = c.form_post("/api/instances/admins/sign-up/", {"email": "not-an-email", "password": ADMIN_PASSWORD, "first_name": "A"})
        self.assertEqual(location_params(r)["error_code"], "5160")

    def test_missing_fields_and_json_body(self):
        c = self.client()
        r = c.form_post("/api/instances/admins/sign-up/", {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
        self.assertEqual(location_params(r)["error_code"], "5155")
        token = c.csrf()
        r = c.request(
            "POST", "/api/instances/admins/sign-up/", headers={"X-CSRFToken": token},
            json_body={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "first_name": "A"},
        )
        self.assertEqual(r.status, 302)
        self.assertEqual(location_params(r)["error_code"], "5155")


class AppAuth(StandinCase):
    def test_sign_up_then_sign_in(self):
        self.setup_admin()
        pw = secrets.token_urlsafe(24)
        c = self.sign_up("Agent1@Example.com", pw)
        me = c.json(c.request("GET", "/api/users/me/"))
        self.assertEqual(me["email"], "agent1@example.com")
        c2 = self.client()
        r = c2.form_post("/auth/sign-in/", {"email": "agent1@example.com", "password": pw})
        self.assertEqual(r.status, 302)
        self.assertEqual(r.getheader("Location"), "http://localhost")
        self.assertIn("session-id", c2.cookies)

    def test_login_rotates_csrf_cookie(self):
        self.setup_admin()
        c = self.client()
        c.csrf()
        before = c.cookies["csrftoken"]
        token = c.csrf()
        c.request("POST", "/auth/sign-up/", form={"email": "x@example.com", "password": secrets.token_urlsafe(24), "csrfmiddlewaretoken": token})
        self.assertNotEqual(c.cookies["csrftoken"], before)

    def test_errors(self):
        self.setup_admin()
        pw = secrets.token_urlsafe(24)
        self.sign_up("u@example.com", pw)
        c = self.client()
        cases = [
            ("/auth/sign-up/", {"email": "u@example.com", "password": pw}, "5030"),
            ("/auth/sign-up/", {"email": "v@example.com", "password": "hunter2hunter2"}, "5021"),
            ("/auth/sign-up/", {"email": "bad@", "password": pw}, "5045"),
            ("/auth/sign-up/", {"email": "v@example.com"}, "5040"),
            ("/auth/sign-in/", {"email": "u@example.com", "password": "wrong" + pw}, "5065"),
            ("/auth/sign-in/", {"email": "nobody@example.com", "password": pw}, "5060"),
            ("/auth/sign-in/", {"email": "bad", "password": pw}, "5075"),
            ("/auth/sign-in/", {"password": pw}, "5070"),
        ]
        for path, fields, code in cases:
            with self.subTest(path=path, fields=fields):
                r = c.form_post(path, fields)
                self.assertEqual(r.status, 302)
                self.assertTrue(r.getheader("Location").startswith("http://localhost/?"))
                self.assertEqual(location_params(r)["error_code"], code)

    def test_json_body_refused(self):
        self.setup_admin()
        c = self.client()
        token = c.csrf()
        for path, code in (("/auth/sign-up/", "5040"), ("/auth/sign-in/", "5070")):
            r = c.request("POST", path, headers={"X-CSRFToken": token},
                          json_body={"email": "j@example.com", "password": secrets.token_urlsafe(24)})
            self.assertEqual(r.status, 302)
            self.assertEqual(location_params(r)["error_code"], code)

    def test_next_path(self):
        self.setup_admin()
        c = self.client()
        r = c.form_post("/auth/sign-in/", {"email": "nobody@example.com", "password": "x", "next_path": "/acme/"})
        self.assertTrue(r.getheader("Location").startswith("http://localhost/?next_path=/acme/&error_code=5060"))

    def test_password_strength_approximation(self):
        for _ in range(500):
            self.assertTrue(standin.password_strong_enough(secrets.token_urlsafe(24)))
        for weak in ("password", "Password123!", "qwertyuiop123456", "aaaaaaaaaaaaaaaaaaaaaa",
                     "Summer2024!Summer2024!", "P@ssw0rdP@ssw0rd!!", "letmein", "abcdefghijklmnop"):
            self.assertFalse(standin.password_strong_enough(weak), weak)

    def test_internal_api_requires_session(self):
        c = self.client()
        r = c.request("GET", "/api/users/me/")
        self.assertEqual(r.status, 401)
        self.assertEqual(c.json(r), {"detail": "Authentication credentials were not provided."})


class Workspaces(StandinCase):
    def test_slug_check_create_and_conflict(self):
        c = self.app_admin()
        r = c.request("GET", "/api/workspace-slug-check/?slug=acme")
        self.assertEqual(c.json(r), {"status": True})
        ws = self.workspace(c)
        self.assertEqual(ws["role"], 20)
        self.assertEqual(ws["slug"], "acme")
        self.assertEqual(c.json(c.request("GET", "/api/workspace-slug-check/?slug=acme")), {"status": False})
        self.assertEqual(c.json(c.request("GET", "/api/workspace-slug-check/?slug=god-mode")), {"status": False})
        self.assertEqual(c.request("GET", "/api/workspace-slug-check/").status, 400)
        r = c.request("POST", "/api/workspaces/", json_body={"name": "Other", "slug": "acme"})
        self.assertEqual(r.status, 400)
        self.assertIn("slug", c.json(r))
        self.assertEqual(c.request("POST", "/api/workspaces/", json_body={"name": "x"}).status, 400)
        lst = c.json(c.request("GET", "/api/users/me/workspaces/"))
        self.assertEqual([w["slug"] for w in lst], ["acme"])
        self.assertEqual(lst[0]["role"], 20)

    def test_invite_accept_roles(self):
        admin = self.app_admin()
        self.workspace(admin)
        r = admin.request(
            "POST",
            "/api/workspaces/acme/invitations/",
            json_body={"emails": [{"email": "a1@example.com", "role": 20}, {"email": "a2@example.com", "role": 15}]},
        )
        self.assertEqual(r.status, 200, r.body)
        # re-inviting is ignored (role not changed)
        r = admin.request("POST", "/api/workspaces/acme/invitations/",
                          json_body={"emails": [{"email": "a2@example.com", "role": 5}]})
        self.assertEqual(r.status, 200)
        invs = admin.json(admin.request("GET", "/api/workspaces/acme/invitations/"))
        self.assertEqual(sorted((i["email"], i["role"]) for i in invs), [("a1@example.com", 20), ("a2@example.com", 15)])

        a2 = self.sign_up("a2@example.com")
        mine = a2.json(a2.request("GET", "/api/users/me/workspaces/invitations/"))
        self.assertEqual(len(mine), 1)
        self.assertEqual(mine[0]["workspace"]["slug"], "acme")
        self.assertEqual(mine[0]["role"], 15)
        r = a2.request("POST", "/api/users/me/workspaces/invitations/", json_body={"invitations": [mine[0]["id"]]})
        self.assertEqual(r.status, 204)
        self.assertEqual(a2.json(a2.request("GET", "/api/users/me/workspaces/invitations/")), [])

        members = admin.json(admin.request("GET", "/api/workspaces/acme/members/"))
        self.assertIsInstance(members, list)
        roles = {m["member"]["email"]: m["role"] for m in members}
        self.assertEqual(roles, {ADMIN_EMAIL: 20, "a2@example.com": 15})

        # inviting an existing member -> 400
        r = admin.request("POST", "/api/workspaces/acme/invitations/",
                          json_body={"emails": [{"email": "a2@example.com", "role": 15}]})
        self.assertEqual(r.status, 400)
        self.assertIn("already member", admin.json(r)["error"])

        # a Member cannot invite an Admin
        r = a2.request("POST", "/api/workspaces/acme/invitations/",
                       json_body={"emails": [{"email": "z@example.com", "role": 20}]})
        self.assertEqual(r.status, 400)
        # invalid email
        r = admin.request("POST", "/api/workspaces/acme/invitations/", json_body={"emails": [{"email": "nope", "role": 15}]})
        self.assertEqual(r.status, 400)

        # change a role
        a2_member = next(m for m in members if m["member"]["email"] == "a2@example.com")
        r = admin.request("PATCH", f"/api/workspaces/acme/members/{a2_member['id']}/", json_body={"role": 20})
        self.assertEqual(r.status, 200)
        self.assertEqual(admin.json(r)["role"], 20)
        me = next(m for m in members if m["member"]["email"] == ADMIN_EMAIL)
        r = admin.request("PATCH", f"/api/workspaces/acme/members/{me['id']}/", json_body={"role": 15})
        self.assertEqual(r.status, 400)
        r = admin.request("PATCH", f"/api/workspaces/acme/members/{a2_member['id']}/", json_body={"role": 7})
        self.assertEqual(r.status, 400)

    def test_non_member_forbidden(self):
        admin = self.app_admin()
        self.workspace(admin)
        outsider = self.sign_up("o@example.com")
        self.assertEqual(outsider.request("GET", "/api/workspaces/acme/members/").status, 403)


class Tokens(StandinCase):
    def test_token_lifecycle(self):
        c = self.app_admin()
        r = c.request("POST", "/api/users/api-tokens/", json_body={"label": "deployer", "description": "d", "expired_at": None})
        self.assertEqual(r.status, 201)
        body = c.json(r)
        self.assertRegex(body["token"], r"^plane_api_[0-9a-f]{32}$")
        listed = c.json(c.request("GET", "/api/users/api-tokens/"))
        self.assertEqual(len(listed), 1)
        self.assertNotIn("token", listed[0])
        self.assertEqual(listed[0]["label"], "deployer")
        self.assertNotIn(body["token"].encode(), c.request("GET", "/api/users/api-tokens/").body)
        self.assertEqual(c.json(c.request("GET", "/api/v1/users/me/", api_key=body["token"]))["email"], ADMIN_EMAIL)
        r = c.request("DELETE", f"/api/users/api-tokens/{body['id']}/")
        self.assertEqual(r.status, 204)
        self.assertEqual(c.json(c.request("GET", "/api/users/api-tokens/")), [])
        r = c.request("GET", "/api/v1/users/me/", api_key=body["token"])
        self.assertEqual(r.status, 403)

    def test_expired_token_invalid(self):
        c = self.app_admin()
        r = c.request("POST", "/api/users/api-tokens/", json_body={"label": "old", "expired_at": "2000-01-01T00:00:00Z"})
        tok = c.json(r)["token"]
        self.assertEqual(c.request("GET", "/api/v1/users/me/", api_key=tok).status, 403)


class PublicApi(StandinCase):
    def test_auth_errors(self):
        c = self.client()
        r = c.request("GET", "/api/v1/users/me/")
        self.assertEqual(r.status, 401)
        r = c.request("GET", "/api/v1/users/me/", api_key="plane_api_" + "0" * 32)
        self.assertEqual(r.status, 403)
        self.assertEqual(c.json(r), {"detail": "Given API token is not valid"})
        self.assertIsNone(r.getheader("X-RateLimit-Remaining"))

    def test_members_plain_array(self):
        admin = self.app_admin()
        self.workspace(admin)
        admin.request("POST", "/api/workspaces/acme/invitations/", json_body={"emails": [{"email": "m@example.com", "role": 15}]})
        m = self.sign_up("m@example.com")
        inv = m.json(m.request("GET", "/api/users/me/workspaces/invitations/"))
        m.request("POST", "/api/users/me/workspaces/invitations/", json_body={"invitations": [i["id"] for i in inv]})
        tok = self.token(admin)
        r = admin.request("GET", "/api/v1/workspaces/acme/members/", api_key=tok)
        self.assertEqual(r.status, 200)
        body = admin.json(r)
        self.assertIsInstance(body, list)
        self.assertEqual({x["email"]: x["role"] for x in body}, {ADMIN_EMAIL: 20, "m@example.com": 15})
        self.assertEqual(admin.request("GET", "/api/v1/workspaces/nope/members/", api_key=tok).status, 403)

    def test_rate_limit_headers(self):
        c = self.app_admin()
        tok = self.token(c)
        t0 = int(time.time())
        r = c.request("GET", "/api/v1/users/me/", api_key=tok)
        self.assertEqual(r.getheader("X-RateLimit-Remaining"), "59")
        reset = int(r.getheader("X-RateLimit-Reset"))
        self.assertTrue(t0 + 59 <= reset <= t0 + 62, (t0, reset))
        r = c.request("GET", "/api/v1/users/me/", api_key=tok)
        self.assertEqual(r.getheader("X-RateLimit-Remaining"), "58")

    def test_429(self):
        c = self.app_admin()
        tok = self.token(c)
        other = self.token(c, "other")
        s = self.client()
        s.request("POST", "/__standin__/faults", json_body={"rate_limit": "3/minute"})
        for expected in ("2", "1", "0"):
            r = c.request("GET", "/api/v1/users/me/", api_key=tok)
            self.assertEqual(r.status, 200)
            self.assertEqual(r.getheader("X-RateLimit-Remaining"), expected)
        r = c.request("GET", "/api/v1/users/me/", api_key=tok)
        self.assertEqual(r.status, 429)
        self.assertEqual(c.json(r), {"error_code": 5900, "error_message": "RATE_LIMIT_EXCEEDED"})
        self.assertTrue(1 <= int(r.getheader("Retry-After")) <= 60)
        # per token
        self.assertEqual(c.request("GET", "/api/v1/users/me/", api_key=other).status, 200)

    def test_rate_limit_env(self):
        os.environ["API_KEY_RATE_LIMIT"] = "2/second"
        try:
            self.server.app.state.reset()
        finally:
            del os.environ["API_KEY_RATE_LIMIT"]
        c = self.app_admin()
        tok = self.token(c)
        self.assertEqual(c.request("GET", "/api/v1/users/me/", api_key=tok).getheader("X-RateLimit-Remaining"), "1")
        c.request("GET", "/api/v1/users/me/", api_key=tok)
        r = c.request("GET", "/api/v1/users/me/", api_key=tok)
        self.assertEqual(r.status, 429)
        self.assertEqual(r.getheader("Retry-After"), "1")
        time.sleep(1.1)
        self.assertEqual(c.request("GET", "/api/v1/users/me/", api_key=tok).status, 200)

    def test_parse_rate(self):
        self.assertEqual(standin.parse_rate("60/minute"), (60, 60))
        self.assertEqual(standin.parse_rate("5/second"), (5, 1))
        self.assertEqual(standin.parse_rate("100/hour"), (100, 3600))

    def test_pagination(self):
        c = self.app_admin()
        self.workspace(c)
        tok = self.token(c)
        self.client().request("POST", "/__standin__/faults", json_body={"rate_limit": "1000/minute"})
        for i in range(25):
            r = c.request("POST", "/api/v1/workspaces/acme/projects/", api_key=tok,
                          json_body={"name": f"P{i}", "identifier": f"P{i}"})
            self.assertEqual(r.status, 201, r.body)
        r = c.request("POST", "/api/v1/workspaces/acme/projects/", api_key=tok, json_body={"name": "P0", "identifier": "ZZ"})
        self.assertEqual(r.status, 409)

        seen, cursor, pages = [], None, 0
        while True:
            q = "per_page=10" + (f"&cursor={cursor}" if cursor else "")
            r = c.request("GET", f"/api/v1/workspaces/acme/projects/?{q}", api_key=tok)
            self.assertEqual(r.status, 200, r.body)
            body = c.json(r)
            for key in ("results", "next_cursor", "prev_cursor", "next_page_results", "prev_page_results",
                        "total_count", "total_pages", "count"):
                self.assertIn(key, body)
            self.assertEqual(body["total_count"], 25)
            self.assertEqual(body["total_pages"], 3)
            self.assertEqual(body["prev_page_results"], pages > 0)
            self.assertEqual(body["next_cursor"], f"10:{pages + 1}:0")
            self.assertEqual(body["prev_cursor"], f"10:{pages - 1}:1")
            seen += [p["name"] for p in body["results"]]
            self.assertEqual(body["count"], len(body["results"]))
            pages += 1
            if not body["next_page_results"]:
                break
            cursor = body["next_cursor"]
        self.assertEqual(pages, 3)
        self.assertEqual(seen, [f"P{i}" for i in range(25)])

        # exactly one full page: no next page
        body = c.json(c.request("GET", "/api/v1/workspaces/acme/projects/?per_page=25", api_key=tok))
        self.assertFalse(body["next_page_results"])
        self.assertEqual(body["count"], 25)
        # default per_page is 1000
        body = c.json(c.request("GET", "/api/v1/workspaces/acme/projects/", api_key=tok))
        self.assertEqual(body["count"], 25)
        self.assertEqual(body["next_cursor"], "1000:1:0")

    def test_pagination_errors(self):
        c = self.app_admin()
        self.workspace(c)
        tok = self.token(c)
        for q, detail in (("per_page=1001", "Invalid per_page value. Cannot exceed 1000."),
                          ("per_page=x", "Invalid per_page parameter."),
                          ("cursor=bad", "Invalid cursor parameter."),
                          ("per_page=10&cursor=10:-1:1", "Error in parsing")):
            r = c.request("GET", f"/api/v1/workspaces/acme/projects/?{q}", api_key=tok)
            self.assertEqual(r.status, 400, q)
            self.assertEqual(c.json(r), {"detail": detail})


class Faults(StandinCase):
    def test_fail_next(self):
        s = self.client()
        r = s.request("POST", "/__standin__/faults", json_body={"fail_next": 2, "status": 503})
        self.assertEqual(r.status, 200)
        self.assertEqual(s.request("GET", "/").status, 503)
        self.assertEqual(s.request("GET", "/api/instances/").status, 503)
        self.assertEqual(s.request("GET", "/").status, 200)
        s.request("POST", "/__standin__/faults", json_body={"fail_next": 1, "status": 500, "path_prefix": "/api/v1/"})
        self.assertEqual(s.request("GET", "/").status, 200)
        r = s.request("GET", "/api/v1/users/me/")
        self.assertEqual(r.status, 500)
        self.assertEqual(s.request("GET", "/api/v1/users/me/").status, 401)
        self.assertEqual(s.request("POST", "/__standin__/faults", json_body={"status": 404}).status, 400)

    def test_csrf_always(self):
        s = self.client()
        s.request("POST", "/__standin__/faults", json_body={"csrf_failure": True})
        r = s.form_post("/api/instances/admins/sign-up/", {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "first_name": "A"})
        self.assertEqual(r.status, 200)
        self.assertIn(b"CSRF Verification Failed", r.body)
        s.request("POST", "/__standin__/faults", json_body={"csrf_failure": False})
        self.setup_admin()

    def test_state_never_shows_tokens(self):
        c = self.app_admin()
        self.workspace(c)
        tok = self.token(c)
        r = self.client().request("GET", "/__standin__/state")
        body = json.loads(r.body)
        self.assertNotIn(tok.encode(), r.body)
        self.assertNotIn(ADMIN_PASSWORD.encode(), r.body)
        self.assertTrue(body["is_setup_done"])
        self.assertEqual(body["tokens_count"], 1)
        self.assertEqual(body["users"][0]["tokens"], 1)
        self.assertEqual(body["workspaces"][0]["members"], [{"email": ADMIN_EMAIL, "role": 20}])

    def test_reset(self):
        self.setup_admin()
        s = self.client()
        self.assertEqual(s.request("POST", "/__standin__/reset").status, 204)
        self.assertFalse(json.loads(s.request("GET", "/__standin__/state").body)["is_setup_done"])


class FaultsFromEnv(StandinCase):
    env = {"PLANE_STANDIN_FAULTS": json.dumps({"fail_next": 1, "status": 502})}

    def setUp(self):
        pass  # keep the env-configured faults of the fresh server

    def test_env_faults(self):
        s = self.client()
        self.assertEqual(s.request("GET", "/").status, 502)
        self.assertEqual(s.request("GET", "/").status, 200)


class SignupDisabled(StandinCase):
    env = {"ENABLE_SIGNUP": "0"}

    def test_only_invited_may_sign_up(self):
        admin = self.app_admin()
        self.workspace(admin)
        c = self.client()
        r = c.form_post("/auth/sign-up/", {"email": "x@example.com", "password": secrets.token_urlsafe(24)})
        self.assertEqual(location_params(r)["error_code"], "5015")
        admin.request("POST", "/api/workspaces/acme/invitations/", json_body={"emails": [{"email": "x@example.com", "role": 15}]})
        self.sign_up("x@example.com")


class CommandLine(unittest.TestCase):
    def test_runs_as_a_process(self):
        import socket
        import subprocess

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "server.py"),
             "--host", "127.0.0.1", "--port", str(port)],
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.time() + 10
            while True:
                try:
                    r = Client(port).request("GET", "/")
                    break
                except OSError:
                    if time.time() > deadline:
                        raise
                    time.sleep(0.05)
            self.assertEqual(r.status, 200)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            proc.stderr.close()


class UserProfile(StandinCase):
    def test_patch_me_sets_names_and_display_name(self):
        c = self.app_admin()
        r = c.request(
            "PATCH",
            "/api/users/me/",
            json_body={"first_name": "Mobutoo", "last_name": "", "display_name": "Mobutoo (Concierge AI)"},
        )
        self.assertEqual(r.status, 200, r.body)
        me = c.json(c.request("GET", "/api/users/me/"))
        self.assertEqual((me["first_name"], me["display_name"]), ("Mobutoo", "Mobutoo (Concierge AI)"))

    def test_patch_me_refuses_only_names_with_urls(self):
        # v1.2.3 apps/api/plane/app/serializers/user.py: names must not contain a URL
        c = self.app_admin()
        r = c.request("PATCH", "/api/users/me/", json_body={"first_name": "Mo (x) Zoë", "last_name": ""})
        self.assertEqual(r.status, 200, r.body)
        for bad in ("see http://x", "www.example", "agent.example.com", "10.0.0.1"):
            r = c.request("PATCH", "/api/users/me/", json_body={"first_name": bad})
            self.assertEqual(r.status, 400, bad)
            self.assertEqual(c.json(r), {"first_name": ["First name cannot contain a URL."]})
        r = c.request("PATCH", "/api/users/me/", json_body={"display_name": "x"})
        self.assertEqual(r.status, 200, "missing names are left as they are")
        self.assertEqual(c.json(c.request("GET", "/api/users/me/"))["first_name"], "Mo (x) Zoë")


class UserAgentRequired(StandinCase):
    """Plane stores the User-Agent in a NOT NULL column on every sign-in and sign-up."""

    def test_admin_sign_up_without_user_agent_is_a_500_and_half_done(self):
        c = self.client(user_agent=None)
        r = c.form_post(
            "/api/instances/admins/sign-up/",
            {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "first_name": "Ada"},
        )
        self.assertEqual(r.status, 500)
        self.assertIn(b"Server Error (500)", r.body)
        state = json.loads(self.client().request("GET", "/__standin__/state").body)
        self.assertFalse(state["is_setup_done"])
        self.assertEqual([(u["email"], u["is_instance_admin"]) for u in state["users"]], [(ADMIN_EMAIL, False)])
        # and from then on: ADMIN_USER_ALREADY_EXIST, with or without the header
        r = self.client().form_post(
            "/api/instances/admins/sign-up/",
            {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "first_name": "Ada"},
        )
        self.assertEqual(location_params(r)["error_code"], "5180")
        # what an operator does in the api container resumes it
        for spec in ({"command": "create_instance_admin", "email": ADMIN_EMAIL}, {"command": "finish_setup"}):
            r = self.client().request("POST", "/__standin__/manage", json_body=spec)
            self.assertEqual(r.status, 200, r.body)
        r = self.client().form_post("/auth/sign-in/", {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
        self.assertNotIn("error_code", location_params(r))

    def test_app_sign_up_and_sign_in_without_user_agent(self):
        self.setup_admin()
        pw = secrets.token_urlsafe(24)
        r = self.client(user_agent=None).form_post("/auth/sign-up/", {"email": "a@example.com", "password": pw})
        self.assertEqual(r.status, 500)
        # the user row stays; signing in without the header fails the same way
        c = self.client(user_agent=None)
        r = c.form_post("/auth/sign-in/", {"email": "a@example.com", "password": pw})
        self.assertEqual(r.status, 500)
        self.assertNotIn("session-id", c.cookies)
        c = self.client()
        r = c.form_post("/auth/sign-in/", {"email": "a@example.com", "password": pw})
        self.assertNotIn("error_code", location_params(r))
        self.assertIn("session-id", c.cookies)


class AnonymousThrottle(StandinCase):
    def test_thirty_anonymous_calls_a_minute(self):
        c = self.client()
        for i in range(30):
            path = "/auth/get-csrf-token/" if i % 2 else "/api/instances/"
            self.assertEqual(c.request("GET", path).status, 200, i)
        r = c.request("GET", "/auth/get-csrf-token/")
        self.assertEqual(r.status, 429)
        self.assertEqual(c.json(r), {"error_code": 5900, "error_message": "RATE_LIMIT_EXCEEDED"})
        self.assertGreater(int(r.getheader("Retry-After")), 0)
        # not throttled: the plain Django health view, the form views, signed-in users
        self.assertEqual(c.request("GET", "/").status, 200)

    def test_signed_in_users_are_not_anonymous(self):
        admin = self.app_admin()
        self.server.app.state.anon_throttle.set_rate("1/minute")
        self.server.app.state.anon_throttle.history.clear()
        for _ in range(5):
            self.assertEqual(admin.request("GET", "/auth/get-csrf-token/").status, 200)
        self.assertEqual(self.client().request("GET", "/api/instances/").status, 200)
        self.assertEqual(self.client().request("GET", "/api/instances/").status, 429)

    def test_rate_is_a_fault_setting(self):
        r = self.client().request("POST", "/__standin__/faults", json_body={"anon_rate_limit": "2/minute"})
        self.assertEqual(self.client().json(r)["anon_rate_limit"], "2/minute")
        c = self.client()
        self.assertEqual([c.request("GET", "/api/instances/").status for _ in range(3)], [200, 200, 429])


class DrfStrictness(StandinCase):
    def test_non_json_bodies_are_415(self):
        c = self.app_admin()
        r = c.request("POST", "/api/workspaces/", body=b'{"name": "A", "slug": "a"}', headers={"Content-Type": "text/plain"})
        self.assertEqual(r.status, 415)
        self.assertEqual(c.json(r), {"detail": 'Unsupported media type "text/plain" in request.'})
        r = c.request("POST", "/api/workspaces/", body=b'{"name": "A", "slug": "a"}')
        self.assertEqual(r.status, 415)
        r = c.request("POST", "/api/workspaces/", body=b"{not json", headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 400)
        self.assertTrue(c.json(r)["detail"].startswith("JSON parse error"))
        # form bodies are parsed (FormParser)
        r = c.request("POST", "/api/workspaces/", form={"name": "A", "slug": "a-form"})
        self.assertEqual(r.status, 201, r.body)

    def test_handler_errors_are_plane_500s(self):
        c = self.app_admin()
        self.workspace(c)
        r = c.request("POST", "/api/workspaces/acme/invitations/", json_body={"emails": [{"email": "x@example.com", "role": "boss"}]})
        self.assertEqual(r.status, 500)
        self.assertEqual(c.json(r), {"error": "Something went wrong please try again later"})

    def test_admin_sessions_expire_after_an_hour(self):
        admin = self.setup_admin()
        app = self.client()
        app.form_post("/auth/sign-in/", {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
        r = admin.request("GET", "/api/users/me/")  # the admin cookie is not an app session
        self.assertEqual(r.status, 401)
        st = self.server.app.state
        key = admin.cookies["admin-session-id"]
        self.assertAlmostEqual(st.sessions[key][2] - st.now(), 3600, delta=5)
        self.client().request("POST", "/__standin__/clock", json_body={"advance": 3601})
        self.assertNotIn(key, [k for k, v in st.sessions.items() if st.now() < v[2]])
        self.assertEqual(app.request("GET", "/api/users/me/").status, 200, "app sessions last a week")
        self.client().request("POST", "/__standin__/clock", json_body={"advance": 604800})
        self.assertEqual(app.request("GET", "/api/users/me/").status, 401)


if __name__ == "__main__":
    unittest.main()
