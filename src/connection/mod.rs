//! Running shell scripts on a target: over one multiplexed OpenSSH master per
//! host (the system `ssh`, so `~/.ssh/config`, agents and ProxyJump work), or
//! locally for `delegate_to: localhost`. Every SSH session is counted (a
//! remote shell that runs many scripts counts once): the count is how we
//! hold ourselves to "one session per host".

pub mod dial;
pub mod docker;
pub mod forward;
pub mod host_keys;
pub(crate) mod mux;
pub(crate) mod remote_shell;
pub mod stream;
pub mod warm;
pub mod write;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};

use openssh::{KnownHosts, Session, SessionBuilder};

pub use crate::shell::quote as shell_quote;
use tokio::io::AsyncWriteExt;

#[derive(Debug, Clone)]
pub struct SshTarget {
    pub host: String,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub key_file: Option<PathBuf>,
    pub known_hosts_file: Option<PathBuf>,
    pub config_file: Option<PathBuf>,
    pub strict_host_key_checking: KnownHosts,
}

#[derive(Debug, Clone)]
pub struct Become {
    pub user: String,
    pub password: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Output {
    pub rc: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("host {host} is unreachable: {reason}")]
    Unreachable { host: String, reason: String },
    #[error("host {host}: running a command failed: {reason}")]
    Exec { host: String, reason: String },
    #[error("host {host}: {reason}")]
    Config { host: String, reason: String },
    #[error("host {host}: Docker: {reason}")]
    Docker { host: String, reason: String },
}

pub enum Transport {
    /// Shared with the Docker bridges (`docker.rs`), which open sessions of their own.
    Ssh(std::sync::Arc<Session>),
    Local,
}

/// The first script of a connection, sent when it is ready (see
/// [`Connection::connect`]); a dropped sender sends nothing.
/// The first script a connection runs, built while it connects; shared, so a
/// warm master that turns out unusable hands it on to the new master.
pub type FirstScript = futures::future::Shared<tokio::sync::oneshot::Receiver<String>>;

pub struct Connection {
    pub name: String,
    transport: Transport,
    executions: AtomicUsize,
    docker: tokio::sync::Mutex<Vec<docker::DockerTunnel>>,
    /// Kept to open a fresh connection (`confirm_fresh`).
    target: Option<SshTarget>,
    /// deployer's ssh config file (see `host_keys`), removed when the connection goes.
    _ssh_config: Option<tempfile::TempDir>,
    /// Idle remote shells (`remote_shell`), at most one per kind.
    shells: std::sync::Mutex<Vec<remote_shell::RemoteShell>>,
    /// The master stays up after the run for the next one (`warm`).
    warm: bool,
    /// The `ssh` process that is the master and carries the first shell
    /// (`remote_shell::RemoteShell::start_master`); `None` for a master
    /// started on its own or reused.
    master: std::sync::Mutex<Option<remote_shell::MasterProcess>>,
    /// Whether SELinux is enabled on the host, once asked (`files::selinux_context_args`).
    pub selinux_enabled: tokio::sync::OnceCell<bool>,
}

impl Connection {
    /// A new connection of its own (a new master, closed at the end).
    /// `first` is who the first script runs as: its shell is the master's
    /// own session (see [`Connection::open`]).
    ///
    /// `first_script`, when given, brings the script the caller runs first
    /// (as `first`), built while `ssh` connects: on a new master it is sent
    /// before the shell is ready, so the connection and that script cost one
    /// round trip fewer (see `remote_shell::RemoteShell::start_master`). The
    /// caller must run that script first, with [`Connection::run_script`].
    pub async fn connect(
        name: &str,
        target: &SshTarget,
        first: Option<&Become>,
        first_script: Option<FirstScript>,
    ) -> Result<Connection, ConnectionError> {
        Self::open(name, target, None, first, first_script).await
    }

