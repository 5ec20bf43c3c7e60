//! The compose file, understood: parsed from YAML with locations into each
//! service's desired container spec. Only the keys listed in `SERVICE_KEYS`
//! (and the top-level ones) are understood; anything else is an error at its
//! file:line, never silently ignored. `env_file` contents are merged into the
//! environment here, so the spec (and its hash) changes when they change.

use std::collections::BTreeMap;
use std::path::Path;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::yaml::{LocatedError, Node, Yaml, parse_str};

const TOP_KEYS: &[&str] = &["version", "name", "services", "networks", "volumes"];

const SERVICE_KEYS: &[&str] = &[
    "image",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "ports",
    "expose",
    "networks",
    "volumes",
    "cap_drop",
    "cap_add",
    "mem_limit",
    "cpus",
    "deploy",
    "healthcheck",
    "restart",
    "depends_on",
    "labels",
    "user",
    "read_only",
    "security_opt",
    "tmpfs",
    "container_name",
];

/// What one service's container must look like. Everything here is hashed:
/// two specs with the same hash give the same container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub image: String,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    /// `env_file` contents first, then `environment` over them.
    pub environment: BTreeMap<String, String>,
    pub ports: Vec<PortSpec>,
    /// `80/tcp` form.
    pub expose: Vec<String>,
    /// Docker network name -> aliases (the service name is always an alias).
    pub networks: BTreeMap<String, Vec<String>>,
    /// Docker's `Binds` form: `source:target[:ro]`.
    pub binds: Vec<String>,
    pub tmpfs: BTreeMap<String, String>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// Bytes.
    pub memory: Option<i64>,
    /// Billionths of a CPU.
    pub nano_cpus: Option<i64>,
    pub healthcheck: Option<HealthSpec>,
    pub restart: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub user: Option<String>,
    pub read_only: bool,
    pub security_opt: Vec<String>,
    pub container_name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortSpec {
    pub host_ip: String,
    /// Empty: an ephemeral host port.
    pub published: String,
    pub target: u16,
    pub protocol: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HealthSpec {
    pub test: Vec<String>,
    /// Nanoseconds; 0 means Docker's default.
    pub interval: i64,
    pub timeout: i64,
    pub start_period: i64,
    pub retries: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DependsCondition {
    ServiceStarted,
    ServiceHealthy,
    ServiceCompletedSuccessfully,
}

/// An env_file a service names, relative paths resolved against the project dir.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvFileRef {
    pub path: String,
    pub required: bool,
}

#[derive(Debug, Clone)]
pub struct ComposeService {
    pub name: String,
    pub spec: ServiceSpec,
    pub env_files: Vec<EnvFileRef>,
    /// `environment` entries, applied over the env files' values.
    pub environment: BTreeMap<String, String>,
    pub depends_on: IndexMap<String, DependsCondition>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NetworkDef {
    /// The key in the compose file.
    pub key: String,
    /// The Docker network name.
    pub name: String,
    pub external: bool,
    pub driver: Option<String>,
    pub internal: bool,
    pub subnets: Vec<(String, Option<String>)>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VolumeDef {
    pub key: String,
    pub name: String,
    pub external: bool,
    pub driver: Option<String>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct ComposeProject {
    pub name: String,
    pub services: Vec<ComposeService>,
    pub networks: Vec<NetworkDef>,
    pub volumes: Vec<VolumeDef>,
}

impl ComposeProject {
    pub fn service(&self, name: &str) -> Option<&ComposeService> {
        self.services.iter().find(|s| s.name == name)
    }

    /// A one-shot job (a migrator): another service waits for it with
    /// `condition: service_completed_successfully`, so it is meant to exit 0,
    /// not to keep running.
    pub fn is_one_shot(&self, name: &str) -> bool {
        self.services.iter().any(|s| {
            s.depends_on.get(name) == Some(&DependsCondition::ServiceCompletedSuccessfully)
        })
    }
}

/// Compose's project name rule: lowercase letters, digits, `-` and `_`.
pub fn normalize_project_name(s: &str) -> String {
    s.to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect::<String>()
        .trim_start_matches(['-', '_'])
        .to_string()
}

/// The config hash: SHA-256 of the spec's canonical JSON, as Compose's
/// `ServiceHash` (which leaves out depends_on, as we do).
pub fn config_hash(spec: &ServiceSpec) -> String {
    let json = serde_json::to_string(spec).unwrap_or_default();
    hex::encode(Sha256::digest(json.as_bytes()))
}

/// Parses the compose files (later files override earlier ones, mapping by
/// mapping) into a project. `vars` interpolates `${VAR}` references.
pub fn parse_project(
    files: &[(String, String)],
    project_dir: &str,
    project_name: Option<&str>,
    vars: &BTreeMap<String, String>,
) -> Result<ComposeProject, LocatedError> {
    let mut root: Option<Node> = None;
    for (path, text) in files {
        let node = parse_str(text, Path::new(path))?;
        if node.is_null() {
            continue;
        }
        node.expect_map("a compose file")?;
        root = Some(match root {
            None => node,
            Some(base) => merge(base, node),
        });
    }
    let root = root.ok_or_else(|| {
        LocatedError::new(
            &crate::yaml::Loc::file_only(Path::new(files.first().map_or("", |f| f.0.as_str()))),
            "the compose file is empty",
        )
    })?;
    let p = Parser { vars };
    let mut name_from_file = None;
    let mut services_node = None;
    let mut networks_node = None;
    let mut volumes_node = None;
    for (k, v) in root.expect_map("a compose file")? {
        match k {
            "version" => {}
            "name" => name_from_file = Some(p.string(v, "name")?),
            "services" => services_node = Some(v),
            "networks" => networks_node = Some(v),
            "volumes" => volumes_node = Some(v),
            x if x.starts_with("x-") => {}
            other => return Err(unknown(&root, other, "top-level key", TOP_KEYS)),
        }
    }
    let name = normalize_project_name(
        project_name
            .map(str::to_string)
            .or(name_from_file)
            .unwrap_or_else(|| {
                Path::new(project_dir)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
            .as_str(),
    );
    if name.is_empty() {
        return Err(LocatedError::new(
            &root.loc,
            "cannot derive a project name: set project_name",
        ));
    }
    let mut networks = Vec::new();
    if let Some(n) = networks_node.filter(|n| !n.is_null()) {
        for (key, def) in n.expect_map("networks")? {
            networks.push(p.network(&name, key, def)?);
        }
    }
    let mut volumes = Vec::new();
    if let Some(n) = volumes_node.filter(|n| !n.is_null()) {
        for (key, def) in n.expect_map("volumes")? {
            volumes.push(p.volume(&name, key, def)?);
        }
    }
    let services_node = services_node
        .ok_or_else(|| LocatedError::new(&root.loc, "the compose file has no services"))?;
    let mut services = Vec::new();
    let mut needs_default = false;
    for (svc, def) in services_node.expect_map("services")? {
        let s = p.service(&name, project_dir, svc, def, &networks, &volumes)?;
        needs_default |= s.spec.networks.is_empty();
        services.push(s);
    }
    if needs_default && !networks.iter().any(|n| n.key == "default") {
        networks.push(NetworkDef {
            key: "default".into(),
            name: format!("{name}_default"),
            external: false,
            driver: None,
            internal: false,
            subnets: Vec::new(),
            labels: BTreeMap::new(),
        });
    }
    for s in &mut services {
        if s.spec.networks.is_empty() {
            s.spec
                .networks
                .insert(format!("{name}_default"), vec![s.name.clone()]);
        }
    }
    // depends_on must name services of this file, without cycles.
    for s in &services {
        for dep in s.depends_on.keys() {
            if !services.iter().any(|o| &o.name == dep) {
                let loc = services_node
                    .get(&s.name)
                    .and_then(|d| d.get("depends_on"))
                    .map_or(root.loc.clone(), |n| n.loc.clone());
                return Err(LocatedError::new(
                    &loc,
                    format!(
                        "service '{}' depends on '{dep}', which is not a service of this project",
                        s.name
                    ),
                ));
            }
        }
    }
    let project = ComposeProject {
        name,
        services,
        networks,
        volumes,
    };
    start_order(&project, None).map_err(|e| LocatedError::new(&services_node.loc, e))?;
    Ok(project)
}

/// One service from a node built elsewhere (`docker_container`'s arguments,
/// translated to compose keys): no `${VAR}` interpolation (escape `$` as `$$`),
/// relative bind sources resolved against `/`.
pub fn parse_service(
    name: &str,
    def: &Node,
    networks: &[NetworkDef],
    volumes: &[VolumeDef],
) -> Result<ComposeService, LocatedError> {
    let vars = BTreeMap::new();
    Parser { vars: &vars }.service(name, "/", name, def, networks, volumes)
}

/// Services in an order where each comes after what it depends on; with
/// `only`, just those services and their dependencies.
pub fn start_order(
    project: &ComposeProject,
    only: Option<&[String]>,
) -> Result<Vec<String>, String> {
    fn visit(
        p: &ComposeProject,
        name: &str,
        out: &mut Vec<String>,
        stack: &mut Vec<String>,
    ) -> Result<(), String> {
        if out.iter().any(|o| o == name) {
            return Ok(());
        }
        if stack.iter().any(|o| o == name) {
            return Err(format!(
                "depends_on has a cycle: {} -> {name}",
                stack.join(" -> ")
            ));
        }
        let s = p
            .service(name)
            .ok_or_else(|| format!("no service '{name}' in the compose file"))?;
        stack.push(name.to_string());
        for dep in s.depends_on.keys() {
            visit(p, dep, out, stack)?;
        }
        stack.pop();
        out.push(name.to_string());
        Ok(())
    }
    let mut out = Vec::new();
    let roots: Vec<String> = match only {
        Some(names) => names.to_vec(),
        None => project.services.iter().map(|s| s.name.clone()).collect(),
    };
    for r in roots {
        visit(project, &r, &mut out, &mut Vec::new())?;
    }
    Ok(out)
}

/// Merges the env files' contents (in order) and the `environment` entries.
pub fn resolve_environment(
    service: &mut ComposeService,
    env_file_contents: &BTreeMap<String, Option<String>>,
) -> Result<(), String> {
    let mut env = BTreeMap::new();
    for f in &service.env_files {
        match env_file_contents.get(&f.path).cloned().flatten() {
            Some(text) => {
                for (k, v) in parse_env_file(&text).map_err(|e| format!("{}: {e}", f.path))? {
                    env.insert(k, v);
                }
            }
            None if f.required => {
                return Err(format!(
                    "service '{}': env_file {} does not exist",
                    service.name, f.path
                ));
            }
            None => {}
        }
    }
    for (k, v) in &service.environment {
        env.insert(k.clone(), v.clone());
    }
    service.spec.environment = env;
    Ok(())
}

/// Parses a `.env` file as Compose does: `KEY=value`, `export KEY=value`,
/// comments, single quotes (literal), double quotes (with `\n` escapes), and
/// ` #` comments after unquoted values. A bare `KEY` (no `=`) is skipped.
pub fn parse_env_file(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let key = k.trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(format!("line {}: invalid variable name '{key}'", i + 1));
        }
        let v = v.trim_start();
        let value = if let Some(rest) = v.strip_prefix('\'') {
            rest.split_once('\'')
                .map(|(inner, _)| inner.to_string())
                .ok_or_else(|| format!("line {}: unterminated single quote", i + 1))?
        } else if let Some(rest) = v.strip_prefix('"') {
            let mut s = String::new();
            let mut chars = rest.chars();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '"' => {
                        closed = true;
                        break;
                    }
                    '\\' => match chars.next() {
                        Some('n') => s.push('\n'),
                        Some('t') => s.push('\t'),
                        Some(o) => s.push(o),
                        None => s.push('\\'),
                    },
                    o => s.push(o),
                }
            }
            if !closed {
                return Err(format!("line {}: unterminated double quote", i + 1));
            }
            s
        } else {
            let v = match v.find(" #") {
                Some(pos) => &v[..pos],
                None => v,
            };
            v.trim_end().to_string()
        };
        out.push((key.to_string(), value));
    }
    Ok(out)
}

/// `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?message}`,
/// `${VAR?message}`, `$VAR` and `$$` (a literal `$`).
pub fn interpolate(s: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            let end = r
                .find('}')
                .ok_or_else(|| format!("unterminated '${{' in '{s}'"))?;
            let expr = &r[..end];
            let name_len = expr
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(expr.len());
            let (name, op) = expr.split_at(name_len);
            if name.is_empty() {
                return Err(format!("invalid interpolation '${{{expr}}}' in '{s}'"));
            }
            let val = vars.get(name);
            let value = match op {
                "" => val.cloned().unwrap_or_default(),
                _ if op.starts_with(":-") => val
                    .filter(|v| !v.is_empty())
                    .cloned()
                    .unwrap_or_else(|| op[2..].to_string()),
                _ if op.starts_with('-') => val.cloned().unwrap_or_else(|| op[1..].to_string()),
                _ if op.starts_with(":?") || op.starts_with('?') => {
                    let empty_fails = op.starts_with(":?");
                    match val {
                        Some(v) if !(empty_fails && v.is_empty()) => v.clone(),
                        _ => {
                            return Err(format!(
                                "required variable {name} is missing a value: {}",
                                op.trim_start_matches(':').trim_start_matches('?')
                            ));
                        }
                    }
                }
                _ => return Err(format!("unsupported interpolation '${{{expr}}}' in '{s}'")),
            };
            out.push_str(&value);
            rest = &r[end + 1..];
        } else {
            let name_len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if name_len == 0 {
                out.push('$');
                rest = after;
            } else {
                out.push_str(vars.get(&after[..name_len]).map_or("", String::as_str));
                rest = &after[name_len..];
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Docker's memory units (binary multiples): `512m`, `1g`, `100k`, bytes.
pub fn parse_bytes(s: &str) -> Result<i64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("expected a size such as 512m or 1g, got '{s}'"))?;
    if n < 0.0 {
        return Err(format!("a size cannot be negative: '{s}'"));
    }
    Ok((n * mult as f64) as i64)
}

/// Compose durations: `1m30s`, `500ms`, `10s`, `1h`, into nanoseconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let bad = || format!("expected a duration such as 30s or 1m30s, got '{s}'");
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = s.trim().chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphabetic() || n == 'µ' {
                unit.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let n: f64 = num.parse().map_err(|_| bad())?;
        let mult = match unit.as_str() {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        total += n * mult;
        num.clear();
        any = true;
    }
    if !num.is_empty() || !any {
        return Err(bad());
    }
    Ok(total as i64)
}

fn unknown(map: &Node, key: &str, what: &str, known: &[&str]) -> LocatedError {
    let loc = map
        .as_map()
        .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some(key)))
        .map_or(map.loc.clone(), |(k, _)| k.loc.clone());
    LocatedError::new(
        &loc,
        format!(
            "unsupported compose {what} '{key}' (supported: {})",
            known.join(", ")
        ),
    )
}

