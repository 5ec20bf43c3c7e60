//! The module registry: the one table ([`MODULES`]) of every module deployer runs.
//!
//! Everything that needs to know the modules reads this table: dispatch
//! ([`super::run`]), the loader's module names and its load-time argument check
//! (through [`crate::project::ModuleCatalog`], which [`Registry`] implements, so
//! `project` never imports `modules`), lint's schema rule, the executor's
//! observation prefetch, the "unknown module" message (nearest name) and the test
//! that the README lists every module.
//!
//! # Adding a module
//!
//! 1. Write one file, `src/modules/<name>.rs`, holding:
//!    - the typed arguments: `#[derive(Deserialize)] #[serde(deny_unknown_fields)]`.
//!      Templated values arrive as strings, so use the lenient field types of
//!      [`super::args`] (`de_bool`, `de_opt_string`, `de_opt_u64`, `de_opt_list`,
//!      `de_opt_mode`) for anything that is not a string. A required argument is a
//!      field without `#[serde(default)]`; a choice is an enum; an Ansible alias is
//!      `#[serde(alias = "...")]`. The loader rejects an unknown argument at its
//!      file:line before any host is contacted; lint checks types, required
//!      arguments and choices.
//!    - a unit struct (`pub struct Apt;`) implementing [`Module`] (names, argument
//!      schema, paths to prefetch) and [`PlanApply`]: `observe` reads the host
//!      (read-only), `plan` is pure (no I/O: it cannot touch a host) and returns the
//!      changes as data plus what to report, `apply` makes the changes. Its
//!      `Module::run` is one line, `plan_apply(self, args, ctx)`: check mode is then
//!      plan without apply, by construction. See [`super::misc::Fail`] for the
//!      smallest example and [`super::misc::Debug`] for one that renders.
//!    - what it saved for a release goes in its [`ModuleResult`]; a module never
//!      writes release records itself.
//!    - a module that writes a file on the host uses
//!      [`crate::connection::write::RemoteWrite`] (content, owner, mode, backup,
//!      validate: one script or `conn.write_file`), and one that changes owner,
//!      group or mode of an existing path uses
//!      [`crate::connection::write::attributes_script`]. Never `> file`, `chmod`
//!      or `chown` by name: a local user can swap the name between two commands.
//!      Data from the task never becomes shell text: [`crate::connection::shell_quote`]
//!      each word, or pass it base64-encoded (`printf '%s' '<b64>' | base64 -d`).
//! 2. Add `pub mod <name>;` to `src/modules/mod.rs` and one line to [`MODULES`].
//! 3. Name it in README.md's module list (`registry::tests` checks every module is there).
//!
//! Modules written before the registry still implement [`Module::run`] directly
//! (one function that plans and, outside check mode, applies, branching on
//! `ctx.check`): template, copy, file, lineinfile, blockinfile, stat, command,
//! shell, wait_for, uri, pause, docker_compose_v2, docker_container,
//! docker_network, plane_users. New modules use [`PlanApply`].

use std::future::Future;
use std::pin::Pin;

use serde::de::{DeserializeOwned, Deserializer, Visitor};
use serde_json::{Map, Value as Json};

use super::observe::Want;
use super::{ModuleCtx, ModuleResult, parse_args};

/// What [`Module::run`] returns: the module's work, awaited by the executor.
pub type ModuleFuture<'a> = Pin<Box<dyn Future<Output = Result<ModuleResult, String>> + Send + 'a>>;

