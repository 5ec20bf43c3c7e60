//! `plane_users`: the post-deploy hook that provisions Plane's instance admin, a
//! workspace, the agent users with their roles, and one API token per user, and
//! keeps generated passwords and tokens in the vault (PLANE_API.md, "Provisioning
//! users and tokens"). Every secret is stored the moment it exists, so a failure
//! later loses nothing and a re-run resumes. Check mode only reads.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::args::de_string;
use super::registry::{ArgSchema, Module, ModuleFuture};
use super::{ModuleCtx, ModuleResult, parse_args};
use crate::plane::{PlaneClient, PlaneError, Session};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Person {
    #[serde(deserialize_with = "de_string")]
    email: String,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Agent {
    #[serde(deserialize_with = "de_string")]
    id: String,
    #[serde(deserialize_with = "de_string")]
    email: String,
    #[serde(default)]
    display_name: Option<String>,
    /// Plane wants a first name with a display name; by default the display
    /// name's leading letters ("Mobutoo (Concierge AI)" -> "Mobutoo").
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default = "member")]
    role: String,
    /// The seed's agent list carries an avatar; setting one is not written yet,
    /// so only an empty value is accepted.
    #[serde(default)]
    avatar: Option<String>,
}

/// The first name sent with an agent's display name, if it has one.
fn agent_first_name(agent: &Agent) -> Option<String> {
    let dn = agent.display_name.as_deref().filter(|d| !d.is_empty())?;
    Some(
        agent
            .first_name
            .clone()
            .filter(|f| !f.is_empty())
            .unwrap_or_else(|| first_name_of(dn)),
    )
}

fn member() -> String {
    "Member".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Workspace {
    #[serde(deserialize_with = "de_string")]
    name: String,
    #[serde(deserialize_with = "de_string")]
    slug: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlaneUsersArgs {
    /// Plane's api as a URL the control machine can reach; the alternative to
    /// `api_container`.
    #[serde(default, deserialize_with = "de_opt_string")]
    api_url: Option<String>,
    /// The api container on the host: reached through the host's SSH
    /// connection (a port forward to its address), never a published port.
    #[serde(default, deserialize_with = "de_opt_string")]
    api_container: Option<String>,
    /// Which of the container's networks the host reaches it on (needed when
    /// it is on more than one).
    #[serde(default, deserialize_with = "de_opt_string")]
    api_network: Option<String>,
    #[serde(default = "api_port", deserialize_with = "de_port")]
    api_port: u16,
    /// The Docker daemon socket on the host (`unix:///var/run/docker.sock`).
    #[serde(default, deserialize_with = "de_opt_string")]
    docker_host: Option<String>,
    workspace: Workspace,
    admin: Person,
    #[serde(deserialize_with = "de_string")]
    admin_password: String,
    #[serde(default)]
    agents: Vec<Agent>,
    #[serde(deserialize_with = "de_string")]
    vault_file: String,
    #[serde(default = "admin_token_key")]
    admin_token_key: String,
    /// `{id}` is replaced by the agent's id.
    #[serde(default = "agent_token_key")]
    agent_token_key: String,
    #[serde(default = "agent_password_key")]
    agent_password_key: String,
}

fn api_port() -> u16 {
    8000
}

fn de_opt_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = Option::<Json>::deserialize(d)?;
    match v {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) if s.is_empty() => Ok(None),
        Some(Json::String(s)) => Ok(Some(s)),
        Some(Json::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected a string, got {other}"
        ))),
    }
}

/// A port given as a number or as a rendered string ("8000").
fn de_port<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    let v = Json::deserialize(d)?;
    let n = match &v {
        Json::Number(n) => n.as_u64(),
        Json::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    n.and_then(|n| u16::try_from(n).ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            serde::de::Error::custom(format!("api_port: expected a port number, got {v}"))
        })
}

fn admin_token_key() -> String {
    "vault_plane_admin_token".into()
}
fn agent_token_key() -> String {
    "vault_plane_{id}_token".into()
}
fn agent_password_key() -> String {
    "vault_plane_{id}_password".into()
}

/// Plane's workspace roles (`plane/db/models/workspace.py`).
fn role_number(role: &str) -> Option<i64> {
    match role {
        "Admin" => Some(20),
        "Member" => Some(15),
        "Guest" => Some(5),
        _ => None,
    }
}

/// What Plane v1.2.3 accepts as a first or last name: anything without a URL
/// in it (`plane/app/serializers/user.py` `UserSerializer`, the pattern of
/// `plane/utils/url.py` `contains_url`).
fn valid_name(s: &str) -> bool {
    static URL: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let Some(url) = URL.get_or_init(|| {
        regex::Regex::new(concat!(
            r"(?i)(?:https?://[^\s]+",
            r"|www\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*",
            r"|(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]{2,6}",
            r"|(?:(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\.){3}(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?))"
        ))
        .ok()
    }) else {
        return false;
    };
    !s.is_empty()
        && (s.len() > 1000
            || !s
                .split('\n')
                .any(|line| url.is_match(line.get(..500).unwrap_or(line))))
}

