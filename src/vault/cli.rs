//! `deployer vault` subcommands, with ansible-vault's behaviour.
//!
//! All writes are atomic (temporary file in the same directory, fsync, rename)
//! with mode 0600; every input is processed in memory before anything is
//! written, so an error in any file leaves all files untouched.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use zeroize::Zeroizing;

use super::{
    VaultError, VaultPasswords, decrypt_detailed, encrypt, format_inline, is_encrypted,
    write_atomic,
};

/// `deployer vault ...`
#[derive(clap::Args, Debug)]
pub struct VaultArgs {
    #[command(subcommand)]
    pub command: VaultCommand,

    /// Vault password file; if executable, it is run and its stdout is the password.
    #[arg(
        long = "vault-password-file",
        alias = "vault-pass-file",
        value_name = "FILE",
        global = true
    )]
    pub vault_password_files: Vec<PathBuf>,

    /// Vault identity `label@source`, source being a file, an executable or `prompt`.
    #[arg(long = "vault-id", value_name = "LABEL@SOURCE", global = true)]
    pub vault_ids: Vec<String>,

    /// Ask for the vault password.
    #[arg(
        long = "ask-vault-password",
        alias = "ask-vault-pass",
        short = 'J',
        global = true
    )]
    pub ask_vault_password: bool,

    /// The vault id (label) to encrypt with when several are given.
    #[arg(long = "encrypt-vault-id", value_name = "LABEL", global = true)]
    pub encrypt_vault_id: Option<String>,
}

