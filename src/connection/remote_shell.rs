//! One remote shell per host and run: every script run as the login user, or
//! as root through `sudo`, goes through one long-lived shell over one SSH
//! session instead of a session (and a `sudo`) of its own. N executions
//! become one session plus N round trips.
//!
//! # The protocol
//!
//! The shell program ([`LOOP`]) is given to `/bin/sh -c` as an argument. It
//! reads its uid and the login umask from `/proc/self/status` itself (`id -u`
//! and `umask` where there is no `/proc`) and prints a ready line: its token
//! (from the command line), its uid and which of two framings it speaks.
//!
//! Deployer writes a start line `S <token> <secret>\n` first, whatever the
//! framing: the secret is random, never on a command line, and marks the end
//! of every answer in the first framing below. Lines before it are skipped
//! unread by the shell: with `sudo -S` the password line reaches the loop
//! when sudo did not ask for it, and is dropped there without being run.
//!
//! **Framing 2** (dash, the `/bin/sh` of Debian and Ubuntu, with `/dev/stdin`):
//! the shell reads its input with `.`, which dash reads in blocks. A request
//! is shell text deployer wrote, one brace group:
//!
//! ```text
//! { _df 9<<'_E<token>_<n>'
//! <script>
//! _E<token>_<n>
//! }
//! ```
//!
//! The script is a quoted here-document (read as data, never expanded; its
//! end line is one no line of the script equals) that `_df` runs with
//! `. /dev/fd/9` in a subshell: stdin from `/dev/null`, the login umask, none
//! of the loop's own variables (they are unset there); stdout and stderr are
//! the session's. A request cut short by a lost connection lacks its `}` and
//! is a syntax error: never run, and the shell ends. No process is started
//! per request and no file is made. The answer: on stdout the script's
//! stdout as it printed it, then `\nD<secret> <rc>\n`; on stderr the
//! script's stderr, then `\nD<secret>\n` (the loop writes one such mark
//! before the first request: what came before it, sudo's warnings, is no
//! script's). Nothing a script prints can end its output early: that takes
//! the secret, which no script can read (it is unset in the subshell, and
//! only the shell's own user can read the shell's input or memory).
//!
//! **Framing 1** (any other `sh`, such as bash, which reads a `.` file to its
//! end before running any of it): the loop makes a private directory
//! (`mktemp -d` under `umask 077`). A request is `F <token> <length>\n`,
//! exactly `<length>` bytes of script and the line `E <token>\n`. The loop
//! copies those bytes into a file (`head -c`, which reads no further),
//! requires the end line (a script cut short is never run) and runs it with
//! `.` in a subshell as above, stdout and stderr into files. The answer: `D
//! <token> <rc>\n`, then each stream as one line of base64 (`base64 -w0`,
//! empty and without a process when the stream was). A framing-2 request
//! written before the ready line (see [`RemoteShell::start_master`]) has no
//! `F` header and is skipped by this loop: deployer writes it again in this
//! framing.
//!
//! Either way no state carries from one script to the next (each runs in a
//! forked copy of the loop, not in a new `/bin/sh`), and the loop ends at the
//! end of its input, a lost connection or a cut request (framing 1 removing
//! its directory).
//!
//! The user data inside the scripts is what it was before: base64 in
//! here-documents or quoted words (see [`super::write`]).

use std::sync::Arc;
use std::time::Duration;

use std::pin::Pin;

use openssh::Session;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use super::{Become, ConnectionError, Output, shell_quote};
use base64::Engine as _;

