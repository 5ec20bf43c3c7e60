//! The command line: parsing and dispatch only. Each subcommand's work, and its
//! exit code (documented in the README), is in its file under `src/commands/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::commands;

#[derive(Parser, Debug)]
#[command(
    name = "deployer",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("DEPLOYER_GIT_REV"), ")"),
    about = "Converge servers from an Ansible-layout project, over SSH, with exact diffs"
)]
pub struct Cli {
    /// More detail on stderr: -v each remote execution and Docker API call
    /// (host, user, exit status, duration), -vv also the scripts' text (secrets masked).
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Colour the status words: auto (when stdout is a terminal and NO_COLOR is unset), always, never.
    #[arg(long = "color", value_enum, default_value = "auto", global = true)]
    pub color: crate::ui::ColorChoice,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Converge the hosts.
    Apply(RunArgs),
    /// Run by `ssh` as its ProxyCommand (deployer's own ssh config says so):
    /// connects to HOST PORT with TCP_NODELAY and passes the socket to ssh.
    #[command(hide = true)]
    SshConnect {
        /// The host name or address ssh was given.
        host: String,
        /// The port.
        port: String,
    },
    /// Dry run: what would change (nothing is changed). Exit 0: no change, 2: changes, 1: error.
    Check(RunArgs),
    /// Compute the plan (check mode) and print it as data (`--format json`, the default, or `markdown`).
    Plan(RunArgs),
    /// Resolve every image the project's container and compose tasks use to its digest
    /// (asked of the registry through each host's Docker engine; a local image without
    /// one by its image ID) and write images.lock, which apply then enforces. Runs the
    /// playbook in check mode: nothing changes on any host. With --tags or --limit the
    /// lock is added to; without, it is replaced.
    Pin(RunArgs),
    /// Show what the loader understood of the inventory.
    Inventory {
        /// Inventory file(s) or directories.
        #[arg(
            short = 'i',
            long = "inventory",
            env = "DEPLOYER_INVENTORY",
            value_delimiter = ','
        )]
        inventory: Vec<PathBuf>,
        /// Print the group tree.
        #[arg(long)]
        graph: bool,
        /// Print one host's variables (secrets masked).
        #[arg(long)]
        host: Option<String>,
        /// Print every group and its hosts as JSON (the default).
        #[arg(long)]
        list: bool,
    },
    /// ansible-vault compatible secrets.
    Vault(crate::vault::cli::VaultArgs),
    /// Check the project without contacting any host. Exit 0: no error-level finding, 1: errors, 2: usage.
    Lint(crate::lint::cli::LintArgs),
    /// The deploy lock on each host: `status`, or `release` a stale one.
    Lock(LockArgs),
    /// The last runs: the local run log and each host's audit log.
    Audit(AuditArgs),
    /// The effective Ansible settings deployer reads (ansible.cfg, ANSIBLE_*) and where each comes from.
    Config,
    /// List each host's releases (what each apply changed), oldest first.
    Releases(ReleaseArgs),
    /// Print a shell completion script: `deployer completions bash > /etc/bash_completion.d/deployer`.
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages (deployer.1 and one per subcommand) into a directory.
    Man {
        /// Directory to write the pages into (created if missing).
        #[arg(long = "out-dir", value_name = "DIR", default_value = ".")]
        out_dir: PathBuf,
    },
    /// Undo the newest release on each host (or every release newer than --to ID):
    /// files byte for byte, containers by image ID. Exit 0 done, 1 refused or failed, 2 --check with changes.
    Rollback {
        #[command(flatten)]
        common: ReleaseArgs,
        /// Roll back to this release id (as `deployer releases` lists them).
        #[arg(long = "to", value_name = "ID")]
        to: Option<String>,
        /// Show what would change; change nothing.
        #[arg(short = 'C', long = "check")]
        check: bool,
        /// Show unified diffs.
        #[arg(short = 'D', long = "diff")]
        diff: bool,
        /// Also restore the backups (databases, volumes) taken during the undone releases,
        /// after the files and containers are rolled back. Refused, changing nothing, when
        /// an undone release has no backup. With --check: what would be restored.
        #[arg(long = "with-data")]
        with_data: bool,
        /// With --with-data: a directory on the hosts where backups are kept (a `dest:` of
        /// the backup modules), searched besides /var/backups/deployer. Repeatable.
        #[arg(long = "backup-dir", value_name = "DIR", requires = "with_data")]
        backup_dirs: Vec<String>,
    },
    /// List the backups kept on each host (id, kind, database or volume, size, sha256, created, release).
    Backups(BackupArgs),
    /// Restore a PostgreSQL backup into its container: checksum first, loaded into a new
    /// database, which replaces the live one only once complete. Without --yes: the plan, exit 2.
    Restore(RestoreArgs),
    /// Refresh staging from production: the newest production backup of a database, restored
    /// into staging's container with an anonymisation SQL file run before it replaces staging's
    /// database. Both inventories are explicit. Without --yes: the plan, exit 2.
    RefreshStaging(RefreshStagingArgs),
}

