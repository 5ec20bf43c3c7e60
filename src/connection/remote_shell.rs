//! One remote shell per host and run: every script run as the login user, or
//! as root through `sudo`, goes through one long-lived shell over one SSH
//! session instead of a session (and a `sudo`) of its own. N executions
//! become one session plus N round trips.
//!
//! # The protocol
//!
//! The shell program ([`LOOP`]) is given to `/bin/sh -c` as an argument, so
//! nothing that arrives on its stdin is ever read as shell text by it. It
//! makes a private directory (`mktemp -d` under `umask 077`), prints a ready
//! line with a random token of this shell and its uid (read from
//! `/proc/self/status` by the shell itself; `id -u` where there is no
//! `/proc`), then reads frames:
//!
//! - request: `F <token> <length>\n` followed by exactly `<length>` bytes of
//!   script and the line `E <token>\n`. The loop copies those bytes into a
//!   file (`head -c`, which reads no further), requires the end line (read by
//!   the shell itself: a script cut short by a lost connection is never run,
//!   without a process to check its size) and runs it with `.` in a
//!   subshell: stdout and stderr into two files, stdin from `/dev/null`, the
//!   login umask, none of the loop's own variables (they are unset there),
//!   in a forked copy of the loop (no state carries from one script to the
//!   next, and no `/bin/sh` to start for each script).
//! - response: `D <token> <rc>\n`, then each stream (stdout, stderr) as one
//!   line of base64 (`base64 -w0`, empty and without a process when the stream
//!   was). Base64 has no newline, so nothing a script prints can end its own
//!   output early or forge another frame; one process per non-empty stream
//!   (no `stat` of their sizes).
//!
//! Lines before the first frame that are not a frame header are skipped: with
//! `sudo -S` the password line reaches the loop when sudo did not ask for it,
//! and is dropped there without being run. A frame cut short (the connection
//! lost) ends the loop, which then removes its directory.
//!
//! The user data inside the scripts is what it was before: base64 in
//! here-documents or quoted words (see [`super::write`]).

use std::sync::Arc;
use std::time::Duration;

use std::pin::Pin;

use openssh::{Child, Session};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use super::{Become, ConnectionError, Output, error_chain, shell_quote};
use base64::Engine as _;

/// The remote side. `$1` is the shell's token. Run by `/bin/sh -c`; each
/// script is read by `.` in a subshell. The loop's variables start with `_d`
/// and are unset before a script runs, except `_dd` (its directory).
pub(crate) const LOOP: &str = r#"_dt=$1
set --
_du=$(umask)
umask 077
_dd=$(mktemp -d) || exit 125
trap 'rm -rf -- "$_dd"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM
DEPLOYER_UID=
while read -r _dk _dr _de _dh; do if [ "$_dk" = Uid: ]; then DEPLOYER_UID=$_de; break; fi; done 2>/dev/null < /proc/self/status
case $DEPLOYER_UID in ''|*[!0-9]*) DEPLOYER_UID=$(id -u) ;; esac
export DEPLOYER_UID
printf 'DEPLOYER-SHELL %s %s\n' "$_dt" "$DEPLOYER_UID"
while IFS= read -r _dh; do
case $_dh in
"F $_dt "*) _dn=${_dh#"F $_dt "} ;;
*) continue ;;
esac
case $_dn in ''|*[!0-9]*) exit 124 ;; esac
head -c "$_dn" > "$_dd/s" || exit 124
IFS= read -r _dh || exit 124
[ "$_dh" = "E $_dt" ] || exit 124
(umask "$_du"; unset _dt _du _dn _dh _dk _dr _de; . "$_dd/s") < /dev/null > "$_dd/o" 2> "$_dd/e"
printf 'D %s %s\n' "$_dt" "$?"
if [ -s "$_dd/o" ]; then base64 -w0 < "$_dd/o" || exit 124; fi
echo
if [ -s "$_dd/e" ]; then base64 -w0 < "$_dd/e" || exit 124; fi
echo
done
"#;

/// Which shell a script can run in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ShellKey {
    /// The login user's shell (no become).
    Login,
    /// Root through `sudo` (with or without a password).
    Root { password: bool },
}

