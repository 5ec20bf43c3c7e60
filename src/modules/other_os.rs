//! Other operating systems' package modules (`yum`, `dnf`, `pacman`, `zypper`,
//! `pkgng`, `rpm_key`, ...): deployer loads them, so a role written for several
//! operating systems (`import_tasks: setup-RedHat.yml` guarded by `when:`)
//! loads and runs on Debian, but it does not run them. Their arguments are
//! checked at load time against Ansible's own lists (the tables below, from
//! `ansible-doc` of the pinned `ansible` package: options and their aliases;
//! `yum` is routed to `dnf` by ansible-core), and a host that reaches one
//! fails the task: "<module> is not supported yet by deployer (this host's
//! package manager is <ansible_pkg_mgr>)", in check mode too. Never a skip.
//! lint warns about every such task (`module-other-os`).
//!
//! Adding one: a `static` below (name, FQCN, argument names) and its line in
//! [`super::registry::MODULES`].

use serde_json::{Map, Value as Json};

use super::registry::{ArgSchema, Module, ModuleFuture};
use super::{ModuleCtx, ModuleResult};

/// A package module of another operating system: its names and arguments, as data.
pub struct OtherOsModule {
    name: &'static str,
    fqcn: &'static str,
    args: &'static [&'static str],
}

/// Whether a module (short name) is one of these.
pub fn is_other_os(name: &str) -> bool {
    super::registry::find(name).is_some_and(|m| ALL.iter().any(|o| o.name == m.name()))
}

/// Arguments are only checked by name (at load time): the task never runs.
fn any_mapping(j: Json) -> Result<(), String> {
    match j {
        Json::Object(_) | Json::Null => Ok(()),
        other => Err(format!("expected a mapping of arguments, got {other}")),
    }
}

impl Module for OtherOsModule {
    fn name(&self) -> &'static str {
        self.name
    }
    fn fqcn(&self) -> &'static str {
        self.fqcn
    }
    fn args(&self) -> ArgSchema {
        ArgSchema {
            names: Some(self.args),
            parse: any_mapping,
        }
    }
    fn check_combination(&self, _args: &Map<String, Json>) -> Result<(), String> {
        Ok(())
    }
    fn run<'a>(&'a self, _args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        Box::pin(async move {
            let mgr = super::package::fact_or_probe(
                ctx,
                "ansible_pkg_mgr",
                super::package::PKG_MGR_PROBE,
            )
            .await?;
            Ok(ModuleResult::failed(format!(
                "{} is not supported yet by deployer (this host's package manager is {mgr})",
                self.name
            )))
        })
    }
}

/// Every module of this file, for [`is_other_os`].
static ALL: &[&OtherOsModule] = &[
    &YUM,
    &DNF,
    &DNF5,
    &YUM_REPOSITORY,
    &RPM_KEY,
    &PACMAN,
    &PACMAN_KEY,
    &ZYPPER,
    &ZYPPER_REPOSITORY,
    &PKGNG,
    &PKG5,
    &OPENBSD_PKG,
    &APK,
    &HOMEBREW,
    &HOMEBREW_CASK,
    &HOMEBREW_TAP,
    &PORTAGE,
    &PKGIN,
    &XBPS,
];

/// `dnf`'s arguments; `yum` takes the same, since ansible-core routes it to `dnf`.
const DNF_ARGS: &[&str] = &[
    "allow_downgrade",
    "allowerasing",
    "autoremove",
    "best",
    "bugfix",
    "cacheonly",
    "conf_file",
    "disable_excludes",
    "disable_gpg_check",
    "disable_plugin",
    "disablerepo",
    "download_dir",
    "download_only",
    "enable_plugin",
    "enablerepo",
    "exclude",
    "expire-cache",
    "install_repoquery",
    "install_weak_deps",
    "installroot",
    "list",
    "lock_timeout",
    "name",
    "nobest",
    "pkg",
    "releasever",
    "security",
    "skip_broken",
    "sslverify",
    "state",
    "update_cache",
    "update_only",
    "use_backend",
    "validate_certs",
];