/// Options of `deployer backups` (and the host selection of `deployer restore`).
#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Inventory file(s) or directories. There is no default, on purpose.
    #[arg(
        short = 'i',
        long = "inventory",
        env = "DEPLOYER_INVENTORY",
        value_delimiter = ','
    )]
    pub inventory: Vec<PathBuf>,
    /// Only these hosts: a host or group name, or a pattern (`web*`, `a:b`, `all:!db`).
    #[arg(short = 'l', long = "limit")]
    pub limit: Option<String>,
    /// Extra variables: key=value, @file.yml, or a JSON/YAML mapping.
    #[arg(short = 'e', long = "extra-vars")]
    pub extra_vars: Vec<String>,
    /// human or json.
    #[arg(long = "format", value_enum)]
    pub format: Option<OutputFormat>,
    /// The backup directory on the hosts (default /var/backups/deployer).
    #[arg(long = "dir", value_name = "DIR")]
    pub dir: Option<String>,
    /// A new SSH connection per host, closed at the end of the run, instead of
    /// reusing one an earlier run left up (for 60 s) and leaving it up for the next.
    #[arg(long = "fresh-connection", env = "DEPLOYER_FRESH_CONNECTION")]
    pub fresh_connection: bool,
    #[command(flatten)]
    pub vault: PasswordArgs,
}

/// Options of `deployer refresh-staging`.
#[derive(Args, Debug)]
pub struct RefreshStagingArgs {
    /// The production inventory (read only: its newest backup is copied). No default, on purpose.
    #[arg(long = "production", value_name = "INV")]
    pub production: PathBuf,
    /// The production host holding the backups (needed when the inventory has several).
    #[arg(long = "production-host", value_name = "HOST")]
    pub production_host: Option<String>,
    /// The staging inventory.
    #[arg(long = "staging", value_name = "INV")]
    pub staging: PathBuf,
    /// The staging host (needed when the inventory has several).
    #[arg(long = "staging-host", value_name = "HOST")]
    pub staging_host: Option<String>,
    /// The database whose newest production backup is restored.
    #[arg(long = "database", value_name = "NAME")]
    pub database: String,
    /// Only backups of this project (as the backup task named it).
    #[arg(long = "project", value_name = "NAME")]
    pub project: Option<String>,
    /// Staging's PostgreSQL container (default: the one the backup was taken from).
    #[arg(long = "container", value_name = "NAME")]
    pub container: Option<String>,
    /// The SQL file run in the restored copy before it replaces staging's database.
    #[arg(long = "anonymise", alias = "anonymize", value_name = "FILE.sql")]
    pub anonymise: PathBuf,
    /// The backup directory on the hosts (default /var/backups/deployer).
    #[arg(long = "dir", value_name = "DIR")]
    pub dir: Option<String>,
    /// Do it (without it: print what would be done, exit 2).
    #[arg(long = "yes")]
    pub yes: bool,
    #[command(flatten)]
    pub vault: PasswordArgs,
}

/// Options of `deployer restore`.
#[derive(Args, Debug)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub common: BackupArgs,
    /// The backup to restore (an id as `deployer backups` lists it).
    #[arg(long = "backup", value_name = "ID")]
    pub backup: String,
    /// Restore into this database instead of the one the backup was taken from.
    #[arg(long = "into", value_name = "NAME")]
    pub into: Option<String>,
    /// Restore into this container instead of the one the backup was taken from.
    #[arg(long = "container", value_name = "NAME")]
    pub container: Option<String>,
    /// Do it (without it: print what would be done, exit 2).
    #[arg(long = "yes")]
    pub yes: bool,
}

