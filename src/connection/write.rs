//! The one way deployer writes a file or changes a file's owner and mode on a
//! target. Every module that writes a file goes through [`RemoteWrite`];
//! every module that changes the owner, group or mode of an existing path goes
//! through [`attributes_script`]. Do not write `> "$file"`, `chmod` or `chown`
//! by name in a module: a local user of the target can swap a name between
//! two commands, and root then writes or chowns whatever the name points to.
//!
//! # How to use it
//!
//! ```ignore
//! use crate::connection::write::RemoteWrite;
//! let w = RemoteWrite::new("/etc/app/app.conf", rendered.as_bytes())
//!     .owner(Some("app")).group(Some("app")).mode(Some(0o640));
//! // Either run it on its own (one remote execution) ...
//! let done = conn.write_file(&w, become_).await?;        // done.backup_file
//! // ... or put its script into a larger one (a release save first, say):
//! let script = format!("{save}{}", w.script()?);
//! let out = conn.run_script(&script, become_).await?;     // rc != 0: stderr says why
//! let backup = write::backup_file(&out.stdout_str());
//! ```
//!
//! The script is a self-contained subshell: it needs a POSIX shell and
//! coreutils only (no Python), leaves the caller's working directory, umask
//! and traps alone, and ends the whole script with its status when it fails.
//! Put it on lines of its own, never inside `if`, `&&` or `||` (the shell
//! would ignore `set -e` in it).
//!
//! # Why it is safe
//!
//! The destination directory may belong to another user (a copy into
//! `/home/mallory/` with `owner: mallory`). That user can rename, delete and
//! replace any name in it at any moment, so nothing is done there by name
//! except the final `rename(2)`, which never follows a link:
//!
//! 1. Symbolic links in the directory path that another user owns are refused
//!    (such a link can point the write anywhere).
//! 2. The shell `cd -P`s into the destination directory and makes a private
//!    staging directory there with `mktemp -d` (owned by the writing user,
//!    0700), then `cd`s into it and checks that it is still that directory
//!    (owner, mode 0700, parent is the destination directory). From then on
//!    nobody else can create, rename or open anything in the working
//!    directory: the new content, its owner and mode, the validator's input
//!    and a backup are all made there, under `umask 077`.
//! 3. Owner and mode are set before the file leaves the staging directory, so
//!    it is never readable by anyone the final mode does not allow.
//! 4. `fsync`, then `mv -T new ../NAME` (a `rename(2)` relative to the staging
//!    directory's parent: if the other user moved the staging directory away,
//!    the file lands in a directory that user could write anyway, never through
//!    a link). A link at the destination is replaced, not followed.
//!
//! [`attributes_script`] opens the path once (`exec 3<`), checks through
//! `/proc/self/fd/3` that what it opened is the path itself and not where a
//! link pointed, and applies `chown`/`chmod` to the open file
//! (`/proc/self/fd/3`), never to the name again. A regular file with other
//! hard links in a directory another user owns or can write is refused: that
//! user could have linked any file of the system there (where the kernel's
//! `fs.protected_hardlinks` is off), and a new owner or mode would apply to it.
//!
//! Not covered: POSIX ACLs that give another user write access to a directory
//! whose mode bits do not; a directory path through a link that root or the
//! writing user made (that is the path the playbook asked for).

use base64::Engine as _;

use super::{Become, Connection, Output, shell_quote};

/// A file to write on a target: content, and optionally owner, group, mode,
/// a backup of the previous file, and a validation command. Without an
/// explicit owner/group/mode, an existing regular file's are kept; a new file
/// gets the user's umask applied to 0666 (what Ansible does).
#[derive(Debug, Clone)]
pub struct RemoteWrite<'a> {
    pub dest: &'a str,
    pub content: &'a [u8],
    pub owner: Option<&'a str>,
    pub group: Option<&'a str>,
    pub mode: Option<u32>,
    pub backup: bool,
    /// A command run on the new content before it replaces the old: `%s`
    /// is the new file's path. Split into words like Ansible's `validate`
    /// (no shell: `$()`, `;` and quotes in it are just characters).
    pub validate: Option<&'a str>,
    /// Content made on the host instead of `content`: a shell snippet the
    /// module builds (task data in it quoted), run in the private staging
    /// directory, that must leave the new content in the file `new` there
    /// and exit non-zero (having printed why) when it cannot. Other files it
    /// makes there it removes itself. Used for a download (`get_url`).
    pub produce: Option<&'a str>,
    /// When the new content equals the existing regular file's, leave the
    /// file as it is (no rename, no backup) and print `U\tsame`.
    pub keep_if_same: bool,
    /// Whether the file it replaces gives its owner, group and mode (the
    /// default). Without, a replaced file keeps what `produce` made (`copy`
    /// with `remote_src`: the source's mode, the writing user), as Ansible's
    /// `atomic_move(keep_dest_attrs=False)`; a new file is the same either way.
    pub keep_attrs: bool,
}