/// A boxed future of anything (for [`PlanApply::observe`]).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Every module deployer runs. Adding a module: one line here (see the top of this file).
pub static MODULES: &[&dyn Module] = &[
    &super::files::Template,
    &super::files::Copy,
    &super::files::File,
    &super::files::Lineinfile,
    &super::files::Blockinfile,
    &super::files::Stat,
    &super::command::Command,
    &super::command::Shell,
    &super::command::WaitFor,
    &super::command::Uri,
    &super::misc::Debug,
    &super::misc::Assert,
    &super::misc::Fail,
    &super::misc::SetFact,
    &super::misc::Pause,
    &super::misc::Ping,
    &super::compose::DockerComposeV2,
    &super::docker_container::DockerContainer,
    &super::docker_network::DockerNetwork,
    &super::plane_users::PlaneUsers,
    &super::setup::Setup,
    &super::include_vars::IncludeVars,
    &super::apt::Apt,
    &super::package::Package,
    &super::systemd::Systemd,
    &super::package::Service,
    &super::accounts::User,
    &super::accounts::Group,
    &super::getent::Getent,
    &super::get_url::GetUrl,
    &super::replace::Replace,
    &super::authorized_key::AuthorizedKey,
    &super::cron::Cron,
    &super::sysctl::Sysctl,
    &super::slurp::Slurp,
    &super::pam_limits::PamLimits,
    &super::ini_file::IniFile,
    &super::timezone::Timezone,
    &super::package_facts::PackageFacts,
    &super::service_facts::ServiceFacts,
    &super::unarchive::Unarchive,
    &super::find::Find,
    &super::apt_repository::AptRepository,
    &super::apt_key::AptKey,
    &super::deb822_repository::Deb822Repository,
    &super::locale_gen::LocaleGen,
    &super::pip::Pip,
    &super::hostname::Hostname,
    &super::postgresql::PostgresqlDb,
    &super::postgresql::PostgresqlUser,
    &super::postgresql_privs::PostgresqlPrivs,
    &super::mysql::MysqlDb,
    &super::mysql::MysqlUser,
    &super::mysql::MysqlReplication,
    &super::backup::postgres::BackupPostgres,
    &super::backup::volume::BackupVolume,
    &super::mount::Mount,
    // Other operating systems' package modules: loaded, refused when a host reaches them.
    &super::other_os::YUM,
    &super::other_os::DNF,
    &super::other_os::DNF5,
    &super::other_os::YUM_REPOSITORY,
    &super::other_os::RPM_KEY,
    &super::other_os::PACMAN,
    &super::other_os::PACMAN_KEY,
    &super::other_os::ZYPPER,
    &super::other_os::ZYPPER_REPOSITORY,
    &super::other_os::PKGNG,
    &super::other_os::PKG5,
    &super::other_os::OPENBSD_PKG,
    &super::other_os::APK,
    &super::other_os::HOMEBREW,
    &super::other_os::HOMEBREW_CASK,
    &super::other_os::HOMEBREW_TAP,
    &super::other_os::PORTAGE,
    &super::other_os::PKGIN,
    &super::other_os::XBPS,
];

/// Modules an Ansible project may name that deployer knows but does not run yet:
/// loading fails with this message instead of silently skipping them.
pub static NOT_YET: &[(&str, &str)] = &[
    (
        "community.docker.docker_image",
        "docker_image is not implemented: images are pulled by docker_compose_v2 and docker_container (pull)",
    ),
    (
        "docker_image",
        "docker_image is not implemented: images are pulled by docker_compose_v2 and docker_container (pull)",
    ),
];

/// The collections Ansible's server modules live in: a pending module is
/// refused under any of them as under its short name.
const NAMESPACES: &[&str] = &[
    "ansible.builtin.",
    "ansible.legacy.",
    "ansible.posix.",
    "community.general.",
];

/// Ansible's server modules deployer does not run yet (short names; their
/// FQCNs are refused by the loader the same way): loading a task that names one
/// fails at its file:line instead of running anything.
pub static PENDING: &[&str] = &[];

/// A module, declared once. The table [`MODULES`] lists one value of each.
pub trait Module: Sync {
    /// The short name (`copy`): what a loaded task carries and what messages say.
    fn name(&self) -> &'static str;

    /// The fully qualified name (`ansible.builtin.copy`). `ansible.builtin.<name>`
    /// and `ansible.legacy.<name>` are accepted for every module, as Ansible's
    /// routing does.
    fn fqcn(&self) -> &'static str;

    /// Further names a task may use (besides the short name and the FQCN).
    fn aliases(&self) -> &'static [&'static str] {
        &[]
    }

    /// The argument schema: names (checked at load time), and the typed parse
    /// (types, required arguments, choices; lint runs it).
    fn args(&self) -> ArgSchema;

    /// Constraints between arguments that the types cannot express ("one of src
    /// or content is required"), checked by lint before any run.
    fn check_combination(&self, _args: &Map<String, Json>) -> Result<(), String> {
        Ok(())
    }

    /// Path arguments the executor observes for the whole play in one batch
    /// before the first task (argument name, what to read). A module that needs
    /// a path not prefetched observes it on demand.
    fn prefetch(&self) -> &'static [(&'static str, Want)] {
        &[]
    }

    /// Runs the module on one host. A [`PlanApply`] module writes this as
    /// `plan_apply(self, args, ctx)`.
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a>;
}

