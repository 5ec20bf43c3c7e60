//! `ansible.cfg` and the `ANSIBLE_*` variables, read as Ansible reads them:
//! the first of `$ANSIBLE_CONFIG`, `./ansible.cfg`, `~/.ansible.cfg`,
//! `/etc/ansible/ansible.cfg`; an `ANSIBLE_*` variable wins over the file.
//! Relative paths in the file are relative to the file's directory.
//!
//! Only the settings deployer uses are interpreted ([`SETTINGS`]); each
//! effective value remembers where it came from (`deployer config`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::yaml::{Loc, LocatedError};

/// One setting deployer reads: its section and key in the file, its
/// environment variable, and how its value is read.
pub struct SettingSpec {
    pub section: &'static str,
    pub key: &'static str,
    /// Older spellings Ansible still reads.
    pub aliases: &'static [&'static str],
    pub env: &'static [&'static str],
    pub kind: Kind,
    pub help: &'static str,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Text,
    Path,
    /// `:`-separated paths (roles_path, collections_path).
    PathList,
    /// `,`-separated paths (inventory, vault_identity_list).
    CommaList,
    Bool,
    Int,
}

pub const SETTINGS: &[SettingSpec] = &[
    SettingSpec {
        section: "defaults",
        key: "inventory",
        aliases: &["hostfile"],
        env: &["ANSIBLE_INVENTORY"],
        kind: Kind::CommaList,
        help: "inventory sources used when -i is not given",
    },
    SettingSpec {
        section: "defaults",
        key: "roles_path",
        aliases: &[],
        env: &["ANSIBLE_ROLES_PATH"],
        kind: Kind::PathList,
        help: "directories searched for roles (after roles/ next to the playbook)",
    },
    SettingSpec {
        section: "defaults",
        key: "collections_path",
        aliases: &["collections_paths"],
        env: &["ANSIBLE_COLLECTIONS_PATH", "ANSIBLE_COLLECTIONS_PATHS"],
        kind: Kind::PathList,
        help: "directories holding ansible_collections/NAMESPACE/NAME",
    },
    SettingSpec {
        section: "defaults",
        key: "vault_password_file",
        aliases: &[],
        env: &["ANSIBLE_VAULT_PASSWORD_FILE"],
        kind: Kind::Path,
        help: "vault password file used when no --vault-password-file/--vault-id is given",
    },
    SettingSpec {
        section: "defaults",
        key: "vault_identity_list",
        aliases: &[],
        env: &["ANSIBLE_VAULT_IDENTITY_LIST"],
        kind: Kind::CommaList,
        help: "vault ids (label@source) used when none is given on the command line",
    },
    SettingSpec {
        section: "defaults",
        key: "remote_user",
        aliases: &[],
        env: &["ANSIBLE_REMOTE_USER"],
        kind: Kind::Text,
        help: "SSH user when the inventory sets no ansible_user",
    },
    SettingSpec {
        section: "defaults",
        key: "private_key_file",
        aliases: &[],
        env: &["ANSIBLE_PRIVATE_KEY_FILE"],
        kind: Kind::Path,
        help: "SSH key when the inventory sets no ansible_ssh_private_key_file",
    },
    SettingSpec {
        section: "defaults",
        key: "forks",
        aliases: &[],
        env: &["ANSIBLE_FORKS"],
        kind: Kind::Int,
        help: "hosts worked on in parallel when -f is not given",
    },
    SettingSpec {
        section: "privilege_escalation",
        key: "become",
        aliases: &[],
        env: &["ANSIBLE_BECOME"],
        kind: Kind::Bool,
        help: "become by default when neither play, task nor inventory says",
    },
    SettingSpec {
        section: "privilege_escalation",
        key: "become_user",
        aliases: &[],
        env: &["ANSIBLE_BECOME_USER"],
        kind: Kind::Text,
        help: "user to become when the inventory and play set none",
    },
    SettingSpec {
        section: "defaults",
        key: "host_key_checking",
        aliases: &[],
        env: &["ANSIBLE_HOST_KEY_CHECKING"],
        kind: Kind::Bool,
        help: "deployer always verifies host keys; False is reported and not applied",
    },
];

