//! The Plane client against the Plane stand-in (tests/plane_standin/server.py) on
//! loopback: the session/CSRF form flow, tokens, v1 auth, pagination and 429s.

mod common;

use std::time::Duration;

use common::{PlaneStandin, plane_standin};

use deployer::plane::{PlaneClient, PlaneError, Session};
use reqwest::Method;
use serde_json::json;

fn standin(rate: &str) -> PlaneStandin {
    plane_standin(rate)
}

const ADMIN_PW: &str = "fixture-Adm1n-pw-Qx7vLr2mZt9wBk4Ns8";
const AGENT_PW: &str = "fixture-Ag3nt-pw-Hp5cWq1yRf6uDj0Ev3";

#[tokio::test(flavor = "multi_thread")]
async fn admin_setup_sign_in_workspace_tokens_and_v1() {
    let s = standin("1000/minute");
    let c = PlaneClient::new(&format!("http://127.0.0.1:{}", s.port)).expect("client");
    c.healthy().await.expect("health");

    // Before the instance admin exists, app sign-up is refused with 5000.
    let mut early = Session::default();
    let e = c
        .form(
            "sign up agent",
            &mut early,
            "/auth/sign-up/",
            &[("email", "a1@example.test"), ("password", AGENT_PW)],
        )
        .await;
    assert_eq!(e.expect_err("not configured").form_code(), Some(5000));

    let mut admin = Session::default();
    c.form(
        "create instance admin",
        &mut admin,
        "/api/instances/admins/sign-up/",
        &[
            ("email", "admin@example.test"),
            ("password", ADMIN_PW),
            ("first_name", "Admin"),
        ],
    )
    .await
    .expect("admin sign-up");
    assert!(admin.has("admin-session-id"));
    let again = c
        .form(
            "create instance admin",
            &mut Session::default(),
            "/api/instances/admins/sign-up/",
            &[
                ("email", "admin@example.test"),
                ("password", ADMIN_PW),
                ("first_name", "Admin"),
            ],
        )
        .await;
    assert_eq!(again.expect_err("exists").form_code(), Some(5150));

    let mut app = Session::default();
    c.form(
        "sign in admin",
        &mut app,
        "/auth/sign-in/",
        &[("email", "admin@example.test"), ("password", ADMIN_PW)],
    )
    .await
    .expect("sign-in");
    let wrong = c
        .form(
            "sign in admin",
            &mut Session::default(),
            "/auth/sign-in/",
            &[
                ("email", "admin@example.test"),
                ("password", "fixture-wrong-password-0000000"),
            ],
        )
        .await;
    assert_eq!(wrong.expect_err("wrong password").form_code(), Some(5065));

    let ws = c
        .session_json(
            "create workspace",
            &mut app,
            Method::POST,
            "/api/workspaces/",
            Some(&json!({"name": "Javisi", "slug": "javisi"})),
        )
        .await
        .expect("workspace");
    assert_eq!(ws["slug"], "javisi");
    let tok = c
        .session_json(
            "create admin token",
            &mut app,
            Method::POST,
            "/api/users/api-tokens/",
            Some(&json!({"label": "deployer", "description": "", "expired_at": null})),
        )
        .await
        .expect("token");
    let token = tok["token"].as_str().expect("token value").to_string();
    assert!(token.starts_with("plane_api_"));

    let me = c.me(&token).await.expect("me");
    assert_eq!(me["email"], "admin@example.test");
    let bad = c
        .me("plane_api_00000000000000000000000000000000")
        .await
        .expect_err("invalid");
    assert!(matches!(bad, PlaneError::Http { status: 403, .. }), "{bad}");
    assert!(
        !bad.to_string().contains("plane_api_0000"),
        "errors never carry the token: {bad}"
    );

    // Members: a plain array. Projects: cursor pagination walked to the end.
    let members = c
        .v1_list("list members", &token, "/api/v1/workspaces/javisi/members/")
        .await
        .expect("members");
    assert_eq!(members.len(), 1);
    for i in 0..150 {
        c.v1(
            "create project",
            &token,
            Method::POST,
            "/api/v1/workspaces/javisi/projects/",
            Some(&json!({"name": format!("P{i}"), "identifier": format!("P{i}")})),
        )
        .await
        .expect("project");
    }
    let projects = c
        .v1_list(
            "list projects",
            &token,
            "/api/v1/workspaces/javisi/projects/",
        )
        .await
        .expect("projects");
    assert_eq!(projects.len(), 150, "both pages walked");
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_is_waited_out_and_csrf_failure_is_detected() {
    let s = standin("3/second");
    let base = format!("http://127.0.0.1:{}", s.port);
    let c = PlaneClient::new(&base).expect("client");
    let mut admin = Session::default();
    c.form(
        "create instance admin",
        &mut admin,
        "/api/instances/admins/sign-up/",
        &[
            ("email", "admin@example.test"),
            ("password", ADMIN_PW),
            ("first_name", "Admin"),
        ],
    )
    .await
    .expect("admin");
    let mut app = Session::default();
    c.form(
        "sign in",
        &mut app,
        "/auth/sign-in/",
        &[("email", "admin@example.test"), ("password", ADMIN_PW)],
    )
    .await
    .expect("sign in");
    let tok = c
        .session_json(
            "token",
            &mut app,
            Method::POST,
            "/api/users/api-tokens/",
            Some(&json!({"label": "t"})),
        )
        .await
        .expect("token");
    let token = tok["token"].as_str().expect("token").to_string();
    // 8 calls against a budget of 3 per second: the client paces and waits, none fails.
    let t0 = std::time::Instant::now();
    for _ in 0..8 {
        c.me(&token).await.expect("paced call succeeds");
    }
    assert!(
        t0.elapsed() >= Duration::from_secs(1),
        "the client waited for the window"
    );

    // A CSRF failure is Plane's HTML page with status 200: an error, not a success.
    let http = reqwest::Client::new();
    http.post(format!("{base}/__standin__/faults"))
        .json(&json!({"csrf_failure": true}))
        .send()
        .await
        .expect("fault");
    let e = c
        .form(
            "sign in",
            &mut Session::default(),
            "/auth/sign-in/",
            &[("email", "admin@example.test"), ("password", ADMIN_PW)],
        )
        .await;
    assert!(matches!(e, Err(PlaneError::Csrf { .. })), "{e:?}");
}

async fn set_faults(base: &str, faults: serde_json::Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}/__standin__/faults"))
        .json(&faults)
        .send()
        .await
        .expect("faults");
    assert!(r.status().is_success(), "{}", r.status());
}