/// What a finished write reports.
#[derive(Debug, Clone, Default)]
pub struct WriteOutcome {
    /// The backup of the previous file, when `backup` was asked and a file existed.
    pub backup_file: Option<String>,
}

impl<'a> RemoteWrite<'a> {
    pub fn new(dest: &'a str, content: &'a [u8]) -> RemoteWrite<'a> {
        RemoteWrite {
            dest,
            content,
            owner: None,
            group: None,
            mode: None,
            backup: false,
            validate: None,
            produce: None,
            keep_if_same: false,
            keep_attrs: true,
        }
    }
    /// See [`RemoteWrite::keep_attrs`].
    pub fn keep_attrs(mut self, keep: bool) -> Self {
        self.keep_attrs = keep;
        self
    }
    /// See [`RemoteWrite::produce`].
    pub fn produce(mut self, snippet: Option<&'a str>) -> Self {
        self.produce = snippet;
        self
    }
    /// See [`RemoteWrite::keep_if_same`].
    pub fn keep_if_same(mut self, keep: bool) -> Self {
        self.keep_if_same = keep;
        self
    }
    pub fn owner(mut self, owner: Option<&'a str>) -> Self {
        self.owner = owner;
        self
    }
    pub fn group(mut self, group: Option<&'a str>) -> Self {
        self.group = group;
        self
    }
    pub fn mode(mut self, mode: Option<u32>) -> Self {
        self.mode = mode;
        self
    }
    pub fn backup(mut self, backup: bool) -> Self {
        self.backup = backup;
        self
    }
    pub fn validate(mut self, validate: Option<&'a str>) -> Self {
        self.validate = validate;
        self
    }

    /// The shell script that performs the write (see the module doc). Errors
    /// are the task's mistakes (a `validate` without `%s`, a `dest` that names
    /// a directory), found before anything runs.
    pub fn script(&self) -> Result<String, String> {
        let (dir, name) = split_dest(self.dest)?;
        let b64 = base64::engine::general_purpose::STANDARD.encode(self.content);
        let mut s = String::with_capacity(b64.len() + b64.len() / 76 + 2048);
        s.push_str("(\nset -e\n__dw_umask=$(umask)\numask 077\n");
        s.push_str(&prologue(self.dest, &dir));
        s.push_str(&format!("__dw_name={}\n", shell_quote(&name)));
        // The traps end in `|| :`: under `set -e` a failing command in an
        // EXIT trap (the staging directory moved away by another user after
        // the write) would turn a finished write into a failure.
        s.push_str(STAGE);
        if let Some(p) = self.produce {
            s.push_str(p);
            s.push_str("\n[ -f new ] || __dw_fail \"no content was made for $__dw_dest\"\n");
        } else {
            s.push_str("base64 -d > new <<'__DEPLOYER_EOF__'\n");
            // Base64 lines cannot form the delimiter line.
            for chunk in b64.as_bytes().chunks(76) {
                s.push_str(std::str::from_utf8(chunk).unwrap_or(""));
                s.push('\n');
            }
            s.push_str("__DEPLOYER_EOF__\n");
        }
        if self.keep_if_same {
            s.push_str(
                "case $(stat -c %F -- \"../$__dw_name\" 2>/dev/null || true) in\n\
                 'regular file' | 'regular empty file')\n\
                 if cmp -s new \"../$__dw_name\"; then printf 'U\\tsame\\n'; exit 0; fi ;;\n\
                 esac\n",
            );
        }
        // Owner and mode of the file it replaces (a link is replaced, not
        // followed: it gives nothing), else 0666 less the login umask. One
        // `stat` reads type and attributes together.
        s.push_str(
            "__dw_old=$(stat -c '%F|%a|%u|%g' -- \"../$__dw_name\" 2>/dev/null || true)\n\
             case $__dw_old in\n\
             'regular file|'* | 'regular empty file|'*)\n",
        );
        if self.keep_attrs {
            s.push_str(
                "__dw_old=${__dw_old#*|}; chmod \"${__dw_old%%|*}\" new; __dw_old=${__dw_old#*|}\n\
                 chown \"${__dw_old%%|*}:${__dw_old#*|}\" new 2>/dev/null || true ;;\n",
            );
        } else {
            s.push_str(";;\n");
        }
        s.push_str(
            "*) chmod \"$(printf '%o' $(( 0666 & ~0$__dw_umask )))\" new ;;\n\
             esac\n",
        );
        if let Some(o) = self.owner {
            s.push_str(&format!("chown -- {} new\n", shell_quote(o)));
        }
        if let Some(g) = self.group {
            s.push_str(&format!("chgrp -- {} new\n", shell_quote(g)));
        }
        if let Some(m) = self.mode {
            s.push_str(&format!("chmod {m:04o} new\n"));
        }
        if let Some(v) = self.validate {
            s.push_str(&format!(
                "if ! __dw_out=$({} 2>&1 </dev/null); then printf '%s\\n' \"$__dw_out\" >&2; echo 'failed to validate' >&2; exit 3; fi\n",
                validate_command(v)?
            ));
        }
        if self.backup {
            s.push_str(
                "case $(stat -c %F -- \"../$__dw_name\" 2>/dev/null || true) in\n\
                 'regular file' | 'regular empty file')\n\
                 __dw_b=\"$__dw_name.$$.$(date +%Y-%m-%d@%H:%M:%S)~\"\n\
                 cp -P -p -- \"../$__dw_name\" bak\n\
                 mv -f -T -- bak \"../$__dw_b\"\n\
                 printf 'B\\t%s\\n' \"$__dw_dirslash$__dw_b\" ;;\n\
                 esac\n",
            );
        }
        s.push_str(
            "sync new 2>/dev/null || true\n\
             mv -f -T -- new \"../$__dw_name\"\n\
             sync .. 2>/dev/null || true\n\
             )\n",
        );
        s.push_str(SUBSHELL_END);
        Ok(s)
    }
}