/// Where an effective value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    File { path: PathBuf, line: usize },
    Env(String),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::File { path, line } => write!(f, "{}:{line}", path.display()),
            Origin::Env(v) => write!(f, "env {v}"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Setting {
    pub key: &'static str,
    /// As written (for `deployer config`).
    pub raw: String,
    pub origin: Origin,
}

#[derive(Clone, Debug, Default)]
pub struct AnsibleConfig {
    /// The file read, if any.
    pub file: Option<PathBuf>,
    pub settings: Vec<Setting>,
}

/// The configuration of this process (read once, from the current directory).
pub fn current() -> Result<&'static AnsibleConfig, LocatedError> {
    static CONFIG: OnceLock<Result<AnsibleConfig, LocatedError>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let cwd = std::env::current_dir().unwrap_or_default();
            load(&cwd, &|k| std::env::var(k).ok())
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Which file Ansible would read, from `cwd` and the environment.
pub fn find_file(cwd: &Path, env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(p) = env("ANSIBLE_CONFIG").filter(|p| !p.is_empty()) {
        let p = expand_user(&p, env);
        let p = if p.is_dir() { p.join("ansible.cfg") } else { p };
        let p = if p.is_absolute() { p } else { cwd.join(p) };
        if p.is_file() {
            return Some(p);
        }
    }
    let local = cwd.join("ansible.cfg");
    // Like Ansible: a world-writable current directory is not trusted.
    if local.is_file() && !world_writable(cwd) {
        return Some(local);
    }
    if let Some(home) = env("HOME") {
        let p = Path::new(&home).join(".ansible.cfg");
        if p.is_file() {
            return Some(p);
        }
    }
    let etc = PathBuf::from("/etc/ansible/ansible.cfg");
    etc.is_file().then_some(etc)
}

fn world_writable(dir: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o002 != 0)
}