/// The display name's leading run of name characters, trimmed.
fn first_name_of(display_name: &str) -> String {
    display_name
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ' '))
        .collect::<String>()
        .trim()
        .to_string()
}

/// 24 URL-safe random characters: always strong enough for Plane's zxcvbn check.
fn generate_password() -> Result<String, String> {
    let mut bytes = [0u8; 18];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("cannot read random bytes: {e}"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

struct VaultStore<'a> {
    path: PathBuf,
    passwords: &'a crate::vault::VaultPasswords,
    values: BTreeMap<String, String>,
}

impl VaultStore<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.values
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
    /// Writes one key now (encrypted, atomic, other keys kept).
    fn put(&mut self, key: &str, value: &str) -> Result<(), String> {
        crate::secrets::register(value);
        crate::vault::set_keys(&self.path, self.passwords, &[(key, value)])
            .map_err(|e| e.to_string())?;
        self.values.insert(key.to_string(), value.to_string());
        Ok(())
    }
}

fn load_store<'a>(
    path: &Path,
    passwords: &'a crate::vault::VaultPasswords,
) -> Result<VaultStore<'a>, String> {
    let data = std::fs::read(path)
        .map_err(|e| format!("cannot read the vault file {}: {e}", path.display()))?;
    let plain = crate::vault::decrypt(&data, passwords, &path.display().to_string())
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8(plain)
        .map_err(|_| format!("{}: decrypted content is not UTF-8", path.display()))?;
    let node = crate::yaml::parse_str(&text, path).map_err(|e| e.to_string())?;
    let mut values = BTreeMap::new();
    if let Some(map) = node.as_map() {
        for (k, v) in map {
            if let (Some(k), Some(v)) = (k.as_str(), v.as_str()) {
                crate::secrets::register(v);
                values.insert(k.to_string(), v.to_string());
            }
        }
    }
    Ok(VaultStore {
        path: path.to_path_buf(),
        passwords,
        values,
    })
}

pub async fn plane_users(args: Json, ctx: &mut ModuleCtx<'_>) -> Result<ModuleResult, String> {
    let a: PlaneUsersArgs = parse_args("plane_users", args)?;
    for agent in &a.agents {
        if role_number(&agent.role).is_none() {
            return Err(format!(
                "agent '{}': role '{}' is not one of Admin, Member, Guest",
                agent.id, agent.role
            ));
        }
        if !agent.email.contains('@') {
            return Err(format!(
                "agent '{}': '{}' is not an email address",
                agent.id, agent.email
            ));
        }
        if let Some(first) = agent_first_name(agent)
            && !valid_name(&first)
        {
            return Err(format!(
                "agent '{}': first name '{first}' is empty or holds a URL, which Plane refuses: set first_name",
                agent.id
            ));
        }
        if agent.avatar.as_deref().is_some_and(|v| !v.is_empty()) {
            return Err(format!(
                "agent '{}': setting an avatar is not supported yet (leave avatar empty)",
                agent.id
            ));
        }
    }
    crate::secrets::register(&a.admin_password);
    let passwords = ctx.vars.vault().passwords().ok_or(
        "plane_users stores tokens in the vault: give a vault password (--vault-password-file)",
    )?;
    let vault_path = {
        let p = PathBuf::from(&a.vault_file);
        if p.is_absolute() || p.exists() {
            p
        } else {
            ctx.playbook_dir.join(p)
        }
    };
    let mut store = load_store(&vault_path, passwords)?;
    let (client, forward) = match (&a.api_url, &a.api_container) {
        (Some(url), None) => (PlaneClient::new(url).map_err(|e| e.to_string())?, None),
        (None, Some(container)) => {
            let Some(ip) = api_address(&a, container, ctx).await? else {
                // Check mode before the first apply: the stack is not there yet.
                return Ok(would_provision_everything(&a));
            };
            let fwd = ctx
                .conn
                .forward_tcp(&ip, a.api_port)
                .await
                .map_err(|e| e.to_string())?;
            let base = if ip.contains(':') {
                format!("http://[{ip}]:{}", a.api_port)
            } else {
                format!("http://{ip}:{}", a.api_port)
            };
            let client = match fwd.socket() {
                Some(sock) => PlaneClient::over_unix_socket(&base, sock),
                None => PlaneClient::new(&base),
            }
            .map_err(|e| e.to_string())?;
            (client, Some(fwd))
        }
        (Some(_), Some(_)) => {
            return Err(
                "plane_users: give api_container (reached through the host's SSH connection) or api_url, not both"
                    .into(),
            );
        }
        (None, None) => {
            return Err(
                "plane_users: give api_container (the api container, reached through the host's SSH connection) or api_url"
                    .into(),
            );
        }
    };
    let mut p = Provision {
        client: &client,
        check: ctx.check,
        actions: Vec::new(),
        progress: ctx.progress.clone(),
    };
    let outcome = p.run(&a, &mut store).await;
    let (text, ok) = match &outcome {
        Ok(()) if p.actions.is_empty() => {
            ("users, roles and tokens are in place".to_string(), true)
        }
        Ok(()) => (summarize(&p.actions), true),
        Err(_) => ("failed".to_string(), false),
    };
    p.progress.end(
        "plane_users",
        &text,
        json!({"ok": ok, "actions": p.actions.len(), "requests": client.requests_sent()}),
    );
    if let Some(f) = forward {
        f.close(ctx.conn).await;
    }
    let mut result = ModuleResult::ok();
    result.changed = !p.actions.is_empty();
    result.data.insert("actions".into(), json!(p.actions));
    result
        .data
        .insert("requests".into(), json!(client.requests_sent()));
    result.data.insert(
        "anonymous_requests".into(),
        json!(client.anonymous_requests()),
    );
    match outcome {
        Ok(()) => {
            result.msg = Some(if p.actions.is_empty() {
                "users, roles and tokens are in place".into()
            } else {
                // One short summary line, then one line per action (shown
                // indented under the result; see the reporter).
                format!("{}\n{}", summarize(&p.actions), p.actions.join("\n"))
            });
            Ok(result)
        }
        Err(e) => {
            // What was created is already in the vault; say what was done before the error.
            let done = if p.actions.is_empty() {
                String::new()
            } else {
                format!(
                    "\ndone before the error: {}\n{}",
                    summarize(&p.actions),
                    p.actions.join("\n")
                )
            };
            Err(format!("{e}{done}"))
        }
    }
}