/// The subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum VaultCommand {
    /// Create a new encrypted file with $EDITOR.
    Create {
        /// The file to create (must not exist).
        file: PathBuf,
    },
    /// Encrypt files in place (or to --output; no file or `-`: stdin).
    Encrypt {
        /// Files to encrypt (none or `-`: stdin).
        files: Vec<PathBuf>,
        /// Output file (`-` for stdout); only with a single input.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Decrypt files in place (or to --output; `-` for stdout).
    Decrypt {
        /// Files to decrypt (none or `-`: stdin).
        files: Vec<PathBuf>,
        /// Output file (`-` for stdout); only with a single input.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Print the decrypted content.
    View {
        /// Encrypted files to print.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Edit an encrypted file with $EDITOR (default `vi`).
    Edit {
        /// Encrypted files to edit.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Re-encrypt files with a new password.
    Rekey {
        /// Encrypted files to re-encrypt.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// File (or executable) holding the new password.
        #[arg(long = "new-vault-password-file", value_name = "FILE")]
        new_vault_password_file: Option<PathBuf>,
        /// New vault identity `label@source`.
        #[arg(long = "new-vault-id", value_name = "LABEL@SOURCE")]
        new_vault_id: Option<String>,
    },
    /// Encrypt strings for use as inline `!vault |` YAML values.
    #[command(name = "encrypt-string", alias = "encrypt_string")]
    EncryptString {
        /// Strings to encrypt (`-` or none: read stdin).
        strings: Vec<String>,
        /// Variable name for each string, in order.
        #[arg(long = "name", short = 'n', value_name = "KEY")]
        names: Vec<String>,
        /// Variable name for the string read from stdin.
        #[arg(long = "stdin-name", value_name = "KEY")]
        stdin_name: Option<String>,
        /// Output file (`-` for stdout).
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

fn is_dash(p: &Path) -> bool {
    p.as_os_str() == "-"
}

fn read_input(path: &Path) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    let mut buf = Vec::new();
    if is_dash(path) {
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| VaultError::io("<stdin>", "reading", e))?;
    } else {
        buf = std::fs::read(path).map_err(|e| VaultError::io(path, "reading", e))?;
    }
    Ok(Zeroizing::new(buf))
}

fn write_output(path: &Path, data: &[u8]) -> Result<(), VaultError> {
    write_output_as(path, data, false)
}

/// `plaintext`: the data is a decrypted secret (never readable by others).
fn write_output_as(path: &Path, data: &[u8], plaintext: bool) -> Result<(), VaultError> {
    if is_dash(path) {
        let mut out = std::io::stdout().lock();
        out.write_all(data)
            .and_then(|()| out.flush())
            .map_err(|e| VaultError::io("<stdout>", "writing", e))
    } else if plaintext {
        crate::vault::write_atomic_private(path, data)
    } else {
        write_atomic(path, data, 0o600)
    }
}

fn origin_of(path: &Path) -> String {
    if is_dash(path) {
        "<stdin>".to_string()
    } else {
        path.display().to_string()
    }
}

fn say(msg: &str) {
    if std::io::stdout().is_terminal() {
        eprintln!("{msg}");
    }
}

/// Run `deployer vault ...`; returns the process exit code.
pub fn run(args: VaultArgs) -> Result<i32, VaultError> {
    let passwords = VaultPasswords::new(
        &args.vault_password_files,
        &args.vault_ids,
        args.ask_vault_password,
    )?;
    let enc_id = args.encrypt_vault_id.as_deref();
    match args.command {
        VaultCommand::Create { file } => cmd_create(&file, &passwords, enc_id),
        VaultCommand::Encrypt { files, output } => cmd_encrypt(files, output, &passwords, enc_id),
        VaultCommand::Decrypt { files, output } => cmd_decrypt(files, output, &passwords),
        VaultCommand::View { files } => cmd_view(&files, &passwords),
        VaultCommand::Edit { files } => cmd_edit(&files, &passwords),
        VaultCommand::Rekey {
            files,
            new_vault_password_file,
            new_vault_id,
        } => cmd_rekey(&files, &passwords, new_vault_password_file, new_vault_id),
        VaultCommand::EncryptString {
            strings,
            names,
            stdin_name,
            output,
        } => cmd_encrypt_string(strings, names, stdin_name, output, &passwords, enc_id),
    }
}

fn single_output_check(files: &[PathBuf], output: &Option<PathBuf>) -> Result<(), VaultError> {
    if output.is_some() && files.len() > 1 {
        return Err(VaultError::Usage(
            "at most one input file may be used with the --output option".into(),
        ));
    }
    Ok(())
}

fn require_passwords(passwords: &VaultPasswords) -> Result<(), VaultError> {
    if passwords.is_empty() {
        return Err(VaultError::Usage(
            "a vault password is required (expected --vault-password-file, --vault-id, --ask-vault-password or DEPLOYER_VAULT_PASSWORD_FILE)".into(),
        ));
    }
    Ok(())
}

fn cmd_encrypt(
    mut files: Vec<PathBuf>,
    output: Option<PathBuf>,
    passwords: &VaultPasswords,
    enc_id: Option<&str>,
) -> Result<i32, VaultError> {
    if files.is_empty() {
        files.push(PathBuf::from("-"));
    }
    single_output_check(&files, &output)?;
    let (label, password) = passwords.for_encrypt(enc_id, true)?;
    let mut results = Vec::with_capacity(files.len());
    for f in &files {
        let plain = read_input(f)?;
        if is_encrypted(&plain) {
            return Err(VaultError::AlreadyEncrypted {
                origin: origin_of(f),
            });
        }
        let dest = output.clone().unwrap_or_else(|| f.clone());
        results.push((dest, encrypt(&plain, &password, Some(&label))?));
    }
    // As ansible-vault: `encrypt` makes a new file 0600 (the plaintext's old
    // mode is not kept); `rekey` and `edit` keep the file's mode and owner.
    for (dest, data) in results {
        write_output_as(&dest, data.as_bytes(), true)?;
    }
    say("Encryption successful");
    Ok(0)
}

fn cmd_decrypt(
    mut files: Vec<PathBuf>,
    output: Option<PathBuf>,
    passwords: &VaultPasswords,
) -> Result<i32, VaultError> {
    require_passwords(passwords)?;
    if files.is_empty() {
        files.push(PathBuf::from("-"));
    }
    single_output_check(&files, &output)?;
    let mut results = Vec::with_capacity(files.len());
    for f in &files {
        let data = read_input(f)?;
        let dec = decrypt_detailed(&data, passwords, &origin_of(f))?;
        let dest = output.clone().unwrap_or_else(|| f.clone());
        results.push((dest, dec.plaintext));
    }
    for (dest, data) in results {
        write_output_as(&dest, &data, true)?;
    }
    say("Decryption successful");
    Ok(0)
}

fn cmd_view(files: &[PathBuf], passwords: &VaultPasswords) -> Result<i32, VaultError> {
    require_passwords(passwords)?;
    for f in files {
        let data = read_input(f)?;
        let dec = decrypt_detailed(&data, passwords, &origin_of(f))?;
        write_output(Path::new("-"), &dec.plaintext)?;
    }
    Ok(0)
}

fn cmd_edit(files: &[PathBuf], passwords: &VaultPasswords) -> Result<i32, VaultError> {
    require_passwords(passwords)?;
    for f in files {
        let data = read_input(f)?;
        let dec = decrypt_detailed(&data, passwords, &origin_of(f))?;
        if let Some(new) = edit_in_temp(f, &dec.plaintext, false)? {
            // Keep the vault id of the header (as ansible-vault does) and the
            // password that decrypted the file.
            let out = encrypt(&new, &dec.password, dec.header_vault_id.as_deref())?;
            write_atomic(f, out.as_bytes(), 0o600)?;
        }
    }
    Ok(0)
}

fn cmd_create(
    file: &Path,
    passwords: &VaultPasswords,
    enc_id: Option<&str>,
) -> Result<i32, VaultError> {
    if file.exists() {
        return Err(VaultError::Usage(format!(
            "{} exists, please use 'edit' instead",
            file.display()
        )));
    }
    let (label, password) = passwords.for_encrypt(enc_id, true)?;
    if let Some(dir) = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        eprintln!("warning: {} does not exist, creating...", dir.display());
        std::fs::create_dir_all(dir).map_err(|e| VaultError::io(dir, "creating directory", e))?;
    }
    // Like ansible-vault, the file is written even if the editor left it empty.
    let content = edit_in_temp(file, &[], true)?.unwrap_or_default();
    let out = encrypt(&content, &password, Some(&label))?;
    write_atomic(file, out.as_bytes(), 0o600)?;
    Ok(0)
}

fn cmd_rekey(
    files: &[PathBuf],
    passwords: &VaultPasswords,
    new_file: Option<PathBuf>,
    new_id: Option<String>,
) -> Result<i32, VaultError> {
    require_passwords(passwords)?;
    let new_passwords = match (new_id, new_file) {
        (Some(id), None) => VaultPasswords::new(&[], &[id], false)?,
        (None, Some(f)) => VaultPasswords::new(&[f], &[], false)?,
        (Some(_), Some(_)) => {
            return Err(VaultError::Usage(
                "use either --new-vault-id or --new-vault-password-file, not both".into(),
            ));
        }
        (None, None) if std::io::stdin().is_terminal() => {
            VaultPasswords::new(&[], &["prompt".to_string()], false)?
        }
        (None, None) => {
            return Err(VaultError::Usage(
                "a new vault password is required to rekey (expected --new-vault-password-file or --new-vault-id)".into(),
            ));
        }
    };
    let (new_label, new_password) = new_passwords.for_encrypt(None, true)?;
    let mut results = Vec::with_capacity(files.len());
    for f in files {
        let data = read_input(f)?;
        let dec = decrypt_detailed(&data, passwords, &origin_of(f))?;
        results.push((f, encrypt(&dec.plaintext, &new_password, Some(&new_label))?));
    }
    for (f, data) in results {
        write_atomic(f, data.as_bytes(), 0o600)?;
    }
    eprintln!("Rekey successful");
    Ok(0)
}

/// (variable name, plaintext, where it came from)
type StringItem = (Option<String>, Zeroizing<Vec<u8>>, &'static str);

fn cmd_encrypt_string(
    strings: Vec<String>,
    names: Vec<String>,
    stdin_name: Option<String>,
    output: Option<PathBuf>,
    passwords: &VaultPasswords,
    enc_id: Option<&str>,
) -> Result<i32, VaultError> {
    let read_stdin = stdin_name.is_some() || strings.is_empty() || strings.iter().any(|s| s == "-");
    let args: Vec<String> = strings.into_iter().filter(|s| s != "-").collect();
    let (label, password) = passwords.for_encrypt(enc_id, true)?;

    let mut items: Vec<StringItem> = Vec::new();
    if read_stdin {
        if std::io::stdin().is_terminal() {
            eprintln!(
                "Reading plaintext input from stdin. (ctrl-d to end input, twice if your content does not already have a newline)"
            );
        }
        let text = read_input(Path::new("-"))?;
        if text.is_empty() {
            return Err(VaultError::Usage("stdin was empty, not encrypting".into()));
        }
        items.push((stdin_name, text, "stdin"));
    }
    if args.len() > names.len() && !names.is_empty() {
        eprintln!("The number of --name options do not match the number of args.");
    }
    for (i, s) in args.into_iter().enumerate() {
        if s.is_empty() {
            return Err(VaultError::Usage(
                "the plaintext provided from the command line args was empty, not encrypting"
                    .into(),
            ));
        }
        items.push((
            names.get(i).cloned(),
            Zeroizing::new(s.into_bytes()),
            "the command line",
        ));
    }
    let many = items.len() > 1;
    let mut outs = Vec::with_capacity(items.len());
    for (idx, (name, plain, src)) in items.iter().enumerate() {
        if let Some(n) = name
            && (n.is_empty() || n.contains(char::is_whitespace) || n.contains(':'))
        {
            return Err(VaultError::Usage(format!(
                "invalid variable name `{}` (expected a YAML key without spaces or `:`)",
                n.escape_debug()
            )));
        }
        let blob = encrypt(plain, &password, Some(&label))?;
        if many {
            match name {
                Some(n) => eprintln!(
                    "# The encrypted version of variable (\"{n}\", the string #{} from {src}).",
                    idx + 1
                ),
                None => eprintln!(
                    "# The encrypted version of the string #{} from {src}.)",
                    idx + 1
                ),
            }
        }
        outs.push(format_inline(&blob, name.as_deref()));
    }
    let mut text = outs.join("\n");
    text.push('\n');
    write_output(output.as_deref().unwrap_or(Path::new("-")), text.as_bytes())?;
    say("Encryption successful");
    Ok(0)
}

/// A temporary plaintext file that is overwritten with zeros and removed on drop.
struct ShreddedTemp {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for ShreddedTemp {
    fn drop(&mut self) {
        shred(&self.path);
        // The private directory (and any editor swap files) goes with `_dir`.
    }
}

/// Overwrites the regular file at `path` with zeros and removes it.
fn shred(path: &Path) {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if !meta.is_file() {
        return;
    }
    if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(path) {
        let zeros = vec![0u8; 64 * 1024];
        let mut left = meta.len();
        while left > 0 {
            let n = usize::try_from(left.min(zeros.len() as u64)).unwrap_or(zeros.len());
            if f.write_all(&zeros[..n]).is_err() {
                break;
            }
            left -= n as u64;
        }
        let _ = f.sync_all();
    }
    let _ = std::fs::remove_file(path);
}

/// The private directories of `vault edit` are `<tmp>/deployer-vault-<pid>-<random>`.
const EDIT_DIR_PREFIX: &str = "deployer-vault-";

/// Removes (zeroed first) the plaintext left by a `vault edit` that was killed
/// with SIGKILL or lost power: directories of this user whose process no
/// longer exists. Nothing else in `tmp` is touched; errors are ignored (the
/// directory of another user, or one already gone).
fn remove_stale_edit_dirs(tmp: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    // SAFETY: getuid has no preconditions and cannot fail.
    let me = unsafe { libc::getuid() };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(EDIT_DIR_PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let path = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.is_dir() || meta.uid() != me || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if let Ok(files) = std::fs::read_dir(&path) {
            for f in files.flatten() {
                if f.file_type().is_ok_and(|t| t.is_file()) {
                    shred(&f.path());
                }
            }
        }
        if std::fs::remove_dir_all(&path).is_ok() {
            eprintln!(
                "removed the plaintext left by an interrupted vault edit (process {pid}) in {}",
                path.display()
            );
        }
    }
}

/// Write `plaintext` to a private temp file (0600 in a 0700 directory), run
/// `$EDITOR` on it, and return the new content if it changed (always when `force`,
/// as `create` does). The temp file is zeroed and deleted in every case.
fn edit_in_temp(
    original: &Path,
    plaintext: &[u8],
    force: bool,
) -> Result<Option<Zeroizing<Vec<u8>>>, VaultError> {
    use std::os::unix::fs::OpenOptionsExt;
    // SIGTERM, SIGHUP and a SIGINT sent to deployer itself (not the
    // terminal's Ctrl-C, which the editor gets and handles) stop the edit:
    // the plaintext is removed before deployer exits. Installed before the
    // plaintext exists, so no signal falls in between.
    let signals = edit_signals::Guard::install();
    remove_stale_edit_dirs(&std::env::temp_dir());
    let prefix = format!("{EDIT_DIR_PREFIX}{}-", std::process::id());
    let dir = tempfile::Builder::new()
        .prefix(&prefix)
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir()
        .map_err(|e| VaultError::io(std::env::temp_dir(), "creating a private directory in", e))?;
    let name = original
        .file_name()
        .map_or_else(|| "vault".into(), |n| n.to_os_string());
    let temp = ShreddedTemp {
        path: dir.path().join(name),
        _dir: dir,
    };
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp.path)
            .map_err(|e| VaultError::io(&temp.path, "creating", e))?;
        f.write_all(plaintext)
            .and_then(|()| f.sync_all())
            .map_err(|e| VaultError::io(&temp.path, "writing", e))?;
    }
    let editor = std::env::var("EDITOR")
        .ok()
        .filter(|e| !e.trim().is_empty())
        .unwrap_or_else(|| "vi".to_string());
    // Through the shell, so `EDITOR="code --wait"` works as with ansible-vault.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("deployer-vault-edit")
        .arg(&temp.path)
        .spawn()
        .map_err(|e| VaultError::Editor {
            editor: editor.clone(),
            detail: format!("could not start it: {e}"),
        })?;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) => {}
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(VaultError::Editor {
                    editor,
                    detail: format!("cannot wait for it: {e}"),
                });
            }
        }
        if let Some(sig) = signals.received() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            let _ = child.wait();
            drop(temp);
            drop(signals);
            eprintln!(
                "deployer: interrupted (signal {sig}): the decrypted copy was removed; {} was not changed",
                original.display()
            );
            std::process::exit(128 + sig);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    drop(signals);
    if !status.success() {
        return Err(VaultError::Editor {
            editor,
            detail: format!(
                "exited with {status}; {} was not changed",
                original.display()
            ),
        });
    }
    let new = Zeroizing::new(
        std::fs::read(&temp.path).map_err(|e| VaultError::io(&temp.path, "reading", e))?,
    );
    if force || new[..] != plaintext[..] {
        Ok(Some(new))
    } else {
        Ok(None)
    }
}

