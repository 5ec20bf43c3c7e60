//! The spec's conventions: FQCN module names, pinned images, `cap_drop: [ALL]`,
//! memory limits and healthchecks on every compose service, no plaintext
//! secret, and no `state: restarted` for a compose project whose env file is
//! templated (restart does not reload env_file).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use regex::Regex;

use super::Linter;
use super::schema::{TaskCtx, is_templated};
use crate::yaml::{Loc, Node, Yaml};

pub fn check_fqcn(l: &mut Linter, key: &str, loc: &Loc) {
    if key.contains('.') && !key.starts_with("ansible.legacy.") {
        return;
    }
    let short = key.trim_start_matches("ansible.legacy.");
    let fq = if short.starts_with("docker_") {
        format!("community.docker.{short}")
    } else {
        format!("ansible.builtin.{short}")
    };
    l.report(
        "fqcn",
        loc,
        format!("use the fully qualified module name: {fq}"),
    );
}

/// `*password*`, `*secret*`, `*token*`, `*key*` names (by word, so `keycloak`
/// and `monkey_count` are not), except names of files, paths and the like.
pub fn is_secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let words: Vec<&str> = lower
        .split(['_', '-', '.'])
        .filter(|w| !w.is_empty())
        .collect();
    let Some(last) = words.last() else {
        return false;
    };
    const NOT_SECRET_SUFFIX: &[&str] = &[
        "file",
        "files",
        "path",
        "dir",
        "name",
        "names",
        "length",
        "len",
        "size",
        "url",
        "id",
        "type",
        "user",
        "username",
        "format",
        "algorithm",
        "bits",
        "enabled",
        "env",
        "var",
        "vars",
        "header",
        "field",
        "policy",
        "rotation",
        "expiry",
        "ttl",
        "count",
    ];
    if NOT_SECRET_SUFFIX.contains(last) {
        return false;
    }
    const MARKS: &[&str] = &[
        "password",
        "passwords",
        "passwd",
        "secret",
        "secrets",
        "token",
        "tokens",
        "key",
        "keys",
        "apikey",
        "privatekey",
    ];
    words.iter().any(|w| {
        MARKS
            .iter()
            .any(|m| w == m || (m.len() > 3 && w.ends_with(m)))
    })
}

