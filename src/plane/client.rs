//! The Plane API client (seed 000, C2): `X-API-Key` auth, pacing from
//! `X-RateLimit-Remaining`/`X-RateLimit-Reset`, waiting on 429 `Retry-After`,
//! cursor pagination, plain-array lists, and the session/CSRF form flow used to
//! sign up and sign in. No token, password or cookie value ever reaches an error
//! or a log line: errors carry the step and the status, never the request.
//!
//! Against real Plane v1.2.3 three things matter beyond the happy path: every
//! request carries a `User-Agent` (Plane writes it into a NOT NULL column on
//! every sign-in and sign-up and answers 500 without it:
//! `plane/license/api/views/admin.py`, `plane/authentication/adapter/base.py`,
//! `plane/db/models/user.py`); anonymous calls are throttled to 30 a minute
//! per IP (`plane/settings/common.py`, REST framework's `AnonRateThrottle`),
//! so one anonymous CSRF token is fetched per client and reused by every
//! session; and a 429 from any endpoint is waited out as its `Retry-After`
//! asks, within a bounded total wait.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{CONTENT_TYPE, COOKIE, HeaderMap, HeaderValue, LOCATION, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::Value as Json;

/// The `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("deployer/", env!("CARGO_PKG_VERSION"));
/// The longest we wait for a rate-limit window or a `Retry-After`.
const MAX_WAIT: Duration = Duration::from_secs(90);
/// The most a client waits for rate limits over its whole life.
const MAX_TOTAL_WAIT: Duration = Duration::from_secs(240);
/// How many 429s in a row we sit out before giving up.
const MAX_RETRIES_429: usize = 6;
/// Django's CSRF cookie (`CSRF_COOKIE_NAME`).
const CSRF_COOKIE: &str = "csrftoken";

#[derive(Debug, thiserror::Error)]
pub enum PlaneError {
    #[error("{step}: cannot reach Plane at {base}: {reason}")]
    Transport {
        step: String,
        base: String,
        reason: String,
    },
    #[error("{step}: HTTP {status}{detail}")]
    Http {
        step: String,
        status: u16,
        detail: String,
    },
    #[error("{step}: Plane refused the form with error {code} ({message})")]
    Form {
        step: String,
        code: u32,
        message: String,
    },
    #[error("{step}: CSRF verification failed (Plane answered with its HTML error page)")]
    Csrf { step: String },
    #[error(
        "{step}: Plane still answers 429 (rate limited) after {tries} tries and {waited_secs} s of waiting in all (a run waits at most 90 s at a time, 240 s in all); try again later"
    )]
    RateLimited {
        step: String,
        tries: usize,
        waited_secs: u64,
    },
    #[error("{step}: unexpected answer: {what}")]
    Unexpected { step: String, what: String },
}

impl PlaneError {
    pub fn form_code(&self) -> Option<u32> {
        match self {
            PlaneError::Form { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Cookies of one browser-like session (admin or app), kept by name, and
/// the masked CSRF token that goes with its `csrftoken` cookie.
#[derive(Default)]
pub struct Session {
    cookies: BTreeMap<String, String>,
    /// (the `csrftoken` cookie value, the masked token issued for it)
    csrf: Option<(String, String)>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Session({:?})", self.cookies.keys().collect::<Vec<_>>())
    }
}

impl Session {
    pub fn has(&self, name: &str) -> bool {
        self.cookies.contains_key(name)
    }
    fn header(&self) -> Option<HeaderValue> {
        if self.cookies.is_empty() {
            return None;
        }
        let v = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        HeaderValue::from_str(&v).ok()
    }
    fn absorb(&mut self, headers: &HeaderMap) {
        for h in headers.get_all(SET_COOKIE) {
            if let Some((name, value)) = h.to_str().ok().and_then(parse_set_cookie) {
                if value.is_empty() {
                    self.cookies.remove(&name);
                } else {
                    self.cookies.insert(name, value);
                }
            }
        }
    }
}

/// `name=value; Path=/; HttpOnly` -> (name, value).
pub fn parse_set_cookie(h: &str) -> Option<(String, String)> {
    let first = h.split(';').next()?;
    let (n, v) = first.split_once('=')?;
    Some((n.trim().to_string(), v.trim().trim_matches('"').to_string()))
}

/// The result of one of Plane's form views: every outcome is a 302, and a
/// failure puts `error_code` and `error_message` into the `Location` query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormOutcome {
    pub location: String,
    pub error: Option<(u32, String)>,
}

pub fn parse_form_location(location: &str) -> FormOutcome {
    let query = location.split_once('?').map(|(_, q)| q).unwrap_or("");
    let mut code = None;
    let mut message = String::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "error_code" => code = v.parse::<u32>().ok(),
            "error_message" => message = v.into_owned(),
            _ => {}
        }
    }
    FormOutcome {
        location: location.to_string(),
        error: code.map(|c| (c, message)),
    }
}