/// The remote side. `$1` is the shell's token. Run by `/bin/sh -c`; each
/// script is read by `.` in a subshell. The loop's variables start with `_d`
/// and are unset before a script runs, except `_dd` (its directory).
pub(crate) const LOOP: &str = r#"_dt=$1
set --
_du= DEPLOYER_UID=
while read -r _dk _dr _de _dh; do case $_dk in Umask:) _du=$_dr ;; Uid:) DEPLOYER_UID=$_de; break ;; esac; done 2>/dev/null < /proc/self/status
case $DEPLOYER_UID in ''|*[!0-9]*) DEPLOYER_UID=$(id -u) ;; esac
case $_du in ''|*[!0-7]*) _du=$(umask) ;; esac
export DEPLOYER_UID
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM
if [ /proc/self/exe -ef /bin/dash ] && [ -r /dev/stdin ] && [ -e /dev/fd/0 ]; then
printf 'DEPLOYER-SHELL %s %s 2\n' "$_dt" "$DEPLOYER_UID"
_ds=
while IFS= read -r _dh; do case $_dh in "S $_dt "*) _ds=${_dh#"S $_dt "}; break ;; esac; done
case $_ds in ''|*[!0-9a-f]*) exit 124 ;; esac
_df() {
(umask "$_du"; unset _dt _du _ds _dh _dk _dr _de; . /dev/fd/9) < /dev/null
printf '\nD%s %s\n' "$_ds" "$?"
printf '\nD%s\n' "$_ds" >&2
}
printf '\nD%s\n' "$_ds" >&2
. /dev/stdin
exit 0
fi
umask 077
_dd=$(mktemp -d) || exit 125
trap 'rm -rf -- "$_dd"' EXIT
printf 'DEPLOYER-SHELL %s %s 1\n' "$_dt" "$DEPLOYER_UID"
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
    /// Marks the end of a script's stdout in framing 2 (see the module docs).
    secret: String,
    /// Requests written so far (each here-document's end line is new).
    requests: u64,
    /// Bytes read after the last answer (output a script left running printed).
    pending: Vec<u8>,
    /// A script whose frame was written before the shell was ready (see
    /// [`RemoteShell::start_master`]): its answer is the next one.
    sent: Option<String>,
    proc: Proc,
    stdin: Pin<Box<dyn AsyncWrite + Send>>,
    stdout: BufReader<Pin<Box<dyn AsyncRead + Send>>>,
    /// Also says the shell's framing: `Framed` for here-document requests
    /// (dash), `Drained` for requests framed by length (any other `sh`).
    stderr: Stderr,
}

/// The shell's stderr.
enum Stderr {
    /// Framing 1: nothing is framed there (scripts' stderr comes on stdout);
    /// read to its end in the background.
    Drained(tokio::task::JoinHandle<Vec<u8>>),
    /// Framing 2: each script's stderr, then `\nD<secret>\n`. What came
    /// before the loop's first such mark (sudo's warnings) is not a script's.
    Framed {
        reader: BufReader<Pin<Box<dyn AsyncRead + Send>>>,
        pending: Vec<u8>,
        synced: bool,
    },
}