/// Later mappings override earlier ones key by key; anything else replaces.
fn merge(base: Node, over: Node) -> Node {
    match (base.value, over.value) {
        (Yaml::Map(mut b), Yaml::Map(o)) => {
            for (k, v) in o {
                match b.iter().position(|(bk, _)| bk.value == k.value) {
                    Some(i) => {
                        let (bk, bv) = b.remove(i);
                        b.insert(i, (bk, merge(bv, v)));
                    }
                    None => b.push((k, v)),
                }
            }
            Node {
                value: Yaml::Map(b),
                loc: base.loc,
            }
        }
        (_, v) => Node {
            value: v,
            loc: over.loc,
        },
    }
}

struct Parser<'a> {
    vars: &'a BTreeMap<String, String>,
}

impl Parser<'_> {
    fn string(&self, n: &Node, what: &str) -> Result<String, LocatedError> {
        let s = match &n.value {
            Yaml::Str(s) => s.clone(),
            Yaml::Int(i) => i.to_string(),
            Yaml::Float(f) => f.to_string(),
            Yaml::Bool(b) => b.to_string(),
            _ => {
                return Err(LocatedError::new(
                    &n.loc,
                    format!("expected {what} (a string), got {}", n.kind()),
                ));
            }
        };
        interpolate(&s, self.vars).map_err(|e| LocatedError::new(&n.loc, e))
    }

    fn opt_string(&self, n: &Node, what: &str) -> Result<Option<String>, LocatedError> {
        if n.is_null() {
            Ok(None)
        } else {
            self.string(n, what).map(Some)
        }
    }

    fn bool(&self, n: &Node, what: &str) -> Result<bool, LocatedError> {
        match &n.value {
            Yaml::Bool(b) => Ok(*b),
            _ => {
                let s = self.string(n, what)?;
                crate::args::parse_bool(&serde_json::Value::String(s)).ok_or_else(|| {
                    LocatedError::new(&n.loc, format!("expected {what} (a boolean)"))
                })
            }
        }
    }

    fn list(&self, n: &Node, what: &str) -> Result<Vec<String>, LocatedError> {
        match &n.value {
            Yaml::Seq(items) => items.iter().map(|i| self.string(i, what)).collect(),
            Yaml::Null => Ok(Vec::new()),
            _ => Ok(vec![self.string(n, what)?]),
        }
    }

    /// A command: a list, or a string split as a shell would.
    fn command(&self, n: &Node, what: &str) -> Result<Option<Vec<String>>, LocatedError> {
        match &n.value {
            Yaml::Null => Ok(None),
            Yaml::Seq(_) => self.list(n, what).map(Some),
            _ => {
                let s = self.string(n, what)?;
                crate::shell::split(&s)
                    .map(Some)
                    .ok_or_else(|| LocatedError::new(&n.loc, format!("{what}: unbalanced quotes")))
            }
        }
    }

    /// A mapping, or a list of `KEY=value` (a bare `KEY` is left out).
    fn dict(&self, n: &Node, what: &str) -> Result<BTreeMap<String, String>, LocatedError> {
        let mut out = BTreeMap::new();
        match &n.value {
            Yaml::Null => {}
            Yaml::Seq(items) => {
                for i in items {
                    let s = self.string(i, what)?;
                    if let Some((k, v)) = s.split_once('=') {
                        out.insert(k.to_string(), v.to_string());
                    }
                }
            }
            _ => {
                for (k, v) in n.expect_map(what)? {
                    if !v.is_null() {
                        out.insert(k.to_string(), self.string(v, what)?);
                    }
                }
            }
        }
        Ok(out)
    }

    fn network(&self, project: &str, key: &str, def: &Node) -> Result<NetworkDef, LocatedError> {
        let mut n = NetworkDef {
            key: key.to_string(),
            name: format!("{project}_{key}"),
            external: false,
            driver: None,
            internal: false,
            subnets: Vec::new(),
            labels: BTreeMap::new(),
        };
        let mut explicit_name = None;
        if !def.is_null() {
            const KEYS: &[&str] = &["external", "name", "driver", "internal", "labels", "ipam"];
            for (k, v) in def.expect_map("a network")? {
                match k {
                    "external" => n.external = self.bool(v, "external")?,
                    "name" => explicit_name = Some(self.string(v, "name")?),
                    "driver" => n.driver = self.opt_string(v, "driver")?,
                    "internal" => n.internal = self.bool(v, "internal")?,
                    "labels" => n.labels = self.dict(v, "labels")?,
                    "ipam" => {
                        for (ik, iv) in v.expect_map("ipam")? {
                            match ik {
                                "driver" => {}
                                "config" => {
                                    for c in iv.expect_seq("ipam config")? {
                                        let subnet = c.get("subnet").ok_or_else(|| {
                                            LocatedError::new(&c.loc, "ipam config needs a subnet")
                                        })?;
                                        for (ck, _) in c.expect_map("ipam config")? {
                                            if !["subnet", "gateway"].contains(&ck) {
                                                return Err(unknown(
                                                    c,
                                                    ck,
                                                    "ipam config key",
                                                    &["subnet", "gateway"],
                                                ));
                                            }
                                        }
                                        n.subnets.push((
                                            self.string(subnet, "subnet")?,
                                            c.get("gateway")
                                                .map(|g| self.string(g, "gateway"))
                                                .transpose()?,
                                        ));
                                    }
                                }
                                other => {
                                    return Err(unknown(
                                        v,
                                        other,
                                        "ipam key",
                                        &["driver", "config"],
                                    ));
                                }
                            }
                        }
                    }
                    other => return Err(unknown(def, other, "network key", KEYS)),
                }
            }
        }
        n.name = match explicit_name {
            Some(x) => x,
            None if n.external => key.to_string(),
            None => n.name,
        };
        Ok(n)
    }

    fn volume(&self, project: &str, key: &str, def: &Node) -> Result<VolumeDef, LocatedError> {
        let mut v = VolumeDef {
            key: key.to_string(),
            name: format!("{project}_{key}"),
            external: false,
            driver: None,
            labels: BTreeMap::new(),
        };
        let mut explicit_name = None;
        if !def.is_null() {
            const KEYS: &[&str] = &["external", "name", "driver", "labels"];
            for (k, val) in def.expect_map("a volume")? {
                match k {
                    "external" => v.external = self.bool(val, "external")?,
                    "name" => explicit_name = Some(self.string(val, "name")?),
                    "driver" => v.driver = self.opt_string(val, "driver")?,
                    "labels" => v.labels = self.dict(val, "labels")?,
                    other => return Err(unknown(def, other, "volume key", KEYS)),
                }
            }
        }
        v.name = match explicit_name {
            Some(x) => x,
            None if v.external => key.to_string(),
            None => v.name,
        };
        Ok(v)
    }

    fn service(
        &self,
        project: &str,
        project_dir: &str,
        name: &str,
        def: &Node,
        networks: &[NetworkDef],
        volumes: &[VolumeDef],
    ) -> Result<ComposeService, LocatedError> {
        let mut s = ComposeService {
            name: name.to_string(),
            spec: ServiceSpec::default(),
            env_files: Vec::new(),
            environment: BTreeMap::new(),
            depends_on: IndexMap::new(),
        };
        let mut image = None;
        for (k, v) in def.expect_map("a service")? {
            let sp = &mut s.spec;
            match k {
                "image" => image = Some(self.string(v, "image")?),
                "command" => sp.command = self.command(v, "command")?,
                "entrypoint" => sp.entrypoint = self.command(v, "entrypoint")?,
                "environment" => s.environment = self.dict(v, "environment")?,
                "env_file" => {
                    let items: Vec<&Node> = match &v.value {
                        Yaml::Seq(items) => items.iter().collect(),
                        _ => vec![v],
                    };
                    for item in items {
                        let (path, required) = if item.as_map().is_some() {
                            let mut path = None;
                            let mut required = true;
                            for (ek, ev) in item.expect_map("an env_file entry")? {
                                match ek {
                                    "path" => path = Some(self.string(ev, "path")?),
                                    "required" => required = self.bool(ev, "required")?,
                                    other => {
                                        return Err(unknown(
                                            item,
                                            other,
                                            "env_file key",
                                            &["path", "required"],
                                        ));
                                    }
                                }
                            }
                            let path = path.ok_or_else(|| {
                                LocatedError::new(&item.loc, "env_file entry needs a path")
                            })?;
                            (path, required)
                        } else {
                            (self.string(item, "env_file")?, true)
                        };
                        s.env_files.push(EnvFileRef {
                            path: resolve_path(project_dir, &path),
                            required,
                        });
                    }
                }
                "ports" => {
                    for p in v.expect_seq("ports")? {
                        sp.ports.push(self.port(p)?);
                    }
                    sp.ports.sort();
                }
                "expose" => {
                    for e in self.list(v, "expose")? {
                        sp.expose.push(if e.contains('/') {
                            e
                        } else {
                            format!("{e}/tcp")
                        });
                    }
                    sp.expose.sort();
                }
                "networks" => {
                    let entries: Vec<(String, Option<&Node>)> = match &v.value {
                        Yaml::Seq(_) => self
                            .list(v, "networks")?
                            .into_iter()
                            .map(|n| (n, None))
                            .collect(),
                        _ => v
                            .expect_map("networks")?
                            .into_iter()
                            .map(|(k, d)| (k.to_string(), Some(d)))
                            .collect(),
                    };
                    for (key, d) in entries {
                        let net = networks.iter().find(|n| n.key == key).ok_or_else(|| {
                            LocatedError::new(
                                &v.loc,
                                format!(
                                    "service '{name}' uses network '{key}', which is not declared under the top-level networks"
                                ),
                            )
                        })?;
                        let mut aliases = vec![name.to_string()];
                        if let Some(d) = d.filter(|d| !d.is_null()) {
                            for (nk, nv) in d.expect_map("a service network")? {
                                match nk {
                                    "aliases" => aliases.extend(self.list(nv, "aliases")?),
                                    other => {
                                        return Err(unknown(
                                            d,
                                            other,
                                            "service network key",
                                            &["aliases"],
                                        ));
                                    }
                                }
                            }
                        }
                        sp.networks.insert(net.name.clone(), aliases);
                    }
                }
                "volumes" => {
                    for m in v.expect_seq("volumes")? {
                        self.mount(project_dir, m, volumes, sp)?;
                    }
                }
                "cap_drop" => sp.cap_drop = self.list(v, "cap_drop")?,
                "cap_add" => sp.cap_add = self.list(v, "cap_add")?,
                "mem_limit" => {
                    sp.memory = Some(
                        parse_bytes(&self.string(v, "mem_limit")?)
                            .map_err(|e| LocatedError::new(&v.loc, e))?,
                    )
                }
                "cpus" => sp.nano_cpus = Some(self.cpus(v)?),
                "deploy" => {
                    for (dk, dv) in v.expect_map("deploy")? {
                        if dk != "resources" {
                            return Err(unknown(v, dk, "deploy key", &["resources"]));
                        }
                        for (rk, rv) in dv.expect_map("deploy.resources")? {
                            if rk != "limits" {
                                return Err(unknown(dv, rk, "deploy.resources key", &["limits"]));
                            }
                            for (lk, lv) in rv.expect_map("deploy.resources.limits")? {
                                match lk {
                                    "cpus" => sp.nano_cpus = Some(self.cpus(lv)?),
                                    "memory" => {
                                        sp.memory = Some(
                                            parse_bytes(&self.string(lv, "memory")?)
                                                .map_err(|e| LocatedError::new(&lv.loc, e))?,
                                        )
                                    }
                                    other => {
                                        return Err(unknown(
                                            rv,
                                            other,
                                            "deploy.resources.limits key",
                                            &["cpus", "memory"],
                                        ));
                                    }
                                }
                            }
                        }
                    }
                }
                "healthcheck" => sp.healthcheck = self.healthcheck(v)?,
                "restart" => {
                    let r = self.string(v, "restart")?;
                    let base = r.split(':').next().unwrap_or("");
                    if !["no", "always", "unless-stopped", "on-failure"].contains(&base) {
                        return Err(LocatedError::new(
                            &v.loc,
                            format!(
                                "restart must be no, always, unless-stopped or on-failure[:N], got '{r}'"
                            ),
                        ));
                    }
                    sp.restart = Some(r);
                }
                "depends_on" => match &v.value {
                    Yaml::Seq(_) => {
                        for d in self.list(v, "depends_on")? {
                            s.depends_on.insert(d, DependsCondition::ServiceStarted);
                        }
                    }
                    _ => {
                        for (dk, dv) in v.expect_map("depends_on")? {
                            let mut cond = DependsCondition::ServiceStarted;
                            if !dv.is_null() {
                                for (ck, cv) in dv.expect_map("a depends_on entry")? {
                                    match ck {
                                        "condition" => {
                                            cond = match self.string(cv, "condition")?.as_str() {
                                                "service_started" => {
                                                    DependsCondition::ServiceStarted
                                                }
                                                "service_healthy" => {
                                                    DependsCondition::ServiceHealthy
                                                }
                                                "service_completed_successfully" => {
                                                    DependsCondition::ServiceCompletedSuccessfully
                                                }
                                                other => {
                                                    return Err(LocatedError::new(
                                                        &cv.loc,
                                                        format!(
                                                            "unknown depends_on condition '{other}'"
                                                        ),
                                                    ));
                                                }
                                            }
                                        }
                                        // Both only matter to `docker compose` restarts.
                                        "restart" | "required" => {}
                                        other => {
                                            return Err(unknown(
                                                dv,
                                                other,
                                                "depends_on key",
                                                &["condition", "restart", "required"],
                                            ));
                                        }
                                    }
                                }
                            }
                            s.depends_on.insert(dk.to_string(), cond);
                        }
                    }
                },
                "labels" => sp.labels = self.dict(v, "labels")?,
                "user" => sp.user = self.opt_string(v, "user")?,
                "read_only" => sp.read_only = self.bool(v, "read_only")?,
                "security_opt" => sp.security_opt = self.list(v, "security_opt")?,
                "tmpfs" => {
                    for t in self.list(v, "tmpfs")? {
                        let (path, opts) = t.split_once(':').unwrap_or((&t, ""));
                        sp.tmpfs.insert(path.to_string(), opts.to_string());
                    }
                }
                "container_name" => sp.container_name = self.opt_string(v, "container_name")?,
                x if x.starts_with("x-") => {}
                other => return Err(unknown(def, other, "service key", SERVICE_KEYS)),
            }
        }
        s.spec.image = image.ok_or_else(|| {
            LocatedError::new(
                &def.loc,
                format!("service '{name}' has no image (building images is not supported)"),
            )
        })?;
        let _ = project;
        Ok(s)
    }

    fn cpus(&self, v: &Node) -> Result<i64, LocatedError> {
        let s = self.string(v, "cpus")?;
        let f: f64 = s.trim().parse().map_err(|_| {
            LocatedError::new(&v.loc, format!("expected a number of CPUs, got '{s}'"))
        })?;
        Ok((f * 1e9).round() as i64)
    }

    fn port(&self, p: &Node) -> Result<PortSpec, LocatedError> {
        let bad = |m: String| LocatedError::new(&p.loc, m);
        if p.as_map().is_some() {
            let mut spec = PortSpec {
                protocol: "tcp".into(),
                ..Default::default()
            };
            const KEYS: &[&str] = &["target", "published", "host_ip", "protocol", "mode"];
            for (k, v) in p.expect_map("a port")? {
                match k {
                    "target" => {
                        spec.target = self
                            .string(v, "target")?
                            .parse()
                            .map_err(|_| bad("target must be a port number".into()))?
                    }
                    "published" => spec.published = self.string(v, "published")?,
                    "host_ip" => spec.host_ip = self.string(v, "host_ip")?,
                    "protocol" => spec.protocol = self.string(v, "protocol")?,
                    "mode" => {}
                    other => return Err(unknown(p, other, "port key", KEYS)),
                }
            }
            if spec.target == 0 {
                return Err(bad("a port needs a target".into()));
            }
            return Ok(spec);
        }
        let s = self.string(p, "a port")?;
        let (body, protocol) = match s.rsplit_once('/') {
            Some((b, proto)) => (b.to_string(), proto.to_string()),
            None => (s.clone(), "tcp".to_string()),
        };
        // host_ip may be IPv6 in brackets: [::1]:8080:80
        let (host_ip, rest) = if let Some(r) = body.strip_prefix('[') {
            let (ip, r) = r
                .split_once("]:")
                .ok_or_else(|| bad(format!("invalid port '{s}'")))?;
            (ip.to_string(), r.to_string())
        } else {
            let parts: Vec<&str> = body.split(':').collect();
            match parts.len() {
                3 => (parts[0].to_string(), format!("{}:{}", parts[1], parts[2])),
                1 | 2 => (String::new(), body.clone()),
                _ => return Err(bad(format!("invalid port '{s}'"))),
            }
        };
        let (published, target) = match rest.split_once(':') {
            Some((p, t)) => (p.to_string(), t.to_string()),
            None => (String::new(), rest.clone()),
        };
        if target.contains('-') || published.contains('-') {
            return Err(bad(format!("port ranges are not supported: '{s}'")));
        }
        let target = target
            .parse()
            .map_err(|_| bad(format!("invalid container port in '{s}'")))?;
        Ok(PortSpec {
            host_ip,
            published,
            target,
            protocol,
        })
    }

    fn mount(
        &self,
        project_dir: &str,
        m: &Node,
        volumes: &[VolumeDef],
        sp: &mut ServiceSpec,
    ) -> Result<(), LocatedError> {
        let (kind, source, target, read_only) = if m.as_map().is_some() {
            let mut kind = String::from("volume");
            let mut source = String::new();
            let mut target = String::new();
            let mut ro = false;
            const KEYS: &[&str] = &["type", "source", "target", "read_only"];
            for (k, v) in m.expect_map("a volume")? {
                match k {
                    "type" => kind = self.string(v, "type")?,
                    "source" => source = self.string(v, "source")?,
                    "target" => target = self.string(v, "target")?,
                    "read_only" => ro = self.bool(v, "read_only")?,
                    other => return Err(unknown(m, other, "volume key", KEYS)),
                }
            }
            (kind, source, target, ro)
        } else {
            let s = self.string(m, "a volume")?;
            let parts: Vec<&str> = s.split(':').collect();
            let (src, dst, mode) = match parts.as_slice() {
                [src, dst] => (*src, *dst, ""),
                [src, dst, mode] => (*src, *dst, *mode),
                _ => {
                    return Err(LocatedError::new(
                        &m.loc,
                        format!(
                            "expected SOURCE:TARGET[:ro] (anonymous volumes are not supported), got '{s}'"
                        ),
                    ));
                }
            };
            let modes: Vec<&str> = mode.split(',').filter(|x| !x.is_empty()).collect();
            if let Some(bad) = modes.iter().find(|x| !["ro", "rw"].contains(x)) {
                return Err(LocatedError::new(
                    &m.loc,
                    format!("unsupported volume mode '{bad}'"),
                ));
            }
            let kind = if src.starts_with(['/', '.', '~']) {
                "bind"
            } else {
                "volume"
            };
            (
                kind.to_string(),
                src.to_string(),
                dst.to_string(),
                modes.contains(&"ro"),
            )
        };
        if target.is_empty() {
            return Err(LocatedError::new(&m.loc, "a volume needs a target"));
        }
        let source = match kind.as_str() {
            "tmpfs" => {
                sp.tmpfs.insert(target, String::new());
                return Ok(());
            }
            "bind" => resolve_path(project_dir, &source),
            "volume" => volumes
                .iter()
                .find(|v| v.key == source)
                .map(|v| v.name.clone())
                .ok_or_else(|| {
                    LocatedError::new(
                        &m.loc,
                        format!("volume '{source}' is not declared under the top-level volumes"),
                    )
                })?,
            other => {
                return Err(LocatedError::new(
                    &m.loc,
                    format!("unsupported volume type '{other}' (bind, volume, tmpfs)"),
                ));
            }
        };
        sp.binds.push(format!(
            "{source}:{target}{}",
            if read_only { ":ro" } else { "" }
        ));
        Ok(())
    }

    fn healthcheck(&self, v: &Node) -> Result<Option<HealthSpec>, LocatedError> {
        let mut h = HealthSpec::default();
        let mut disable = false;
        const KEYS: &[&str] = &[
            "test",
            "interval",
            "timeout",
            "start_period",
            "retries",
            "disable",
        ];
        let dur = |n: &Node, what: &str| -> Result<i64, LocatedError> {
            parse_duration(&self.string(n, what)?).map_err(|e| LocatedError::new(&n.loc, e))
        };
        for (k, val) in v.expect_map("healthcheck")? {
            match k {
                "test" => {
                    h.test = match &val.value {
                        Yaml::Seq(_) => self.list(val, "test")?,
                        _ => vec!["CMD-SHELL".into(), self.string(val, "test")?],
                    }
                }
                "interval" => h.interval = dur(val, "interval")?,
                "timeout" => h.timeout = dur(val, "timeout")?,
                "start_period" => h.start_period = dur(val, "start_period")?,
                "retries" => {
                    h.retries = self
                        .string(val, "retries")?
                        .parse()
                        .map_err(|_| LocatedError::new(&val.loc, "retries must be an integer"))?
                }
                "disable" => disable = self.bool(val, "disable")?,
                other => return Err(unknown(v, other, "healthcheck key", KEYS)),
            }
        }
        if disable {
            h = HealthSpec {
                test: vec!["NONE".into()],
                ..Default::default()
            };
        }
        Ok(Some(h))
    }
}