impl ShellKey {
    /// The shell for a script run with `become_`, if it may share one:
    /// scripts as the login user or as root. A script as another user
    /// (`become_user: postgres`) gets its own execution.
    pub(crate) fn for_become(become_: Option<&Become>) -> Option<ShellKey> {
        match become_ {
            None => Some(ShellKey::Login),
            Some(b) if b.user == "root" => Some(ShellKey::Root {
                password: b.password.is_some(),
            }),
            Some(_) => None,
        }
    }
}

/// A running shell, idle between frames.
pub(crate) struct RemoteShell {
    pub(crate) key: ShellKey,
    /// The remote uid the shell runs as (a login shell as root serves root too).
    pub(crate) uid: u32,
    token: String,
    /// A script whose frame was written before the shell was ready (see
    /// [`RemoteShell::start_master`]): its answer is the next one.
    sent: Option<String>,
    proc: Proc,
    stdin: Pin<Box<dyn AsyncWrite + Send>>,
    stdout: BufReader<Pin<Box<dyn AsyncRead + Send>>>,
    stderr: tokio::task::JoinHandle<Vec<u8>>,
}

/// The local process that carries a shell's SSH session.
pub(crate) enum Proc {
    /// A session on a master that is already up (an `ssh -S` client of its own).
    Mux(Child<Arc<Session>>),
    /// The master's own session: one `ssh` process authenticates, is the
    /// master for any later session, and carries this shell (no second
    /// session-open round trip, no second process). Taken by the connection
    /// once the shell is ready: the connection ends with it.
    Master(Option<tokio::process::Child>),
}

/// A master started with its shell ([`RemoteShell::start_master`]): the
/// `ssh` process, and copies of its stdin and stdout pipe ends so that the
/// session stays open while the connection lives even when the shell itself
/// is dropped (a cancelled script): the master carries every other session.
pub(crate) struct MasterProcess {
    pub(crate) child: tokio::process::Child,
    pub(crate) keep: Vec<std::os::fd::OwnedFd>,
}

/// How starting a shell ended.
pub(crate) enum Started {
    Ready(Box<RemoteShell>),
    /// The shell exited before it was ready (`sudo: a password is required`):
    /// what an execution of its own would have returned.
    Exited(Output),
}

/// The command line of a shell for `key` (no user data in it: the loop, the
/// token, and the quoted become user).
pub(crate) fn command_line(token: &str, become_: Option<&Become>) -> String {
    let sh = format!(
        "/bin/sh -c {} deployer-shell {}",
        shell_quote(LOOP),
        shell_quote(token)
    );
    match become_ {
        None => sh,
        Some(b) => {
            let user = shell_quote(&b.user);
            match &b.password {
                None => format!("sudo -n -H -u {user} -- {sh}"),
                Some(_) => format!("sudo -S -p '' -H -u {user} -- {sh}"),
            }
        }
    }
}

