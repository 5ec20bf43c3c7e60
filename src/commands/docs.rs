//! `deployer completions SHELL` and `deployer man --out-dir DIR`: the command
//! line described for shells and for `man`, generated from the same clap
//! definition as `--help`, so they cannot drift from it.

use std::path::Path;

use clap::CommandFactory;

/// Prints the completion script for `shell` on stdout. Exit 0, or 1 when
/// stdout cannot be written.
pub fn completions(shell: clap_complete::Shell) -> i32 {
    let mut cmd = crate::cli::Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "deployer", &mut out);
    write_stdout(&out)
}

/// Writes `deployer.1` and `deployer-SUB.1` (nested ones as
/// `deployer-SUB-SUB2.1`) into `dir`. Exit 0, or 1 naming the file that could
/// not be written.
pub fn man_pages(dir: &Path) -> i32 {
    if let Err(e) = std::fs::create_dir_all(dir) {
        eprintln!("error: cannot create {}: {e}", dir.display());
        return 1;
    }
    let cmd = crate::cli::Cli::command();
    let mut written = Vec::new();
    if let Err(e) = write_page(&cmd, "deployer", dir, &mut written) {
        eprintln!("error: {e}");
        return 1;
    }
    for page in &written {
        println!("{}", page);
    }
    0
}

fn write_page(
    cmd: &clap::Command,
    name: &str,
    dir: &Path,
    written: &mut Vec<String>,
) -> Result<(), String> {
    // clap_mangen titles the page with the command's own name; give each
    // subcommand its full `deployer-sub` name (as git does).
    let page_cmd = cmd
        .clone()
        .name(name.to_string())
        .bin_name(name.replace('-', " "));
    let mut roff = Vec::new();
    clap_mangen::Man::new(page_cmd)
        .render(&mut roff)
        .map_err(|e| format!("cannot render the man page of {name}: {e}"))?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, roff).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    written.push(path.display().to_string());
    for sub in cmd.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        write_page(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}

fn write_stdout(bytes: &[u8]) -> i32 {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => 0,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            eprintln!("error: cannot write to stdout: {e}");
            1
        }
    }
}