/// A module written as observe → plan → apply.
pub trait PlanApply: Module {
    /// The typed arguments (`serde`, `deny_unknown_fields`).
    type Args: DeserializeOwned + Send + Sync;
    /// What `observe` read from the host.
    type Observed: Send;
    /// The changes `plan` found, as data.
    type Changes: Send;

    /// Reads what the plan needs. It runs in check mode too, so it must not
    /// change anything.
    fn observe<'a>(
        &'a self,
        args: &'a Self::Args,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> BoxFuture<'a, Result<Self::Observed, String>>;

    /// From the arguments and the observed state to the changes: pure, no I/O.
    fn plan(
        &self,
        args: Self::Args,
        observed: Self::Observed,
        ctx: &ModuleCtx<'_>,
    ) -> Result<Plan<Self::Changes>, String>;

    /// Makes the changes (never called in check mode, nor when `plan` found
    /// none). `planned` is what `plan` reported; return it updated.
    fn apply<'a>(
        &'a self,
        changes: Self::Changes,
        planned: ModuleResult,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> ModuleFuture<'a>;
}

/// What [`PlanApply::plan`] found.
pub struct Plan<C> {
    /// What the task reports in check mode, and what `apply` starts from:
    /// `changed`, diffs, registered data.
    pub result: ModuleResult,
    /// The changes to make; `None` when the host is already as desired.
    pub changes: Option<C>,
}

impl<C> Plan<C> {
    /// Nothing to change: the task reports `result`.
    pub fn unchanged(result: ModuleResult) -> Plan<C> {
        Plan {
            result,
            changes: None,
        }
    }
}

/// [`Module::run`] for a [`PlanApply`] module: observe, plan, and apply only
/// outside check mode.
pub fn plan_apply<'a, M: PlanApply>(
    m: &'a M,
    args: Json,
    ctx: &'a mut ModuleCtx<'_>,
) -> ModuleFuture<'a> {
    Box::pin(async move {
        let args: M::Args = parse_args(m.name(), args)?;
        let observed = m.observe(&args, ctx).await?;
        let plan = m.plan(args, observed, ctx)?;
        match plan.changes {
            Some(changes) if !ctx.check => m.apply(changes, plan.result, ctx).await,
            _ => Ok(plan.result),
        }
    })
}

/// `observe` for a module that reads nothing from the host.
pub fn observe_nothing<'a>() -> BoxFuture<'a, Result<(), String>> {
    Box::pin(async { Ok(()) })
}

/// A module's arguments, as load time and lint check them.
#[derive(Clone, Copy)]
pub struct ArgSchema {
    /// The argument names the module takes (aliases included); `None` when it
    /// takes any name (`set_fact`).
    pub names: Option<&'static [&'static str]>,
    /// Parses arguments into the typed struct: types, required arguments and
    /// choices (the error is serde's, e.g. "unknown field `x`, expected ...").
    pub parse: fn(Json) -> Result<(), String>,
}

impl ArgSchema {
    /// The schema of a typed argument struct: its field names come from serde.
    pub fn of<T: DeserializeOwned>() -> ArgSchema {
        ArgSchema {
            names: Some(field_names::<T>()),
            parse: parse_typed::<T>,
        }
    }

    /// A module that takes any argument name, parsed into `T` (a map).
    pub fn free_form<T: DeserializeOwned>() -> ArgSchema {
        ArgSchema {
            names: None,
            parse: parse_typed::<T>,
        }
    }
}

fn parse_typed<T: DeserializeOwned>(j: Json) -> Result<(), String> {
    serde_json::from_value::<T>(j)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The field names (and aliases) serde derives for a struct, read by handing its
/// `Deserialize` impl a deserializer that only records what it is asked for.
fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Grab<'a>(&'a mut &'static [&'static str]);
    impl<'de> Deserializer<'de> for Grab<'_> {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _v: V) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _v: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(serde::de::Error::custom("fields recorded"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let mut names: &'static [&'static str] = &[];
    let _ = T::deserialize(Grab(&mut names));
    names
}