pub(crate) fn random_token() -> String {
    let mut b = [0u8; 16];
    if getrandom(&mut b).is_err() {
        // Without randomness the token still frames; it only guards against
        // a password line that looks like a frame header.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        b.copy_from_slice(&t.to_le_bytes());
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn getrandom(buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

/// A request frame: header, script, end line.
fn frame(token: &str, script: &str) -> Vec<u8> {
    let mut frame = format!("F {token} {}\n", script.len()).into_bytes();
    frame.extend_from_slice(script.as_bytes());
    frame.extend_from_slice(format!("E {token}\n").as_bytes());
    frame
}

impl RemoteShell {
    /// Starts a shell on `session` and waits for its ready line (at most
    /// `ready_within` when given: a warm master whose TCP connection died
    /// would otherwise hang here).
    pub(crate) async fn start(
        host: &str,
        session: Arc<Session>,
        key: ShellKey,
        become_: Option<&Become>,
        ready_within: Option<Duration>,
    ) -> Result<Started, ConnectionError> {
        let exec_err = |reason: String| ConnectionError::Exec {
            host: host.to_string(),
            reason,
        };
        let token = random_token();
        let mut child = session
            .arc_raw_command(command_line(&token, become_))
            .stdin(openssh::Stdio::piped())
            .stdout(openssh::Stdio::piped())
            .stderr(openssh::Stdio::piped())
            .spawn()
            .await
            .map_err(|e| exec_err(error_chain(&e)))?;
        let (Some(stdin), Some(stdout), Some(stderr)) = (
            child.stdin().take(),
            child.stdout().take(),
            child.stderr().take(),
        ) else {
            return Err(exec_err("the remote shell has no pipes".into()));
        };
        let pipes = Pipes {
            stdin: Box::pin(stdin),
            stdout: Box::pin(stdout),
            stderr: Box::pin(stderr),
        };
        Self::handshake(
            host,
            key,
            token,
            Proc::Mux(child),
            pipes,
            become_,
            ready_within,
            None,
            None,
        )
        .await
    }

    /// Starts the SSH master and this shell as its own session, in one
    /// `ssh` process: `ssh` is the prepared command (options, `-E log`,
    /// `-S`, `-M`, ending with `--` and the destination); the shell's
    /// command line is added here. A ready shell comes with the process to
    /// keep; a shell that exited at once (sudo refused) ended the master too.
    ///
    /// `first` brings the first script the connection will run: it is
    /// written as soon as it comes, before the shell is ready (not after a
    /// password line, which sudo reads itself), and waits in the session's
    /// input until the loop reads it: the connection's handshake and the
    /// script's round trip become one. A shell that does not start never
    /// reads it.
    pub(crate) async fn start_master(
        host: &str,
        mut ssh: tokio::process::Command,
        log: &std::path::Path,
        key: ShellKey,
        become_: Option<&Become>,
        first: Option<super::FirstScript>,
    ) -> Result<(Started, Option<MasterProcess>), ConnectionError> {
        use std::os::fd::AsFd;
        let exec_err = |reason: String| ConnectionError::Unreachable {
            host: host.to_string(),
            reason,
        };
        let token = random_token();
        let mut child = ssh
            .arg(command_line(&token, become_))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| exec_err(format!("cannot start ssh: {e}")))?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(exec_err("the ssh process has no pipes".into()));
        };
        let keep = [stdin.as_fd(), stdout.as_fd()]
            .iter()
            .map(|fd| fd.try_clone_to_owned())
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| exec_err(format!("cannot keep the ssh pipes: {e}")))?;
        let pipes = Pipes {
            stdin: Box::pin(stdin),
            stdout: Box::pin(stdout),
            stderr: Box::pin(stderr),
        };
        let started = Self::handshake(
            host,
            key,
            token,
            Proc::Master(Some(child)),
            pipes,
            become_,
            None,
            Some(log),
            first,
        )
        .await?;
        match started {
            Started::Ready(mut sh) => {
                let Proc::Master(child) = &mut sh.proc else {
                    return Err(exec_err("the ssh master process is missing".into()));
                };
                let Some(child) = child.take() else {
                    return Err(exec_err("the ssh master process is missing".into()));
                };
                Ok((Started::Ready(sh), Some(MasterProcess { child, keep })))
            }
            exited => Ok((exited, None)),
        }
    }

    /// Sends the become password when there is one and waits for the ready
    /// line; a shell that is not ready is waited for and reported as an
    /// execution of its own would be. `log` is the master's `-E` log: what
    /// `ssh` itself said when it could not connect.
    #[allow(clippy::too_many_arguments)]
    async fn handshake(
        host: &str,
        key: ShellKey,
        token: String,
        proc: Proc,
        pipes: Pipes,
        become_: Option<&Become>,
        ready_within: Option<Duration>,
        log: Option<&std::path::Path>,
        first: Option<super::FirstScript>,
    ) -> Result<Started, ConnectionError> {
        let exec_err = |reason: String| ConnectionError::Exec {
            host: host.to_string(),
            reason,
        };
        let Pipes {
            mut stdin,
            stdout,
            mut stderr,
        } = pipes;
        let stderr = tokio::spawn(async move {
            let mut buf = Vec::new();
            let _ = stderr.read_to_end(&mut buf).await;
            buf
        });
        if let Some(pw) = become_.and_then(|b| b.password.as_ref()) {
            let mut line = Vec::with_capacity(pw.len() + 1);
            line.extend_from_slice(pw.as_bytes());
            line.push(b'\n');
            // A failed write means the shell is gone: the ready line tells.
            let _ = stdin.write_all(&line).await;
            let _ = stdin.flush().await;
        }
        // The first script, built while ssh connects (milliseconds against
        // the handshake's tenths of a second): written now, it waits in the
        // session's input for the loop.
        let sent = match first {
            Some(rx) if become_.is_none_or(|b| b.password.is_none()) => match rx.await {
                Ok(script) => {
                    // A failed write means the shell is gone: the ready line tells.
                    let ok = stdin.write_all(&frame(&token, &script)).await.is_ok()
                        && stdin.flush().await.is_ok();
                    ok.then_some(script)
                }
                Err(_) => None,
            },
            _ => None,
        };
        let mut stdout = BufReader::new(stdout);
        let mut ready = Vec::new();
        let read = stdout.read_until(b'\n', &mut ready);
        let n = match ready_within {
            Some(d) => match tokio::time::timeout(d, read).await {
                Ok(r) => r,
                Err(_) => {
                    return Err(ConnectionError::Unreachable {
                        host: host.to_string(),
                        reason: format!("no answer from the remote shell within {} s", d.as_secs()),
                    });
                }
            },
            None => read.await,
        }
        .map_err(|e| exec_err(e.to_string()))?;
        let want = format!("DEPLOYER-SHELL {token} ");
        let line = String::from_utf8_lossy(&ready);
        if n > 0
            && let Some(uid) = line.strip_prefix(&want)
            && let Ok(uid) = uid.trim_end().parse::<u32>()
        {
            return Ok(Started::Ready(Box::new(RemoteShell {
                key,
                uid,
                token,
                sent,
                proc,
                stdin,
                stdout,
                stderr,
            })));
        }
        // Not ready: collect what it said, as an execution of its own would.
        drop(stdin);
        let mut rest = ready;
        let _ = stdout.read_to_end(&mut rest).await;
        let code = match proc {
            Proc::Mux(child) => child
                .wait()
                .await
                .map_err(|e| exec_err(error_chain(&e)))?
                .code(),
            Proc::Master(Some(mut child)) => child
                .wait()
                .await
                .map_err(|e| exec_err(e.to_string()))?
                .code(),
            Proc::Master(None) => None,
        };
        let err = stderr.await.unwrap_or_default();
        if code == Some(255) && rest.is_empty() {
            let said = log
                .and_then(|l| std::fs::read_to_string(l).ok())
                .map(|t| ssh_said(&t))
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| String::from_utf8_lossy(&err).trim().to_string());
            return Err(ConnectionError::Unreachable {
                host: host.to_string(),
                reason: crate::secrets::mask(&said),
            });
        }
        Ok(Started::Exited(Output {
            rc: code.unwrap_or(-1),
            stdout: rest,
            stderr: err,
        }))
    }

    /// Runs one script in the shell. An error leaves the shell unusable (drop it).
    pub(crate) async fn run(
        &mut self,
        host: &str,
        script: &str,
    ) -> Result<Output, ConnectionError> {
        let lost = |reason: String| ConnectionError::Exec {
            host: host.to_string(),
            reason: format!("the remote shell ended during a script: {reason}"),
        };
        match self.sent.take() {
            // Written before the shell was ready: only its answer is left.
            Some(sent) if sent == script => return self.answer(host).await,
            // Another script first (not how connections are used): the
            // written one runs first, its answer is read and dropped.
            Some(_) => {
                self.answer(host).await?;
            }
            None => {}
        }
        self.stdin
            .write_all(&frame(&self.token, script))
            .await
            .map_err(|e| lost(e.to_string()))?;
        self.stdin.flush().await.map_err(|e| lost(e.to_string()))?;
        self.answer(host).await
    }

    /// Reads the answer to the frame written last.
    async fn answer(&mut self, host: &str) -> Result<Output, ConnectionError> {
        let lost = |reason: String| ConnectionError::Exec {
            host: host.to_string(),
            reason: format!("the remote shell ended during a script: {reason}"),
        };
        let mut head = Vec::new();
        let n = self
            .stdout
            .read_until(b'\n', &mut head)
            .await
            .map_err(|e| lost(e.to_string()))?;
        if n == 0 {
            return Err(lost("connection closed".into()));
        }
        let head = String::from_utf8_lossy(&head);
        let fields: Vec<&str> = head.trim_end().split(' ').collect();
        let rc = match fields.as_slice() {
            ["D", t, rc] if *t == self.token => rc.parse::<i32>(),
            _ => return Err(lost("unexpected answer".into())),
        };
        let Ok(rc) = rc else {
            return Err(lost("unexpected answer".into()));
        };
        // Each stream as one base64 line (empty when the stream was): no
        // byte a script prints can pass for the framing.
        let mut streams = [Vec::new(), Vec::new()];
        for s in &mut streams {
            let mut line = Vec::new();
            let n = self
                .stdout
                .read_until(b'\n', &mut line)
                .await
                .map_err(|e| lost(e.to_string()))?;
            if n == 0 || line.pop() != Some(b'\n') {
                return Err(lost("connection closed".into()));
            }
            *s = base64::engine::general_purpose::STANDARD
                .decode(&line)
                .map_err(|_| lost("unexpected answer".into()))?;
        }
        let [stdout, stderr] = streams;
        Ok(Output { rc, stdout, stderr })
    }

    /// Ends the shell: end of input, the loop removes its directory and exits.
    /// The master's own shell ends with the master (see `Connection::close`).
    pub(crate) async fn close(self) {
        let RemoteShell {
            proc,
            stdin,
            stderr,
            ..
        } = self;
        drop(stdin);
        if let Proc::Mux(child) = proc {
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            stderr.abort();
        }
    }
}