/// A one-line count of what the provisioning did (or would do), such as
/// "instance admin, workspace created; 10 invited; 10 signed up; 11 tokens
/// created". Actions are grouped by their kind, in order of first appearance.
fn summarize(actions: &[String]) -> String {
    let would = actions.iter().all(|a| a.starts_with("would "));
    // (singular, plural): "1 role changed", "2 roles changed".
    let mut kinds: Vec<((&'static str, &'static str), usize)> = Vec::new();
    for a in actions {
        let a = a.strip_prefix("would ").unwrap_or(a);
        let kind = if a.starts_with("create the instance admin") {
            ("instance admin created", "instance admins created")
        } else if a.starts_with("create workspace") {
            ("workspace created", "workspaces created")
        } else if a.starts_with("create user") {
            ("user created with a token", "users created with a token")
        } else if a.starts_with("invite ") {
            ("invited", "invited")
        } else if a.starts_with("sign up ") {
            ("signed up", "signed up")
        } else if a.starts_with("accept the invitation") {
            ("invitation accepted", "invitations accepted")
        } else if a.starts_with("change ") && a.contains("'s role to ") {
            ("role changed", "roles changed")
        } else if a.starts_with("set the display name") {
            ("display name set", "display names set")
        } else if a.starts_with("replace the token") {
            ("token replaced", "tokens replaced")
        } else if a.starts_with("create a token") {
            ("token created", "tokens created")
        } else if a.starts_with("revoke ") {
            ("older token revoked", "older tokens revoked")
        } else {
            ("other change", "other changes")
        };
        match kinds.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => kinds.push((kind, 1)),
        }
    }
    let parts: Vec<String> = kinds
        .iter()
        .map(|((one, many), n)| match (*one, *n) {
            ("instance admin created" | "workspace created", 1) => one.to_string(),
            (one, 1) => format!("1 {one}"),
            (_, n) => format!("{n} {many}"),
        })
        .collect();
    let text = parts.join("; ");
    if would {
        format!("would: {text}")
    } else {
        text
    }
}