/// Signal handling while `vault edit` waits for the editor.
mod edit_signals {
    use std::sync::atomic::{AtomicI32, Ordering};

    static RECEIVED: AtomicI32 = AtomicI32::new(0);
    const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

    extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
        // A Ctrl-C typed in the terminal reaches the editor too (same
        // process group): the editor decides what it means (vi ignores it).
        // Only a SIGINT sent to deployer itself ends the edit.
        // SAFETY: the kernel passes a valid siginfo with SA_SIGINFO.
        let from_terminal =
            sig == libc::SIGINT && !info.is_null() && unsafe { (*info).si_code } == libc::SI_KERNEL;
        if !from_terminal {
            RECEIVED.store(sig, Ordering::SeqCst);
        }
    }

    /// The handlers, installed until dropped (then the previous ones return).
    pub struct Guard {
        old: Vec<(libc::c_int, libc::sigaction)>,
    }

    impl Guard {
        pub fn install() -> Guard {
            RECEIVED.store(0, Ordering::SeqCst);
            let mut old = Vec::new();
            for sig in SIGNALS {
                // SAFETY: plain sigaction(2) calls with zero-initialised structs;
                // the handler only stores to an atomic (async-signal-safe).
                unsafe {
                    let mut sa: libc::sigaction = std::mem::zeroed();
                    sa.sa_sigaction = on_signal as *const () as usize;
                    sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
                    libc::sigemptyset(&mut sa.sa_mask);
                    let mut prev: libc::sigaction = std::mem::zeroed();
                    if libc::sigaction(sig, &sa, &mut prev) == 0 {
                        old.push((sig, prev));
                    }
                }
            }
            Guard { old }
        }

        pub fn received(&self) -> Option<i32> {
            match RECEIVED.load(Ordering::SeqCst) {
                0 => None,
                s => Some(s),
            }
        }
    }

    impl Drop for Guard {
        fn drop(&mut self) {
            for (sig, prev) in &self.old {
                // SAFETY: restores the action saved by `install`.
                unsafe {
                    libc::sigaction(*sig, prev, std::ptr::null_mut());
                }
            }
        }
    }
}