/// The module a task key names: short name, FQCN, `ansible.builtin.`/`ansible.legacy.`
/// plus the short name, or an alias.
pub fn find(key: &str) -> Option<&'static dyn Module> {
    MODULES.iter().copied().find(|m| {
        m.name() == key
            || m.fqcn() == key
            || m.aliases().contains(&key)
            || key
                .strip_prefix("ansible.builtin.")
                .or_else(|| key.strip_prefix("ansible.legacy."))
                == Some(m.name())
    })
}

/// The short names of every module, in table order.
pub fn names() -> Vec<&'static str> {
    MODULES.iter().map(|m| m.name()).collect()
}

/// Why a module deployer knows of is refused, if it is.
pub fn not_yet(key: &str) -> Option<&'static str> {
    NOT_YET
        .iter()
        .find(|(m, _)| *m == key)
        .map(|(_, why)| *why)
        .or_else(|| {
            let short = NAMESPACES
                .iter()
                .find_map(|ns| key.strip_prefix(ns))
                .unwrap_or(key);
            PENDING
                .contains(&short)
                .then_some("not supported yet by deployer")
        })
        .or_else(|| {
            let short = ["ansible.builtin.", "ansible.legacy."]
                .iter()
                .find_map(|ns| key.strip_prefix(ns))
                .unwrap_or(key);
            (find(key).is_none() && ansible_knows(short)).then_some(
                "not supported yet by deployer (Ansible has this module; deployer does not run it)",
            )
        })
}

/// Whether Ansible knows a module name deployer does not run: ansible-core's
/// modules and routed short names, and the FQCNs of the collections server
/// roles use most (src/modules/ansible_modules.txt, written by
/// tools/ansible_module_names.py from the pinned `ansible` package).
/// Such a task is "not supported yet"; only other names are "unknown".
pub fn ansible_knows(name: &str) -> bool {
    static NAMES: std::sync::OnceLock<std::collections::HashSet<&'static str>> =
        std::sync::OnceLock::new();
    NAMES
        .get_or_init(|| {
            include_str!("ansible_modules.txt")
                .lines()
                .filter(|l| !l.starts_with('#') && !l.is_empty())
                .collect()
        })
        .contains(name)
}