/// A shell process's three pipes.
struct Pipes {
    stdin: Pin<Box<dyn AsyncWrite + Send>>,
    stdout: Pin<Box<dyn AsyncRead + Send>>,
    stderr: Pin<Box<dyn AsyncRead + Send>>,
}

/// What `ssh` wrote to its `-E` log, less the note that it recorded a new
/// host key (accept-new).
fn ssh_said(log: &str) -> String {
    log.lines()
        .filter(|l| !l.starts_with("Warning: Permanently added "))
        .map(|l| l.strip_prefix("ssh: ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loop run by the local shell: frames in, exact streams and status
    /// out, no state carried over, a password-like line before the first
    /// frame skipped without being run.
    #[tokio::test]
    async fn the_loop_frames_scripts_and_their_streams() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("ran");
        let token = "0123abcd";
        let mut input = format!("touch {}\n", marker.display()).into_bytes();
        for s in [
            "printf 'a\\nD x 0 0 0\\n'; printf e >&2; X=1; cd /; exit 3",
            "echo \"${X:-unset} $(umask)\"; pwd",
            "",
        ] {
            input.extend_from_slice(format!("F {token} {}\n", s.len()).as_bytes());
            input.extend_from_slice(s.as_bytes());
            input.extend_from_slice(format!("E {token}\n").as_bytes());
        }
        // Cut after the whole script, before its end line (the connection
        // lost there): not run either.
        let cut = format!("touch {}\n", dir.path().join("cut").display());
        input.extend_from_slice(format!("F {token} {}\n", cut.len()).as_bytes());
        input.extend_from_slice(cut.as_bytes());
        let mut child = tokio::process::Command::new("/bin/sh")
            .args(["-c", LOOP, "deployer-shell", token])
            .current_dir(dir.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("sh");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(&input).await.expect("write");
        drop(stdin);
        let out = child.wait_with_output().await.expect("wait");
        assert!(!marker.exists(), "a line before the first frame was run");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let uid = unsafe { libc::geteuid() };
        let here = dir.path().canonicalize().expect("canon");
        let second = format!("unset {}\n{}\n", umask_now(), here.display());
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let want = format!(
            "DEPLOYER-SHELL {token} {uid}\nD {token} 3\n{}\n{}\nD {token} 0\n{}\n\nD {token} 0\n\n\n",
            b64("a\nD x 0 0 0\n"),
            b64("e"),
            b64(&second)
        );
        assert_eq!(text, want);
        // A cut frame is not run, and ends the loop with its directory gone.
        assert_eq!(out.status.code(), Some(124));
        assert!(!dir.path().join("cut").exists(), "a cut frame was run");
    }

    fn umask_now() -> String {
        let o = std::process::Command::new("/bin/sh")
            .args(["-c", "umask"])
            .output()
            .expect("umask");
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }
}