/// The api container's address on the network the host reaches it on, read
/// from the host's Docker daemon; `None` when the container does not exist
/// and this is check mode (nothing deployed yet).
async fn api_address(
    a: &PlaneUsersArgs,
    container: &str,
    ctx: &ModuleCtx<'_>,
) -> Result<Option<String>, String> {
    let socket = match a.docker_host.as_deref() {
        None => crate::connection::docker::DEFAULT_SOCKET.to_string(),
        Some(h) => h
            .strip_prefix("unix://")
            .map(str::to_string)
            .ok_or_else(|| format!("plane_users: docker_host must be unix:///path, got '{h}'"))?,
    };
    let docker = ctx
        .conn
        .docker(&socket, ctx.become_.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    let info = match docker.inspect_container(container, None).await {
        Ok(i) => i,
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) if ctx.check => return Ok(None),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => {
            return Err(format!(
                "plane_users: the api container '{container}' does not exist on {} (is the Plane stack up?)",
                ctx.conn.name
            ));
        }
        Err(e) => {
            return Err(format!(
                "plane_users: inspecting the api container '{container}': {e}"
            ));
        }
    };
    let running = info.state.as_ref().and_then(|s| s.running).unwrap_or(false);
    if !running {
        return Err(format!(
            "plane_users: the api container '{container}' on {} is not running",
            ctx.conn.name
        ));
    }
    let networks = info
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default();
    let names = || networks.keys().cloned().collect::<Vec<_>>().join(", ");
    let endpoint = match a.api_network.as_deref() {
        Some(net) => networks.get(net).ok_or_else(|| {
            format!(
                "plane_users: the api container '{container}' is not on network '{net}' (it is on: {})",
                names()
            )
        })?,
        None => match networks.values().collect::<Vec<_>>().as_slice() {
            [only] => *only,
            _ => {
                return Err(format!(
                    "plane_users: the api container '{container}' is on networks [{}]: set api_network to the one the host reaches it on",
                    names()
                ));
            }
        },
    };
    let ip = endpoint
        .ip_address
        .clone()
        .filter(|ip| !ip.is_empty())
        .or_else(|| {
            endpoint
                .global_ipv6_address
                .clone()
                .filter(|ip| !ip.is_empty())
        })
        .ok_or_else(|| {
            format!("plane_users: the api container '{container}' has no address on its network")
        })?;
    Ok(Some(ip))
}

/// Check mode when Plane is not deployed yet: everything would be created.
fn would_provision_everything(a: &PlaneUsersArgs) -> ModuleResult {
    let mut actions = vec![
        format!(
            "would create the instance admin {} and a token",
            a.admin.email
        ),
        format!("would create workspace {}", a.workspace.slug),
    ];
    for agent in &a.agents {
        actions.push(format!(
            "would create user {} with role {} and a token",
            agent.email, agent.role
        ));
    }
    let mut result = ModuleResult::ok();
    result.changed = true;
    result.msg = Some(format!("Plane is not running yet: {}", actions.join("; ")));
    result.data.insert("actions".into(), json!(actions));
    result
}

struct Provision<'a> {
    client: &'a PlaneClient,
    check: bool,
    actions: Vec<String>,
    progress: crate::report::TaskProgress,
}