pub static YUM: OtherOsModule = OtherOsModule {
    name: "yum",
    fqcn: "ansible.builtin.yum",
    args: DNF_ARGS,
};
pub static DNF: OtherOsModule = OtherOsModule {
    name: "dnf",
    fqcn: "ansible.builtin.dnf",
    args: DNF_ARGS,
};
pub static DNF5: OtherOsModule = OtherOsModule {
    name: "dnf5",
    fqcn: "ansible.builtin.dnf5",
    args: &[
        "allow_downgrade",
        "allowerasing",
        "auto_install_module_deps",
        "autoremove",
        "best",
        "bugfix",
        "cacheonly",
        "conf_file",
        "disable_excludes",
        "disable_gpg_check",
        "disable_plugin",
        "disablerepo",
        "download_dir",
        "download_only",
        "enable_plugin",
        "enablerepo",
        "exclude",
        "expire-cache",
        "install_repoquery",
        "install_weak_deps",
        "installroot",
        "list",
        "lock_timeout",
        "name",
        "nobest",
        "pkg",
        "releasever",
        "security",
        "skip_broken",
        "sslverify",
        "state",
        "update_cache",
        "update_only",
        "validate_certs",
    ],
};
pub static YUM_REPOSITORY: OtherOsModule = OtherOsModule {
    name: "yum_repository",
    fqcn: "ansible.builtin.yum_repository",
    args: &[
        "async",
        "attr",
        "attributes",
        "bandwidth",
        "baseurl",
        "ca_cert",
        "client_cert",
        "client_key",
        "cost",
        "countme",
        "deltarpm_metadata_percentage",
        "deltarpm_percentage",
        "description",
        "enabled",
        "enablegroups",
        "exclude",
        "excludepkgs",
        "failovermethod",
        "file",
        "gpgcakey",
        "gpgcheck",
        "gpgkey",
        "group",
        "http_caching",
        "include",
        "includepkgs",
        "ip_resolve",
        "keepalive",
        "keepcache",
        "metadata_expire",
        "metadata_expire_filter",
        "metalink",
        "mirrorlist",
        "mirrorlist_expire",
        "mode",
        "module_hotfixes",
        "name",
        "owner",
        "password",
        "priority",
        "protect",
        "proxy",
        "proxy_password",
        "proxy_username",
        "repo_gpgcheck",
        "reposdir",
        "retries",
        "s3_enabled",
        "selevel",
        "serole",
        "setype",
        "seuser",
        "skip_if_unavailable",
        "ssl_check_cert_permissions",
        "sslcacert",
        "sslclientcert",
        "sslclientkey",
        "sslverify",
        "state",
        "throttle",
        "timeout",
        "ui_repoid_vars",
        "unsafe_writes",
        "username",
        "validate_certs",
    ],
};
pub static RPM_KEY: OtherOsModule = OtherOsModule {
    name: "rpm_key",
    fqcn: "ansible.builtin.rpm_key",
    args: &["fingerprint", "key", "state", "validate_certs"],
};
pub static PACMAN: OtherOsModule = OtherOsModule {
    name: "pacman",
    fqcn: "community.general.pacman",
    args: &[
        "executable",
        "extra_args",
        "force",
        "name",
        "package",
        "pkg",
        "reason",
        "reason_for",
        "remove_nosave",
        "state",
        "update_cache",
        "update_cache_extra_args",
        "upgrade",
        "upgrade_extra_args",
    ],
};
pub static PACMAN_KEY: OtherOsModule = OtherOsModule {
    name: "pacman_key",
    fqcn: "community.general.pacman_key",
    args: &[
        "data",
        "ensure_trusted",
        "file",
        "force_update",
        "id",
        "keyring",
        "keyserver",
        "state",
        "url",
        "verify",
    ],
};
pub static ZYPPER: OtherOsModule = OtherOsModule {
    name: "zypper",
    fqcn: "community.general.zypper",
    args: &[
        "allow_vendor_change",
        "auto_import_keys",
        "clean_deps",
        "disable_gpg_check",
        "disable_recommends",
        "extra_args",
        "extra_args_precommand",
        "force",
        "force_resolution",
        "name",
        "oldpackage",
        "pkg",
        "quiet",
        "refresh",
        "replacefiles",
        "simple_errors",
        "skip_post_errors",
        "state",
        "type",
        "update_cache",
    ],
};
pub static ZYPPER_REPOSITORY: OtherOsModule = OtherOsModule {
    name: "zypper_repository",
    fqcn: "community.general.zypper_repository",
    args: &[
        "auto_import_keys",
        "autorefresh",
        "description",
        "disable_gpg_check",
        "enabled",
        "name",
        "overwrite_multiple",
        "priority",
        "refresh",
        "repo",
        "runrefresh",
        "state",
    ],
};
pub static PKGNG: OtherOsModule = OtherOsModule {
    name: "pkgng",
    fqcn: "community.general.pkgng",
    args: &[
        "annotation",
        "autoremove",
        "cached",
        "chroot",
        "ignore_osver",
        "jail",
        "name",
        "pkg",
        "pkgsite",
        "rootdir",
        "state",
        "use_globs",
    ],
};
pub static PKG5: OtherOsModule = OtherOsModule {
    name: "pkg5",
    fqcn: "community.general.pkg5",
    args: &[
        "accept",
        "accept_licences",
        "accept_licenses",
        "be_name",
        "name",
        "refresh",
        "state",
        "verbose",
    ],
};
pub static OPENBSD_PKG: OtherOsModule = OtherOsModule {
    name: "openbsd_pkg",
    fqcn: "community.general.openbsd_pkg",
    args: &[
        "autoremove",
        "build",
        "clean",
        "name",
        "ports_dir",
        "quick",
        "snapshot",
        "state",
    ],
};
pub static APK: OtherOsModule = OtherOsModule {
    name: "apk",
    fqcn: "community.general.apk",
    args: &[
        "available",
        "name",
        "no_cache",
        "repository",
        "state",
        "update_cache",
        "upgrade",
        "world",
    ],
};
pub static HOMEBREW: OtherOsModule = OtherOsModule {
    name: "homebrew",
    fqcn: "community.general.homebrew",
    args: &[
        "force_formula",
        "formula",
        "install_options",
        "name",
        "options",
        "package",
        "path",
        "pkg",
        "state",
        "update_homebrew",
        "upgrade",
        "upgrade_all",
        "upgrade_options",
    ],
};
pub static HOMEBREW_CASK: OtherOsModule = OtherOsModule {
    name: "homebrew_cask",
    fqcn: "community.general.homebrew_cask",
    args: &[
        "accept_external_apps",
        "cask",
        "greedy",
        "install_options",
        "name",
        "options",
        "package",
        "path",
        "pkg",
        "state",
        "sudo_password",
        "update_homebrew",
        "upgrade",
        "upgrade_all",
    ],
};
pub static HOMEBREW_TAP: OtherOsModule = OtherOsModule {
    name: "homebrew_tap",
    fqcn: "community.general.homebrew_tap",
    args: &["name", "path", "state", "tap", "url"],
};
pub static PORTAGE: OtherOsModule = OtherOsModule {
    name: "portage",
    fqcn: "community.general.portage",
    args: &[
        "backtrack",
        "changed_use",
        "deep",
        "depclean",
        "getbinpkg",
        "getbinpkgonly",
        "jobs",
        "keepgoing",
        "loadavg",
        "name",
        "newuse",
        "nodeps",
        "noreplace",
        "oneshot",
        "onlydeps",
        "package",
        "quiet",
        "quietbuild",
        "quietfail",
        "select",
        "state",
        "sync",
        "update",
        "usepkg",
        "usepkgonly",
        "verbose",
        "withbdeps",
    ],
};
pub static PKGIN: OtherOsModule = OtherOsModule {
    name: "pkgin",
    fqcn: "community.general.pkgin",
    args: &[
        "clean",
        "force",
        "full_upgrade",
        "name",
        "pkg",
        "state",
        "update_cache",
        "upgrade",
    ],
};
pub static XBPS: OtherOsModule = OtherOsModule {
    name: "xbps",
    fqcn: "community.general.xbps",
    args: &[
        "accept_pubkey",
        "name",
        "package",
        "pkg",
        "recurse",
        "repositories",
        "root",
        "state",
        "update_cache",
        "upgrade",
        "upgrade_xbps",
    ],
};