/// Plane throttles anonymous calls (the CSRF token, the instance) to 30 a
/// minute per IP and answers 500 to a sign-in without a User-Agent: the
/// client fetches one CSRF token for all its sessions, sends a User-Agent,
/// and waits out a 429 from any endpoint as its Retry-After asks.
#[tokio::test(flavor = "multi_thread")]
async fn one_csrf_token_per_client_and_every_429_is_waited_out() {
    let s = standin("1000/minute");
    let base = format!("http://127.0.0.1:{}", s.port);
    let c = PlaneClient::new(&base).expect("client");
    let mut admin = Session::default();
    c.form(
        "create instance admin",
        &mut admin,
        "/api/instances/admins/sign-up/",
        &[
            ("email", "admin@example.test"),
            ("password", ADMIN_PW),
            ("first_name", "Admin"),
        ],
    )
    .await
    .expect("admin sign-up: the stand-in answers 500 without a User-Agent");
    for i in 0..5 {
        let mut app = Session::default();
        c.form(
            "sign in",
            &mut app,
            "/auth/sign-in/",
            &[("email", "admin@example.test"), ("password", ADMIN_PW)],
        )
        .await
        .unwrap_or_else(|e| panic!("sign-in {i}: {e}"));
        assert!(app.has("session-id"));
    }
    assert_eq!(
        c.anonymous_requests(),
        1,
        "six form posts in six sessions share one anonymous CSRF token"
    );

    // An anonymous budget of 1 a second: three anonymous reads in a row wait, none fails.
    set_faults(&base, json!({"anon_rate_limit": "1/second"})).await;
    let t0 = std::time::Instant::now();
    for _ in 0..3 {
        let inst = c
            .session_json(
                "read the instance",
                &mut Session::default(),
                Method::GET,
                "/api/instances/",
                None,
            )
            .await
            .expect("waited out");
        assert_eq!(inst["instance"]["is_setup_done"], true);
    }
    assert!(
        t0.elapsed() >= Duration::from_secs(2),
        "the client waited as Retry-After asked: {:?}",
        t0.elapsed()
    );

    // A Retry-After longer than a run may wait: an error at once naming the step.
    set_faults(&base, json!({"anon_rate_limit": "1/hour"})).await;
    let t0 = std::time::Instant::now();
    let mut results = Vec::new();
    for _ in 0..2 {
        results.push(
            c.session_json(
                "read the instance",
                &mut Session::default(),
                Method::GET,
                "/api/instances/",
                None,
            )
            .await,
        );
    }
    let e = results
        .into_iter()
        .find_map(Result::err)
        .expect("the second call in an hour is refused");
    assert!(matches!(e, PlaneError::RateLimited { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with("read the instance: Plane still answers 429"),
        "{e}"
    );
    assert!(t0.elapsed() < Duration::from_secs(10), "no pointless wait");
}