impl Provision<'_> {
    fn act(&mut self, what: String) -> bool {
        self.actions.push(if self.check {
            format!("would {what}")
        } else {
            what
        });
        !self.check
    }

    /// Says which step the hook is at: `admin`, `workspace`, `user` n of
    /// m (the admin is user 1), `roles`, `verify`.
    fn at(&self, what: &str, text: String, n: Option<(usize, usize)>) {
        self.progress.milestone(
            "plane_users",
            &text,
            json!({"at": what, "user": n.map(|n| n.0), "users": n.map(|n| n.1)}),
        );
    }

    async fn run(&mut self, a: &PlaneUsersArgs, store: &mut VaultStore<'_>) -> Result<(), String> {
        let c = self.client;
        let users = a.agents.len() + 1;
        self.progress.start(
            "plane_users",
            "waiting for Plane's api",
            json!({"at": "health", "users": users}),
        );
        c.healthy().await.map_err(|e| e.to_string())?;
        self.at(
            "admin",
            format!("admin {} (user 1 of {users})", a.admin.email),
            Some((1, users)),
        );
        let inst = c
            .session_json(
                "read the instance",
                &mut Session::default(),
                Method::GET,
                "/api/instances/",
                None,
            )
            .await
            .map_err(|e| e.to_string())?;
        let setup_done = inst["instance"]["is_setup_done"].as_bool().unwrap_or(false);
        if !setup_done && self.act(format!("create the instance admin {}", a.admin.email)) {
            c.form(
                &format!("create the instance admin {}", a.admin.email),
                &mut Session::default(),
                "/api/instances/admins/sign-up/",
                &[
                    ("email", &a.admin.email),
                    ("password", &a.admin_password),
                    (
                        "first_name",
                        a.admin.first_name.as_deref().unwrap_or("Admin"),
                    ),
                ],
            )
            .await
            .map_err(|e| admin_setup_error(e, &a.admin.email, a.api_container.as_deref()))?;
        }
        if !setup_done && self.check {
            for agent in &a.agents {
                self.act(format!(
                    "create user {} with role {} and a token",
                    agent.email, agent.role
                ));
            }
            return Ok(());
        }
        let mut admin = Session::default();
        let step = format!("sign in as {}", a.admin.email);
        c.form(
            &step,
            &mut admin,
            "/auth/sign-in/",
            &[("email", &a.admin.email), ("password", &a.admin_password)],
        )
        .await
        .map_err(|e| match e.form_code() {
            Some(5065) => {
                format!("{step}: the admin password in the vault is wrong (Plane error 5065)")
            }
            _ => e.to_string(),
        })?;

        // The workspace.
        self.at("workspace", format!("workspace {}", a.workspace.slug), None);
        let mine = c
            .session_json(
                "list workspaces",
                &mut admin,
                Method::GET,
                "/api/users/me/workspaces/",
                None,
            )
            .await
            .map_err(|e| e.to_string())?;
        let mut exists = mine
            .as_array()
            .is_some_and(|ws| ws.iter().any(|w| w["slug"] == a.workspace.slug.as_str()));
        if !exists {
            exists = self.join_or_check_workspace(a, &mut admin).await?;
        }
        if !exists && self.act(format!("create workspace {}", a.workspace.slug)) {
            c.session_json(
                &format!("create workspace {}", a.workspace.slug),
                &mut admin,
                Method::POST,
                "/api/workspaces/",
                Some(&json!({"name": a.workspace.name, "slug": a.workspace.slug})),
            )
            .await
            .map_err(|e| e.to_string())?;
        }

        if let Some(dn) = a.admin.display_name.as_deref().filter(|d| !d.is_empty()) {
            let first = a.admin.first_name.as_deref().unwrap_or("Admin");
            self.ensure_profile(&a.admin.email, first, dn, &mut admin)
                .await?;
        }

        // The admin's token.
        self.ensure_token(
            &a.admin.email,
            "deployer: admin",
            &mut admin,
            &a.admin_token_key,
            store,
        )
        .await?;

        // Members as they are now.
        let members_path = format!("/api/workspaces/{}/members/", a.workspace.slug);
        let members = if exists || !self.check {
            c.session_json("list members", &mut admin, Method::GET, &members_path, None)
                .await
                .map_err(|e| e.to_string())?
        } else {
            json!([])
        };
        let member_of = |email: &str| -> Option<(String, i64)> {
            members
                .as_array()?
                .iter()
                .find(|m| m["member"]["email"] == email)
                .map(|m| {
                    (
                        m["id"]
                            .as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| m["id"].to_string()),
                        m["role"].as_i64().unwrap_or(0),
                    )
                })
        };

        let mut accepted_any = false;
        for (i, agent) in a.agents.iter().enumerate() {
            self.at(
                "user",
                format!("user {} of {users}: {}", i + 2, agent.email),
                Some((i + 2, users)),
            );
            let pw_key = a.agent_password_key.replace("{id}", &agent.id);
            let token_key = a.agent_token_key.replace("{id}", &agent.id);
            let who = &agent.email;
            if self.check && store.get(&pw_key).is_none() {
                self.membership(a, &member_of, agent, &mut admin).await?;
                self.act(format!("create user {who} and a token"));
                continue;
            }
            // The agent's own session: sign in with the stored password, or
            // sign up. Signing in comes first: an email that belongs to
            // someone else's account is refused before that account is
            // invited anywhere.
            let password = match store.get(&pw_key) {
                Some(p) => p.to_string(),
                None => {
                    let p = generate_password()?;
                    store.put(&pw_key, &p)?;
                    p
                }
            };
            let mut session = Session::default();
            let signed_in = c
                .form(
                    &format!("sign in as {who}"),
                    &mut session,
                    "/auth/sign-in/",
                    &[("email", who), ("password", &password)],
                )
                .await;
            let sign_up = match signed_in {
                Ok(_) => false,
                Err(e) if e.form_code() == Some(5060) => true,
                Err(e) if e.form_code() == Some(5065) => {
                    return Err(format!(
                        "sign in as {who}: Plane has a user {who} whose password is not the one stored under {pw_key} (Plane error 5065): if it is a person's own account, give agent '{}' another email; if the password was changed in Plane, put it under {pw_key}",
                        agent.id
                    ));
                }
                Err(e) => return Err(e.to_string()),
            };
            // Invited before signing up: with sign-up closed
            // (ENABLE_SIGNUP=0) only invited emails may sign up.
            self.membership(a, &member_of, agent, &mut admin).await?;
            if sign_up {
                if !self.act(format!("sign up {who}")) {
                    continue;
                }
                session = Session::default();
                c.form(
                    &format!("sign up {who}"),
                    &mut session,
                    "/auth/sign-up/",
                    &[("email", who), ("password", &password)],
                )
                .await
                .map_err(|e| e.to_string())?;
            }
            // Pending invitations are not joined at sign-up: accept them.
            let inv = c
                .session_json(
                    &format!("list invitations of {who}"),
                    &mut session,
                    Method::GET,
                    "/api/users/me/workspaces/invitations/",
                    None,
                )
                .await
                .map_err(|e| e.to_string())?;
            let ids: Vec<Json> = inv
                .as_array()
                .map(|v| v.iter().filter_map(|i| i.get("id").cloned()).collect())
                .unwrap_or_default();
            if !ids.is_empty() {
                accepted_any = true;
            }
            if !ids.is_empty() && self.act(format!("accept the invitation of {who}")) {
                c.session_json(
                    &format!("accept the invitation of {who}"),
                    &mut session,
                    Method::POST,
                    "/api/users/me/workspaces/invitations/",
                    Some(&json!({"invitations": ids})),
                )
                .await
                .map_err(|e| e.to_string())?;
            }
            if let (Some(dn), Some(first)) = (
                agent.display_name.as_deref().filter(|d| !d.is_empty()),
                agent_first_name(agent),
            ) {
                self.ensure_profile(who, &first, dn, &mut session).await?;
            }
            // The token's label names the agent, so Plane's UI shows whose it is.
            let label = format!(
                "deployer: {}",
                agent.display_name.as_deref().unwrap_or(&agent.id)
            );
            self.ensure_token(who, &label, &mut session, &token_key, store)
                .await?;
        }

        // An invitation accepted now carries the role it was sent with, maybe
        // by an earlier run with another role: set the roles asked for.
        if accepted_any && !self.check {
            self.at("roles", "roles of accepted invitations".into(), None);
            let now = c
                .session_json("list members", &mut admin, Method::GET, &members_path, None)
                .await
                .map_err(|e| e.to_string())?;
            for agent in &a.agents {
                let want = role_number(&agent.role).unwrap_or(15);
                let found = now.as_array().and_then(|ms| {
                    ms.iter()
                        .find(|m| m["member"]["email"] == agent.email.as_str())
                });
                if let Some(m) = found
                    && m["role"].as_i64() != Some(want)
                    && self.act(format!("change {}'s role to {}", agent.email, agent.role))
                {
                    let id = m["id"]
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| m["id"].to_string());
                    c.session_json(
                        &format!("change the role of {}", agent.email),
                        &mut admin,
                        Method::PATCH,
                        &format!("{members_path}{id}/"),
                        Some(&json!({"role": want})),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                }
            }
        }

        // Verify: every stored token answers users/me; roles are as asked.
        if !self.check
            && let Some(t) = store.get(&a.admin_token_key).map(str::to_string)
        {
            self.at("verify", "verifying tokens and roles".into(), None);
            let final_members = c
                .v1_list(
                    "verify members",
                    &t,
                    &format!("/api/v1/workspaces/{}/members/", a.workspace.slug),
                )
                .await
                .map_err(|e| e.to_string())?;
            for agent in &a.agents {
                let want = role_number(&agent.role).unwrap_or(15);
                let got = final_members
                    .iter()
                    .find(|m| m["email"] == agent.email.as_str())
                    .and_then(|m| m["role"].as_i64());
                if got != Some(want) {
                    return Err(format!(
                        "verify {}: role is {got:?} in Plane, expected {want}",
                        agent.email
                    ));
                }
            }
        }
        Ok(())
    }

    /// The agent's membership as asked: its role changed when it is a member
    /// with another role, an invitation with the role when it is not one.
    async fn membership(
        &mut self,
        a: &PlaneUsersArgs,
        member_of: &(dyn Fn(&str) -> Option<(String, i64)> + Sync),
        agent: &Agent,
        admin: &mut Session,
    ) -> Result<(), String> {
        let c = self.client;
        let role = role_number(&agent.role).unwrap_or(15);
        let who = &agent.email;
        let members_path = format!("/api/workspaces/{}/members/", a.workspace.slug);
        match member_of(who) {
            Some((id, current)) if current != role => {
                if self.act(format!("change {who}'s role to {}", agent.role)) {
                    c.session_json(
                        &format!("change the role of {who}"),
                        admin,
                        Method::PATCH,
                        &format!("{members_path}{id}/"),
                        Some(&json!({"role": role})),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                }
            }
            Some(_) => {}
            None => {
                if self.act(format!("invite {who} as {}", agent.role)) {
                    c.session_json(
                        &format!("invite {who}"),
                        admin,
                        Method::POST,
                        &format!("/api/workspaces/{}/invitations/", a.workspace.slug),
                        Some(&json!({"emails": [{"email": who, "role": role}]})),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                }
            }
        }
        Ok(())
    }

    /// The workspace is not among the admin's: accept a pending invitation to
    /// it (its owner invited the admin), or say why it cannot be created.
    /// `Ok(true)` when the admin is (or in check mode would be) a member now.
    async fn join_or_check_workspace(
        &mut self,
        a: &PlaneUsersArgs,
        admin: &mut Session,
    ) -> Result<bool, String> {
        let c = self.client;
        let slug = a.workspace.slug.as_str();
        let invitations = c
            .session_json(
                &format!("list invitations of {}", a.admin.email),
                admin,
                Method::GET,
                "/api/users/me/workspaces/invitations/",
                None,
            )
            .await
            .map_err(|e| e.to_string())?;
        let ids: Vec<Json> = invitations
            .as_array()
            .map(|v| {
                v.iter()
                    .filter(|i| i["workspace"]["slug"] == slug)
                    .filter_map(|i| i.get("id").cloned())
                    .collect()
            })
            .unwrap_or_default();
        if !ids.is_empty() {
            if self.act(format!(
                "accept the invitation of {} to workspace {slug}",
                a.admin.email
            )) {
                c.session_json(
                    &format!("accept the invitation of {}", a.admin.email),
                    admin,
                    Method::POST,
                    "/api/users/me/workspaces/invitations/",
                    Some(&json!({"invitations": ids})),
                )
                .await
                .map_err(|e| e.to_string())?;
            }
            return Ok(true);
        }
        let free = c
            .session_json(
                &format!("check workspace slug {slug}"),
                admin,
                Method::GET,
                &format!("/api/workspace-slug-check/?slug={}", url_encode(slug)),
                None,
            )
            .await
            .map_err(|e| e.to_string())?;
        if free["status"] == false {
            return Err(format!(
                "workspace {slug}: the slug is taken in Plane by a workspace {} is not a member of (another owner's, a name Plane reserves, or a creation that stopped half-way): choose another slug, or have its owner invite {} as Admin and run again",
                a.admin.email, a.admin.email
            ));
        }
        Ok(false)
    }

    /// Sets the user's display name (and the first name Plane requires with
    /// it) in the user's own session, when they differ.
    async fn ensure_profile(
        &mut self,
        who: &str,
        first_name: &str,
        display_name: &str,
        session: &mut Session,
    ) -> Result<(), String> {
        let c = self.client;
        let me = c
            .session_json(
                &format!("read the profile of {who}"),
                session,
                Method::GET,
                "/api/users/me/",
                None,
            )
            .await
            .map_err(|e| e.to_string())?;
        if me["display_name"] == display_name && me["first_name"] == first_name {
            return Ok(());
        }
        if !self.act(format!("set the display name of {who} to '{display_name}'")) {
            return Ok(());
        }
        let last_name = me["last_name"]
            .as_str()
            .filter(|l| valid_name(l))
            .unwrap_or("");
        c.session_json(
            &format!("set the display name of {who}"),
            session,
            Method::PATCH,
            "/api/users/me/",
            Some(&json!({
                "first_name": first_name,
                "last_name": last_name,
                "display_name": display_name,
            })),
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Keeps a stored token that still works; otherwise creates one in this
    /// user's session and stores it at once (Plane shows it only once).
    async fn ensure_token(
        &mut self,
        who: &str,
        label: &str,
        session: &mut Session,
        key: &str,
        store: &mut VaultStore<'_>,
    ) -> Result<(), String> {
        let c = self.client;
        if let Some(t) = store.get(key).map(str::to_string) {
            match c.me(&t).await {
                Ok(me) if me["email"] == who => return Ok(()),
                Ok(_)
                | Err(PlaneError::Http {
                    status: 401 | 403, ..
                }) => {}
                Err(e) => return Err(e.to_string()),
            }
            if !self.act(format!("replace the token of {who}, which no longer works")) {
                return Ok(());
            }
        } else if !self.act(format!("create a token for {who}")) {
            return Ok(());
        }
        let created = c
            .session_json(
                &format!("create a token for {who}"),
                session,
                Method::POST,
                "/api/users/api-tokens/",
                Some(&json!({"label": label, "description": "provisioned by deployer", "expired_at": null})),
            )
            .await
            .map_err(|e| e.to_string())?;
        let token = created["token"]
            .as_str()
            .ok_or_else(|| format!("create a token for {who}: no token in Plane's answer"))?;
        store.put(key, token)?;
        c.me(token)
            .await
            .map_err(|e| format!("verify the new token of {who}: {e}"))?;
        // The token replaced, and any an interrupted run created but never
        // stored, carry the same label: revoke them, so the vault's token is
        // the only live one of this key (`ApiTokenEndpoint` get/delete,
        // `plane/app/views/api.py`).
        let new_id = created["id"].as_str().unwrap_or_default().to_string();
        let tokens = c
            .session_json(
                &format!("list the tokens of {who}"),
                session,
                Method::GET,
                "/api/users/api-tokens/",
                None,
            )
            .await
            .map_err(|e| e.to_string())?;
        let old: Vec<String> = tokens
            .as_array()
            .map(|ts| {
                ts.iter()
                    .filter(|t| t["label"] == label)
                    .filter_map(|t| t["id"].as_str())
                    .filter(|id| *id != new_id)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        if !old.is_empty() {
            self.actions.push(format!(
                "revoke {} older token(s) of {who} labelled '{label}'",
                old.len()
            ));
        }
        for id in old {
            c.session_json(
                &format!("revoke an older token of {who}"),
                session,
                Method::DELETE,
                &format!("/api/users/api-tokens/{}/", url_encode(&id)),
                None,
            )
            .await
            .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

// The registry's entry. Not yet split into plan and apply (plans, and outside check mode applies, in one function).

/// `plane_users`: Plane's admin, agent users, memberships and API tokens.
pub struct PlaneUsers;

impl Module for PlaneUsers {
    fn name(&self) -> &'static str {
        "plane_users"
    }
    fn fqcn(&self) -> &'static str {
        "deployer.plane.plane_users"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<PlaneUsersArgs>()
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        Box::pin(plane_users(args, ctx))
    }
}

fn url_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The admin sign-up's refusals that leave Plane half set up, with what to run.
fn admin_setup_error(e: PlaneError, email: &str, container: Option<&str>) -> String {
    let exec = match container {
        Some(c) => format!("docker exec {c} "),
        None => "in Plane's api container: ".into(),
    };
    let finish = format!(
        "{exec}python manage.py shell -c \"from plane.license.models import Instance; Instance.objects.update(is_setup_done=True)\""
    );
    match e.form_code() {
        Some(5180) => format!(
            "create the instance admin {email}: Plane already has a user {email} that is not its instance admin, and its setup is not done (an earlier sign-up stopped half-way, for example on a request without a User-Agent; Plane error 5180 ADMIN_USER_ALREADY_EXIST). Make that user the instance admin, then run again: {exec}python manage.py create_instance_admin {email} ; {finish}"
        ),
        Some(5150) => format!(
            "create the instance admin {email}: Plane has an instance admin but its setup is not done (Plane error 5150 ADMIN_ALREADY_EXIST). If {email} is that admin, finish the setup and run again: {finish}"
        ),
        _ => match e {
            PlaneError::Http { status: 500, .. } => format!(
                "{e}: Plane may now hold the user {email} without making it the instance admin; the next run says how to repair that"
            ),
            e => e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn summary_counts_actions_by_kind() {
        let actions: Vec<String> = [
            "create the instance admin admin@example.test",
            "create workspace acme",
            "invite a1@example.test as Member",
            "invite a2@example.test as Admin",
            "sign up a1@example.test",
            "create a token for a1@example.test",
            "create a token for a2@example.test",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            super::summarize(&actions),
            "instance admin created; workspace created; 2 invited; 1 signed up; 2 tokens created"
        );
        let would: Vec<String> = actions.iter().map(|a| format!("would {a}")).collect();
        assert!(super::summarize(&would).starts_with("would: instance admin created"));
        // One of a kind is singular, several plural.
        let roles = |n: usize| -> Vec<String> {
            (0..n)
                .map(|i| format!("change a{i}@example.test's role to Admin"))
                .chain((0..n).map(|i| format!("revoke token {i} of a{i}@example.test")))
                .collect()
        };
        assert_eq!(
            super::summarize(&roles(1)),
            "1 role changed; 1 older token revoked"
        );
        assert_eq!(
            super::summarize(&roles(2)),
            "2 roles changed; 2 older tokens revoked"
        );
    }

    use super::*;

    #[test]
    fn first_names_come_from_the_seed_display_names() {
        assert_eq!(first_name_of("Mobutoo (Concierge AI)"), "Mobutoo");
        assert_eq!(first_name_of("R2D2 (Explorer AI)"), "R2D2");
        assert_eq!(first_name_of("Agent One"), "Agent One");
        assert_eq!(first_name_of("(no name)"), "");
        assert!(valid_name("Imhotep") && valid_name("CFO") && valid_name("a_b-c d"));
        assert!(valid_name("Mo (x)") && valid_name("Zoë") && valid_name("R2-D2 (AI)"));
        for bad in [
            "",
            "see http://x",
            "www.example",
            "agent.example.com",
            "10.0.0.1",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