fn expand_user(p: &str, env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    match (p.strip_prefix("~/"), env("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ if p == "~" => env("HOME").map(PathBuf::from).unwrap_or_else(|| p.into()),
        _ => PathBuf::from(p),
    }
}

/// Reads the configuration Ansible would use in `cwd` with environment `env`.
pub fn load(
    cwd: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<AnsibleConfig, LocatedError> {
    let mut cfg = AnsibleConfig::default();
    if let Some(path) = find_file(cwd, env) {
        let text = std::fs::read_to_string(&path).map_err(|e| {
            LocatedError::new(
                &Loc::file_only(&path),
                format!("cannot read the Ansible configuration: {e}"),
            )
        })?;
        for (section, key, value, line) in parse_ini(&text, &path)? {
            let Some(spec) = SETTINGS.iter().find(|s| {
                s.section == section && (s.key == key || s.aliases.contains(&key.as_str()))
            }) else {
                continue;
            };
            check_value(spec, &value, &Loc::new(&path, line, 1))?;
            cfg.settings.retain(|s| s.key != spec.key);
            cfg.settings.push(Setting {
                key: spec.key,
                raw: value,
                origin: Origin::File {
                    path: path.clone(),
                    line,
                },
            });
        }
        cfg.file = Some(path);
    }
    for spec in SETTINGS {
        for var in spec.env {
            if let Some(v) = env(var) {
                check_value(spec, &v, &Loc::file_only(Path::new(&format!("${var}"))))?;
                cfg.settings.retain(|s| s.key != spec.key);
                cfg.settings.push(Setting {
                    key: spec.key,
                    raw: v,
                    origin: Origin::Env((*var).to_string()),
                });
                break;
            }
        }
    }
    Ok(cfg)
}

fn check_value(spec: &SettingSpec, value: &str, loc: &Loc) -> Result<(), LocatedError> {
    match spec.kind {
        Kind::Bool if parse_bool(value).is_none() => Err(LocatedError::new(
            loc,
            format!(
                "{}: expected a boolean (true/false, yes/no, 1/0), got '{value}'",
                spec.key
            ),
        )),
        Kind::Int if value.trim().parse::<usize>().map_or(true, |n| n == 0) => {
            Err(LocatedError::new(
                loc,
                format!(
                    "{}: expected a positive whole number, got '{value}'",
                    spec.key
                ),
            ))
        }
        _ => Ok(()),
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" | "y" | "t" => Some(true),
        "false" | "no" | "off" | "0" | "n" | "f" | "" => Some(false),
        _ => None,
    }
}

/// `[section]` and `key = value` / `key: value` lines, `#`/`;` comments, and
/// indented continuation lines (Python's configparser), each with its line.
pub fn parse_ini(
    text: &str,
    path: &Path,
) -> Result<Vec<(String, String, String, usize)>, LocatedError> {
    let mut out: Vec<(String, String, String, usize)> = Vec::new();
    let mut section: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let loc = Loc::new(path, line_no, 1);
        if raw.starts_with([' ', '\t']) {
            match out.last_mut() {
                Some(last) if section.is_some() => {
                    last.2.push('\n');
                    last.2.push_str(trimmed);
                    continue;
                }
                _ => {
                    return Err(LocatedError::new(
                        &loc,
                        "an indented line continues a value, but no setting comes before it",
                    ));
                }
            }
        }
        if let Some(rest) = trimmed.strip_prefix('[') {
            let name = rest.strip_suffix(']').ok_or_else(|| {
                LocatedError::new(
                    &loc,
                    format!("malformed section header '{trimmed}': expected [name]"),
                )
            })?;
            section = Some(name.trim().to_string());
            continue;
        }
        let Some(sec) = &section else {
            return Err(LocatedError::new(
                &loc,
                format!(
                    "'{trimmed}' comes before any [section] header (expected [defaults] first)"
                ),
            ));
        };
        let split = trimmed.find(['=', ':']).ok_or_else(|| {
            LocatedError::new(&loc, format!("expected 'key = value', got '{trimmed}'"))
        })?;
        let key = trimmed[..split].trim().to_ascii_lowercase();
        if key.is_empty() {
            return Err(LocatedError::new(
                &loc,
                format!("a setting without a name: '{trimmed}'"),
            ));
        }
        let mut value = trimmed[split + 1..].trim().to_string();
        // Inline comments need whitespace before them (configparser's rule
        // as Ansible configures it: `;` and `#`).
        for marker in [" #", " ;", "\t#", "\t;"] {
            if let Some(p) = value.find(marker) {
                value.truncate(p);
                value = value.trim_end().to_string();
            }
        }
        out.push((sec.clone(), key, value, line_no));
    }
    Ok(out)
}

impl AnsibleConfig {
    pub fn get(&self, key: &str) -> Option<&Setting> {
        self.settings.iter().find(|s| s.key == key)
    }

    fn base_dir(&self, s: &Setting) -> PathBuf {
        match &s.origin {
            Origin::File { path, .. } => path.parent().map(Path::to_path_buf).unwrap_or_default(),
            Origin::Env(_) => std::env::current_dir().unwrap_or_default(),
        }
    }

    fn resolve(&self, s: &Setting, p: &str) -> PathBuf {
        let home = |k: &str| std::env::var(k).ok();
        let p = expand_user(p.trim(), &home);
        if p.is_absolute() {
            p
        } else {
            self.base_dir(s).join(p)
        }
    }

    /// Paths of a path-list or comma-list setting, resolved.
    pub fn paths(&self, key: &str) -> Vec<PathBuf> {
        let Some(s) = self.get(key) else {
            return Vec::new();
        };
        let spec = SETTINGS.iter().find(|x| x.key == key);
        let sep = match spec.map(|x| x.kind) {
            Some(Kind::CommaList) => ',',
            _ => ':',
        };
        s.raw
            .split([sep, '\n'])
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| self.resolve(s, p))
            .collect()
    }

    pub fn path(&self, key: &str) -> Option<PathBuf> {
        let s = self.get(key)?;
        Some(self.resolve(s, &s.raw))
    }

    pub fn text(&self, key: &str) -> Option<String> {
        self.get(key).map(|s| s.raw.trim().to_string())
    }

    pub fn bool(&self, key: &str) -> Option<bool> {
        self.get(key).and_then(|s| parse_bool(&s.raw))
    }

    pub fn int(&self, key: &str) -> Option<usize> {
        self.get(key).and_then(|s| s.raw.trim().parse().ok())
    }

    /// Inventory sources: comma-separated; each relative one from the file's directory.
    pub fn inventory(&self) -> Vec<PathBuf> {
        self.paths("inventory")
    }

    /// Collection roots (`collections_path`, else Ansible's defaults).
    pub fn collections_paths(&self) -> Vec<PathBuf> {
        if self.get("collections_path").is_some() {
            return self.paths("collections_path");
        }
        let mut out = Vec::new();
        if let Ok(home) = std::env::var("HOME") {
            out.push(Path::new(&home).join(".ansible/collections"));
        }
        out.push(PathBuf::from("/usr/share/ansible/collections"));
        out
    }

    /// What deployer tells the user about settings it reads but does not
    /// apply as written (host key checking is never turned off).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(s) = self.get("host_key_checking")
            && parse_bool(&s.raw) == Some(false)
        {
            out.push(format!(
                "{}: host_key_checking = {} is not applied: deployer always verifies host keys (add the hosts to known_hosts)",
                s.origin, s.raw
            ));
        }
        out
    }

    /// `deployer config`: each setting deployer reads, its effective value
    /// and origin.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        match &self.file {
            Some(f) => out.push_str(&format!("config file: {}\n", f.display())),
            None => out.push_str(
                "config file: none ($ANSIBLE_CONFIG, ./ansible.cfg, ~/.ansible.cfg, /etc/ansible/ansible.cfg)\n",
            ),
        }
        for spec in SETTINGS {
            match self.get(spec.key) {
                Some(s) => {
                    let shown = match spec.kind {
                        Kind::Path | Kind::PathList | Kind::CommaList => {
                            let ps: Vec<String> = if spec.kind == Kind::Path {
                                self.path(spec.key)
                                    .into_iter()
                                    .map(|p| p.display().to_string())
                                    .collect()
                            } else {
                                self.paths(spec.key)
                                    .iter()
                                    .map(|p| p.display().to_string())
                                    .collect()
                            };
                            let sep = if spec.kind == Kind::PathList {
                                ":"
                            } else {
                                ","
                            };
                            ps.join(sep)
                        }
                        _ => s.raw.clone(),
                    };
                    out.push_str(&format!("{} = {}  ({})\n", spec.key, shown, s.origin));
                }
                None => out.push_str(&format!("{} = (default)  # {}\n", spec.key, spec.help)),
            }
        }
        for w in self.warnings() {
            out.push_str(&format!("warning: {w}\n"));
        }
        out
    }
}