fn resolve_path(project_dir: &str, p: &str) -> String {
    if p.starts_with('/') {
        p.to_string()
    } else {
        let rel = p.strip_prefix("./").unwrap_or(p);
        format!("{}/{rel}", project_dir.trim_end_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ComposeProject, LocatedError> {
        parse_project(
            &[("/srv/app/compose.yml".into(), text.into())],
            "/srv/app",
            None,
            &BTreeMap::from([("TAG".to_string(), "1.2".to_string())]),
        )
    }

    #[test]
    fn a_plane_shaped_file_parses_into_specs() {
        let p = parse(
            "services:\n  api:\n    image: reg/api:${TAG}\n    env_file: .env\n    environment:\n      MODE: prod\n    networks:\n      backend:\n        aliases: [api-internal]\n      egress: {}\n    cap_drop: [ALL]\n    cap_add: [NET_BIND_SERVICE]\n    mem_limit: 512m\n    cpus: '0.5'\n    healthcheck:\n      test: ['CMD', 'true']\n      interval: 1m30s\n      retries: 3\n    ports: ['127.0.0.1:8080:80']\n    volumes: ['./data:/data:ro', 'cache:/cache']\n  web:\n    image: reg/web:1\n    depends_on:\n      api: {condition: service_healthy}\nnetworks:\n  backend: {}\n  egress: {external: true, name: plane-egress}\nvolumes:\n  cache: {}\n",
        )
        .expect("parses");
        assert_eq!(p.name, "app");
        let api = p.service("api").expect("api");
        assert_eq!(api.spec.image, "reg/api:1.2");
        assert_eq!(api.env_files[0].path, "/srv/app/.env");
        assert_eq!(api.spec.memory, Some(512 << 20));
        assert_eq!(api.spec.nano_cpus, Some(500_000_000));
        assert_eq!(
            api.spec.networks.get("app_backend"),
            Some(&vec!["api".to_string(), "api-internal".to_string()])
        );
        assert!(api.spec.networks.contains_key("plane-egress"));
        assert_eq!(
            api.spec.binds,
            vec!["/srv/app/data:/data:ro", "app_cache:/cache"]
        );
        let h = api.spec.healthcheck.as_ref().expect("healthcheck");
        assert_eq!(h.interval, 90_000_000_000);
        assert_eq!(api.spec.ports[0].host_ip, "127.0.0.1");
        // web has no networks: it gets the project's default network.
        assert!(
            p.service("web")
                .expect("web")
                .spec
                .networks
                .contains_key("app_default")
        );
        assert_eq!(start_order(&p, None).expect("order"), vec!["api", "web"]);
        assert_eq!(
            start_order(&p, Some(&["web".to_string()])).expect("order"),
            vec!["api", "web"]
        );
    }

    #[test]
    fn unknown_keys_are_errors_with_file_and_line() {
        let e = parse("services:\n  api:\n    image: x\n    privileged: true\n").unwrap_err();
        assert_eq!(
            e.to_string().split(": ").next(),
            Some("/srv/app/compose.yml:4:5")
        );
        assert!(
            e.msg
                .contains("unsupported compose service key 'privileged'"),
            "{e}"
        );
        let e = parse("services: {}\nsecrets: {}\n").unwrap_err();
        assert!(e.to_string().starts_with("/srv/app/compose.yml:2:1"), "{e}");
    }

    #[test]
    fn undeclared_networks_and_cycles_are_errors() {
        let e = parse("services:\n  a:\n    image: x\n    networks: [nope]\n").unwrap_err();
        assert!(e.msg.contains("'nope'"), "{e}");
        let e = parse(
            "services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on: [a]\n",
        )
        .unwrap_err();
        assert!(e.msg.contains("cycle"), "{e}");
    }

    #[test]
    fn env_files_parse_like_compose() {
        let env =
            parse_env_file("# c\nA=1\nexport B='x y'\nC=\"l1\\nl2\"\nD=v # comment\nE\n\nF=\n")
                .expect("parses");
        assert_eq!(
            env,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "x y".into()),
                ("C".into(), "l1\nl2".into()),
                ("D".into(), "v".into()),
                ("F".into(), "".into()),
            ]
        );
    }

    #[test]
    fn interpolation_follows_compose() {
        let vars = BTreeMap::from([
            ("A".to_string(), "1".to_string()),
            ("E".to_string(), String::new()),
        ]);
        assert_eq!(interpolate("x${A}y$A$$", &vars).as_deref(), Ok("x1y1$"));
        assert_eq!(
            interpolate("${B:-d}${E:-e}${E-f}", &vars).as_deref(),
            Ok("de")
        );
        assert!(
            interpolate("${B:?needed}", &vars)
                .unwrap_err()
                .contains("needed")
        );
    }

    #[test]
    fn units_parse() {
        assert_eq!(parse_bytes("1g"), Ok(1 << 30));
        assert_eq!(parse_bytes("100"), Ok(100));
        assert_eq!(parse_duration("1m30s"), Ok(90_000_000_000));
        assert_eq!(parse_duration("500ms"), Ok(500_000_000));
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn the_hash_covers_env_file_contents() {
        let mut p = parse("services:\n  a:\n    image: x\n    env_file: .env\n").expect("parses");
        let s = &mut p.services[0];
        let files = |v: &str| BTreeMap::from([("/srv/app/.env".to_string(), Some(v.to_string()))]);
        resolve_environment(s, &files("K=1\n")).expect("env");
        let h1 = config_hash(&s.spec);
        resolve_environment(s, &files("K=2\n")).expect("env");
        assert_ne!(h1, config_hash(&s.spec));
        resolve_environment(s, &files("K=1\n")).expect("env");
        assert_eq!(h1, config_hash(&s.spec));
        let e = resolve_environment(s, &BTreeMap::new()).unwrap_err();
        assert!(e.contains("/srv/app/.env does not exist"), "{e}");
    }
}
