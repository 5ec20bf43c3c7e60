//! `apt_key`: an OpenPGP key in an APT keyring through the host's `apt-key`
//! (and `gpg` to read a key's id), as Ansible's `ansible.builtin.apt_key`
//! does: the key id comes from `id`, else from the key (`gpg --with-colons`);
//! `present` adds it when `apt-key adv --list-public-keys` does not list it,
//! `absent` deletes it when listed; the list is read again to prove it.
//!
//! The key's data goes to the host base64-encoded on the script's own text,
//! never as shell words. Supported: `id`, `data`, `file`, `keyring`, `state`,
//! `validate_certs` (accepted). Returns `id`, `short_id`, `fp`, `key_id`,
//! `before` and, once changed, `after`. Not supported yet: `url` and
//! `keyserver` (keys over the network): the task fails saying so.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::args::{de_bool, de_opt_string};
use super::registry::{ArgSchema, BoxFuture, Module, ModuleFuture, Plan, PlanApply, plan_apply};
use super::{ModuleCtx, ModuleResult};
use crate::connection::shell_quote;

fn yes() -> bool {
    true
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Default, Debug)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    #[default]
    Present,
    Absent,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct AptKeyArgs {
    #[serde(default, deserialize_with = "de_opt_string")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub data: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub file: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub keyring: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub url: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub keyserver: Option<String>,
    #[serde(default = "yes", deserialize_with = "de_bool")]
    pub validate_certs: bool,
    #[serde(default)]
    pub state: KeyState,
}

pub struct AptKey;

impl Module for AptKey {
    fn name(&self) -> &'static str {
        "apt_key"
    }
    fn fqcn(&self) -> &'static str {
        "ansible.builtin.apt_key"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<AptKeyArgs>()
    }
    fn check_combination(&self, args: &Map<String, Json>) -> Result<(), String> {
        let given: Vec<&str> = ["data", "file", "keyserver", "url"]
            .into_iter()
            .filter(|k| args.contains_key(*k))
            .collect();
        if given.len() > 1 {
            return Err(format!(
                "parameters are mutually exclusive: {}",
                given.join("|")
            ));
        }
        Ok(())
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        plan_apply(self, args, ctx)
    }
}

/// Ansible's `parse_output_for_keys`: the ids of `pub`/`sub` lines (not
/// expired), from `apt-key`'s listing or `gpg --with-colons`.
fn keys_in(output: &str, short: bool) -> Vec<String> {
    let mut found = Vec::new();
    for line in output.split('\n') {
        if !(line.starts_with("pub") || line.starts_with("sub")) || line.contains("expired") {
            continue;
        }
        let tokens: Vec<&str> = line.split_whitespace().collect();
        let code = tokens
            .get(1)
            .and_then(|c| c.split_once('/'))
            .filter(|(_, r)| !r.contains('/'))
            .map(|(_, r)| r.to_string());
        let code = match code {
            Some(c) => c,
            None => match line.split(':').nth(4) {
                Some(c) => c.to_string(),
                None => continue,
            },
        };
        found.push(code);
    }
    if short {
        found = found
            .into_iter()
            .map(|k| k[k.len().saturating_sub(8)..].to_string())
            .collect();
    }
    found
}

/// Ansible's `parse_key_id`: (short id, fingerprint part, id).
fn parse_key_id(id: &str) -> Option<(String, String, String)> {
    let hex = id
        .strip_prefix("0x")
        .or_else(|| id.strip_prefix("0X"))
        .unwrap_or(id);
    if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let key = hex.to_uppercase();
    let n = key.len();
    if n != 8 && n != 16 && n <= 16 {
        return None;
    }
    let short = key[n - 8..].to_string();
    let fp = if n > 16 {
        key[n - 16..].to_string()
    } else {
        key.clone()
    };
    Some((short, fp, key))
}

fn keyring_words(keyring: Option<&str>) -> String {
    keyring
        .map(|k| format!(" --keyring {}", shell_quote(k)))
        .unwrap_or_default()
}

/// The script that lists the keyring's keys (`apt-key adv --list-public-keys`).
/// A keyring that does not exist lists nothing (apt-key would make it, even
/// in check mode).
fn list_script(keyring: Option<&str>) -> String {
    let missing = keyring
        .map(|k| format!("[ -e {0} ] || [ -L {0} ] || exit 0\n", shell_quote(k)))
        .unwrap_or_default();
    format!(
        "{missing}LC_ALL=C apt-key{} adv --list-public-keys --keyid-format=long 2>/dev/null\n",
        keyring_words(keyring)
    )
}