/// Roles directories beyond the playbook's own: `roles_path`, else
/// Ansible's default list.
pub fn roles_path() -> Result<Vec<PathBuf>, LocatedError> {
    let cfg = current()?;
    if cfg.get("roles_path").is_some() {
        return Ok(cfg.paths("roles_path"));
    }
    let mut out = Vec::new();
    if let Ok(home) = std::env::var("HOME") {
        out.push(Path::new(&home).join(".ansible/roles"));
    }
    out.push(PathBuf::from("/usr/share/ansible/roles"));
    out.push(PathBuf::from("/etc/ansible/roles"));
    Ok(out)
}

/// `namespace.collection.role` → the role's directory in an installed
/// collection, or the directories searched (for the error).
pub fn collection_role(fqcn: &str) -> Result<Result<PathBuf, Vec<PathBuf>>, LocatedError> {
    let parts: Vec<&str> = fqcn.split('.').collect();
    let [ns, coll, role] = parts.as_slice() else {
        return Ok(Err(Vec::new()));
    };
    let mut tried = Vec::new();
    for root in current()?.collections_paths() {
        // A collections_path entry may name the ansible_collections directory itself.
        let base = if root.ends_with("ansible_collections") {
            root.clone()
        } else {
            root.join("ansible_collections")
        };
        let dir = base.join(ns).join(coll).join("roles").join(role);
        if dir.is_dir() {
            return Ok(Ok(dir));
        }
        tried.push(dir);
    }
    Ok(Err(tried))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| pairs.iter().find(|(pk, _)| pk == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn file_values_with_lines_env_wins_paths_relative_to_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("ansible.cfg"),
            "# comment\n[defaults]\ninventory = inventory/hosts.yml\nroles_path = roles:/opt/roles  ; inline\nforks: 7\n\n[privilege_escalation]\nbecome = True\n",
        )
        .unwrap();
        let cfg = load(dir.path(), &env_of(&[("ANSIBLE_FORKS", "3")])).unwrap();
        assert_eq!(
            cfg.inventory(),
            vec![dir.path().join("inventory/hosts.yml")]
        );
        assert_eq!(
            cfg.paths("roles_path"),
            vec![dir.path().join("roles"), PathBuf::from("/opt/roles")]
        );
        assert_eq!(cfg.int("forks"), Some(3));
        assert_eq!(
            cfg.get("forks").unwrap().origin,
            Origin::Env("ANSIBLE_FORKS".into())
        );
        assert_eq!(cfg.bool("become"), Some(true));
        assert_eq!(
            cfg.get("become").unwrap().origin,
            Origin::File {
                path: dir.path().join("ansible.cfg"),
                line: 8
            }
        );
        assert!(cfg.describe().contains("forks = 3  (env ANSIBLE_FORKS)"));
    }

    #[test]
    fn ansible_config_env_points_at_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let other = dir.path().join("other.cfg");
        std::fs::write(&other, "[defaults]\nremote_user = ops\n").unwrap();
        let cfg = load(
            Path::new("/nonexistent"),
            &env_of(&[("ANSIBLE_CONFIG", other.to_str().unwrap())]),
        )
        .unwrap();
        assert_eq!(cfg.text("remote_user").as_deref(), Some("ops"));
        assert_eq!(cfg.file.as_deref(), Some(other.as_path()));
    }

    #[test]
    fn malformed_files_name_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ansible.cfg");
        for (text, line, what) in [
            (
                "[defaults]\nforks = 5\njust words\n",
                3,
                "expected 'key = value'",
            ),
            ("forks = 5\n", 1, "before any [section]"),
            ("[defaults\n", 1, "malformed section header"),
            ("[defaults]\nforks = many\n", 2, "positive whole number"),
            (
                "[privilege_escalation]\nbecome = perhaps\n",
                2,
                "expected a boolean",
            ),
        ] {
            std::fs::write(&f, text).unwrap();
            let e = load(dir.path(), &env_of(&[])).unwrap_err();
            assert_eq!(e.loc.line, line, "{text}: {e}");
            assert!(e.to_string().contains(what), "{text}: {e}");
            assert!(e.to_string().contains("ansible.cfg"), "{e}");
        }
    }

    #[test]
    fn host_key_checking_off_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("ansible.cfg"),
            "[defaults]\nhost_key_checking = False\n",
        )
        .unwrap();
        let cfg = load(dir.path(), &env_of(&[])).unwrap();
        let w = cfg.warnings();
        assert_eq!(w.len(), 1);
        assert!(
            w[0].contains("ansible.cfg:2") && w[0].contains("always verifies"),
            "{w:?}"
        );
    }
}