/// After [`prologue`] and `__dw_name`: a private staging directory made
/// inside the destination directory and entered (owned by the running user,
/// 0700, or 2700 in a setgid directory such as Debian's /etc/redis, its
/// parent checked to be the destination directory). What is made
/// there (`new`, `bak`) moves out with one `rename(2)`; the trap removes the
/// rest on every exit.
const STAGE: &str = "__dw_at=$(stat -c %d:%i .)\n\
     __dw_s=$(mktemp -d ./.deployer-write.XXXXXX) || __dw_fail \"cannot create a temporary directory in $__dw_dir\"\n\
     __dw_s=${__dw_s#./}\n\
     trap 'rmdir -- \"$__dw_s\" 2>/dev/null || :' EXIT\n\
     cd -P -- \"$__dw_s\"\n\
     case \"$(stat -c '%u %a' .)\" in \"$__dw_me 700\"|\"$__dw_me 2700\") true;; *) false;; esac && [ \"$(stat -c %d:%i ..)\" = \"$__dw_at\" ] || __dw_fail \"refusing to write $__dw_dest: its temporary directory was replaced while in use\"\n\
     trap 'rm -f -- new bak; cd .. && rmdir -- \"$__dw_s\" 2>/dev/null || :' EXIT\n";

/// The script that makes `path` a symbolic link to `src` (replacing a link,
/// or with `force` a file, already there) without following a link on the
/// way: the walk into the directory is [`WALK_LIB`]'s, the link is made in a
/// private staging directory and moved over the name with one `rename(2)`
/// (never `ln -sf` by name, which another user of the directory could race).
pub fn link_script(path: &str, src: &str) -> Result<String, String> {
    let (dir, name) = split_dest(path)?;
    let mut s = String::from("(\nset -e\numask 077\n");
    s.push_str(&prologue(path, &dir));
    s.push_str(&format!("__dw_name={}\n", shell_quote(&name)));
    s.push_str(STAGE);
    s.push_str(&format!(
        "[ ! -d \"../$__dw_name\" ] || [ -L \"../$__dw_name\" ] || __dw_fail \"refusing to replace the directory $__dw_dest with a link\"\n\
         ln -s -- {} new\n\
         mv -f -T -- new \"../$__dw_name\"\n\
         sync .. 2>/dev/null || true\n\
         )\n",
        shell_quote(src)
    ));
    s.push_str(SUBSHELL_END);
    Ok(s)
}