/// The module name nearest to a misspelt one (by edit distance, short names
/// and FQCNs), if one is close enough to be what was meant.
pub fn nearest(key: &str) -> Option<&'static str> {
    let mut best: Option<(usize, &'static str)> = None;
    for m in MODULES {
        for cand in [m.name(), m.fqcn()] {
            let d = edit_distance(key, cand);
            if best.is_none_or(|(bd, _)| d < bd) {
                best = Some((d, cand));
            }
        }
    }
    let (d, name) = best?;
    (d <= 2.max(key.len() / 4)).then_some(name)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The registry as the loader sees it (`project` does not import `modules`;
/// the command layer hands this in).
pub struct Registry;

impl crate::project::ModuleCatalog for Registry {
    fn resolve(&self, key: &str) -> Option<&'static str> {
        find(key).map(|m| m.name())
    }
    fn names(&self) -> Vec<&'static str> {
        names()
    }
    fn not_yet(&self, key: &str) -> Option<&'static str> {
        not_yet(key)
    }
    fn nearest(&self, key: &str) -> Option<&'static str> {
        nearest(key)
    }
    fn arg_names(&self, module: &str) -> Option<&'static [&'static str]> {
        find(module).and_then(|m| m.args().names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_unique_and_resolves_to_its_module() {
        let mut seen = std::collections::HashSet::new();
        for m in MODULES {
            for n in [m.name(), m.fqcn()].iter().chain(m.aliases()) {
                assert!(seen.insert(*n), "two modules answer to '{n}'");
                assert_eq!(find(n).map(|f| f.name()), Some(m.name()));
            }
            assert!(
                m.fqcn().ends_with(&format!(".{}", m.name())),
                "{}: the FQCN should end with the short name",
                m.name()
            );
        }
        assert_eq!(find("ansible.legacy.copy").map(|m| m.name()), Some("copy"));
        // As Ansible's routing does, the builtin namespaces reach every module.
        assert_eq!(
            find("ansible.legacy.docker_container").map(|m| m.name()),
            Some("docker_container")
        );
        assert!(find("copyy").is_none());
    }

    #[test]
    fn typed_schemas_list_their_fields_and_aliases() {
        let names = super::super::docker_container::DockerContainer
            .args()
            .names
            .unwrap_or_default();
        for n in ["name", "image", "ports", "published_ports"] {
            assert!(names.contains(&n), "docker_container schema lacks {n}");
        }
        for m in MODULES {
            // set_fact takes any name; service_facts takes none (as Ansible's).
            if m.name() == "service_facts" {
                assert_eq!(m.args().names, Some(&[][..]));
            } else if m.name() != "set_fact" {
                assert!(
                    m.args().names.is_some_and(|n| !n.is_empty()),
                    "{} declares no argument names",
                    m.name()
                );
            }
        }
    }

    #[test]
    fn pending_modules_are_refused_not_run() {
        for m in PENDING {
            assert!(find(m).is_none(), "{m} is both run and pending");
            assert_eq!(not_yet(m), Some("not supported yet by deployer"));
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("p.yml");
        std::fs::write(
            &path,
            "- hosts: all\n  tasks:\n    - docker_image: {name: x}\n",
        )
        .expect("write playbook");
        let err =
            crate::project::load_playbook(&path, &Registry).expect_err("docker_image is refused");
        assert_eq!(err.loc.line, 3);
        assert_eq!(err.msg, format!("module 'docker_image': {}", NOT_YET[1].1));
        assert_eq!(not_yet("ansible.posix.mount"), None);
        // Modules Ansible has and deployer does not run are "not supported
        // yet"; a name Ansible does not know either stays unknown.
        for known in [
            "ansible.builtin.raw",
            "community.general.snap",
            "ansible.posix.synchronize",
        ] {
            assert!(
                not_yet(known).is_some_and(|w| w.contains("not supported yet")),
                "{known}"
            );
        }
        for runs in [
            "copy",
            "ansible.builtin.ping",
            "community.docker.docker_container",
        ] {
            assert_eq!(not_yet(runs), None, "{runs}");
        }
        for unknown in [
            "pacmna",
            "copyy",
            "community.general.nosuch",
            "acme.tools.x",
        ] {
            assert_eq!(not_yet(unknown), None, "{unknown}");
        }
    }

    #[test]
    fn nearest_names_a_close_module_only() {
        assert_eq!(nearest("copyy"), Some("copy"));
        assert_eq!(
            nearest("ansible.builtin.tempalte"),
            Some("ansible.builtin.template")
        );
        assert_eq!(nearest("colour"), None);
    }

    /// Every module, by its short name and its FQCN, refuses an argument it
    /// does not take when the playbook is loaded (before any host), at the
    /// argument's own file:line:column.
    #[test]
    fn every_module_rejects_an_unknown_argument_at_load_time() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut checked = 0;
        for m in MODULES {
            if m.args().names.is_none() {
                continue; // takes any argument name (set_fact): nothing to reject
            }
            for key in [m.name(), m.fqcn()] {
                let path = dir.path().join(format!("{key}.yml"));
                std::fs::write(
                    &path,
                    format!(
                        "- hosts: all\n  tasks:\n    - {key}:\n        deployer_no_such_argument: 1\n"
                    ),
                )
                .expect("write playbook");
                let err = crate::project::load_playbook(&path, &Registry)
                    .err()
                    .unwrap_or_else(|| panic!("{key}: an unknown argument was accepted"));
                assert_eq!(
                    (err.loc.file.as_path(), err.loc.line, err.loc.col + 1),
                    (path.as_path(), 4, 9),
                    "{key}: {err}"
                );
                assert!(
                    err.msg.starts_with(&format!(
                        "{}: unsupported argument 'deployer_no_such_argument' (supported: ",
                        m.name()
                    )),
                    "{key}: {err}"
                );
                checked += 1;
            }
        }
        assert_eq!(checked, 2 * (MODULES.len() - 1));
    }

    #[test]
    fn the_readme_lists_every_module() {
        let readme = include_str!("../../README.md");
        for m in MODULES {
            assert!(
                readme.contains(&format!("`{}`", m.name()))
                    || readme.contains(&format!("`{}`", m.fqcn())),
                "README.md does not list the module {} ({})",
                m.name(),
                m.fqcn()
            );
        }
    }
}