/// A secret-named variable whose value is a literal (not `!vault`, not a template).
pub fn check_secret(l: &mut Linter, name: &str, v: &Node) {
    if !is_secret_name(name) {
        return;
    }
    fn leaves<'a>(n: &'a Node, out: &mut Vec<&'a Node>) {
        match &n.value {
            Yaml::Str(s) if !s.is_empty() && !is_templated(s) => out.push(n),
            Yaml::Int(_) | Yaml::Float(_) => out.push(n),
            Yaml::Seq(items) => items.iter().for_each(|i| leaves(i, out)),
            Yaml::Map(m) => m.iter().for_each(|(_, v)| leaves(v, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    leaves(v, &mut found);
    for n in &found {
        let text = match &n.value {
            Yaml::Str(s) => s.clone(),
            Yaml::Int(i) => i.to_string(),
            Yaml::Float(f) => f.to_string(),
            _ => continue,
        };
        l.know.secret_values.push(text);
    }
    for n in found {
        l.report(
            "plaintext-secret",
            &n.loc,
            format!("'{name}' holds a literal value: encrypt it (`deployer vault encrypt-string`) or refer to a vault variable"),
        );
    }
}

pub fn is_compose_file(name: &str) -> bool {
    let base = name.strip_suffix(".j2").unwrap_or(name);
    (base.ends_with(".yml") || base.ends_with(".yaml"))
        && (base.starts_with("docker-compose") || base.starts_with("compose"))
}

/// Services of a compose file (a parsed tree).
pub fn check_compose(l: &mut Linter, path: &Path, node: &Node) {
    let Some(services) = node.get("services").and_then(Node::as_map) else {
        return;
    };
    let _ = path;
    for (name, svc) in services {
        let sname = name.as_str().unwrap_or("?");
        if svc.as_map().is_none() {
            continue;
        }
        match svc.get("image") {
            Some(img) => {
                if let Some(s) = img.as_str() {
                    l.know.images.push((s.to_string(), img.loc.clone()));
                }
            }
            None if svc.get("build").is_none() => {}
            None => {}
        }
        let drops_all = svc.get("cap_drop").is_some_and(|c| match &c.value {
            Yaml::Seq(items) => items.iter().any(|i| i.as_str() == Some("ALL")),
            Yaml::Str(s) => s == "ALL",
            _ => false,
        });
        if !drops_all {
            l.report(
                "compose-cap-drop",
                &name.loc,
                format!("service '{sname}' does not drop all capabilities: add cap_drop: [ALL] (and cap_add what it needs)"),
            );
        }
        let limits_memory = svc.get("mem_limit").is_some()
            || svc
                .get("deploy")
                .and_then(|d| d.get("resources"))
                .and_then(|r| r.get("limits"))
                .and_then(|m| m.get("memory"))
                .is_some();
        if !limits_memory {
            l.report(
                "compose-mem-limit",
                &name.loc,
                format!("service '{sname}' has no memory limit: add mem_limit (or deploy.resources.limits.memory)"),
            );
        }
        if svc.get("healthcheck").is_none() {
            l.report(
                "compose-healthcheck",
                &name.loc,
                format!("service '{sname}' has no healthcheck"),
            );
        }
        if let Some(env) = svc.get("environment") {
            match &env.value {
                Yaml::Map(m) => {
                    for (k, v) in m {
                        if let Some(k) = k.as_str() {
                            check_secret(l, k, v);
                        }
                    }
                }
                Yaml::Seq(items) => {
                    for i in items {
                        if let Some((k, v)) = i.as_str().and_then(|s| s.split_once('=')) {
                            let lit = Node {
                                value: Yaml::Str(v.to_string()),
                                loc: i.loc.clone(),
                            };
                            check_secret(l, k, &lit);
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

fn jinja_expr_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}").unwrap_or_else(|_| unreachable!())
    })
}

/// A compose template: Jinja statements blanked and expressions replaced by
/// placeholders so the YAML parses, then checked as a compose file, with the
/// expressions put back where a value is checked (images).
pub fn check_compose_template(l: &mut Linter, path: &Path, text: &str) {
    let mut exprs: Vec<String> = Vec::new();
    let yaml_text = jinja_expr_re()
        .replace_all(text, |c: &regex::Captures<'_>| {
            let m = &c[0];
            if m.starts_with("{{") {
                exprs.push(m.to_string());
                format!("JINJA{}X", exprs.len() - 1)
            } else {
                String::new()
            }
        })
        .into_owned();
    let Ok(node) = crate::yaml::parse_str(&yaml_text, path) else {
        // Too much Jinja to see the structure: the template rules still ran.
        return;
    };
    let before = l.know.images.len();
    check_compose(l, path, &node);
    let restore = |s: &str| -> String {
        let mut out = s.to_string();
        for (i, e) in exprs.iter().enumerate().rev() {
            out = out.replace(&format!("JINJA{i}X"), e);
        }
        out
    };
    for img in &mut l.know.images[before..] {
        img.0 = restore(&img.0);
    }
}

/// `KEY=value` lines of an env template: literal secrets.
pub fn check_env_template(l: &mut Linter, path: &Path, text: &str) {
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('#') {
            continue;
        }
        let Some((k, v)) = t.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"').trim_matches('\'');
        if is_secret_name(k.trim()) && !v.is_empty() && !is_templated(v) {
            l.know.secret_values.push(v.to_string());
            l.report_at(
                "plaintext-secret",
                path,
                i + 1,
                1,
                format!(
                    "'{}' holds a literal value: template it from a vault variable",
                    k.trim()
                ),
            );
        }
    }
}

/// A compose module task: `state: restarted` is remembered for the env rule.
pub fn check_compose_task(l: &mut Linter, ctx: &TaskCtx, mval: &Node, args_kw: Option<&Node>) {
    let state = mval
        .get("state")
        .or_else(|| args_kw.and_then(|a| a.get("state")));
    if let Some(s) = state
        && s.as_str() == Some("restarted")
    {
        l.know
            .restarted_compose
            .push((ctx.scope_key.clone(), s.loc.clone()));
    }
}

/// Images in docker module arguments (`image:`), checked at the end.
pub fn check_task_images(l: &mut Linter, module: &str, v: &Node) {
    if !module.contains("docker") {
        return;
    }
    if let Some(img) = v.get("image")
        && let Some(s) = img.as_str()
    {
        l.know.images.push((s.to_string(), img.loc.clone()));
    }
}

/// A template task that writes an env file.
pub fn note_env_template(l: &mut Linter, ctx: &TaskCtx, args: &Node) {
    let is_env = |k: &str| {
        args.get(k).and_then(Node::as_str).is_some_and(|s| {
            let base = s.rsplit('/').next().unwrap_or(s);
            let base = base.strip_suffix(".j2").unwrap_or(base);
            base == ".env" || base.ends_with(".env") || base == "env"
        })
    };
    if is_env("src") || is_env("dest") {
        l.know.env_templating_roles.insert(ctx.scope_key.clone());
    }
}

fn simple_var_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}").unwrap_or_else(|_| unreachable!())
    })
}