/// What was read on the host.
pub struct Observed {
    /// The key id from `id`, or read from the key.
    id: Result<Option<String>, String>,
    /// The keyring's listing (`Err`: why it could not be listed).
    listing: Result<String, String>,
}

/// The change: add (the key's source) or delete (the short id).
pub enum Change {
    Add,
    Delete(String),
}

impl PlanApply for AptKey {
    type Args = AptKeyArgs;
    type Observed = Observed;
    type Changes = (AptKeyArgs, Change, bool, String, String);

    fn observe<'a>(
        &'a self,
        a: &'a AptKeyArgs,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> BoxFuture<'a, Result<Observed, String>> {
        Box::pin(async move {
            if a.url.is_some() || a.keyserver.is_some() {
                return Ok(Observed {
                    id: Err("apt_key: keys from url or keyserver are not supported yet by deployer (give the key as data or file)".into()),
                    listing: Ok(String::new()),
                });
            }
            let tools = ctx
                .conn
                .run_script(
                    "command -v apt-key >/dev/null || { echo 'apt-key'; exit 0; }; command -v gpg >/dev/null || echo gpg\n",
                    ctx.become_.as_ref(),
                )
                .await
                .map_err(|e| e.to_string())?;
            match tools.stdout_str().trim() {
                "" => {}
                "apt-key" => {
                    return Ok(Observed {
                        id: Err("Failed to find required executable \"apt-key\" in paths: /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin. Apt-key has been deprecated. See the deb822_repository as an alternative.".into()),
                        listing: Ok(String::new()),
                    });
                }
                other => {
                    return Ok(Observed {
                        id: Err(format!("Failed to find required executable \"{other}\"")),
                        listing: Ok(String::new()),
                    });
                }
            }
            let id = match (&a.id, &a.file, &a.data) {
                (Some(id), _, _) if !id.is_empty() => Ok(Some(id.clone())),
                (_, Some(file), _) => {
                    read_id(
                        ctx,
                        &format!("gpg --with-colons {} 2>/dev/null\n", shell_quote(file)),
                        &format!("Unable to extract key from '{file}'"),
                    )
                    .await?
                }
                (_, _, Some(data)) if !data.is_empty() => {
                    let b64 = base64::engine::general_purpose::STANDARD.encode(data.as_bytes());
                    read_id(
                        ctx,
                        &format!(
                            "printf '%s' '{b64}' | base64 -d | gpg --with-colons - 2>/dev/null\n"
                        ),
                        "Unable to extract key from 'inline data'",
                    )
                    .await?
                }
                _ => Ok(None),
            };
            let short = id
                .as_ref()
                .ok()
                .and_then(|i| i.as_deref())
                .and_then(parse_key_id)
                .is_some_and(|(_, _, k)| k.len() == 8);
            let out = ctx
                .conn
                .run_script(&list_script(a.keyring.as_deref()), ctx.become_.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            let listing = if out.rc == 0 {
                Ok(keys_in(&out.stdout_str(), short).join("\n"))
            } else {
                Err("Unable to list public keys".to_string())
            };
            Ok(Observed { id, listing })
        })
    }

    fn plan(
        &self,
        a: AptKeyArgs,
        o: Observed,
        _: &ModuleCtx<'_>,
    ) -> Result<Plan<Self::Changes>, String> {
        let id = match o.id {
            Ok(id) => id,
            Err(m) => return Ok(Plan::unchanged(ModuleResult::failed(m))),
        };
        let mut r = ModuleResult::ok();
        r.data.insert("id".into(), json!(id));
        let Some((short, fp, key)) = id.as_deref().and_then(parse_key_id) else {
            r.failed = true;
            r.msg = Some("Invalid key_id".into());
            return Ok(Plan::unchanged(r));
        };
        r.data.insert("short_id".into(), json!(short));
        r.data.insert("fp".into(), json!(fp));
        r.data.insert("key_id".into(), json!(key));
        let keys: Vec<String> = match o.listing {
            Ok(l) => l.lines().map(str::to_string).collect(),
            Err(m) => {
                r.failed = true;
                r.msg = Some(m);
                return Ok(Plan::unchanged(r));
            }
        };
        let short_format = key.len() == 8;
        r.data.insert("before".into(), json!(keys));
        let listed = |keys: &[String]| {
            if short_format {
                keys.contains(&short)
            } else {
                keys.contains(&fp)
            }
        };
        let change = match a.state {
            KeyState::Present if !listed(&keys) => {
                if a.file.is_none() && a.data.is_none() {
                    r.failed = true;
                    r.msg = Some("No key to add ... how did i get here?!?!".into());
                    return Ok(Plan::unchanged(r));
                }
                Change::Add
            }
            KeyState::Absent if keys.contains(&fp) => Change::Delete(short.clone()),
            _ => return Ok(Plan::unchanged(r)),
        };
        r.changed = true;
        Ok(Plan {
            result: r,
            changes: Some((a, change, short_format, short, fp)),
        })
    }

    fn apply<'a>(
        &'a self,
        (a, change, short_format, short, fp): Self::Changes,
        mut r: ModuleResult,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> ModuleFuture<'a> {
        Box::pin(async move {
            let ring = keyring_words(a.keyring.as_deref());
            let (script, what) = match &change {
                Change::Add => match (&a.file, &a.data) {
                    (Some(f), _) => (
                        format!("apt-key{ring} add {} 2>&1\n", shell_quote(f)),
                        format!("Unable to add a key from file {f}"),
                    ),
                    (_, Some(d)) => {
                        let b64 = base64::engine::general_purpose::STANDARD.encode(d.as_bytes());
                        (
                            format!("printf '%s' '{b64}' | base64 -d | apt-key{ring} add - 2>&1\n"),
                            "Unable to add a key from binary data".to_string(),
                        )
                    }
                    _ => return Ok(ModuleResult::failed("No key to add")),
                },
                Change::Delete(id) => (
                    format!("apt-key{ring} del {} 2>&1\n", shell_quote(id)),
                    format!("Unable to remove a key with id {short}"),
                ),
            };
            let out = ctx
                .conn
                .run_script(&script, ctx.become_.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            if out.rc != 0 {
                r.failed = true;
                r.changed = false;
                r.msg = Some(what);
                r.data
                    .insert("stdout".into(), json!(out.stdout_str().trim_end()));
                return Ok(r);
            }
            let out = ctx
                .conn
                .run_script(&list_script(a.keyring.as_deref()), ctx.become_.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            let after = keys_in(&out.stdout_str(), short_format);
            r.data.insert("after".into(), json!(after));
            let there = if short_format {
                after.contains(&short)
            } else {
                after.contains(&fp)
            };
            let bad = match change {
                Change::Add if !there => Some("failed to add the key"),
                Change::Delete(_) if after.contains(&fp) => Some("the key was not removed"),
                _ => None,
            };
            if let Some(b) = bad {
                r.failed = true;
                r.msg = Some(format!(
                    "apt-key did not return an error, but {b} (check that the id is correct and *not* a subkey)"
                ));
            }
            Ok(r)
        })
    }
}

/// The first key id `gpg --with-colons` prints for a key; `Err` is the task's
/// failure message when gpg cannot read it.
async fn read_id(
    ctx: &mut ModuleCtx<'_>,
    script: &str,
    fail: &str,
) -> Result<Result<Option<String>, String>, String> {
    let out = ctx
        .conn
        .run_script(
            &format!("export LC_ALL=C LANG=C GNUPGHOME=\"$(mktemp -d)\"\n{script}rc=$?; rm -rf \"$GNUPGHOME\"; exit $rc\n"),
            ctx.become_.as_ref(),
        )
        .await
        .map_err(|e| e.to_string())?;
    if out.rc != 0 {
        return Ok(Err(fail.to_string()));
    }
    Ok(Ok(keys_in(&out.stdout_str(), false).into_iter().next()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_and_listings() {
        assert_eq!(
            parse_key_id("0x7eb4f620edddbba4"),
            Some((
                "EDDDBBA4".into(),
                "7EB4F620EDDDBBA4".into(),
                "7EB4F620EDDDBBA4".into()
            ))
        );
        assert_eq!(parse_key_id("12345"), None);
        assert_eq!(parse_key_id("zz"), None);
        let listing = "pub   ed25519/7EB4F620EDDDBBA4 2026-12-02 [SC]\nuid  x\nsub   rsa/0123456789ABCDEF 2020-01-01 [E] [expired: 2021-01-01]\n";
        assert_eq!(keys_in(listing, false), vec!["7EB4F620EDDDBBA4"]);
        assert_eq!(keys_in(listing, true), vec!["EDDDBBA4"]);
        assert_eq!(
            keys_in(
                "pub:-:255:22:A22C8963FBB4BF9F:1796200540:::-:::scSC:\n",
                false
            ),
            vec!["A22C8963FBB4BF9F"]
        );
    }
}