/// The script that updates the times of an existing `path` (its own times
/// when it is a link: `touch -h`), reached by [`WALK_LIB`]'s walk, never
/// through a link another user could plant; it creates nothing.
pub fn touch_script(path: &str) -> Result<String, String> {
    touch_script_with(path, "")
}

/// [`touch_script`] with touch's `-m` (modification time only) or `-a`
/// (access time only), or "" for both.
pub fn touch_script_with(path: &str, flags: &str) -> Result<String, String> {
    debug_assert!(matches!(flags, "" | "-m" | "-a"));
    let (dir, name) = split_path(path);
    let mut s = String::from("(\nset -e\n");
    s.push_str(&prologue(path, &dir));
    s.push_str(&format!(
        "__dw_name={}\ntouch -h -c {flags} -- \"./$__dw_name\"\n)\n",
        shell_quote(&name)
    ));
    s.push_str(SUBSHELL_END);
    Ok(s)
}

impl Connection {
    /// Writes one file (one remote execution); see [`RemoteWrite`].
    pub async fn write_file(
        &self,
        w: &RemoteWrite<'_>,
        become_: Option<&Become>,
    ) -> Result<WriteOutcome, String> {
        let script = w.script()?;
        let out = self
            .run_script(&script, become_)
            .await
            .map_err(|e| e.to_string())?;
        outcome(w.dest, &out)
    }
}

/// The result of a script that ran [`RemoteWrite::script`] (alone or inside a
/// larger script): the error to report, or what the write printed.
pub fn outcome(dest: &str, out: &Output) -> Result<WriteOutcome, String> {
    if out.rc != 0 {
        return Err(format!(
            "writing {dest} failed (rc={}): {}",
            out.rc,
            out.stderr_str().trim()
        ));
    }
    Ok(WriteOutcome {
        backup_file: backup_file(&out.stdout_str()),
    })
}

/// The backup path a write printed (`B\t<path>`), if it made one.
pub fn backup_file(stdout: &str) -> Option<String> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("B\t"))
        .map(str::to_string)
}

/// Owner, group and mode to give an existing path.
#[derive(Debug, Clone, Copy, Default)]
pub struct PathAttrs<'a> {
    pub owner: Option<&'a str>,
    pub group: Option<&'a str>,
    pub mode: Option<u32>,
}

impl PathAttrs<'_> {
    pub fn is_empty(&self) -> bool {
        self.owner.is_none() && self.group.is_none() && self.mode.is_none()
    }
}