/// The local process that carries a shell's SSH session.
pub(crate) enum Proc {
    /// A session on a master that is already up, opened through its control
    /// socket (`super::mux`); the master's session handle is kept with it.
    Mux {
        child: super::mux::MuxChild,
        _session: Arc<Session>,
    },
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

/// A request in framing 2: a brace group running `_df` on the script as a
/// quoted here-document whose end line no line of the script equals (a
/// request cut short lacks its `}` and is never run).
fn heredoc_frame(token: &str, n: u64, script: &str) -> Vec<u8> {
    let mut end = format!("_E{token}_{n}");
    while script.lines().any(|l| l == end) {
        end.push('x');
    }
    let mut frame = format!("{{ _df 9<<'{end}'\n").into_bytes();
    frame.extend_from_slice(script.as_bytes());
    if !script.is_empty() && !script.ends_with('\n') {
        frame.push(b'\n');
    }
    frame.extend_from_slice(format!("{end}\n}}\n").as_bytes());
    frame
}

/// The start line: the shell's token and the secret that ends answers.
fn start_line(token: &str, secret: &str) -> Vec<u8> {
    format!("S {token} {secret}\n").into_bytes()
}

/// A request in framing 1: header, script, end line.
fn frame(token: &str, script: &str) -> Vec<u8> {
    let mut frame = format!("F {token} {}\n", script.len()).into_bytes();
    frame.extend_from_slice(script.as_bytes());
    frame.extend_from_slice(format!("E {token}\n").as_bytes());
    frame
}

impl RemoteShell {
    /// Starts a shell on `session` and waits for its ready line (at most
    /// `ready_within` when given: a warm master whose TCP connection died
    /// would otherwise hang here). `first`, as in [`RemoteShell::start_master`],
    /// is written before the shell is ready.
    pub(crate) async fn start(
        host: &str,
        session: Arc<Session>,
        key: ShellKey,
        become_: Option<&Become>,
        ready_within: Option<Duration>,
        first: Option<super::FirstScript>,
    ) -> Result<Started, ConnectionError> {
        let exec_err = |reason: String| ConnectionError::Exec {
            host: host.to_string(),
            reason,
        };
        let token = random_token();
        // Spoken to the master directly (`mux`): no `ssh -S` process.
        let s = super::mux::open(session.control_socket(), &command_line(&token, become_))
            .await
            .map_err(|e| exec_err(format!("cannot open a session on the ssh master: {e}")))?;
        let pipes = Pipes {
            stdin: Box::pin(s.stdin),
            stdout: Box::pin(s.stdout),
            stderr: Box::pin(s.stderr),
        };
        Self::handshake(
            host,
            key,
            token,
            Proc::Mux {
                child: s.child,
                _session: session,
            },
            pipes,
            become_,
            ready_within,
            None,
            first,
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
            stderr,
        } = pipes;
        // Not read before the ready line: sudo's few words wait in the pipe.
        let mut stderr = BufReader::new(stderr);
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
        // The start line, whatever the shell's framing turns out to be. A
        // failed write means the shell is gone: the ready line tells.
        let secret = random_token();
        let _ = stdin.write_all(&start_line(&token, &secret)).await;
        // In framing 2; a framing-1 shell skips it (no `F` header) and it is
        // written again once the shell says which framing it reads.
        let sent = match first {
            Some(rx) if become_.is_none_or(|b| b.password.is_none()) => match rx.await {
                Ok(script) if !script.contains(&format!("F {token} ")) => {
                    let ok = stdin
                        .write_all(&heredoc_frame(&token, 0, &script))
                        .await
                        .is_ok();
                    ok.then_some(script)
                }
                _ => None,
            },
            _ => None,
        };
        let _ = stdin.flush().await;
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
            && let Some(rest) = line.strip_prefix(&want)
            && let Some((uid, framing)) = rest.trim_end().split_once(' ')
            && let Ok(uid) = uid.parse::<u32>()
            && let Ok(framing @ (1 | 2)) = framing.parse::<u8>()
        {
            let stderr = if framing == 2 {
                Stderr::Framed {
                    reader: stderr,
                    pending: Vec::new(),
                    synced: false,
                }
            } else {
                Stderr::Drained(tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let _ = stderr.read_to_end(&mut buf).await;
                    buf
                }))
            };
            return Ok(Started::Ready(Box::new(RemoteShell {
                key,
                uid,
                token,
                secret,
                requests: 1,
                pending: Vec::new(),
                // A framing-1 loop skipped the request written before it was ready.
                sent: sent.filter(|_| framing == 2),
                proc,
                stdin,
                stdout,
                stderr,
            })));
        }
        // Not ready: collect what it said, as an execution of its own would.
        drop(stdin);
        let mut rest = ready;
        let mut err = Vec::new();
        let _ = tokio::join!(stdout.read_to_end(&mut rest), stderr.read_to_end(&mut err));
        let code = match proc {
            // No exit status: the session ended with the connection (ssh's 255).
            Proc::Mux { child, .. } => match child.wait().await {
                Ok(code) => Some(code.unwrap_or(255)),
                Err(why) => {
                    return Err(ConnectionError::Unreachable {
                        host: host.to_string(),
                        reason: why,
                    });
                }
            },
            Proc::Master(Some(mut child)) => child
                .wait()
                .await
                .map_err(|e| exec_err(e.to_string()))?
                .code(),
            Proc::Master(None) => None,
        };
        if code == Some(255) && rest.is_empty() {
            let said = log
                .and_then(|l| std::fs::read_to_string(l).ok())
                .map(|t| ssh_said(&t))
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| ssh_said(&String::from_utf8_lossy(&err)));
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
        let request = if matches!(self.stderr, Stderr::Framed { .. }) {
            self.requests += 1;
            heredoc_frame(&self.token, self.requests, script)
        } else {
            frame(&self.token, script)
        };
        self.stdin
            .write_all(&request)
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
        if let Stderr::Framed {
            reader,
            pending,
            synced,
        } = &mut self.stderr
        {
            let out_mark = format!("\nD{} ", self.secret);
            let err_mark = format!("\nD{}\n", self.secret);
            let stdout = async {
                let out =
                    until_mark(&mut self.stdout, &mut self.pending, out_mark.as_bytes()).await?;
                let rc = until_mark(&mut self.stdout, &mut self.pending, b"\n").await?;
                let rc = std::str::from_utf8(&rc)
                    .ok()
                    .and_then(|r| r.parse::<i32>().ok())
                    .ok_or_else(|| "unexpected answer".to_string())?;
                Ok::<_, String>((rc, out))
            };
            // Read at once with stdout: a script that fills one pipe while
            // the other is read would wait forever.
            let stderr = async {
                if !*synced {
                    until_mark(reader, pending, err_mark.as_bytes()).await?;
                    *synced = true;
                }
                until_mark(reader, pending, err_mark.as_bytes()).await
            };
            let (out, err) = tokio::join!(stdout, stderr);
            let (rc, stdout) = out.map_err(lost)?;
            let stderr = err.map_err(lost)?;
            return Ok(Output { rc, stdout, stderr });
        }
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
    /// The session's `ssh` client is not waited for: the last script has
    /// answered, and its exit is no part of the run (it is reaped in the
    /// background while the run lasts).
    pub(crate) async fn close(self) {
        let RemoteShell {
            proc,
            stdin,
            stderr,
            ..
        } = self;
        drop(stdin);
        if let Proc::Mux { child, .. } = proc {
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
                if let Stderr::Drained(drain) = stderr {
                    drain.abort();
                }
            });
        }
    }
}