#[cfg(test)]
mod tests {
    use super::super::registry::{MODULES, Registry, find};
    use super::*;

    #[test]
    fn every_module_is_registered_under_its_names() {
        for m in ALL {
            assert!(
                MODULES.iter().any(|r| r.name() == m.name),
                "{} is missing from MODULES",
                m.name
            );
            for n in [m.name, m.fqcn] {
                assert_eq!(find(n).map(|f| f.name()), Some(m.name), "{n}");
                assert!(is_other_os(n), "{n}");
            }
            assert!(m.args.windows(2).all(|w| w[0] < w[1]), "{}: sorted", m.name);
        }
        assert!(!is_other_os("apt") && !is_other_os("package"));
    }

    #[test]
    fn a_role_for_several_systems_loads_and_a_misspelt_argument_does_not() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ok = dir.path().join("ok.yml");
        std::fs::write(
            &ok,
            "- hosts: all\n  tasks:\n    - yum: {name: x, state: present, enablerepo: epel}\n      when: false\n    - community.general.pacman: {name: x, update_cache: true}\n    - ansible.builtin.rpm_key: {key: k}\n    - pkgng: {name: x}\n",
        )
        .expect("write playbook");
        crate::project::load_playbook(&ok, &Registry).expect("loads");
        let bad = dir.path().join("bad.yml");
        std::fs::write(
            &bad,
            "- hosts: all\n  tasks:\n    - ansible.builtin.dnf:\n        name: x\n        stat: present\n",
        )
        .expect("write playbook");
        let err = crate::project::load_playbook(&bad, &Registry).expect_err("a misspelt argument");
        assert_eq!((err.loc.line, err.loc.col + 1), (5, 9), "{err}");
        assert!(
            err.msg
                .starts_with("dnf: unsupported argument 'stat' (did you mean 'state'? supported: "),
            "{err}"
        );
    }
}