/// The script that gives an existing regular file or directory `attrs`
/// without following a link at any moment (see the module doc). With
/// `link: true` the path is a symbolic link whose own owner and group change
/// (`chown -h`; a link has no mode of its own).
pub fn attributes_script(path: &str, attrs: &PathAttrs<'_>, link: bool) -> Result<String, String> {
    if attrs.is_empty() {
        return Ok(String::new());
    }
    let (dir, name) = split_path(path);
    let mut s = String::from("(\nset -e\n");
    s.push_str(&prologue(path, &dir));
    s.push_str(&format!("__dw_name={}\n", shell_quote(&name)));
    if link {
        s.push_str(
            "[ -L \"./$__dw_name\" ] || __dw_fail \"$__dw_dest is not a symbolic link any more\"\n",
        );
        if let Some(o) = attrs.owner {
            s.push_str(&format!(
                "chown -h -- {} \"./$__dw_name\"\n",
                shell_quote(o)
            ));
        }
        if let Some(g) = attrs.group {
            s.push_str(&format!(
                "chgrp -h -- {} \"./$__dw_name\"\n",
                shell_quote(g)
            ));
        }
        s.push_str(")\n");
        s.push_str(SUBSHELL_END);
        return Ok(s);
    }
    s.push_str(
        "[ ! -L \"./$__dw_name\" ] || __dw_fail \"refusing to change $__dw_dest: it is a symbolic link\"\n\
         [ -f \"./$__dw_name\" ] || [ -d \"./$__dw_name\" ] || __dw_fail \"$__dw_dest is not a regular file or directory\"\n\
         exec 3< \"./$__dw_name\"\n\
         __dw_here=$(pwd -P); [ \"$__dw_here\" != / ] || __dw_here=\n\
         if [ \"$__dw_name\" = . ]; then __dw_want=${__dw_here:-/}; else __dw_want=\"$__dw_here/$__dw_name\"; fi\n\
         [ \"$(readlink /proc/self/fd/3)\" = \"$__dw_want\" ] || __dw_fail \"refusing to change $__dw_dest: it was replaced while in use\"\n\
         if [ -f /proc/self/fd/3 ] && [ \"$(stat -L -c %h /proc/self/fd/3)\" -gt 1 ]; then\n\
         __dw_pi=$(stat -c '%u %a' .)\n\
         case ${__dw_pi% *} in 0|\"$__dw_me\") ;; *) __dw_fail \"refusing to change $__dw_dest: it has other hard links and its directory belongs to another user\" ;; esac\n\
         [ $(( 0${__dw_pi#* } & 022 )) = 0 ] || __dw_fail \"refusing to change $__dw_dest: it has other hard links and its directory is writable by other users\"\n\
         fi\n",
    );
    if let Some(o) = attrs.owner {
        s.push_str(&format!("chown -- {} /proc/self/fd/3\n", shell_quote(o)));
    }
    if let Some(g) = attrs.group {
        s.push_str(&format!("chgrp -- {} /proc/self/fd/3\n", shell_quote(g)));
    }
    if let Some(m) = attrs.mode {
        s.push_str(&format!("chmod {m:04o} /proc/self/fd/3\n"));
    }
    s.push_str("exec 3<&-\n)\n");
    s.push_str(SUBSHELL_END);
    Ok(s)
}

/// The script that removes `path` (a file, a link, or a directory and all
/// it holds) without following a link on the way: the walk into its
/// directory is [`WALK_LIB`]'s, then `rm -rf` of the name relative to that
/// directory (GNU `rm` never follows a link inside the tree it removes; a
/// link at `path` itself is removed, not followed).
pub fn remove_script(path: &str) -> Result<String, String> {
    let (dir, name) = split_path(path);
    if name == "." || name == ".." {
        return Err(format!("refusing to remove '{path}'"));
    }
    let mut s = String::from("(\nset -e\n");
    s.push_str(WALK_LIB);
    s.push_str(&format!(
        "__dw_dest={}\n__dw_name={}\n",
        shell_quote(path),
        shell_quote(&name)
    ));
    s.push_str("if [ -d ");
    s.push_str(&shell_quote(&dir));
    s.push_str(" ]; then\n");
    s.push_str(&format!("__dw_go {}\n", go_args(&dir)));
    s.push_str(
        "if [ -e \"./$__dw_name\" ] || [ -L \"./$__dw_name\" ]; then rm -rf -- \"./$__dw_name\"; fi\nfi\n)\n",
    );
    s.push_str(SUBSHELL_END);
    Ok(s)
}

/// The script that makes directory `path` and every missing directory above
/// it (`mkdir -p`), each one created with `attrs` (as Ansible's `file
/// state=directory` does), through [`WALK_LIB`]'s walk: never through a link
/// another user could plant, attributes set through `.` from inside.
pub fn mkdir_script(path: &str, attrs: &PathAttrs<'_>) -> String {
    let mut s = String::from("(\nset -e\n");
    s.push_str(WALK_LIB);
    s.push_str(&format!("__dw_dest={}\n__dw_mk=1\n", shell_quote(path)));
    if let Some(o) = attrs.owner {
        s.push_str(&format!("__dw_own={}\n", shell_quote(o)));
    }
    if let Some(g) = attrs.group {
        s.push_str(&format!("__dw_grp={}\n", shell_quote(g)));
    }
    if let Some(m) = attrs.mode {
        s.push_str(&format!("__dw_mode={m:04o}\n"));
    }
    s.push_str(&format!("__dw_go {}\n)\n", go_args(path)));
    s.push_str(SUBSHELL_END);
    s
}