/// The bytes before `mark` in `pending` and then `r`; what follows the
/// mark stays in `pending`. The end of input before the mark is an error.
async fn until_mark<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
    pending: &mut Vec<u8>,
    mark: &[u8],
) -> Result<Vec<u8>, String> {
    let mut got = std::mem::take(pending);
    let mut from = 0;
    loop {
        if let Some(i) = got
            .get(from..)
            .and_then(|rest| rest.windows(mark.len()).position(|w| w == mark))
        {
            let at = from + i;
            *pending = got.split_off(at + mark.len());
            got.truncate(at);
            return Ok(got);
        }
        // A mark may begin in what was searched: search its last bytes again.
        from = got.len().saturating_sub(mark.len() - 1);
        let buf = r.fill_buf().await.map_err(|e| e.to_string())?;
        if buf.is_empty() {
            return Err("connection closed".into());
        }
        got.extend_from_slice(buf);
        let n = buf.len();
        r.consume(n);
    }
}

/// A shell process's three pipes.
struct Pipes {
    stdin: Pin<Box<dyn AsyncWrite + Send>>,
    stdout: Pin<Box<dyn AsyncRead + Send>>,
    stderr: Pin<Box<dyn AsyncRead + Send>>,
}

/// What `ssh` wrote to its `-E` log, less the note that it recorded a new
/// host key (accept-new) and its words on a connection deployer's own connect
/// did not pass (that connect said why on stderr: see `super::dial`).
fn ssh_said(log: &str) -> String {
    log.lines()
        .filter(|l| !l.starts_with("Warning: Permanently added "))
        .filter(|l| !l.starts_with("mm_receive_fd: ") && !l.contains("proxy dialer did not pass"))
        .map(|l| l.strip_prefix("ssh: ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123abcd";
    const SECRET: &str = "5ec4e7";

    /// Runs the loop under `shell` (in a fresh directory) on `input`.
    async fn run_loop(shell: &str, input: &[u8], dir: &std::path::Path) -> std::process::Output {
        let mut child = tokio::process::Command::new(shell)
            .args(["-c", LOOP, "deployer-shell", TOKEN])
            .current_dir(dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("shell");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input).await.expect("write");
        drop(stdin);
        child.wait_with_output().await.expect("wait")
    }

    /// Scripts that show what a script sees: the first prints something
    /// that looks like an answer, writes stderr, sets state and fails; the
    /// second shows that none of it carried over (and the login umask).
    const SCRIPTS: [&str; 3] = [
        "printf 'a\\nD x 0 0 0\\nD5ec4 0\\n'; printf e >&2; X=1; cd /; exit 3",
        "echo \"${X:-unset} $(umask) ${_ds:-nosecret}\"; pwd; cat",
        "",
    ];

    /// Framing 2 (dash): here-document requests, both streams as printed
    /// up to the secret's marks; a password-like line before the start line
    /// is skipped unrun; a request cut short is never run.
    #[tokio::test]
    async fn heredoc_framing_runs_scripts_exactly_and_never_a_cut_one() {
        if !std::path::Path::new("/bin/dash").exists() {
            eprintln!("no /bin/dash here: framing 2 is for dash");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("ran");
        let mut input = format!("touch {}\n", marker.display()).into_bytes();
        input.extend_from_slice(&start_line(TOKEN, SECRET));
        for (n, s) in SCRIPTS.iter().enumerate() {
            input.extend_from_slice(&heredoc_frame(TOKEN, n as u64, s));
        }
        // A script longer than a pipe's buffer, holding its own would-be end line.
        let long = format!(
            "echo long\ncat <<'X'\n_E{TOKEN}_3\nX\n# {}\necho end\n",
            "x".repeat(70_000)
        );
        input.extend_from_slice(&heredoc_frame(TOKEN, 3, &long));
        // Cut after the whole script, before its end line and `}`.
        let cut = heredoc_frame(
            TOKEN,
            4,
            &format!("touch {}\n", dir.path().join("cut").display()),
        );
        input.extend_from_slice(&cut[..cut.len() - 3]);
        let out = run_loop("/bin/dash", &input, dir.path()).await;
        assert!(!marker.exists(), "a line before the start line was run");
        let uid = unsafe { libc::geteuid() };
        let ready = format!("DEPLOYER-SHELL {TOKEN} {uid} 2\n");
        assert!(
            out.stdout.starts_with(ready.as_bytes()),
            "{:?}",
            String::from_utf8_lossy(&out.stdout)
        );
        // Read in one-byte pieces: marks split across reads are found.
        let mut stdout = BufReader::with_capacity(1, &out.stdout[ready.len()..]);
        let mut stderr = BufReader::with_capacity(1, &out.stderr[..]);
        let (mut po, mut pe) = (Vec::new(), Vec::new());
        let out_mark = format!("\nD{SECRET} ");
        let err_mark = format!("\nD{SECRET}\n");
        let before = until_mark(&mut stderr, &mut pe, err_mark.as_bytes()).await;
        assert_eq!(before, Ok(Vec::new()));
        let mut answers = Vec::new();
        while let Ok(o) = until_mark(&mut stdout, &mut po, out_mark.as_bytes()).await {
            let rc = until_mark(&mut stdout, &mut po, b"\n").await.expect("rc");
            let e = until_mark(&mut stderr, &mut pe, err_mark.as_bytes())
                .await
                .expect("stderr");
            let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
            answers.push((text(rc), text(o), text(e)));
        }
        let here = dir.path().canonicalize().expect("canon");
        let s = |x: &str| x.to_string();
        assert_eq!(
            answers,
            [
                (s("3"), s("a\nD x 0 0 0\nD5ec4 0\n"), s("e")),
                (
                    s("0"),
                    format!("unset {} nosecret\n{}\n", umask_now(), here.display()),
                    s("")
                ),
                (s("0"), s(""), s("")),
                // The long script ran to its end: its own copy of the end line did not cut it.
                (s("0"), format!("long\n_E{TOKEN}_3\nend\n"), s("")),
            ]
        );
        // A cut request is a syntax error: not run, and the loop ends.
        assert_ne!(out.status.code(), Some(0));
        assert!(!dir.path().join("cut").exists(), "a cut request was run");
        stderr.read_to_end(&mut pe).await.expect("rest");
        let rest = String::from_utf8_lossy(&pe);
        assert!(rest.contains("Syntax error"), "{rest:?}");
    }

    /// A mark split across reads is found; the end of input before a mark
    /// is an error; what follows a mark is kept for the next read.
    #[tokio::test]
    async fn marks_are_found_across_reads_and_the_rest_is_kept() {
        let mark = format!("\nD{SECRET} ");
        let input = format!("out\nD5ec4 1\n{mark}7\nnext");
        for cap in [1, 3, 64] {
            let mut r = BufReader::with_capacity(cap, input.as_bytes());
            let mut pending = Vec::new();
            let got = until_mark(&mut r, &mut pending, mark.as_bytes()).await;
            assert_eq!(got, Ok(b"out\nD5ec4 1\n".to_vec()));
            assert_eq!(
                until_mark(&mut r, &mut pending, b"\n").await,
                Ok(b"7".to_vec())
            );
            assert!(until_mark(&mut r, &mut pending, b"\n").await.is_err());
        }
    }

    /// Framing 1 (any other sh; bash here): length-framed requests, both
    /// streams in base64; a framing-2 request written before the ready line
    /// is skipped unrun, as is a password-like line; a cut frame is never run.
    #[tokio::test]
    async fn length_framing_runs_scripts_exactly_and_skips_a_heredoc_request() {
        if !std::path::Path::new("/bin/bash").exists() {
            eprintln!("no /bin/bash here");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("ran");
        let mut input = format!("touch {}\n", marker.display()).into_bytes();
        input.extend_from_slice(&start_line(TOKEN, SECRET));
        input.extend_from_slice(&heredoc_frame(
            TOKEN,
            0,
            &format!("touch {}\n", marker.display()),
        ));
        for s in SCRIPTS {
            input.extend_from_slice(&frame(TOKEN, s));
        }
        // Cut after the whole script, before its end line (the connection
        // lost there): not run either.
        let cut = format!("touch {}\n", dir.path().join("cut").display());
        input.extend_from_slice(format!("F {TOKEN} {}\n", cut.len()).as_bytes());
        input.extend_from_slice(cut.as_bytes());
        let out = run_loop("/bin/bash", &input, dir.path()).await;
        assert!(!marker.exists(), "a line before the first frame was run");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let uid = unsafe { libc::geteuid() };
        let here = dir.path().canonicalize().expect("canon");
        let second = format!("unset {} nosecret\n{}\n", umask_now(), here.display());
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let want = format!(
            "DEPLOYER-SHELL {TOKEN} {uid} 1\nD {TOKEN} 3\n{}\n{}\nD {TOKEN} 0\n{}\n\nD {TOKEN} 0\n\n\n",
            b64("a\nD x 0 0 0\nD5ec4 0\n"),
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