    /// A connection that uses a warm master left by an earlier run to the
    /// same target with the same options, or starts one that stays up for
    /// [`warm::IDLE_SECS`] after this run (see `warm`). `first` is who the
    /// first script runs as: its shell is started at once, which also proves
    /// a reused master still reaches the host (else a new master is made).
    /// The note says why warm connections could not be used, when so.
    /// `first_script` is as in [`Connection::connect`]: on a reused master it
    /// goes out right after the shell's start line, before the shell says it
    /// is ready (one round trip fewer). If that shell does not answer in
    /// time, the script goes to the next master too; the shell given up on
    /// may have run it, which is harmless: it only reads, and takes the lock
    /// under this run's id (found held by this run, the lock is this run's).
    pub async fn connect_warm(
        name: &str,
        target: &SshTarget,
        first: Option<&Become>,
        first_script: Option<FirstScript>,
    ) -> Result<(Connection, Option<String>), ConnectionError> {
        let dir = match warm::target_dir(
            target,
            &host_keys::wrapper_config(target.config_file.as_deref(), &target.host),
        ) {
            Ok(d) => d,
            Err(why) => {
                let c = Self::open(name, target, None, first, first_script).await?;
                return Ok((c, Some(format!("{name}: no warm ssh connection: {why}"))));
            }
        };
        let key = remote_shell::ShellKey::for_become(first);
        for (ctl, log) in warm::candidates(&dir) {
            // A master listens on its socket (a stale one refuses): checked by
            // connecting to it, not with an `ssh -O check` process. A master
            // that accepts but does not answer fails the probe below.
            if std::os::unix::net::UnixStream::connect(&ctl).is_err() {
                warm::discard(&ctl);
                continue;
            }
            let session =
                Session::resume(ctl.clone().into_boxed_path(), Some(log.into_boxed_path()));
            let session = std::sync::Arc::new(session);
            let conn = |shells: Vec<remote_shell::RemoteShell>| Connection {
                name: name.to_string(),
                transport: Transport::Ssh(session.clone()),
                executions: AtomicUsize::new(1),
                docker: Default::default(),
                target: Some(target.clone()),
                _ssh_config: None,
                shells: std::sync::Mutex::new(shells),
                warm: true,
                master: Default::default(),
                selinux_enabled: Default::default(),
            };
            // A first script as another user gets its own execution: the
            // probe is then a login shell, kept for later scripts.
            let (probe_key, probe_become, early) = match &key {
                Some(k) => (k.clone(), first, first_script.clone()),
                None => (remote_shell::ShellKey::Login, None, None),
            };
            match remote_shell::RemoteShell::start(
                name,
                session.clone(),
                probe_key,
                probe_become,
                Some(warm::PROBE),
                early,
            )
            .await
            {
                Ok(remote_shell::Started::Ready(sh)) => return Ok((conn(vec![*sh]), None)),
                // The host answered (sudo refused, say): the master is fine;
                // the first script starts its shell again and reports why.
                Ok(remote_shell::Started::Exited(_)) => return Ok((conn(Vec::new()), None)),
                Err(_) => {
                    drop(session);
                    kill_master(&ctl).await;
                }
            }
        }
        let mut c = Self::open(name, target, Some(&dir), first, first_script).await?;
        c.warm = true;
        if let Transport::Ssh(s) = &c.transport
            && let Some(d) = s.control_socket().parent()
        {
            // openssh makes the master's directory with the umask's mode;
            // only a private one is reused.
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700));
        }
        Ok((c, None))
    }

    /// A new master. Its first session is the shell `first` runs in, in
    /// the same `ssh` process (`remote_shell::RemoteShell::start_master`):
    /// one process, one authentication, one session, and no waiting for a
    /// control socket before the first script. When that shell cannot start
    /// (sudo refused, say), a master of its own is started instead and the
    /// first script reports why, as before.
    async fn open(
        name: &str,
        target: &SshTarget,
        warm_dir: Option<&std::path::Path>,
        first: Option<&Become>,
        first_script: Option<FirstScript>,
    ) -> Result<Connection, ConnectionError> {
        // deployer's own config (KnownHostsCommand none, then the user's):
        // see `host_keys`. Kept in a private directory for the session's life
        // (a fresh connection reads it again).
        let config_dir = tempfile::Builder::new()
            .prefix("deployer-ssh-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir()
            .map_err(|e| ConnectionError::Config {
                host: name.to_string(),
                reason: format!("cannot make a private directory for the ssh config: {e}"),
            })?;
        let config = config_dir.path().join("config");
        std::fs::write(
            &config,
            host_keys::wrapper_config(target.config_file.as_deref(), &target.host),
        )
        .map_err(|e| ConnectionError::Config {
            host: name.to_string(),
            reason: format!("cannot write {}: {e}", config.display()),
        })?;
        // The master's socket and log: in the warm directory (kept for the
        // next run), else beside the config (gone with it).
        let master_dir = match warm_dir {
            Some(d) => tempfile::Builder::new()
                .prefix(".ssh-connection")
                .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .tempdir_in(d)
                .map_err(|e| ConnectionError::Config {
                    host: name.to_string(),
                    reason: format!("cannot make a directory in {}: {e}", d.display()),
                })?
                .keep(),
            None => config_dir.path().to_path_buf(),
        };
        let ctl = master_dir.join("master");
        let log = master_dir.join("log");
        let mut ssh = tokio::process::Command::new("ssh");
        // Not killed when dropped: at the end of a run it is left to finish
        // closing on its own (`Connection::close`); dropped earlier, its
        // shell's input ends and with it the session.
        ssh.kill_on_drop(false)
            .arg("-E")
            .arg(&log)
            .arg("-S")
            .arg(&ctl)
            .arg("-M")
            .arg("-T")
            .args(["-o", "BatchMode=yes", "-o"])
            .arg(match target.strict_host_key_checking {
                KnownHosts::Strict => "StrictHostKeyChecking=yes",
                KnownHosts::Add => "StrictHostKeyChecking=accept-new",
                KnownHosts::Accept => "StrictHostKeyChecking=no",
            })
            .arg("-o")
            .arg(format!("ConnectTimeout={}", dial::CONNECT_TIMEOUT_SECS))
            .args(["-o", "ServerAliveInterval=30", "-o"])
            .arg(match warm_dir {
                Some(_) => format!("ControlPersist={}s", warm::IDLE_SECS),
                None => "ControlPersist=no".to_string(),
            });
        if let Some(u) = &target.user {
            ssh.arg("-l").arg(u);
        }
        if let Some(p) = target.port {
            ssh.arg("-p").arg(p.to_string());
        }
        if let Some(k) = &target.key_file {
            ssh.args(["-o", "IdentitiesOnly=yes", "-i"]).arg(k);
        }
        if let Some(k) = &target.known_hosts_file {
            let mut o = std::ffi::OsString::from("UserKnownHostsFile=");
            o.push(k);
            ssh.arg("-o").arg(o);
        }
        ssh.arg("-F").arg(&config).arg("--").arg(&target.host);
        // The first script goes to this shell only when it may run there
        // (as the login user or root): else it is an execution of its own.
        let (key, first_script) = match remote_shell::ShellKey::for_become(first) {
            Some(k) => (k, first_script),
            None => (remote_shell::ShellKey::Login, None),
        };
        let shell_become = match key {
            remote_shell::ShellKey::Login => None,
            remote_shell::ShellKey::Root { .. } => first,
        };
        let started = remote_shell::RemoteShell::start_master(
            name,
            ssh,
            &log,
            key,
            shell_become,
            first_script,
        )
        .await;
        let (shell, master) = match started {
            Ok((remote_shell::Started::Ready(sh), Some(m))) => (*sh, m),
            Ok(_) => {
                if warm_dir.is_some() {
                    let _ = std::fs::remove_dir_all(&master_dir);
                }
                return Self::open_master(name, target, warm_dir, config_dir).await;
            }
            Err(e) => {
                if warm_dir.is_some() {
                    let _ = std::fs::remove_dir_all(&master_dir);
                }
                return Err(e);
            }
        };
        let session = Session::resume(ctl.into_boxed_path(), Some(log.into_boxed_path()));
        Ok(Connection {
            name: name.to_string(),
            transport: Transport::Ssh(std::sync::Arc::new(session)),
            executions: AtomicUsize::new(1),
            docker: Default::default(),
            target: Some(target.clone()),
            _ssh_config: Some(config_dir),
            shells: std::sync::Mutex::new(vec![shell]),
            warm: false,
            master: std::sync::Mutex::new(Some(master)),
            selinux_enabled: Default::default(),
        })
    }

    /// A master on its own (`ssh -M -f -N`), its sessions opened later.
    async fn open_master(
        name: &str,
        target: &SshTarget,
        warm_dir: Option<&std::path::Path>,
        config_dir: tempfile::TempDir,
    ) -> Result<Connection, ConnectionError> {
        let mut b = SessionBuilder::default();
        b.known_hosts_check(target.strict_host_key_checking.clone());
        b.connect_timeout(std::time::Duration::from_secs(15));
        b.server_alive_interval(std::time::Duration::from_secs(30));
        if let Some(dir) = warm_dir {
            b.control_directory(dir);
            if let Some(idle) = std::num::NonZeroUsize::new(warm::IDLE_SECS) {
                b.control_persist(openssh::ControlPersist::IdleFor(idle));
            }
        }
        if let Some(u) = &target.user {
            b.user(u.clone());
        }
        if let Some(p) = target.port {
            b.port(p);
        }
        if let Some(k) = &target.key_file {
            b.keyfile(k);
        }
        if let Some(k) = &target.known_hosts_file {
            b.user_known_hosts_file(k);
        }
        b.config_file(config_dir.path().join("config"));
        let session = b
            .connect(&target.host)
            .await
            .map_err(|e| ConnectionError::Unreachable {
                host: name.to_string(),
                reason: error_chain(&e),
            })?;
        Ok(Connection {
            name: name.to_string(),
            transport: Transport::Ssh(std::sync::Arc::new(session)),
            executions: AtomicUsize::new(0),
            docker: Default::default(),
            target: Some(target.clone()),
            _ssh_config: Some(config_dir),
            shells: Default::default(),
            warm: false,
            master: Default::default(),
            selinux_enabled: Default::default(),
        })
    }

    pub fn local(name: &str) -> Connection {
        Connection {
            name: name.to_string(),
            transport: Transport::Local,
            executions: AtomicUsize::new(0),
            docker: Default::default(),
            target: None,
            _ssh_config: None,
            shells: Default::default(),
            warm: false,
            master: Default::default(),
            selinux_enabled: Default::default(),
        }
    }

    /// Proves the host still accepts a NEW SSH connection: a separate master
    /// (its own TCP connection and authentication), not this multiplexed one,
    /// which can outlive a broken sshd or firewall (deploy-rs issue #106).
    /// Used after an automatic rollback.
    pub async fn confirm_fresh(&self) -> Result<(), ConnectionError> {
        let Some(target) = &self.target else {
            return Ok(());
        };
        let fresh = Connection::connect(&self.name, target, None, None).await?;
        let out = fresh.run_script("exit 0", None).await;
        fresh.close().await;
        match out {
            Ok(o) if o.rc == 0 => Ok(()),
            Ok(o) => Err(ConnectionError::Exec {
                host: self.name.clone(),
                reason: format!("a fresh connection ran `exit 0` with rc={}", o.rc),
            }),
            Err(e) => Err(e),
        }
    }

    /// `meta: reset_connection`: a new connection to the same target, with a
    /// new master (its own TCP connection and login), so that the login's
    /// groups and limits are read afresh, as Ansible's reset does; the
    /// executions counted so far carry over. A warm master this connection
    /// used is no longer offered to later runs (its running sessions go on).
    /// A local connection has nothing to reset: None.
    pub async fn reset(&self) -> Result<Option<Connection>, ConnectionError> {
        let Some(target) = &self.target else {
            return Ok(None);
        };
        if self.warm
            && let Transport::Ssh(s) = &self.transport
        {
            warm::discard(s.control_socket());
        }
        let fresh = Connection::connect(&self.name, target, None, None).await?;
        fresh
            .executions
            .fetch_add(self.executions(), Ordering::Relaxed);
        Ok(Some(fresh))
    }

    pub fn executions(&self) -> usize {
        self.executions.load(Ordering::Relaxed)
    }

    pub fn is_local(&self) -> bool {
        matches!(self.transport, Transport::Local)
    }

    /// Runs a POSIX shell script (read by `sh -s` from stdin), as the become
    /// user when given. Over SSH, scripts as the login user or as root go
    /// through the host's remote shell (`remote_shell`: one SSH session for
    /// all of them); a script as another user is an SSH session of its own.
    /// [`Connection::executions`] counts SSH sessions. Under `-v` each script
    /// is logged (host, user, exit status, duration, its start), under `-vv`
    /// with its text (see [`crate::ui`]).
    pub async fn run_script(
        &self,
        script: &str,
        become_: Option<&Become>,
    ) -> Result<Output, ConnectionError> {
        let started = std::time::Instant::now();
        let user = become_.map(|b| b.user.as_str()).unwrap_or("(login user)");
        tracing::trace!(host = %self.name, user = %user, "script:\n{}", crate::ui::script_for_log(script));
        let result = self.run_script_once(script, become_).await;
        let ms = started.elapsed().as_millis();
        match &result {
            Ok(out) => tracing::debug!(
                host = %self.name, user = %user, rc = out.rc, ms,
                "remote execution: {}", crate::ui::script_summary(script)
            ),
            Err(e) => tracing::debug!(
                host = %self.name, user = %user, ms,
                "remote execution failed: {}: {}", crate::ui::script_summary(script),
                crate::secrets::mask(&e.to_string())
            ),
        }
        result
    }

    async fn run_script_once(
        &self,
        script: &str,
        become_: Option<&Become>,
    ) -> Result<Output, ConnectionError> {
        if let (Transport::Ssh(session), Some(key)) =
            (&self.transport, remote_shell::ShellKey::for_become(become_))
        {
            return self.run_in_shell(session, key, script, become_).await;
        }
        self.executions.fetch_add(1, Ordering::Relaxed);
        let mut input = Vec::new();
        let program = match become_ {
            None => "/bin/sh -s".to_string(),
            Some(b) => {
                let user = shell_quote(&b.user);
                match &b.password {
                    None => format!("sudo -n -H -u {user} -- /bin/sh -s"),
                    Some(pw) => {
                        input.extend_from_slice(pw.as_bytes());
                        input.push(b'\n');
                        format!("sudo -S -p '' -H -u {user} -- /bin/sh -s")
                    }
                }
            }
        };
        input.extend_from_slice(script.as_bytes());
        let exec_err = |e: String| ConnectionError::Exec {
            host: self.name.clone(),
            reason: e,
        };
        let out = match &self.transport {
            Transport::Ssh(session) => {
                let mut child = session
                    .raw_command(&program)
                    .stdin(openssh::Stdio::piped())
                    .stdout(openssh::Stdio::piped())
                    .stderr(openssh::Stdio::piped())
                    .spawn()
                    .await
                    .map_err(|e| exec_err(error_chain(&e)))?;
                if let Some(mut stdin) = child.stdin().take() {
                    stdin
                        .write_all(&input)
                        .await
                        .map_err(|e| exec_err(e.to_string()))?;
                    stdin.shutdown().await.ok();
                }
                let o = child
                    .wait_with_output()
                    .await
                    .map_err(|e| exec_err(error_chain(&e)))?;
                // ssh exits 255 when the connection itself failed.
                if o.status.code() == Some(255) && o.stdout.is_empty() {
                    return Err(ConnectionError::Unreachable {
                        host: self.name.clone(),
                        reason: crate::secrets::mask(&String::from_utf8_lossy(&o.stderr)),
                    });
                }
                Output {
                    rc: o.status.code().unwrap_or(-1),
                    stdout: o.stdout,
                    stderr: o.stderr,
                }
            }
            Transport::Local => {
                let mut parts = program.split(' ');
                let cmd = parts.next().unwrap_or("/bin/sh");
                let mut child = tokio::process::Command::new(cmd)
                    .args(parts)
                    // Set by the remote shell only: never taken from our own environment.
                    .env_remove("DEPLOYER_UID")
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(|e| exec_err(e.to_string()))?;
                if let Some(mut stdin) = child.stdin.take() {
                    stdin
                        .write_all(&input)
                        .await
                        .map_err(|e| exec_err(e.to_string()))?;
                    drop(stdin);
                }
                let o = child
                    .wait_with_output()
                    .await
                    .map_err(|e| exec_err(e.to_string()))?;
                Output {
                    rc: o.status.code().unwrap_or(-1),
                    stdout: o.stdout,
                    stderr: o.stderr,
                }
            }
        };
        Ok(out)
    }

    /// Runs a script in the host's shell for `key`, starting one when none
    /// is idle (one remote execution: its SSH session). A shell that failed
    /// or whose script was cancelled is dropped, never reused.
    async fn run_in_shell(
        &self,
        session: &std::sync::Arc<Session>,
        key: remote_shell::ShellKey,
        script: &str,
        become_: Option<&Become>,
    ) -> Result<Output, ConnectionError> {
        let mut shell = match self.take_shell(&key) {
            Some(s) => s,
            None => {
                self.executions.fetch_add(1, Ordering::Relaxed);
                match remote_shell::RemoteShell::start(
                    &self.name,
                    session.clone(),
                    key,
                    become_,
                    None,
                    None,
                )
                .await?
                {
                    remote_shell::Started::Ready(s) => *s,
                    remote_shell::Started::Exited(out) => return Ok(out),
                }
            }
        };
        let out = shell.run(&self.name, script).await?;
        self.put_shell(shell);
        Ok(out)
    }

    /// An idle shell that can run as `key`: its own kind, or a login shell
    /// that runs as root for root.
    fn take_shell(&self, key: &remote_shell::ShellKey) -> Option<remote_shell::RemoteShell> {
        let mut shells = self.shells.lock().unwrap_or_else(|e| e.into_inner());
        let i = shells.iter().position(|s| &s.key == key).or_else(|| {
            matches!(key, remote_shell::ShellKey::Root { .. })
                .then(|| {
                    shells
                        .iter()
                        .position(|s| s.key == remote_shell::ShellKey::Login && s.uid == 0)
                })
                .flatten()
        })?;
        Some(shells.swap_remove(i))
    }

    fn put_shell(&self, shell: remote_shell::RemoteShell) {
        let mut shells = self.shells.lock().unwrap_or_else(|e| e.into_inner());
        // Two scripts ran at once and each started a shell: keep one.
        if !shells.iter().any(|s| s.key == shell.key) {
            shells.push(shell);
        }
    }

    pub async fn close(self) {
        // The Docker bridges hold the session too: stop them first.
        for t in self.docker.into_inner() {
            t.shutdown().await;
        }
        let shells = std::mem::take(&mut *self.shells.lock().unwrap_or_else(|e| e.into_inner()));
        futures::future::join_all(shells.into_iter().map(remote_shell::RemoteShell::close)).await;
        let master = self.master.into_inner().unwrap_or_else(|e| e.into_inner());
        if let Some(remote_shell::MasterProcess { child, keep }) = master {
            // End of its shell's input: the shell removes its directory and
            // exits, then the master (every other session is closed above).
            // A warm one was forked off by `ssh` and stays (ControlPersist
            // ends it). Not waited for: the run's last script (the lock's
            // release) has answered, and the few milliseconds `ssh` takes to
            // close the connection are no part of the run; tokio reaps it.
            drop(keep);
            drop(child);
            return;
        }
        if let Transport::Ssh(s) = self.transport
            && let Ok(s) = std::sync::Arc::try_unwrap(s)
        {
            if self.warm {
                // Left running for the next run (ControlPersist ends it).
                let _ = s.detach();
            } else {
                let _ = s.close().await;
            }
        }
    }

    /// Closes every master at once: one after the other, 20 hosts took ~1 s
    /// (each `ssh -O exit` waits for its master to go).
    pub async fn close_all(conns: Vec<Connection>) {
        futures::future::join_all(conns.into_iter().map(Connection::close)).await;
    }
}

/// Tells a master that did not answer to exit, and forgets it.
async fn kill_master(ctl: &std::path::Path) {
    let _ = tokio::process::Command::new("ssh")
        .arg("-S")
        .arg(ctl)
        .args(["-o", "BatchMode=yes", "-O", "exit", "none"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    warm::discard(ctl);
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_scripts_run_and_are_counted() {
        let c = Connection::local("localhost");
        let o = c
            .run_script("echo hi; echo err >&2; exit 3", None)
            .await
            .expect("run");
        assert_eq!(
            (o.rc, o.stdout_str().as_str(), o.stderr_str().as_str()),
            (3, "hi\n", "err\n")
        );
        assert_eq!(c.executions(), 1);
    }
}