/// Whether an image reference is pinned; `Err` says why not.
pub fn image_pinned(image: &str) -> Result<(), String> {
    if image.contains("@sha256:") {
        return Ok(());
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        None => Err(format!(
            "image '{image}' has no tag (it means :latest): pin a version or digest"
        )),
        Some((_, tag)) if tag.is_empty() || tag == "latest" || tag == "stable" => Err(format!(
            "image '{image}' uses the moving tag '{tag}': pin a version or digest"
        )),
        Some(_) => Ok(()),
    }
}

pub fn finish(l: &mut Linter) {
    if let Some((loc, msg)) = l.know.lock_error.take() {
        l.report("load-error", &loc, msg);
    }
    for (image, loc) in std::mem::take(&mut l.know.images) {
        // `{{ var }}` with a literal value somewhere in the project: check that value.
        let mut resolved = image.clone();
        for _ in 0..4 {
            if !is_templated(&resolved) {
                break;
            }
            let next = simple_var_re()
                .replace_all(&resolved, |c: &regex::Captures<'_>| {
                    match l.know.values.get(&c[1]).map(|n| &n.value) {
                        Some(Yaml::Str(s)) => s.clone(),
                        Some(Yaml::Int(i)) => i.to_string(),
                        Some(Yaml::Float(f)) => f.to_string(),
                        _ => c[0].to_string(),
                    }
                })
                .into_owned();
            if next == resolved {
                break;
            }
            resolved = next;
        }
        if is_templated(&resolved) {
            // A templated tag is unknown until rendered; a literal one is checked.
            let last = resolved.rsplit('/').next().unwrap_or(&resolved);
            match last.split_once(':') {
                Some((_, tag)) if is_templated(tag) => continue,
                None if is_templated(last) => continue,
                _ => {}
            }
        }
        if !is_templated(&resolved)
            && !resolved.contains("@sha256:")
            && let Some(locked) = &l.know.locked_images
            && !locked.contains(&resolved)
        {
            l.report(
                "image-not-locked",
                &loc,
                format!("image '{resolved}' is not in images.lock: apply will refuse it; run `deployer pin -i INVENTORY`"),
            );
        }
        if let Err(msg) = image_pinned(&resolved) {
            let msg = if resolved != image {
                format!("{msg} (from '{image}')")
            } else {
                msg
            };
            l.report("image-pinned", &loc, msg);
        }
    }
    let envs: Vec<PathBuf> = l.know.env_templating_roles.iter().cloned().collect();
    for (scope, loc) in std::mem::take(&mut l.know.restarted_compose) {
        if envs.contains(&scope) {
            l.report(
                "compose-restarted-env",
                &loc,
                "state: restarted does not reload the env file this role templates: use state: present with recreate: always (the spec's REX)",
            );
        }
    }
}