/// After the subshell: its failure ends the whole script. Not `( ... ) ||
/// exit`: on the left of `||` the shell ignores `set -e` inside, and a failed
/// step would go on to the next. For the same reason, never put these scripts
/// in an `if`, `&&` or `||` list.
const SUBSHELL_END: &str = "__dw_rc=$?; [ \"$__dw_rc\" = 0 ] || exit \"$__dw_rc\"\n";

/// The shell functions every script here starts with.
///
/// `__dw_go START COMPONENT...` changes into a directory one component at a
/// time, never through a name another user could swap:
/// - a symbolic link is followed only when root or the running user owns it
///   AND the directory holding it is not writable by anyone else (sticky
///   directories such as `/tmp` count as not writable: nobody else can
///   replace root's entry there); any other link is refused;
/// - after every `cd` into a real directory, its `..` must be the directory
///   just left (same device and inode): a directory swapped for a link, or
///   moved, between the check and the `cd` is caught there;
/// - with `__dw_mk` set, a missing component is made (`mkdir`, owned by the
///   running user) and given the owner, group and mode in `__dw_own`,
///   `__dw_grp`, `__dw_mode` through `.` once inside it (never by name);
///   each directory made is listed in `__dw_made`.
///
/// `__dw_fail MESSAGE` prints the message and exits (the subshell or script).
/// `$__dw_dest` names the path in messages.
pub const WALK_LIB: &str = r#"__dw_fail() { printf '%s\n' "$*" >&2; exit 1; }
__dw_me=$(id -u)
__dw_mk=
__dw_own=
__dw_grp=
__dw_mode=
__dw_made=
__dw_step() {
  __dw_tl=
  if [ "$__dw_c" = .. ]; then cd -P .. || __dw_fail "cannot enter $(pwd -P)/.."; __dw_at=$(stat -c %d:%i .); return 0; fi
  __dw_pi=$(stat -c '%u %a' .) || __dw_fail "cannot read $(pwd -P)"
  __dw_pt=1
  case ${__dw_pi% *} in 0|"$__dw_me") ;; *) __dw_pt= ;; esac
  __dw_pm=0${__dw_pi#* }
  if [ $(( __dw_pm & 022 )) != 0 ] && [ $(( __dw_pm & 01000 )) = 0 ]; then __dw_pt=; fi
  __dw_new=
  if [ -L "./$__dw_c" ]; then
    __dw_o=$(stat -c %u -- "./$__dw_c") || __dw_fail "cannot read $(pwd -P)/$__dw_c"
    [ "$__dw_o" = 0 ] || [ "$__dw_o" = "$__dw_me" ] || __dw_fail "refusing $__dw_dest: $(pwd -P)/$__dw_c is a symbolic link owned by another user (uid $__dw_o)"
    [ -n "$__dw_pt" ] || __dw_fail "refusing $__dw_dest: $(pwd -P)/$__dw_c is a symbolic link in a directory another user can write"
    __dw_tl=1
  elif [ -n "$__dw_mk" ] && [ ! -e "./$__dw_c" ]; then
    mkdir -- "./$__dw_c" 2>/dev/null || [ -d "./$__dw_c" ] || __dw_fail "cannot create $(pwd -P)/$__dw_c"
    __dw_new=1
  fi
  [ -d "./$__dw_c" ] || __dw_fail "Destination directory $(pwd -P)/$__dw_c does not exist"
  cd -P -- "./$__dw_c" || __dw_fail "cannot enter $(pwd -P)/$__dw_c"
  if [ -z "$__dw_tl" ]; then
    [ "$(stat -c %d:%i ..)" = "$__dw_at" ] || __dw_fail "refusing $__dw_dest: $__dw_c was replaced while in use"
  fi
  __dw_at=$(stat -c %d:%i .)
  if [ -n "$__dw_new" ]; then
    [ "$(stat -c %u .)" = "$__dw_me" ] || __dw_fail "refusing $__dw_dest: $(pwd -P) was replaced while in use"
    if [ -n "$__dw_own" ]; then chown -- "$__dw_own" . || __dw_fail "cannot set the owner of $(pwd -P)"; fi
    if [ -n "$__dw_grp" ]; then chgrp -- "$__dw_grp" . || __dw_fail "cannot set the group of $(pwd -P)"; fi
    if [ -n "$__dw_mode" ]; then chmod -- "$__dw_mode" . || __dw_fail "cannot set the mode of $(pwd -P)"; fi
    __dw_made="$__dw_made$(pwd -P)
"
  fi
}
__dw_go() {
  cd -P -- "$1" || __dw_fail "cannot enter $1"
  shift
  __dw_at=$(stat -c %d:%i .)
  for __dw_c in "$@"; do __dw_step; done
}
"#;