/// Options of `deployer releases` and `deployer rollback`.
#[derive(Args, Debug)]
pub struct ReleaseArgs {
    /// Inventory file(s) or directories. There is no default, on purpose.
    #[arg(
        short = 'i',
        long = "inventory",
        env = "DEPLOYER_INVENTORY",
        value_delimiter = ','
    )]
    pub inventory: Vec<PathBuf>,
    /// Only these hosts: a host or group name, or a pattern (`web*`, `a:b`, `all:!db`).
    #[arg(short = 'l', long = "limit")]
    pub limit: Option<String>,
    /// Extra variables: key=value, @file.yml, or a JSON/YAML mapping.
    #[arg(short = 'e', long = "extra-vars")]
    pub extra_vars: Vec<String>,
    /// Releases kept per host (default: the `deployer_keep_releases` variable, else 5).
    #[arg(long = "keep-releases", value_name = "N")]
    pub keep_releases: Option<usize>,
    /// human or json.
    #[arg(long = "format", value_enum)]
    pub format: Option<OutputFormat>,
    /// A new SSH connection per host, closed at the end of the run, instead of
    /// reusing one an earlier run left up (for 60 s) and leaving it up for the next.
    #[arg(long = "fresh-connection", env = "DEPLOYER_FRESH_CONNECTION")]
    pub fresh_connection: bool,
    #[command(flatten)]
    pub vault: PasswordArgs,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// Lines for people (apply/check only).
    Human,
    /// One JSON event per line (apply/check), or the plan as one JSON document (plan).
    Json,
    /// The plan as a pull-request comment body (plan only).
    Markdown,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The playbook to run.
    #[arg(default_value = "playbooks/site.yml")]
    pub playbook: PathBuf,
    /// Inventory file(s) or directories. There is no default, on purpose.
    #[arg(
        short = 'i',
        long = "inventory",
        env = "DEPLOYER_INVENTORY",
        value_delimiter = ','
    )]
    pub inventory: Vec<PathBuf>,
    /// Only these hosts: a host or group name, or a pattern (`web*`, `a:b`, `all:!db`).
    #[arg(short = 'l', long = "limit")]
    pub limit: Option<String>,
    /// Only tasks with one of these tags (comma-separated; `always` tasks run too).
    #[arg(short = 't', long = "tags", value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Skip tasks with one of these tags (comma-separated).
    #[arg(long = "skip-tags", value_delimiter = ',')]
    pub skip_tags: Vec<String>,
    /// Extra variables: key=value, @file.yml, or a JSON/YAML mapping.
    #[arg(short = 'e', long = "extra-vars")]
    pub extra_vars: Vec<String>,
    /// How many hosts are worked on at once (default: forks in ansible.cfg or ANSIBLE_FORKS, else 10).
    #[arg(short = 'f', long = "forks")]
    pub forks: Option<usize>,
    /// Show unified diffs of what changes (or would change).
    #[arg(short = 'D', long = "diff")]
    pub diff: bool,
    /// With apply: run in check mode (same as `deployer check`).
    #[arg(short = 'C', long = "check")]
    pub check: bool,
    /// Output format: human or json for apply/check; json (default) or markdown for plan.
    #[arg(long = "format", value_enum)]
    pub format: Option<OutputFormat>,
    /// Releases kept per host (default: the `deployer_keep_releases` variable, else 5).
    #[arg(long = "keep-releases", value_name = "N")]
    pub keep_releases: Option<usize>,
    /// Do not roll a host back when a deploy gate fails after changes.
    #[arg(long = "no-auto-rollback")]
    pub no_auto_rollback: bool,
    /// A new SSH connection per host, closed at the end of the run, instead of
    /// reusing one an earlier run left up (for 60 s) and leaving it up for the next.
    #[arg(long = "fresh-connection", env = "DEPLOYER_FRESH_CONNECTION")]
    pub fresh_connection: bool,
    #[command(flatten)]
    pub vault: PasswordArgs,
    /// Why this run: kept in the deploy lock and the audit logs.
    #[arg(long = "message", value_name = "TEXT")]
    pub message: Option<String>,
    /// Wait up to this long (e.g. 30s, 5m) for deploy locks held by another run, instead of failing at once.
    #[arg(long = "lock-wait", value_name = "DURATION")]
    pub lock_wait: Option<String>,
}

