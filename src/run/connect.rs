//! Reaching a host: the SSH target from inventory variables
//! (`ansible_host`, `ansible_port`, `ansible_user`, key, `ansible_ssh_args`)
//! or a local connection.

use super::*;

/// How a host is reached, resolved from its variables without opening any
/// connection.
pub enum ConnectPlan {
    Local,
    Ssh(SshTarget),
}

impl Engine {
    pub(super) async fn connect(
        &self,
        host: &str,
        play: &Play,
        pl: &PlayLayers,
        first_script: Option<crate::connection::FirstScript>,
    ) -> Result<Connection, String> {
        match self.connect_plan(host, play, pl)? {
            ConnectPlan::Local => Ok(Connection::local(host)),
            ConnectPlan::Ssh(target) => {
                // The first script on a host is the deploy lock's, as the
                // state's user: `first_script`, sent with a new connection.
                let first = self.state_become(host).ok().flatten();
                if self.opts.fresh_connection {
                    return Connection::connect(host, &target, first.as_ref(), first_script)
                        .await
                        .map_err(|e| crate::secrets::mask(&e.to_string()));
                }
                let (conn, note) =
                    Connection::connect_warm(host, &target, first.as_ref(), first_script)
                        .await
                        .map_err(|e| crate::secrets::mask(&e.to_string()))?;
                if let Some(note) = note {
                    self.reporter.warning(&note);
                }
                Ok(conn)
            }
        }
    }

    /// The host's connection settings (`ansible_connection`, `ansible_host`,
    /// `ansible_port`, `ansible_user`, the key, `ansible_ssh_*_args`),
    /// resolved and checked without contacting it.
    pub(super) fn connect_plan(
        &self,
        host: &str,
        play: &Play,
        pl: &PlayLayers,
    ) -> Result<ConnectPlan, String> {
        let st = HostState::new(host);
        let ctx = self.context(play, pl, &st, None);
        let get = |k: &str| -> Result<Option<String>, String> {
            match ctx.lookup(k) {
                Some(v) if !v.is_undefined() && !v.is_none() => Ok(Some(v.to_string())),
                // A name defined nowhere is simply absent (a whole-file vault
                // that cannot be opened is no reason to fail here).
                _ => match (ctx.take_error(), ctx.names().iter().any(|n| n == k)) {
                    (Some(e), true) => Err(e),
                    _ => Ok(None),
                },
            }
        };
        match get("ansible_connection")?.as_deref() {
            Some("local") => return Ok(ConnectPlan::Local),
            None | Some("ssh" | "smart" | "ansible.builtin.ssh") => {}
            Some(other) => {
                return Err(format!(
                    "ansible_connection '{other}' is not supported yet by deployer (ssh or local)"
                ));
            }
        }
        let addr = get("ansible_host")?.unwrap_or_else(|| host.to_string());
        let port = match get("ansible_port")?.or(get("ansible_ssh_port")?) {
            Some(p) => Some(
                p.parse::<u16>()
                    .map_err(|_| format!("ansible_port '{p}' is not a port number"))?,
            ),
            None => None,
        };
        let mut target = SshTarget {
            host: addr,
            port,
            user: get("ansible_user")?.or(get("ansible_ssh_user")?),
            key_file: get("ansible_ssh_private_key_file")?.map(|p| expand_home(&p)),
            known_hosts_file: None,
            config_file: None,
            strict_host_key_checking: openssh::KnownHosts::Strict,
        };
        if let Some(args) = get("ansible_ssh_common_args")? {
            apply_ssh_args(&mut target, &args)?;
        }
        if let Some(args) = get("ansible_ssh_extra_args")? {
            apply_ssh_args(&mut target, &args)?;
        }
        if let Some(k) = &target.key_file
            && let Err(e) = std::fs::File::open(k)
        {
            return Err(format!("ansible_ssh_private_key_file {}: {e}", k.display()));
        }
        Ok(ConnectPlan::Ssh(target))
    }
}

pub(super) fn expand_home(p: &str) -> PathBuf {
    match p.strip_prefix("~/") {
        Some(rest) => std::env::var_os("HOME")
            .map(|h| Path::new(&h).join(rest))
            .unwrap_or_else(|| PathBuf::from(p)),
        None => PathBuf::from(p),
    }
}

/// The subset of ssh options deployer maps onto its SSH session; anything
/// else is refused rather than silently dropped.
pub(super) fn apply_ssh_args(t: &mut SshTarget, args: &str) -> Result<(), String> {
    let words = crate::shell::split(args).ok_or("ansible_ssh_common_args: unbalanced quotes")?;
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        let opt = if w == "-o" {
            it.next()
                .ok_or("ansible_ssh_common_args: -o needs a value")?
        } else if let Some(o) = w.strip_prefix("-o") {
            o.to_string()
        } else if w == "-F" {
            let f = expand_home(
                &it.next()
                    .ok_or("ansible_ssh_common_args: -F needs a file")?,
            );
            let f = std::fs::canonicalize(&f)
                .map_err(|e| format!("ansible_ssh_common_args: -F {}: {e}", f.display()))?;
            crate::connection::host_keys::check_config_file(&f)
                .map_err(|e| format!("ansible_ssh_common_args: -F {e}"))?;
            t.config_file = Some(f);
            continue;
        } else {
            return Err(format!(
                "ansible_ssh_common_args: unsupported ssh argument '{w}' (supported: -F FILE, -o UserKnownHostsFile=, -o StrictHostKeyChecking=)"
            ));
        };
        let (k, v) = opt.split_once('=').ok_or_else(|| {
            format!("ansible_ssh_common_args: expected -o Key=Value, got '{opt}'")
        })?;
        match k.to_ascii_lowercase().as_str() {
            "userknownhostsfile" => {
                crate::connection::host_keys::check_known_hosts_file("UserKnownHostsFile", v)
                    .map_err(|e| format!("ansible_ssh_common_args: {e}"))?;
                t.known_hosts_file = Some(PathBuf::from(v));
            }
            "stricthostkeychecking" => {
                t.strict_host_key_checking = match v.to_ascii_lowercase().as_str() {
                    "yes" => openssh::KnownHosts::Strict,
                    "accept-new" => openssh::KnownHosts::Add,
                    other => {
                        return Err(format!(
                            "StrictHostKeyChecking={other} is refused: deployer verifies host keys (use yes or accept-new)"
                        ));
                    }
                }
            }
            _ => {
                return Err(format!(
                    "ansible_ssh_common_args: unsupported ssh option '{k}' (supported: UserKnownHostsFile, StrictHostKeyChecking)"
                ));
            }
        }
    }
    Ok(())
}