/// The shell words of a `__dw_go` call that enters `dir`: the start (`/` or
/// `.`) and the components, each quoted (`.` components dropped).
pub fn go_args(dir: &str) -> String {
    let mut s = String::from(if dir.starts_with('/') { "/" } else { "." });
    for c in dir.split('/').filter(|c| !c.is_empty() && *c != ".") {
        s.push(' ');
        s.push_str(&shell_quote(c));
    }
    s
}

/// The common head: the walk functions, the path's own name for messages,
/// and the safe walk into the directory (see [`WALK_LIB`]).
fn prologue(dest: &str, dir: &str) -> String {
    prologue_making(dest, dir, false)
}

/// [`prologue`], and with `create` every missing directory of the path is
/// made on the way (by the walk, never through a link another user could
/// plant; each new level 0700 when the caller set `umask 077`): for private
/// trees such as the backup directory.
pub(crate) fn prologue_making(dest: &str, dir: &str, create: bool) -> String {
    let mut s = String::from(WALK_LIB);
    s.push_str(&format!(
        "__dw_dest={}\n__dw_dir={}\n",
        shell_quote(dest),
        shell_quote(dir),
    ));
    if create {
        s.push_str("__dw_mk=1\n");
    } else {
        s.push_str(
            "[ -d \"$__dw_dir\" ] || __dw_fail \"Destination directory $__dw_dir does not exist\"\n",
        );
    }
    s.push_str(&format!("__dw_go {}\n__dw_mk=\n", go_args(dir)));
    s.push_str(
        "case $__dw_dir in */) __dw_dirslash=$__dw_dir ;; *) __dw_dirslash=$__dw_dir/ ;; esac\n",
    );
    s
}

/// A destination's directory and file name; a path ending in `/` names a
/// directory, which cannot be written as a file.
fn split_dest(dest: &str) -> Result<(String, String), String> {
    if dest.is_empty() || dest.ends_with('/') {
        return Err(format!(
            "dest '{dest}' names a directory: give the path of the file to write"
        ));
    }
    let (dir, name) = split_path(dest);
    if name == "." || name == ".." {
        return Err(format!("dest '{dest}' names a directory"));
    }
    Ok((dir, name))
}

/// The directory and last component of a path (`/` itself is `("/", ".")`).
pub fn split_path(path: &str) -> (String, String) {
    let p = path.trim_end_matches('/');
    if p.is_empty() {
        return ("/".into(), ".".into());
    }
    match p.rsplit_once('/') {
        Some(("", name)) => ("/".into(), name.into()),
        Some((dir, name)) => (dir.into(), name.into()),
        None => (".".into(), p.into()),
    }
}