/// Whether a request is one of the public API's (paced by the token's
/// `X-RateLimit-*` budget) or any other.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    V1,
    Other,
}

#[derive(Debug, Default, Clone, Copy)]
struct Pace {
    remaining: Option<u64>,
    reset: Option<u64>,
}

pub struct PlaneClient {
    base: String,
    http: reqwest::Client,
    pace: Mutex<Pace>,
    /// Requests sent, for tests and the run summary.
    sent: std::sync::atomic::AtomicUsize,
    /// Requests sent without a session or a token (throttled by Plane per IP).
    anonymous: std::sync::atomic::AtomicUsize,
    /// Time spent waiting on 429s so far.
    waited: Mutex<Duration>,
    /// The anonymous `csrftoken` cookie and its masked token, fetched once
    /// and given to every new session.
    anon_csrf: Mutex<Option<(String, String)>>,
}

impl std::fmt::Debug for PlaneClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PlaneClient({})", self.base)
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl PlaneClient {
    pub fn new(base_url: &str) -> Result<PlaneClient, PlaneError> {
        PlaneClient::build(base_url, None)
    }

    /// A client whose every connection goes through a local Unix socket (a
    /// port forwarded over the host's SSH master); `base_url` still names the
    /// address Plane sees in the `Host` header and the `Referer`.
    pub fn over_unix_socket(
        base_url: &str,
        socket: &std::path::Path,
    ) -> Result<PlaneClient, PlaneError> {
        PlaneClient::build(base_url, Some(socket))
    }

    fn build(base_url: &str, socket: Option<&std::path::Path>) -> Result<PlaneClient, PlaneError> {
        let base = base_url.trim_end_matches('/').to_string();
        if !base.starts_with("http://") {
            return Err(PlaneError::Unexpected {
                step: "configure the Plane client".into(),
                what: format!(
                    "only http:// URLs are supported (got '{base}'); reach Plane through the host's SSH connection"
                ),
            });
        }
        let mut builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            // Plane's form views answer 302: we read the Location, never follow it.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30));
        if let Some(path) = socket {
            builder = builder.unix_socket(path.to_path_buf());
        }
        let http = builder.build().map_err(|e| PlaneError::Transport {
            step: "configure the Plane client".into(),
            base: base.clone(),
            reason: e.to_string(),
        })?;
        Ok(PlaneClient {
            base,
            http,
            pace: Mutex::new(Pace::default()),
            sent: Default::default(),
            anonymous: Default::default(),
            waited: Mutex::new(Duration::ZERO),
            anon_csrf: Mutex::new(None),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn requests_sent(&self) -> usize {
        self.sent.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Requests sent with neither a session cookie nor an API token: the
    /// ones Plane throttles to 30 a minute per IP.
    pub fn anonymous_requests(&self) -> usize {
        self.anonymous.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn send(
        &self,
        step: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, PlaneError> {
        self.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        req.send().await.map_err(|e| PlaneError::Transport {
            step: step.to_string(),
            base: self.base.clone(),
            // reqwest's message names the URL, never headers or bodies.
            reason: without_url_query(&e.to_string()),
        })
    }

    /// Sends a request built by `build` (once per try), waiting out 429s as
    /// their `Retry-After` asks, within [`MAX_TOTAL_WAIT`] over the client's
    /// life; public API calls also wait when the token's budget is spent.
    async fn execute(
        &self,
        step: &str,
        kind: Kind,
        build: &(dyn Fn() -> reqwest::RequestBuilder + Sync),
    ) -> Result<reqwest::Response, PlaneError> {
        for _ in 0..=MAX_RETRIES_429 {
            if kind == Kind::V1 {
                self.wait_for_budget(step).await?;
            }
            let resp = self.send(step, build()).await?;
            if kind == Kind::V1 {
                self.record_pace(resp.headers());
            }
            if resp.status() != StatusCode::TOO_MANY_REQUESTS {
                return Ok(resp);
            }
            let secs = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(1);
            self.wait(
                step,
                Duration::from_secs(secs.max(1)),
                "its Retry-After asks",
            )
            .await?;
        }
        Err(PlaneError::RateLimited {
            step: step.into(),
            tries: MAX_RETRIES_429 + 1,
            waited_secs: self.waited_so_far().as_secs(),
        })
    }

    fn waited_so_far(&self) -> Duration {
        self.waited.lock().map(|w| *w).unwrap_or_default()
    }

    /// Sleeps `wait` with a progress line on stderr, or gives up at once when
    /// Plane asks for more than [`MAX_WAIT`] or the client's total wait would
    /// pass [`MAX_TOTAL_WAIT`].
    async fn wait(&self, step: &str, wait: Duration, why: &str) -> Result<(), PlaneError> {
        let total = self.waited_so_far();
        if wait > MAX_WAIT || total + wait > MAX_TOTAL_WAIT {
            return Err(PlaneError::RateLimited {
                step: step.into(),
                tries: 1,
                waited_secs: total.as_secs(),
            });
        }
        eprintln!(
            "plane: {step}: rate limited by Plane, waiting {} s as {why} ({} s waited so far, at most {} s)",
            wait.as_secs(),
            total.as_secs(),
            MAX_TOTAL_WAIT.as_secs()
        );
        tokio::time::sleep(wait).await;
        if let Ok(mut w) = self.waited.lock() {
            *w += wait;
        }
        Ok(())
    }

    /// Waits when the last public API response said the budget is spent.
    async fn wait_for_budget(&self, step: &str) -> Result<(), PlaneError> {
        let pace = self.pace.lock().map(|p| *p).unwrap_or_default();
        if let (Some(0), Some(reset)) = (pace.remaining, pace.reset) {
            let wait = Duration::from_secs(reset.saturating_sub(now_secs()) + 1).min(MAX_WAIT);
            if let Ok(mut p) = self.pace.lock() {
                p.remaining = None;
            }
            self.wait(step, wait, "X-RateLimit-Reset says").await?;
        }
        Ok(())
    }

    fn record_pace(&self, headers: &HeaderMap) {
        let num = |k: &str| {
            headers
                .get(k)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if let Ok(mut p) = self.pace.lock() {
            if let Some(r) = num("x-ratelimit-remaining") {
                p.remaining = Some(r);
            }
            if let Some(r) = num("x-ratelimit-reset") {
                p.reset = Some(r);
            }
        }
    }

    /// One public API v1 call with `X-API-Key`, paced, waiting out 429s.
    pub async fn v1(
        &self,
        step: &str,
        token: &str,
        method: Method,
        path: &str,
        body: Option<&Json>,
    ) -> Result<Json, PlaneError> {
        let key = HeaderValue::from_str(token).map_err(|_| PlaneError::Unexpected {
            step: step.into(),
            what: "the API token has characters a header cannot carry".into(),
        })?;
        let url = self.url(path);
        let build = || {
            let req = self
                .http
                .request(method.clone(), &url)
                .header("X-API-Key", key.clone());
            match body {
                Some(b) => req.json(b),
                None => req,
            }
        };
        let resp = self.execute(step, Kind::V1, &build).await?;
        read_json(step, resp).await
    }
    /// A v1 list: a plain array, or Plane's cursor pagination walked to the end
    /// (`cursor=<per_page>:<page>:<is_prev>`, following `next_cursor` while
    /// `next_page_results`).
    pub async fn v1_list(
        &self,
        step: &str,
        token: &str,
        path: &str,
    ) -> Result<Vec<Json>, PlaneError> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..10_000 {
            let p = match &cursor {
                None => format!("{path}{sep}per_page=100"),
                Some(c) => format!("{path}{sep}per_page=100&cursor={c}"),
            };
            let page = self.v1(step, token, Method::GET, &p, None).await?;
            match page {
                Json::Array(items) => return Ok(items),
                Json::Object(ref m) => {
                    let results = m.get("results").and_then(|r| r.as_array()).ok_or_else(|| {
                        PlaneError::Unexpected {
                            step: step.into(),
                            what: "a list without `results`".into(),
                        }
                    })?;
                    out.extend(results.iter().cloned());
                    let more = m
                        .get("next_page_results")
                        .and_then(|v| v.as_bool())
                        .unwrap_or(false);
                    let next = m
                        .get("next_cursor")
                        .and_then(|v| v.as_str())
                        .map(str::to_string);
                    match (more, next) {
                        (true, Some(n)) if Some(&n) != cursor.as_ref() => cursor = Some(n),
                        _ => return Ok(out),
                    }
                }
                other => {
                    return Err(PlaneError::Unexpected {
                        step: step.into(),
                        what: format!("a list, got {}", kind(&other)),
                    });
                }
            }
        }
        Err(PlaneError::Unexpected {
            step: step.into(),
            what: "pagination did not end".into(),
        })
    }

    /// `GET /api/v1/users/me/`: the token's user, or the error that says it is not valid.
    pub async fn me(&self, token: &str) -> Result<Json, PlaneError> {
        self.v1(
            "check the API token",
            token,
            Method::GET,
            "/api/v1/users/me/",
            None,
        )
        .await
    }

    /// `GET /auth/get-csrf-token/` with the session's cookies: a fresh masked
    /// token and its cookie, into the session.
    pub async fn csrf(&self, step: &str, session: &mut Session) -> Result<String, PlaneError> {
        let url = self.url("/auth/get-csrf-token/");
        let cookie = session.header();
        if !session.has("session-id") {
            self.anonymous
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let build = || {
            let req = self.http.get(&url);
            match &cookie {
                Some(c) => req.header(COOKIE, c.clone()),
                None => req,
            }
        };
        let resp = self.execute(step, Kind::Other, &build).await?;
        session.absorb(resp.headers());
        let body = read_json(step, resp).await?;
        let token = body
            .get("csrf_token")
            .and_then(|t| t.as_str())
            .map(str::to_string)
            .ok_or_else(|| PlaneError::Unexpected {
                step: step.into(),
                what: "no csrf_token in /auth/get-csrf-token/".into(),
            })?;
        let secret =
            session
                .cookies
                .get(CSRF_COOKIE)
                .cloned()
                .ok_or_else(|| PlaneError::Unexpected {
                    step: step.into(),
                    what: "no csrftoken cookie from /auth/get-csrf-token/".into(),
                })?;
        session.csrf = Some((secret, token.clone()));
        Ok(token)
    }

    /// The CSRF token to post with this session, without asking Plane when it
    /// can: the token issued for the session's `csrftoken` cookie; the cookie's
    /// own value once Plane rotated it at sign-in (Django's `CsrfViewMiddleware`
    /// accepts the unmasked secret too); for a new session, the client's one
    /// anonymous cookie and token (Django keeps CSRF state in the cookie, not
    /// on the server).
    async fn csrf_for(&self, step: &str, session: &mut Session) -> Result<String, PlaneError> {
        if let Some(cookie) = session.cookies.get(CSRF_COOKIE) {
            return Ok(match &session.csrf {
                Some((secret, token)) if secret == cookie => token.clone(),
                _ => cookie.clone(),
            });
        }
        let shared = self.anon_csrf.lock().ok().and_then(|g| g.clone());
        if let Some((secret, token)) = shared {
            session
                .cookies
                .insert(CSRF_COOKIE.to_string(), secret.clone());
            session.csrf = Some((secret, token.clone()));
            return Ok(token);
        }
        let mut fresh = Session::default();
        let token = self.csrf(step, &mut fresh).await?;
        if let Some(pair) = fresh.csrf.clone()
            && let Ok(mut g) = self.anon_csrf.lock()
        {
            *g = Some(pair);
        }
        for (k, v) in fresh.cookies {
            session.cookies.entry(k).or_insert(v);
        }
        session.csrf = fresh.csrf;
        Ok(token)
    }

    /// Posts one of Plane's form views (sign-up, sign-in) with the CSRF token,
    /// without following the 302; a failure comes back as `PlaneError::Form`.
    /// A CSRF refusal with a reused token is retried once with a fresh one.
    pub async fn form(
        &self,
        step: &str,
        session: &mut Session,
        path: &str,
        fields: &[(&str, &str)],
    ) -> Result<FormOutcome, PlaneError> {
        let token = self.csrf_for(step, session).await?;
        match self.post_form(step, session, path, fields, &token).await {
            Err(PlaneError::Csrf { .. }) => {
                session.cookies.remove(CSRF_COOKIE);
                session.csrf = None;
                if let Ok(mut g) = self.anon_csrf.lock() {
                    *g = None;
                }
                let token = self.csrf(step, session).await?;
                self.post_form(step, session, path, fields, &token).await
            }
            other => other,
        }
    }

    async fn post_form(
        &self,
        step: &str,
        session: &mut Session,
        path: &str,
        fields: &[(&str, &str)],
        token: &str,
    ) -> Result<FormOutcome, PlaneError> {
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        form.push(("csrfmiddlewaretoken", token));
        let url = self.url(path);
        let referer = self.url("/");
        let cookie = session.header();
        let build = || {
            let req = self
                .http
                .post(&url)
                .header("X-CSRFToken", token)
                .header("Referer", &referer)
                .form(&form);
            match &cookie {
                Some(c) => req.header(COOKIE, c.clone()),
                None => req,
            }
        };
        let resp = self.execute(step, Kind::Other, &build).await?;
        session.absorb(resp.headers());
        let status = resp.status();
        if status.is_redirection() {
            let loc = resp
                .headers()
                .get(LOCATION)
                .and_then(|l| l.to_str().ok())
                .unwrap_or("")
                .to_string();
            let outcome = parse_form_location(&loc);
            if let Some((code, message)) = outcome.error.clone() {
                return Err(PlaneError::Form {
                    step: step.into(),
                    code,
                    message,
                });
            }
            return Ok(outcome);
        }
        let is_html = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|c| c.to_str().ok())
            .is_some_and(|c| c.starts_with("text/html"));
        if status == StatusCode::OK && is_html {
            return Err(PlaneError::Csrf { step: step.into() });
        }
        Err(PlaneError::Http {
            step: step.into(),
            status: status.as_u16(),
            detail: String::new(),
        })
    }

    /// An internal `/api/...` JSON call with a session cookie (no CSRF needed).
    pub async fn session_json(
        &self,
        step: &str,
        session: &mut Session,
        method: Method,
        path: &str,
        body: Option<&Json>,
    ) -> Result<Json, PlaneError> {
        let url = self.url(path);
        let cookie = session.header();
        if !session.has("session-id") && !session.has("admin-session-id") {
            self.anonymous
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let build = || {
            let mut req = self.http.request(method.clone(), &url);
            if let Some(c) = &cookie {
                req = req.header(COOKIE, c.clone());
            }
            match body {
                Some(b) => req.json(b),
                None => req,
            }
        };
        let resp = self.execute(step, Kind::Other, &build).await?;
        session.absorb(resp.headers());
        read_json(step, resp).await
    }

    /// `GET /` on the api: Plane's health answer `{"status": "OK"}` (a plain
    /// Django view, not throttled).
    pub async fn healthy(&self) -> Result<(), PlaneError> {
        let step = "check Plane's health";
        let url = self.url("/");
        let build = || self.http.get(&url);
        let resp = self.execute(step, Kind::Other, &build).await?;
        let body = read_json(step, resp).await?;
        if body.get("status").and_then(|s| s.as_str()) == Some("OK") {
            Ok(())
        } else {
            Err(PlaneError::Unexpected {
                step: step.into(),
                what: format!("health answer {}", kind(&body)),
            })
        }
    }
}

fn kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

fn without_url_query(s: &str) -> String {
    // A query string could carry a cursor or a slug; keep messages short and safe.
    match s.find('?') {
        Some(i) => {
            let end = s[i..].find([' ', ')']).map(|e| i + e).unwrap_or(s.len());
            format!("{}{}", &s[..i], &s[end..])
        }
        None => s.to_string(),
    }
}

/// Reads a JSON answer; non-2xx becomes `PlaneError::Http` with Plane's own
/// `detail`/`error` text (never our request).
async fn read_json(step: &str, resp: reqwest::Response) -> Result<Json, PlaneError> {
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(|e| PlaneError::Unexpected {
        step: step.into(),
        what: format!("reading the answer: {e}"),
    })?;
    let parsed: Option<Json> = if bytes.is_empty() {
        Some(Json::Null)
    } else {
        serde_json::from_slice(&bytes).ok()
    };
    if !status.is_success() {
        let detail = parsed
            .as_ref()
            .and_then(|j| {
                j.get("detail")
                    .or_else(|| j.get("error"))
                    .or_else(|| j.get("error_message"))
            })
            .map(|d| {
                format!(
                    ": {}",
                    d.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| d.to_string())
                )
            })
            .unwrap_or_default();
        return Err(PlaneError::Http {
            step: step.into(),
            status: status.as_u16(),
            detail: crate::secrets::mask(&detail),
        });
    }
    parsed.ok_or_else(|| PlaneError::Unexpected {
        step: step.into(),
        what: format!("HTTP {} with a body that is not JSON", status.as_u16()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_failures_come_from_the_location_query() {
        let o = parse_form_location("/?error_code=5030&error_message=USER_ALREADY_EXIST");
        assert_eq!(o.error, Some((5030, "USER_ALREADY_EXIST".into())));
        assert_eq!(parse_form_location("/god-mode/general/").error, None);
    }

    #[test]
    fn set_cookie_headers_give_name_and_value() {
        assert_eq!(
            parse_set_cookie("session-id=abc123; Path=/; HttpOnly"),
            Some(("session-id".into(), "abc123".into()))
        );
        assert_eq!(parse_set_cookie("garbage"), None);
    }

    #[test]
    fn sessions_never_print_cookie_values() {
        let mut s = Session::default();
        let mut h = HeaderMap::new();
        h.append(
            SET_COOKIE,
            HeaderValue::from_static("session-id=fixture-cookie-value; Path=/"),
        );
        s.absorb(&h);
        assert!(s.has("session-id"));
        assert!(!format!("{s:?}").contains("fixture-cookie-value"));
    }

    #[test]
    fn only_plain_http_is_accepted() {
        assert!(PlaneClient::new("https://plane.example").is_err());
        assert!(PlaneClient::new("http://127.0.0.1:8000/").is_ok());
    }
}