/// Vault password options for runs (the same as `deployer vault`'s).
#[derive(Args, Debug)]
pub struct PasswordArgs {
    /// Vault password file; if executable, it is run and its stdout is the password.
    #[arg(
        long = "vault-password-file",
        alias = "vault-pass-file",
        value_name = "FILE"
    )]
    pub vault_password_files: Vec<PathBuf>,
    /// Vault identity `label@source`, source being a file, an executable or `prompt`.
    #[arg(long = "vault-id", value_name = "LABEL@SOURCE")]
    pub vault_ids: Vec<String>,
    /// Ask for the vault password.
    #[arg(long = "ask-vault-password", alias = "ask-vault-pass", short = 'J')]
    pub ask_vault_password: bool,
}

/// Which hosts, and how to reach them (as `apply` would).
#[derive(Args, Debug)]
pub struct StateArgs {
    /// Inventory file(s) or directories.
    #[arg(
        short = 'i',
        long = "inventory",
        env = "DEPLOYER_INVENTORY",
        value_delimiter = ','
    )]
    pub inventory: Vec<PathBuf>,
    /// Only these hosts: a host or group name, or a pattern (`web*`, `a:b`, `all:!db`).
    #[arg(short = 'l', long = "limit")]
    pub limit: Option<String>,
    /// How many hosts are worked on at once (default: forks in ansible.cfg or ANSIBLE_FORKS, else 10).
    #[arg(short = 'f', long = "forks")]
    pub forks: Option<usize>,
    /// A new SSH connection per host, closed at the end of the run, instead of
    /// reusing one an earlier run left up (for 60 s) and leaving it up for the next.
    #[arg(long = "fresh-connection", env = "DEPLOYER_FRESH_CONNECTION")]
    pub fresh_connection: bool,
    #[command(flatten)]
    pub vault: PasswordArgs,
}

#[derive(Args, Debug)]
pub struct LockArgs {
    #[command(subcommand)]
    pub action: LockAction,
}

#[derive(Subcommand, Debug)]
pub enum LockAction {
    /// Who holds the deploy lock on each host.
    Status(StateArgs),
    /// Remove a stale lock (a run that died without releasing it), saying whose it was.
    Release {
        #[command(flatten)]
        hosts: StateArgs,
        /// Also when the holder's process still runs on this machine.
        #[arg(long)]
        force: bool,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditFormat {
    Human,
    Json,
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    #[command(flatten)]
    pub hosts: StateArgs,
    /// How many entries of each log.
    #[arg(short = 'n', default_value_t = 10)]
    pub n: usize,
    /// human or json (one JSON object per entry).
    #[arg(long = "format", value_enum, default_value = "human")]
    pub format: AuditFormat,
}

/// Runs the command and returns the process exit code.
pub async fn run(cli: Cli) -> i32 {
    crate::ui::init(cli.verbose, cli.color);
    match cli.command {
        Command::Apply(a) => commands::apply::apply(a).await,
        Command::SshConnect { host, port } => crate::connection::dial::connect(&host, &port),
        Command::Check(a) => commands::apply::check(a).await,
        Command::Plan(a) => commands::apply::plan(a).await,
        Command::Pin(a) => commands::apply::pin(a).await,
        Command::Inventory {
            inventory,
            graph,
            host,
            list,
        } => commands::inventory::show(&inventory, graph, host.as_deref(), list),
        Command::Vault(v) => commands::vault::vault(v),
        Command::Lint(a) => commands::lint::lint(a),
        Command::Config => commands::config(),
        Command::Releases(a) => commands::releases::releases(a).await,
        Command::Rollback {
            common,
            to,
            check,
            diff,
            with_data,
            backup_dirs,
        } => commands::rollback::rollback(common, to, check, diff, with_data, backup_dirs).await,
        Command::Lock(a) => commands::lock::lock(a).await,
        Command::Backups(a) => commands::backups::backups(a).await,
        Command::Restore(a) => commands::backups::restore_cmd(a).await,
        Command::RefreshStaging(a) => commands::backups::refresh_staging(a).await,
        Command::Completions { shell } => commands::docs::completions(shell),
        Command::Man { out_dir } => commands::docs::man_pages(&out_dir),
        Command::Audit(a) => commands::audit::audit(a).await,
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// `deployer SUBCOMMAND --help` describes every option (and positional)
    /// of every subcommand, nested ones included.
    #[test]
    fn every_option_has_help_text() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "deployer", &mut missing);
        assert!(missing.is_empty(), "options without help text: {missing:?}");
    }
}