/// `validate` as shell words: each word quoted, `%s` replaced by a reference
/// to the new file (`"$PWD/new"`, inside the private staging directory).
fn validate_command(v: &str) -> Result<String, String> {
    if !v.contains("%s") {
        return Err(format!(
            "validate must contain %s (the path of the file to check): '{v}'"
        ));
    }
    let words =
        crate::shell::split(v).ok_or_else(|| format!("validate: unbalanced quotes in '{v}'"))?;
    if words.is_empty() {
        return Err("validate: empty command".into());
    }
    Ok(words
        .iter()
        .map(|w| {
            w.split("%s")
                .map(|piece| {
                    if piece.is_empty() {
                        String::new()
                    } else {
                        shell_quote(piece)
                    }
                })
                .collect::<Vec<_>>()
                .join("\"$PWD/new\"")
        })
        .collect::<Vec<_>>()
        .join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_directory_and_name() {
        assert_eq!(
            split_path("/etc/app.conf"),
            ("/etc".into(), "app.conf".into())
        );
        assert_eq!(split_path("/x"), ("/".into(), "x".into()));
        assert_eq!(split_path("rel"), (".".into(), "rel".into()));
        assert_eq!(split_path("/srv/d/"), ("/srv".into(), "d".into()));
        assert_eq!(split_path("/"), ("/".into(), ".".into()));
        assert!(split_dest("/srv/d/").is_err());
        assert_eq!(go_args("/home/m/s b"), "/ home m 's b'");
        assert_eq!(go_args("/"), "/");
        assert_eq!(go_args("a/./b"), ". a b");
    }

    #[test]
    fn validate_is_split_into_quoted_words_without_a_shell() {
        assert_eq!(
            validate_command("visudo -cf %s").expect("ok"),
            "visudo -cf \"$PWD/new\""
        );
        assert_eq!(
            validate_command("check --file=%s '$(touch /x)'").expect("ok"),
            "check --file=\"$PWD/new\" '$(touch /x)'"
        );
        assert!(validate_command("true").is_err());
    }

    /// The write run for real by the local shell: content, mode, a link at
    /// the destination replaced (its target untouched), a backup made.
    #[tokio::test]
    async fn local_write_replaces_a_link_and_keeps_its_target() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("target");
        std::fs::write(&target, "keep").expect("write");
        let dest = dir.path().join("dest");
        std::os::unix::fs::symlink(&target, &dest).expect("link");
        let dest_s = dest.display().to_string();
        let c = Connection::local("localhost");
        let w = RemoteWrite::new(&dest_s, b"new $(x) `y`\n__DEPLOYER_EOF__\n").mode(Some(0o600));
        c.write_file(&w, None).await.expect("write");
        assert_eq!(std::fs::read_to_string(&target).expect("read"), "keep");
        let meta = std::fs::symlink_metadata(&dest).expect("meta");
        use std::os::unix::fs::PermissionsExt;
        assert!(meta.file_type().is_file());
        assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
        assert_eq!(
            std::fs::read_to_string(&dest).expect("read"),
            "new $(x) `y`\n__DEPLOYER_EOF__\n"
        );
        let w = RemoteWrite::new(&dest_s, b"second").backup(true);
        let done = c.write_file(&w, None).await.expect("write");
        let b = done.backup_file.expect("a backup");
        assert_eq!(
            std::fs::read_to_string(&b).expect("backup"),
            "new $(x) `y`\n__DEPLOYER_EOF__\n"
        );
        // Kept the old file's mode; nothing left behind but dest, target, backup.
        let meta = std::fs::metadata(&dest).expect("meta");
        assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 3);
        // A failing validator: nothing replaced, error says why.
        let w = RemoteWrite::new(&dest_s, b"third").validate(Some("false %s"));
        let e = c.write_file(&w, None).await.expect_err("must fail");
        assert!(e.contains("failed to validate"), "{e}");
        assert_eq!(std::fs::read_to_string(&dest).expect("read"), "second");
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 3);
    }

    #[tokio::test]
    async fn local_attributes_refuse_a_link_and_change_a_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("target");
        std::fs::write(&target, "keep").expect("write");
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).expect("link");
        let c = Connection::local("localhost");
        let attrs = PathAttrs {
            mode: Some(0o644),
            ..Default::default()
        };
        let s = attributes_script(&link.display().to_string(), &attrs, false).expect("script");
        let o = c.run_script(&s, None).await.expect("run");
        assert_ne!(o.rc, 0);
        assert!(
            o.stderr_str().contains("symbolic link"),
            "{}",
            o.stderr_str()
        );
        let mode = std::fs::metadata(&target)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o600);
        let s = attributes_script(&target.display().to_string(), &attrs, false).expect("script");
        let o = c.run_script(&s, None).await.expect("run");
        assert_eq!(o.rc, 0, "{}", o.stderr_str());
        let mode = std::fs::metadata(&target)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o644);
    }
}
