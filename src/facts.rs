//! Facts: what Ansible's `setup` module gathers, with Ansible's names, types
//! and values, collected by one POSIX shell script (no Python needed on the
//! target) that runs inside the run's first execution on each host.
//!
//! The script prints raw data, one `key\tvalue...` line each (file contents
//! base64-encoded); everything Ansible derives from that data (the
//! distribution from the release files with Ansible's precedence and its
//! os-family map, the service and package manager, memory and CPU arithmetic,
//! mount sizes, `date_time`) is computed here, in pure functions.
//!
//! Gathered: the `min` subset (distribution, `lsb`-free platform facts, user,
//! `env`, `date_time`, `python`, `selinux`, `apparmor`, `dns`, `pkg_mgr`,
//! `service_mgr`, `fips`, `local`, ssh host keys, machine id), `hardware`
//! (memory, CPU, mounts, uptime), `network` (`default_ipv4`, `default_ipv6`,
//! `all_ipv4_addresses`, `all_ipv6_addresses`, `interfaces`; needs `ip` on
//! the target, as Ansible does) and `virtual` (container detection).
//! Not gathered: per-interface facts (`ansible_eth0`...), `devices`,
//! `device_links`, `cmdline`, DMI (`bios_*`, `product_*`), `lvm`,
//! `system_capabilities`, `virtualization_tech_*`, `loadavg`, facter/ohai.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::{Map, Value as Json, json};

/// The gathering script. Its output is parsed by [`parse`].
pub const SCRIPT: &str = r#"_dfb64() { base64 -w0 2>/dev/null || base64 | tr -d '\n'; }
for _df in /etc/os-release /usr/lib/os-release /etc/redhat-release /etc/alpine-release /etc/arch-release /etc/SuSE-release /etc/debian_version /etc/lsb-release /etc/system-release /etc/gentoo-release /etc/oracle-release /etc/altlinux-release /etc/openwrt_release /etc/slackware-version /etc/resolv.conf; do
  [ -f "$_df" ] && printf 'file\t%s\t%s\n' "$_df" "$(_dfb64 <"$_df")"
done
printf 'uname\t%s\t%s\t%s\t%s\n' "$(uname -n)" "$(uname -m)" "$(uname -r)" "$(uname -s)"
printf 'uname_v\t%s\n' "$(uname -v)"
printf 'fqdn\t%s\n' "$(hostname -f 2>/dev/null || uname -n)"
printf 'id\t%s\t%s\t%s\t%s\t%s\n' "$(id -un)" "$(id -ru)" "$(id -u)" "$(id -rg)" "$(id -g)"
printf 'passwd\t%s\n' "$(getent passwd "$(id -u)" 2>/dev/null)"
printf 'env\t%s\n' "$(env -0 2>/dev/null | _dfb64)"
printf 'cpuinfo\t%s\n' "$(grep -E '^(processor|vendor_id|model name|physical id|core id|cpu cores|siblings|Processor|flags)[[:space:]]*:' /proc/cpuinfo 2>/dev/null | _dfb64)"
printf 'nproc\t%s\n' "$(nproc 2>/dev/null)"
printf 'meminfo\t%s\n' "$(grep -E '^(MemTotal|MemFree|Buffers|Cached|SwapTotal|SwapFree|SwapCached):' /proc/meminfo 2>/dev/null | _dfb64)"
printf 'uptime\t%s\n' "$(cut -d' ' -f1 /proc/uptime 2>/dev/null)"
printf 'loadavg\t%s\n' "$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)"
printf 'cmdline\t%s\n' "$(_dfb64 </proc/cmdline 2>/dev/null)"
printf 'chroot\t%s\t%s\t%s\n' "$(stat -c '%d %i' / 2>/dev/null)" "$(stat -c '%d %i' /proc/1/root/. 2>/dev/null)" "${debian_chroot:-}"
printf 'nvme_iscsi\t%s\t%s\n' "$(cat /etc/nvme/hostnqn 2>/dev/null)" "$(sed -n 's/^InitiatorName=//p' /etc/iscsi/initiatorname.iscsi 2>/dev/null | head -n1)"
for _dfd in bios_date bios_vendor bios_version board_asset_tag board_name board_serial board_vendor board_version chassis_asset_tag chassis_serial chassis_vendor chassis_version chassis_type product_name product_serial product_uuid product_version sys_vendor; do
  printf 'dmi\t%s\t%s\n' "$_dfd" "$(cat "/sys/devices/virtual/dmi/id/$_dfd" 2>/dev/null | head -n1)"
done
if command -v lsb_release >/dev/null 2>&1; then printf 'lsb\t%s\n' "$(lsb_release -a 2>/dev/null | _dfb64)"; fi
printf 'tools2\t%s\t%s\n' "$(command -v vgs 2>/dev/null)" "$(command -v capsh 2>/dev/null)"
command -v capsh >/dev/null 2>&1 && printf 'capsh\t%s\n' "$(capsh --print 2>/dev/null | grep '^Current:' | head -n1)"
command -v systemctl >/dev/null 2>&1 && printf 'systemd\t%s\n' "$(systemctl --version 2>/dev/null | head -n2 | _dfb64)"
_dfs=$(LC_ALL=C date +%s.%N)
printf 'date\t%s\t%s\t%s\n' "$_dfs" "$(LC_ALL=C date -d "@$_dfs" '+%Y|%m|%A|%w|%W|%d|%H|%M|%S|%Z|%z')" "$(LC_ALL=C date -d "@$_dfs" '+%Y' 2>/dev/null)"
_dfy=$(LC_ALL=C date -d "@$_dfs" +%Y)
printf 'tznames\t%s\t%s\n' "$(LC_ALL=C date -d "$_dfy-01-01 12:00" '+%Z|%z' 2>/dev/null)" "$(LC_ALL=C date -d "$_dfy-07-01 12:00" '+%Z|%z' 2>/dev/null)"
if [ -r /etc/mtab ]; then _dfm=/etc/mtab; else _dfm=/proc/mounts; fi
while read -r _dfd _dft _dff _dfo _dfu _dfp; do
  case $_dfd in /*|*:/*) ;; *) continue ;; esac
  [ "$_dff" = none ] && continue
  printf 'mount\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$_dfd" "$_dft" "$_dff" "$_dfo" "$_dfu" "$_dfp" "$(stat -f -c '%s %S %b %f %a %c %d' "$(printf '%b' "$_dft")" 2>/dev/null)"
done <"$_dfm"
command -v findmnt >/dev/null 2>&1 && findmnt --list --noheadings --notruncate 2>/dev/null | awk '$2 ~ /\]$/ {printf "bindmount\t%s\n", $1}'
command -v lsblk >/dev/null 2>&1 && lsblk -ln --output NAME,UUID 2>/dev/null | awk 'NF == 2 {printf "uuid\t/dev/%s\t%s\n", $1, $2}'
printf 'proc1\t%s\n' "$(cat /proc/1/comm 2>/dev/null)"
_dfx=
for _dfc in /run/systemd/system/ /dev/.run/systemd/ /dev/.systemd/ /etc/init/ /sbin/openrc /etc/init.d/ /usr/bin/rpm-ostree /usr/bin/yum /usr/bin/dnf /usr/bin/dnf5 /usr/bin/dnf-3 /usr/bin/apt-get /usr/bin/zypper /usr/sbin/urpmi /usr/bin/pacman /bin/opkg /sbin/apk /usr/bin/emerge /usr/bin/xbps-install /usr/bin/swupd /.dockerenv /run/.containerenv /proc/vz /proc/xen /sys/fs/selinux/enforce /sys/kernel/security/apparmor /etc/machine-id /var/lib/dbus/machine-id; do
  [ -e "$_dfc" ] && _dfx="$_dfx $_dfc"
done
printf 'exists\t%s\n' "$_dfx"
printf 'tools\t%s\t%s\t%s\n' "$(command -v systemctl 2>/dev/null)" "$(command -v initctl 2>/dev/null)" "$(command -v ip 2>/dev/null)"
printf 'machine_id\t%s\n' "$(cat /var/lib/dbus/machine-id 2>/dev/null || cat /etc/machine-id 2>/dev/null)"
printf 'fips\t%s\n' "$(cat /proc/sys/crypto/fips_enabled 2>/dev/null)"
printf 'cgroup1\t%s\n' "$(cat /proc/1/cgroup 2>/dev/null | _dfb64)"
printf 'selinuxlib\t%s\n' "$(ls /lib/*/libselinux.so.1 /lib64/libselinux.so.1 /usr/lib/*/libselinux.so.1 /usr/lib64/libselinux.so.1 /lib/libselinux.so.1 /usr/lib/libselinux.so.1 2>/dev/null | head -n1)"
for _dfk in /etc/ssh/ssh_host_dsa_key.pub /etc/ssh/ssh_host_rsa_key.pub /etc/ssh/ssh_host_ecdsa_key.pub /etc/ssh/ssh_host_ed25519_key.pub; do
  [ -r "$_dfk" ] && printf 'hostkey\t%s\t%s\n' "$_dfk" "$(head -n1 "$_dfk")"
done
_dfpy=
for _dfc in python3.14 python3.13 python3.12 python3.11 python3.10 python3.9 python3.8 /usr/bin/python3 python3; do
  _dfpy=$(command -v "$_dfc" 2>/dev/null) && break
done
[ -n "$_dfpy" ] && printf 'python\t%s\t%s\n' "$_dfpy" "$("$_dfpy" -c 'import sys
try:
    import ssl
    s = hasattr(ssl, "SSLContext")
except Exception:
    s = False
v = sys.version_info
print("%d\t%d\t%d\t%s\t%d\t%s\t%s" % (v[0], v[1], v[2], v[3], v[4], sys.implementation.name, s))' 2>/dev/null)"
if [ -n "$(command -v ip 2>/dev/null)" ]; then
  printf 'route4\t%s\n' "$(ip -4 route get 8.8.8.8 2>/dev/null | head -n1)"
  printf 'route6\t%s\n' "$(ip -6 route get 2404:6800:400a:800::1012 2>/dev/null | head -n1)"
  ip -o addr show 2>/dev/null | awk '{printf "addr"; for (i = 2; i <= NF; i++) printf "\t%s", $i; printf "\n"}'
  ip -4 route show table local 2>/dev/null | awk '$1 == "local" {printf "local\t%s\n", $2}'
  ip -6 route show table local 2>/dev/null | awk '$1 == "local" {printf "local\t%s\n", $2}'
  for _dfi in $(ls -U /sys/class/net 2>/dev/null); do
    _dfi=/sys/class/net/$_dfi
    [ -e "$_dfi" ] && printf 'netdev\t%s\t%s\t%s\t%s\n' "${_dfi##*/}" "$(cat "$_dfi/address" 2>/dev/null)" "$(cat "$_dfi/mtu" 2>/dev/null)" "$(cat "$_dfi/type" 2>/dev/null)"
  done
fi
"#;

/// The raw lines of [`SCRIPT`]'s output, by key.
#[derive(Default, Debug)]
struct Raw {
    files: BTreeMap<String, String>,
    one: BTreeMap<String, Vec<String>>,
    mounts: Vec<Vec<String>>,
    binds: Vec<String>,
    uuids: BTreeMap<String, String>,
    hostkeys: Vec<(String, String)>,
    addrs: Vec<Vec<String>>,
    netdevs: Vec<Vec<String>>,
    dmi: Vec<Vec<String>>,
    locals: Vec<String>,
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

impl Raw {
    fn parse(stdout: &str) -> Raw {
        let mut r = Raw::default();
        for line in stdout.lines() {
            let mut f: Vec<String> = line.split('\t').map(str::to_string).collect();
            if f.is_empty() {
                continue;
            }
            let key = f.remove(0);
            match key.as_str() {
                "file" if f.len() == 2 => {
                    r.files.insert(f[0].clone(), b64(&f[1]));
                }
                "mount" => r.mounts.push(f),
                "bindmount" if !f.is_empty() => r.binds.push(f[0].clone()),
                "uuid" if f.len() == 2 => {
                    r.uuids.insert(f[0].clone(), f[1].clone());
                }
                "hostkey" if f.len() == 2 => r.hostkeys.push((f[0].clone(), f[1].clone())),
                "addr" => r.addrs.push(f),
                "netdev" => r.netdevs.push(f),
                "dmi" => r.dmi.push(f),
                "local" if !f.is_empty() => r.locals.push(f[0].clone()),
                _ => {
                    r.one.insert(key, f);
                }
            }
        }
        r
    }
    fn get(&self, key: &str, i: usize) -> Option<&str> {
        self.one.get(key).and_then(|v| v.get(i)).map(String::as_str)
    }
    fn one_all(&self, key: &str) -> Vec<String> {
        match key {
            "local" => self.locals.clone(),
            _ => Vec::new(),
        }
    }
    fn exists(&self, path: &str) -> bool {
        self.get("exists", 0)
            .is_some_and(|e| e.split(' ').any(|p| p == path))
    }
}

/// Ansible's os_family map (module_utils/facts/system/distribution.py).
const OS_FAMILY_MAP: &[(&str, &[&str])] = &[
    (
        "RedHat",
        &[
            "RedHat",
            "Fedora",
            "CentOS",
            "Scientific",
            "SLC",
            "Ascendos",
            "CloudLinux",
            "PSBM",
            "OracleLinux",
            "OVS",
            "OEL",
            "Amazon",
            "Virtuozzo",
            "XenServer",
            "Alibaba",
            "EulerOS",
            "openEuler",
            "AlmaLinux",
            "Rocky",
            "TencentOS",
            "EuroLinux",
            "Kylin Linux Advanced Server",
            "MIRACLE",
        ],
    ),
    (
        "Debian",
        &[
            "Debian",
            "Ubuntu",
            "Raspbian",
            "Neon",
            "KDE neon",
            "Linux Mint",
            "SteamOS",
            "Devuan",
            "Kali",
            "Cumulus Linux",
            "Pop!_OS",
            "Parrot",
            "Pardus GNU/Linux",
            "Uos",
            "Deepin",
            "OSMC",
            "Linux Lite",
        ],
    ),
    (
        "Suse",
        &[
            "SuSE",
            "SLES",
            "SLED",
            "openSUSE",
            "openSUSE Tumbleweed",
            "SLES_SAP",
            "SUSE_LINUX",
            "openSUSE Leap",
            "ALP-Dolomite",
            "SL-Micro",
            "openSUSE MicroOS",
        ],
    ),
    ("Archlinux", &["Archlinux", "Antergos", "Manjaro"]),
    ("Mandrake", &["Mandrake", "Mandriva"]),
    (
        "Solaris",
        &["Solaris", "Nexenta", "OmniOS", "OpenIndiana", "SmartOS"],
    ),
    ("Slackware", &["Slackware"]),
    ("Altlinux", &["Altlinux"]),
    ("SMGL", &["SMGL"]),
    ("Gentoo", &["Gentoo", "Funtoo"]),
    ("Alpine", &["Alpine"]),
    ("AIX", &["AIX"]),
    ("HP-UX", &["HPUX"]),
    ("Darwin", &["MacOSX"]),
    ("FreeBSD", &["FreeBSD", "TrueOS"]),
    ("ClearLinux", &["Clear Linux OS", "Clear Linux Mix"]),
    (
        "DragonFly",
        &["DragonflyBSD", "DragonFlyBSD", "Gentoo/DragonflyBSD"],
    ),
    ("NetBSD", &["NetBSD"]),
];

/// The os family of a distribution name: Ansible's map, else the name.
pub fn os_family(distribution: &str) -> String {
    OS_FAMILY_MAP
        .iter()
        .find(|(_, names)| names.contains(&distribution))
        .map(|(f, _)| f.to_string())
        .unwrap_or_else(|| distribution.to_string())
}

/// `KEY=value` pairs of an os-release style file, quotes removed.
fn os_release(data: &str) -> BTreeMap<String, String> {
    data.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            (k.trim().to_string(), v.to_string())
        })
        .collect()
}

/// The number of dots: `distro`'s "best" version is the most precise one.
fn precision(v: &str) -> usize {
    v.matches('.').count()
}

/// The distribution facts, following Ansible's order of release files.
/// `files` maps a path to its content (present files only).
pub fn distribution(files: &BTreeMap<String, String>) -> Map<String, Json> {
    let osr = files
        .get("/etc/os-release")
        .or_else(|| files.get("/usr/lib/os-release"))
        .map(|d| os_release(d))
        .unwrap_or_default();
    // The baseline, as the `distro` library reports it.
    let id = osr.get("ID").cloned().unwrap_or_default();
    let mut name = {
        let mut c = id.chars();
        match c.next() {
            Some(f) => f.to_uppercase().collect::<String>() + &c.as_str().to_lowercase(),
            None => "OtherLinux".to_string(),
        }
    };
    if name == "Amzn" {
        name = "Amazon".into();
    } else if name == "Rhel" {
        name = "Redhat".into();
    }
    // distro's version: the most precise of os-release's VERSION_ID and the
    // distribution's own release file (e.g. /etc/debian_version "12.11").
    let mut version = osr.get("VERSION_ID").cloned().unwrap_or_default();
    let release_file_version = match id.as_str() {
        "debian" | "raspbian" => files
            .get("/etc/debian_version")
            .map(|v| v.trim().to_string())
            .filter(|v| v.chars().next().is_some_and(|c| c.is_ascii_digit())),
        _ => ["/etc/redhat-release", "/etc/system-release"]
            .iter()
            .find_map(|p| files.get(*p))
            .and_then(|d| {
                regex::Regex::new(r"release\s+([0-9][0-9.]*)")
                    .ok()?
                    .captures(d)
                    .map(|c| c[1].to_string())
            }),
    };
    if let Some(rv) = release_file_version
        && precision(&rv) > precision(&version)
    {
        version = rv;
    }
    let codename = osr
        .get("VERSION_CODENAME")
        .or_else(|| osr.get("UBUNTU_CODENAME"))
        .cloned()
        .unwrap_or_else(|| {
            // distro falls back to the parenthesised part of VERSION.
            osr.get("VERSION")
                .and_then(|v| {
                    let (_, rest) = v.split_once('(')?;
                    Some(rest.trim_end_matches(')').trim().to_string())
                })
                .unwrap_or_default()
        });
    let mut f = Map::new();
    let or_na = |s: &str| {
        if s.is_empty() {
            "NA".to_string()
        } else {
            s.to_string()
        }
    };
    f.insert("distribution".into(), json!(name));
    f.insert("distribution_version".into(), json!(or_na(&version)));
    f.insert(
        "distribution_major_version".into(),
        json!(or_na(version.split('.').next().unwrap_or(""))),
    );
    f.insert("distribution_release".into(), json!(codename));

    let has = |p: &str| files.get(p).is_some_and(|c| !c.is_empty());
    // (path, name, allow_empty), in Ansible's order.
    let order: &[(&str, &str, bool)] = &[
        ("/etc/altlinux-release", "Altlinux", false),
        ("/etc/oracle-release", "OracleLinux", false),
        ("/etc/slackware-version", "Slackware", false),
        ("/etc/redhat-release", "RedHat", false),
        ("/etc/openwrt_release", "OpenWrt", false),
        ("/etc/os-release", "Amazon", false),
        ("/etc/system-release", "Amazon", false),
        ("/etc/alpine-release", "Alpine", false),
        ("/etc/arch-release", "Archlinux", true),
        ("/etc/os-release", "Archlinux", false),
        ("/etc/os-release", "SUSE", false),
        ("/etc/gentoo-release", "Gentoo", false),
        ("/etc/os-release", "Debian", false),
        ("/etc/os-release", "NA", false),
    ];
    let pretty_release = regex::Regex::new(r"PRETTY_NAME=[^(]+ \(?([^)]+?)\)").ok();
    for (path, dname, allow_empty) in order {
        let present = if *allow_empty {
            files.contains_key(*path)
        } else {
            has(path)
        };
        if !present {
            continue;
        }
        let data = files.get(*path).map(String::as_str).unwrap_or("");
        if *allow_empty {
            f.insert("distribution".into(), json!(dname));
            f.insert("distribution_file_path".into(), json!(path));
            f.insert("distribution_file_variety".into(), json!(dname));
            break;
        }
        let data_s = data.trim_matches(|c| c == '\'' || c == '"' || c == '\\');
        let parsed: Option<Map<String, Json>> = match *dname {
            "RedHat" | "OracleLinux" | "Altlinux" => {
                let search = match *dname {
                    "RedHat" => "Red Hat",
                    "OracleLinux" => "Oracle Linux",
                    _ => "ALT",
                };
                let mut m = Map::new();
                if data_s.contains(search) {
                    m.insert("distribution".into(), json!(dname));
                    m.insert("distribution_file_search_string".into(), json!(search));
                } else if let Some(w) = data_s.split_whitespace().next() {
                    m.insert("distribution".into(), json!(w));
                }
                Some(m)
            }
            "Slackware" => data.contains("Slackware").then(Map::new),
            "OpenWrt" => data.contains("OpenWrt").then(Map::new),
            "Amazon" => data.contains("Amazon").then(|| {
                let mut m = Map::new();
                m.insert("distribution".into(), json!("Amazon"));
                m
            }),
            "Alpine" => {
                let mut m = Map::new();
                m.insert("distribution_version".into(), json!(data_s.trim()));
                Some(m)
            }
            "Archlinux" => data.contains("Arch Linux").then(Map::new),
            "Gentoo" => Some(Map::new()),
            "SUSE" => data.to_lowercase().contains("suse").then(|| {
                let mut m = Map::new();
                let o = os_release(data);
                if let Some(n) = o.get("NAME") {
                    m.insert("distribution".into(), json!(n));
                }
                if let Some(v) = o.get("VERSION_ID") {
                    let v: String = v
                        .chars()
                        .take_while(|c| c.is_ascii_digit() || *c == '.')
                        .collect();
                    m.insert("distribution_version".into(), json!(v));
                    m.insert(
                        "distribution_major_version".into(),
                        json!(v.split('.').next().unwrap_or("")),
                    );
                    let minor = v.split_once('.').map(|(_, b)| b).unwrap_or("");
                    let lower = data.to_lowercase();
                    if lower.contains("open") {
                        m.insert("distribution_release".into(), json!(minor));
                    } else if lower.contains("enterprise") {
                        m.insert(
                            "distribution_release".into(),
                            json!(if minor.is_empty() { "0" } else { minor }),
                        );
                    }
                }
                if o.get("CPE_NAME").is_some_and(|c| c.contains("sles_sap")) {
                    m.insert("distribution".into(), json!("SLES_SAP"));
                }
                m
            }),
            "Debian" => {
                let mut m = Map::new();
                if data.contains("Debian") || data.contains("Raspbian") {
                    m.insert("distribution".into(), json!("Debian"));
                    if let Some(c) = pretty_release.as_ref().and_then(|r| r.captures(data)) {
                        m.insert("distribution_release".into(), json!(c[1].to_string()));
                    }
                    Some(m)
                } else if data.contains("Ubuntu") {
                    m.insert("distribution".into(), json!("Ubuntu"));
                    Some(m)
                } else if data.contains("SteamOS") {
                    m.insert("distribution".into(), json!("SteamOS"));
                    Some(m)
                } else if data.contains("Kali") || data.contains("Parrot") {
                    let n = if data.contains("Kali") {
                        "Kali"
                    } else {
                        "Parrot"
                    };
                    m.insert("distribution".into(), json!(n));
                    Some(m)
                } else if data.contains("Devuan") {
                    m.insert("distribution".into(), json!("Devuan"));
                    Some(m)
                } else if data.contains("Cumulus") {
                    m.insert("distribution".into(), json!("Cumulus Linux"));
                    Some(m)
                } else if data.contains("Linux Mint") {
                    m.insert("distribution".into(), json!("Linux Mint"));
                    Some(m)
                } else {
                    None
                }
            }
            "NA" => {
                let mut m = Map::new();
                let o = os_release(data);
                if let Some(n) = o.get("NAME") {
                    m.insert("distribution".into(), json!(n));
                }
                if f.get("distribution_version") == Some(&json!("NA"))
                    && let Some(v) = o.get("VERSION")
                {
                    m.insert("distribution_version".into(), json!(v));
                }
                Some(m)
            }
            _ => None,
        };
        if let Some(m) = parsed {
            f.insert("distribution".into(), json!(dname));
            f.insert("distribution_file_path".into(), json!(path));
            f.insert("distribution_file_variety".into(), json!(dname));
            f.insert("distribution_file_parsed".into(), json!(true));
            f.extend(m);
            break;
        }
    }
    // Ansible sets distribution_minor_version for Debian only, from
    // /etc/debian_version.
    if f.get("distribution") == Some(&json!("Debian"))
        && let Some(c) = files.get("/etc/debian_version").and_then(|d| {
            regex::Regex::new(r"(\d+)\.(\d+)")
                .ok()?
                .captures(d)
                .map(|c| c[2].to_string())
        })
    {
        f.insert("distribution_minor_version".into(), json!(c));
    }
    let dist = f
        .get("distribution")
        .and_then(Json::as_str)
        .unwrap_or("")
        .to_string();
    f.insert("os_family".into(), json!(os_family(&dist)));
    f
}

/// Ansible's `service_mgr` from PID 1's name and the systemd canaries.
fn service_mgr(r: &Raw) -> String {
    let proc1 = r.get("proc1", 0).unwrap_or("").trim();
    let proc1 = proc1.rsplit('/').next().unwrap_or(proc1);
    if !proc1.is_empty() && proc1 != "init" && !proc1.ends_with("sh") {
        return match proc1 {
            "procd" => "openwrt_init",
            "runit-init" => "runit",
            "svscan" => "svc",
            "openrc-init" => "openrc",
            other => other,
        }
        .to_string();
    }
    let systemctl = r.get("tools", 0).is_some_and(|s| !s.is_empty());
    if systemctl
        && [
            "/run/systemd/system/",
            "/dev/.run/systemd/",
            "/dev/.systemd/",
        ]
        .iter()
        .any(|c| r.exists(c))
    {
        return "systemd".into();
    }
    if r.get("tools", 1).is_some_and(|s| !s.is_empty()) && r.exists("/etc/init/") {
        return "upstart".into();
    }
    if r.exists("/sbin/openrc") {
        return "openrc".into();
    }
    if r.exists("/etc/init.d/") {
        return "sysvinit".into();
    }
    "service".into()
}

/// Ansible's `pkg_mgr`: the last package tool found in its list, then the
/// family's own rules.
fn pkg_mgr(r: &Raw, family: &str) -> String {
    let list = [
        ("/usr/bin/rpm-ostree", "atomic_container"),
        ("/usr/bin/yum", "yum"),
        ("/usr/bin/dnf", "dnf"),
        ("/usr/bin/dnf-3", "dnf"),
        ("/usr/bin/dnf5", "dnf5"),
        ("/usr/bin/apt-get", "apt"),
        ("/usr/bin/zypper", "zypper"),
        ("/usr/sbin/urpmi", "urpmi"),
        ("/usr/bin/pacman", "pacman"),
        ("/bin/opkg", "opkg"),
        ("/sbin/apk", "apk"),
        ("/usr/bin/emerge", "portage"),
        ("/usr/bin/xbps-install", "xbps"),
        ("/usr/bin/swupd", "swupd"),
    ];
    let mut found = "unknown";
    for (p, n) in list {
        if r.exists(p) {
            found = n;
        }
    }
    if family == "RedHat" && found != "atomic_container" {
        if r.exists("/usr/bin/dnf5") {
            return "dnf5".into();
        }
        if r.exists("/usr/bin/dnf") || r.exists("/usr/bin/dnf-3") {
            return "dnf".into();
        }
        if r.exists("/usr/bin/yum") {
            return "yum".into();
        }
    }
    if family == "Debian" && r.exists("/usr/bin/apt-get") {
        return "apt".into();
    }
    found.to_string()
}

fn int(s: &str) -> Option<i64> {
    s.trim().parse().ok()
}

fn cpu_facts(r: &Raw, f: &mut Map<String, Json>) {
    let Some(enc) = r.get("cpuinfo", 0) else {
        return;
    };
    let info = b64(enc);
    let mut processor = Vec::new();
    let mut sockets = std::collections::BTreeSet::new();
    let mut cores_per_socket: Option<i64> = None;
    let mut siblings: Option<i64> = None;
    let mut count = 0i64;
    for line in info.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        match k {
            "processor" => {
                count += 1;
                processor.push(json!(v));
            }
            "vendor_id" | "model name" | "Processor" => processor.push(json!(v)),
            "physical id" => {
                sockets.insert(v.to_string());
            }
            "cpu cores" => cores_per_socket = int(v),
            "flags" if !f.contains_key("flags") => {
                f.insert(
                    "flags".into(),
                    json!(v.split_whitespace().collect::<Vec<_>>()),
                );
            }
            "siblings" => siblings = int(v),
            _ => {}
        }
    }
    f.insert("processor".into(), Json::Array(processor));
    let sockets_n = if sockets.is_empty() {
        count.max(1)
    } else {
        sockets.len() as i64
    };
    let cores = cores_per_socket.unwrap_or(1);
    let threads = match (siblings, cores_per_socket) {
        (Some(s), Some(c)) if c > 0 => s / c,
        _ => 1,
    };
    f.insert("processor_count".into(), json!(sockets_n));
    f.insert("processor_cores".into(), json!(cores));
    f.insert("processor_threads_per_core".into(), json!(threads));
    f.insert("processor_vcpus".into(), json!(threads * cores * sockets_n));
    if let Some(n) = r.get("nproc", 0).and_then(int) {
        f.insert("processor_nproc".into(), json!(n));
    }
}

fn memory_facts(r: &Raw, f: &mut Map<String, Json>) {
    let Some(enc) = r.get("meminfo", 0) else {
        return;
    };
    let mut m: BTreeMap<String, i64> = BTreeMap::new();
    for line in b64(enc).lines() {
        if let Some((k, v)) = line.split_once(':')
            && let Some(kb) = v.split_whitespace().next().and_then(int)
        {
            m.insert(k.to_string(), kb / 1024);
        }
    }
    let g = |k: &str| m.get(k).copied().unwrap_or(0);
    for k in ["MemTotal", "MemFree", "SwapTotal", "SwapFree"] {
        if m.contains_key(k) {
            f.insert(format!("{}_mb", k.to_lowercase()), json!(g(k)));
        }
    }
    let nocache_free = g("Cached") + g("MemFree") + g("Buffers");
    f.insert(
        "memory_mb".into(),
        json!({
            "real": {"total": g("MemTotal"), "used": g("MemTotal") - g("MemFree"), "free": g("MemFree")},
            "nocache": {"free": nocache_free, "used": g("MemTotal") - nocache_free},
            "swap": {"total": g("SwapTotal"), "free": g("SwapFree"), "used": g("SwapTotal") - g("SwapFree"), "cached": g("SwapCached")},
        }),
    );
}

/// `\040`-style escapes of /etc/mtab decoded.
fn unescape_mtab(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn mount_facts(r: &Raw, f: &mut Map<String, Json>) {
    let mut mounts = Vec::new();
    for m in &r.mounts {
        if m.len() < 7 {
            continue;
        }
        let device = unescape_mtab(&m[0]);
        let mount = unescape_mtab(&m[1]);
        let mut options = m[3].clone();
        if r.binds.contains(&mount) {
            options.push_str(",bind");
        }
        let mut o = Map::new();
        o.insert("mount".into(), json!(mount));
        o.insert("device".into(), json!(device));
        o.insert("fstype".into(), json!(m[2]));
        o.insert("options".into(), json!(options));
        o.insert("dump".into(), json!(int(&m[4]).unwrap_or(0)));
        o.insert("passno".into(), json!(int(&m[5]).unwrap_or(0)));
        let s: Vec<i64> = m[6].split_whitespace().filter_map(int).collect();
        if let [bsize, frsize, blocks, bfree, bavail, files, ffree] = s[..] {
            o.insert("size_total".into(), json!(frsize * blocks));
            o.insert("size_available".into(), json!(frsize * bavail));
            o.insert("block_size".into(), json!(bsize));
            o.insert("block_total".into(), json!(blocks));
            o.insert("block_available".into(), json!(bavail));
            // Ansible counts what is not available to users as used.
            o.insert("block_used".into(), json!(blocks - bavail));
            let _ = bfree;
            o.insert("inode_total".into(), json!(files));
            o.insert("inode_available".into(), json!(ffree));
            o.insert("inode_used".into(), json!(files - ffree));
        }
        let uuid = r
            .uuids
            .get(&device)
            .cloned()
            .unwrap_or_else(|| "N/A".into());
        o.insert("uuid".into(), json!(uuid));
        mounts.push(Json::Object(o));
    }
    f.insert("mounts".into(), Json::Array(mounts));
}

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn date_facts(r: &Raw, f: &mut Map<String, Json>) {
    let (Some(epoch), Some(local)) = (r.get("date", 0), r.get("date", 1)) else {
        return;
    };
    let (secs, nanos) = epoch.split_once('.').unwrap_or((epoch, "0"));
    let Some(secs) = int(secs) else {
        return;
    };
    let micros = format!("{:0<9}", nanos).chars().take(6).collect::<String>();
    let p: Vec<&str> = local.split('|').collect();
    let [y, mo, wd, wdn, wn, d, h, mi, s, tz, off] = p[..] else {
        return;
    };
    let (uy, um, ud) = civil(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    let utc = format!(
        "{uy:04}-{um:02}-{ud:02}T{:02}:{:02}:{:02}",
        t / 3600,
        t % 3600 / 60,
        t % 60
    );
    // time.tzname[1]: the zone's daylight-saving name (its standard name
    // when it has none).
    let names: Vec<(&str, i64)> = [r.get("tznames", 0), r.get("tznames", 1)]
        .into_iter()
        .flatten()
        .filter_map(|x| {
            let (n, o) = x.split_once('|')?;
            Some((n, int(o.trim_start_matches('+')).unwrap_or(0)))
        })
        .collect();
    let tz_dst = match names[..] {
        [(a, ao), (b, bo)] if ao != bo => {
            if ao > bo {
                a
            } else {
                b
            }
        }
        [(a, _), ..] => a,
        _ => tz,
    };
    let m = json!({
        "year": y, "month": mo, "weekday": wd, "weekday_number": wdn, "weeknumber": wn,
        "day": d, "hour": h, "minute": mi, "second": s,
        "epoch": secs.to_string(), "epoch_int": secs.to_string(),
        "date": format!("{y}-{mo}-{d}"), "time": format!("{h}:{mi}:{s}"),
        "iso8601_micro": format!("{utc}.{micros}Z"), "iso8601": format!("{utc}Z"),
        "iso8601_basic": format!("{y}{mo}{d}T{h}{mi}{s}{micros}"),
        "iso8601_basic_short": format!("{y}{mo}{d}T{h}{mi}{s}"),
        "tz": tz, "tz_dst": tz_dst, "tz_offset": off,
    });
    f.insert("date_time".into(), m);
}

fn dns_facts(r: &Raw, f: &mut Map<String, Json>) {
    let Some(conf) = r.files.get("/etc/resolv.conf") else {
        return;
    };
    let mut dns = Map::new();
    for line in conf.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let mut w = line.split_whitespace();
        let Some(k) = w.next() else { continue };
        let rest: Vec<&str> = w.collect();
        match k {
            "nameserver" => {
                if let Some(v) = rest.first()
                    && let Json::Array(a) = dns
                        .entry("nameservers")
                        .or_insert_with(|| Json::Array(vec![]))
                {
                    a.push(json!(v));
                }
            }
            "domain" => {
                if let Some(v) = rest.first() {
                    dns.insert("domain".into(), json!(v));
                }
            }
            "search" | "sortlist" => {
                dns.insert(k.into(), json!(rest));
            }
            "options" => {
                let mut o = Map::new();
                for opt in rest {
                    match opt.split_once(':') {
                        Some((a, b)) => o.insert(a.into(), json!(b)),
                        None => o.insert(opt.into(), json!(true)),
                    };
                }
                dns.insert("options".into(), Json::Object(o));
            }
            _ => {}
        }
    }
    f.insert("dns".into(), Json::Object(dns));
}

/// Prefix length to dotted netmask.
fn netmask(prefix: u32) -> String {
    let m: u32 = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix.min(32))
    };
    std::net::Ipv4Addr::from(m).to_string()
}

fn network_facts(r: &Raw, f: &mut Map<String, Json>) {
    if r.get("tools", 2).is_none_or(|s| s.is_empty()) {
        // Without `ip`, Ansible gathers no interface facts either.
        return;
    }
    let dev_type = |t: &str| match t {
        "1" => "ether",
        "32" => "infiniband",
        "512" => "ppp",
        "772" => "loopback",
        "65534" => "tunnel",
        _ => "unknown",
    };
    let mut interfaces = Vec::new();
    let mut netdev: BTreeMap<String, (String, i64, String)> = BTreeMap::new();
    for d in &r.netdevs {
        if d.len() >= 4 {
            interfaces.push(json!(d[0]));
            netdev.insert(
                d[0].clone(),
                (
                    d[1].clone(),
                    int(&d[2]).unwrap_or(0),
                    dev_type(&d[3]).to_string(),
                ),
            );
        }
    }
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    // ip -o addr: "IDX: IFACE family ADDR/PREFIX [brd B] scope S ... LABEL"
    let mut v4_by_if: BTreeMap<String, Map<String, Json>> = BTreeMap::new();
    for a in &r.addrs {
        if a.len() < 3 {
            continue;
        }
        let words: Vec<&str> = a.iter().map(String::as_str).collect();
        let iface = words[0].trim_end_matches(':');
        let fam = words[1];
        let Some((addr, prefix)) = words[2].split_once('/') else {
            continue;
        };
        if fam == "inet" {
            if addr != "127.0.0.1" {
                v4.push(json!(addr));
            }
            let prefix_n: u32 = prefix.parse().unwrap_or(32);
            let brd = words
                .iter()
                .position(|w| *w == "brd")
                .and_then(|i| words.get(i + 1))
                .map(|s| s.to_string())
                .unwrap_or_default();
            let ip: std::net::Ipv4Addr = addr.parse().unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
            let mask: std::net::Ipv4Addr = netmask(prefix_n)
                .parse()
                .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
            let network = std::net::Ipv4Addr::from(u32::from(ip) & u32::from(mask));
            // The label: the word after the scope's value.
            let label = words
                .iter()
                .position(|w| *w == "scope")
                .and_then(|i| words.get(i + 2))
                .map(|s| s.trim_end_matches('\\').to_string())
                .filter(|s| !s.is_empty() && s != "valid_lft")
                .unwrap_or_else(|| iface.to_string());
            let mut m = Map::new();
            m.insert("address".into(), json!(addr));
            m.insert("broadcast".into(), json!(brd));
            m.insert("netmask".into(), json!(mask.to_string()));
            m.insert("network".into(), json!(network.to_string()));
            m.insert("prefix".into(), json!(prefix));
            m.insert("alias".into(), json!(label));
            v4_by_if.entry(iface.to_string()).or_insert(m);
        } else if fam == "inet6" && addr != "::1" {
            v6.push(json!(addr));
        }
    }
    let mut local4: Vec<Json> = Vec::new();
    let mut local6: Vec<Json> = Vec::new();
    for l in r.one_all("local") {
        let a = json!(l);
        let list = if l.contains(':') {
            &mut local6
        } else {
            &mut local4
        };
        if !list.contains(&a) {
            list.push(a);
        }
    }
    f.insert(
        "locally_reachable_ips".into(),
        json!({"ipv4": local4, "ipv6": local6}),
    );
    f.insert("all_ipv4_addresses".into(), Json::Array(v4));
    f.insert("all_ipv6_addresses".into(), Json::Array(v6));
    f.insert("interfaces".into(), Json::Array(interfaces));
    let route = |line: &str| -> (Option<String>, Option<String>, Option<String>) {
        let w: Vec<&str> = line.split_whitespace().collect();
        let after = |k: &str| {
            w.iter()
                .position(|x| *x == k)
                .and_then(|i| w.get(i + 1))
                .map(|s| s.to_string())
        };
        (after("dev"), after("src"), after("via"))
    };
    let mut d4 = Map::new();
    if let Some(line) = r.get("route4", 0)
        && let (Some(dev), src, via) = route(line)
    {
        d4.insert("interface".into(), json!(dev));
        if let Some(s) = src {
            d4.insert("address".into(), json!(s));
        }
        if let Some(g) = via {
            d4.insert("gateway".into(), json!(g));
        }
        if let Some(m) = v4_by_if.get(&dev) {
            for (k, v) in m {
                if k != "address" || !d4.contains_key("address") {
                    d4.insert(k.clone(), v.clone());
                }
            }
        }
        if let Some((mac, mtu, ty)) = netdev.get(&dev) {
            d4.insert("macaddress".into(), json!(mac));
            d4.insert("mtu".into(), json!(mtu));
            d4.insert("type".into(), json!(ty));
        }
    }
    f.insert("default_ipv4".into(), Json::Object(d4));
    let mut d6 = Map::new();
    if let Some(line) = r.get("route6", 0)
        && let (Some(dev), src, via) = route(line)
    {
        d6.insert("interface".into(), json!(dev));
        if let Some(s) = src {
            d6.insert("address".into(), json!(s));
        }
        if let Some(g) = via {
            d6.insert("gateway".into(), json!(g));
        }
        if let Some((mac, mtu, ty)) = netdev.get(&dev) {
            d6.insert("macaddress".into(), json!(mac));
            d6.insert("mtu".into(), json!(mtu));
            d6.insert("type".into(), json!(ty));
        }
    }
    f.insert("default_ipv6".into(), Json::Object(d6));
}

fn virtual_facts(r: &Raw, f: &mut Map<String, Json>) {
    let cg = r.get("cgroup1", 0).map(b64).unwrap_or_default();
    let (ty, role) = if r.exists("/.dockerenv") || cg.contains("/docker/") {
        ("docker", "guest")
    } else if r.exists("/run/.containerenv") || cg.contains("libpod") {
        ("podman", "guest")
    } else if cg.contains("/lxc/") {
        ("lxc", "guest")
    } else if r.exists("/proc/vz") {
        ("openvz", "guest")
    } else {
        ("NA", "NA")
    };
    let (guest, host): (Vec<&str>, Vec<&str>) = match ty {
        "NA" => (vec![], vec![]),
        "openvz" => (vec!["openvz"], vec![]),
        t => (vec!["container", t], vec![]),
    };
    f.insert("virtualization_tech_guest".into(), json!(guest));
    f.insert("virtualization_tech_host".into(), json!(host));
    f.insert("virtualization_type".into(), json!(ty));
    f.insert("virtualization_role".into(), json!(role));
}

/// Which Ansible collector (and so which `gather_subset`) each fact belongs to.
fn subset_of(fact: &str) -> &'static str {
    match fact {
        "processor"
        | "processor_count"
        | "processor_cores"
        | "processor_threads_per_core"
        | "processor_vcpus"
        | "processor_nproc"
        | "memtotal_mb"
        | "memfree_mb"
        | "swaptotal_mb"
        | "swapfree_mb"
        | "memory_mb"
        | "mounts"
        | "uptime_seconds" => "hardware",
        "default_ipv4"
        | "default_ipv6"
        | "all_ipv4_addresses"
        | "all_ipv6_addresses"
        | "interfaces"
        | "locally_reachable_ips" => "network",
        "virtualization_type"
        | "virtualization_role"
        | "virtualization_tech_guest"
        | "virtualization_tech_host" => "virtual",
        "flags" | "lvm" | "bios_date" | "bios_vendor" | "bios_version" | "board_asset_tag"
        | "board_name" | "board_serial" | "board_vendor" | "board_version"
        | "chassis_asset_tag" | "chassis_serial" | "chassis_vendor" | "chassis_version"
        | "form_factor" | "product_name" | "product_serial" | "product_uuid"
        | "product_version" | "system_vendor" => "hardware",
        "is_chroot" | "loadavg" | "systemd" | "hostnqn" | "iscsi_iqn" | "fibre_channel_wwn" => {
            "rest"
        }
        _ => "min",
    }
}

/// The collectors Ansible's `gather_subset` selects: `all`, `min`,
/// `hardware`, `network`, `virtual` and their `!` negations (`!all` means
/// "not all by default", as in Ansible). Any other subset name is an error
/// naming what is supported. "rest" stands for the collectors only `all`
/// brings (`is_chroot`, `loadavg`, `systemd`, `hostnqn`, ...).
pub fn subsets(spec: &[String]) -> Result<Vec<&'static str>, String> {
    const ALL: [&str; 5] = ["min", "hardware", "network", "virtual", "rest"];
    // Ansible's get_collector_names: "min" is always first, explicit
    // additions survive exclusions, `!all` excludes all but "min".
    let mut add: Vec<&'static str> = vec!["min"];
    let mut exclude: Vec<&'static str> = Vec::new();
    let mut explicit: Vec<&'static str> = Vec::new();
    for s in spec.iter().flat_map(|s| s.split(',')).map(str::trim) {
        let (neg, name) = match s.strip_prefix('!') {
            Some(n) => (true, n),
            None => (false, s),
        };
        let one: &'static str = match name {
            "all" => "all",
            "min" => "min",
            "hardware" => "hardware",
            "network" => "network",
            "virtual" => "virtual",
            other => {
                return Err(format!(
                    "gather_subset '{other}' is not supported yet by deployer (supported: all, min, hardware, network, virtual, each also with '!')"
                ));
            }
        };
        match (neg, one) {
            (false, "all") => add.extend(ALL),
            (false, "min") => add.push("min"),
            (false, x) => {
                explicit.push(x);
                add.push(x);
            }
            (true, "all") => exclude.extend(ALL.iter().filter(|s| **s != "min")),
            (true, x) => exclude.push(x),
        }
    }
    let mut out: Vec<&'static str> = Vec::new();
    for s in add {
        let excluded = exclude.contains(&s) && !explicit.contains(&s);
        if !excluded && !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

/// Every fact (without the `ansible_` prefix) from [`SCRIPT`]'s output.
/// `interpreter` is the host's `ansible_python_interpreter`, when set.
pub fn parse(stdout: &str, interpreter: Option<&str>) -> Map<String, Json> {
    let r = Raw::parse(stdout);
    let mut f = Map::new();
    if let Some(u) = r.one.get("uname")
        && u.len() == 4
    {
        let node = &u[0];
        f.insert(
            "hostname".into(),
            json!(node.split('.').next().unwrap_or(node)),
        );
        f.insert("nodename".into(), json!(node));
        f.insert("architecture".into(), json!(u[1]));
        f.insert("machine".into(), json!(u[1]));
        f.insert("userspace_architecture".into(), json!(u[1]));
        f.insert("kernel".into(), json!(u[2]));
        f.insert("system".into(), json!(u[3]));
        let bits = if u[1].contains("64") { "64" } else { "32" };
        f.insert("userspace_bits".into(), json!(bits));
    }
    if let Some(v) = r.get("uname_v", 0) {
        f.insert("kernel_version".into(), json!(v));
    }
    if let Some(fqdn) = r.get("fqdn", 0) {
        f.insert("fqdn".into(), json!(fqdn));
        f.insert(
            "domain".into(),
            json!(fqdn.split_once('.').map(|x| x.1).unwrap_or("")),
        );
    }
    f.extend(distribution(&r.files));
    let family = f
        .get("os_family")
        .and_then(Json::as_str)
        .unwrap_or("")
        .to_string();
    if let Some(id) = r.one.get("id")
        && id.len() == 5
    {
        f.insert("user_id".into(), json!(id[0]));
        for (k, v) in [
            ("real_user_id", &id[1]),
            ("effective_user_id", &id[2]),
            ("real_group_id", &id[3]),
            ("effective_group_id", &id[4]),
        ] {
            if let Some(n) = int(v) {
                f.insert(k.into(), json!(n));
            }
        }
    }
    if let Some(pw) = r.get("passwd", 0) {
        let p: Vec<&str> = pw.split(':').collect();
        if p.len() >= 7 {
            if let Some(n) = int(p[2]) {
                f.insert("user_uid".into(), json!(n));
            }
            if let Some(n) = int(p[3]) {
                f.insert("user_gid".into(), json!(n));
            }
            f.insert("user_gecos".into(), json!(p[4]));
            f.insert("user_dir".into(), json!(p[5]));
            f.insert("user_shell".into(), json!(p[6]));
        }
    }
    if let Some(e) = r.get("env", 0) {
        let env: Map<String, Json> = b64(e)
            .split('\0')
            .filter_map(|kv| kv.split_once('='))
            .filter(|(k, _)| !k.is_empty())
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        f.insert("env".into(), Json::Object(env));
    }
    cpu_facts(&r, &mut f);
    memory_facts(&r, &mut f);
    mount_facts(&r, &mut f);
    if let Some(u) = r.get("uptime", 0)
        && let Some(s) = u.split('.').next().and_then(int)
    {
        f.insert("uptime_seconds".into(), json!(s));
    }
    date_facts(&r, &mut f);
    dns_facts(&r, &mut f);
    f.insert("service_mgr".into(), json!(service_mgr(&r)));
    f.insert("pkg_mgr".into(), json!(pkg_mgr(&r, &family)));
    if let Some(m) = r.get("machine_id", 0)
        && !m.trim().is_empty()
    {
        f.insert("machine_id".into(), json!(m.trim()));
    }
    f.insert(
        "fips".into(),
        json!(r.get("fips", 0).is_some_and(|v| v.trim() == "1")),
    );
    let selinux_lib = r.get("selinuxlib", 0).is_some_and(|s| !s.is_empty());
    f.insert("selinux_python_present".into(), json!(selinux_lib));
    let selinux = if !selinux_lib {
        json!({"status": "Missing selinux Python library"})
    } else if r.exists("/sys/fs/selinux/enforce") {
        json!({"status": "enabled"})
    } else {
        json!({"status": "disabled"})
    };
    f.insert("selinux".into(), selinux);
    f.insert(
        "apparmor".into(),
        json!({"status": if r.exists("/sys/kernel/security/apparmor") { "enabled" } else { "disabled" }}),
    );
    f.insert("local".into(), json!({}));
    for (path, line) in &r.hostkeys {
        let algo = path
            .trim_start_matches("/etc/ssh/ssh_host_")
            .trim_end_matches("_key.pub");
        let mut w = line.split_whitespace();
        if let (Some(kt), Some(k)) = (w.next(), w.next()) {
            f.insert(format!("ssh_host_key_{algo}_public"), json!(k));
            f.insert(format!("ssh_host_key_{algo}_public_keytype"), json!(kt));
        }
    }
    if let Some(p) = r.one.get("python")
        && p.len() >= 8
    {
        let exe = interpreter.unwrap_or(&p[0]);
        let n = |i: usize| int(&p[i]).unwrap_or(0);
        f.insert(
            "python".into(),
            json!({
                "executable": exe,
                "has_sslcontext": p[7] == "True",
                "type": p[6],
                "version": {"major": n(1), "minor": n(2), "micro": n(3), "releaselevel": p[4], "serial": n(5)},
                "version_info": [n(1), n(2), n(3), p[4], n(5)],
            }),
        );
        f.insert(
            "python_version".into(),
            json!(format!("{}.{}.{}", n(1), n(2), n(3))),
        );
    }
    network_facts(&r, &mut f);
    virtual_facts(&r, &mut f);
    misc_facts(&r, &mut f);
    f
}

/// Ansible's form_factor names, by SMBIOS chassis type.
const FORM_FACTORS: &[&str] = &[
    "Unknown",
    "Other",
    "Unknown",
    "Desktop",
    "Low Profile Desktop",
    "Pizza Box",
    "Mini Tower",
    "Tower",
    "Portable",
    "Laptop",
    "Notebook",
    "Hand Held",
    "Docking Station",
    "All In One",
    "Sub Notebook",
    "Space-saving",
    "Lunch Box",
    "Main Server Chassis",
    "Expansion Chassis",
    "Sub Chassis",
    "Bus Expansion Chassis",
    "Peripheral Chassis",
    "RAID Chassis",
    "Rack Mount Chassis",
    "Sealed-case PC",
    "Multi-system",
    "CompactPCI",
    "AdvancedTCA",
    "Blade",
    "Blade Enclosure",
    "Tablet",
    "Convertible",
    "Detachable",
    "IoT Gateway",
    "Embedded PC",
    "Mini PC",
    "Stick PC",
];

/// The kernel command line as Ansible's `cmdline` (last value wins) and
/// `proc_cmdline` (repeated keys become lists).
fn cmdline(data: &str) -> (Map<String, Json>, Map<String, Json>) {
    let words = crate::shell::split(data.trim())
        .unwrap_or_else(|| data.split_whitespace().map(str::to_string).collect());
    let mut last = Map::new();
    let mut all = Map::new();
    for w in words {
        let (k, v) = match w.split_once('=') {
            Some((k, v)) => (k.to_string(), json!(v)),
            None => (w.clone(), json!(true)),
        };
        last.insert(k.clone(), v.clone());
        match all.get_mut(&k) {
            Some(Json::Array(a)) => a.push(v),
            Some(prev) => *prev = json!([prev.clone(), v]),
            None => {
                all.insert(k, v);
            }
        }
    }
    (last, all)
}

fn misc_facts(r: &Raw, f: &mut Map<String, Json>) {
    if let Some(l) = r.get("loadavg", 0) {
        let v: Vec<f64> = l
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if let [a, b, c] = v[..] {
            f.insert("loadavg".into(), json!({"1m": a, "5m": b, "15m": c}));
        }
    }
    if let Some(c) = r.get("cmdline", 0) {
        let (last, all) = cmdline(&b64(c));
        f.insert("cmdline".into(), Json::Object(last));
        f.insert("proc_cmdline".into(), Json::Object(all));
    }
    if let Some(c) = r.one.get("chroot") {
        let chroot = if c.get(2).is_some_and(|s| !s.is_empty()) {
            true
        } else {
            match (c.first(), c.get(1)) {
                (Some(me), Some(p1)) if !p1.is_empty() => me != p1,
                (Some(me), _) => me.split_whitespace().nth(1) != Some("2"),
                _ => false,
            }
        };
        f.insert("is_chroot".into(), json!(chroot));
    }
    f.insert(
        "hostnqn".into(),
        json!(r.get("nvme_iscsi", 0).unwrap_or("").trim()),
    );
    f.insert(
        "iscsi_iqn".into(),
        json!(r.get("nvme_iscsi", 1).unwrap_or("").trim()),
    );
    f.insert("fibre_channel_wwn".into(), json!([]));
    let mut dmi: BTreeMap<&str, String> = BTreeMap::new();
    for line in &r.dmi {
        if let [k, v] = &line[..] {
            let v = v.trim();
            dmi.insert(
                match k.as_str() {
                    "sys_vendor" => "system_vendor",
                    other => FACT_NAMES
                        .iter()
                        .find(|n| **n == other)
                        .copied()
                        .unwrap_or(""),
                },
                if v.is_empty() {
                    "NA".into()
                } else {
                    v.to_string()
                },
            );
        }
    }
    for (k, v) in dmi {
        if k.is_empty() {
            continue;
        }
        if k == "chassis_type" {
            let ff = v
                .parse::<usize>()
                .ok()
                .and_then(|i| FORM_FACTORS.get(i))
                .map(|s| s.to_string())
                .unwrap_or_else(|| "NA".into());
            f.insert("form_factor".into(), json!(ff));
        } else {
            f.insert(k.into(), json!(v));
        }
    }
    if let Some(l) = r.get("lsb", 0) {
        let mut m = Map::new();
        for line in b64(l).lines() {
            if let Some((k, v)) = line.split_once(':') {
                let v = v.trim();
                let key = match k.trim() {
                    "Distributor ID" => "id",
                    "Description" => "description",
                    "Release" => {
                        m.insert(
                            "major_release".into(),
                            json!(v.split('.').next().unwrap_or(v)),
                        );
                        "release"
                    }
                    "Codename" => "codename",
                    _ => continue,
                };
                m.insert(key.into(), json!(v));
            }
        }
        f.insert("lsb".into(), Json::Object(m));
    } else if let Some(d) = r.files.get("/etc/lsb-release") {
        let o = os_release(d);
        let mut m = Map::new();
        for (k, n) in [
            ("DISTRIB_ID", "id"),
            ("DISTRIB_RELEASE", "release"),
            ("DISTRIB_DESCRIPTION", "description"),
            ("DISTRIB_CODENAME", "codename"),
        ] {
            if let Some(v) = o.get(k) {
                m.insert(n.into(), json!(v));
            }
        }
        if let Some(v) = o.get("DISTRIB_RELEASE") {
            m.insert(
                "major_release".into(),
                json!(v.split('.').next().unwrap_or(v)),
            );
        }
        f.insert("lsb".into(), Json::Object(m));
    } else {
        f.insert("lsb".into(), json!({}));
    }
    if r.get("tools2", 0).is_none_or(|s| s.is_empty()) {
        f.insert("lvm".into(), json!("N/A"));
    }
    if r.get("tools2", 1).is_none_or(|s| s.is_empty()) {
        f.insert("system_capabilities".into(), json!("N/A"));
        f.insert("system_capabilities_enforced".into(), json!("N/A"));
    } else if let Some(line) = r.get("capsh", 0) {
        // Ansible's parsing of `capsh --print`'s Current: line, quirks kept.
        let (enforced, caps): (&str, Vec<String>) = match line.split(':').nth(1).map(str::trim) {
            Some("=ep") => ("False", vec![]),
            Some(_) => (
                "True",
                line.split('=')
                    .nth(1)
                    .unwrap_or("")
                    .split(',')
                    .map(|c| c.trim().to_string())
                    .collect(),
            ),
            None => ("NA", vec![]),
        };
        f.insert("system_capabilities".into(), json!(caps));
        f.insert("system_capabilities_enforced".into(), json!(enforced));
    }
    if f.get("service_mgr") == Some(&json!("systemd"))
        && let Some(v) = r.get("systemd", 0)
    {
        let text = b64(v);
        let mut lines = text.lines();
        let version = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(int);
        if let Some(version) = version {
            f.insert(
                "systemd".into(),
                json!({"version": version, "features": lines.next().unwrap_or("").trim()}),
            );
        }
    }
}

/// DMI files whose fact has the file's name.
const FACT_NAMES: &[&str] = &[
    "bios_date",
    "bios_vendor",
    "bios_version",
    "board_asset_tag",
    "board_name",
    "board_serial",
    "board_vendor",
    "board_version",
    "chassis_asset_tag",
    "chassis_serial",
    "chassis_vendor",
    "chassis_version",
    "chassis_type",
    "product_name",
    "product_serial",
    "product_uuid",
    "product_version",
];

/// The facts of the selected subsets, plus `gather_subset` and
/// `module_setup` as Ansible reports them.
pub fn select(all: &Map<String, Json>, spec: &[String]) -> Result<Map<String, Json>, String> {
    let on = subsets(spec)?;
    let mut out: Map<String, Json> = all
        .iter()
        .filter(|(k, _)| on.contains(&subset_of(k)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    out.insert("gather_subset".into(), json!(spec));
    out.insert("module_setup".into(), json!(true));
    Ok(out)
}

/// The `filter` argument of `setup`: shell-style patterns on fact names
/// (with or without the `ansible_` prefix).
pub fn filter(facts: Map<String, Json>, patterns: &[String]) -> Map<String, Json> {
    if patterns.is_empty() || patterns.iter().any(|p| p == "*") {
        return facts;
    }
    let pats: Vec<glob::Pattern> = patterns
        .iter()
        .filter_map(|p| glob::Pattern::new(p).ok())
        .collect();
    facts
        .into_iter()
        .filter(|(k, _)| {
            let full = format!("ansible_{k}");
            pats.iter().any(|p| p.matches(k) || p.matches(&full))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(v: &[(&str, &str)]) -> BTreeMap<String, String> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    const DEBIAN12: &str = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n";

    #[test]
    fn debian_uses_debian_version_for_the_precise_version() {
        let f = distribution(&files(&[
            ("/etc/os-release", DEBIAN12),
            ("/etc/debian_version", "12.11\n"),
        ]));
        assert_eq!(f["distribution"], "Debian");
        assert_eq!(f["distribution_version"], "12.11");
        assert_eq!(f["distribution_major_version"], "12");
        assert_eq!(f["distribution_minor_version"], "11");
        assert_eq!(f["distribution_release"], "bookworm");
        assert_eq!(f["os_family"], "Debian");
        assert_eq!(f["distribution_file_path"], "/etc/os-release");
    }

    #[test]
    fn rhel_rocky_alma_are_redhat_family() {
        let rhel = "NAME=\"Red Hat Enterprise Linux\"\nVERSION_ID=\"9.4\"\nID=\"rhel\"\n";
        let f = distribution(&files(&[
            ("/etc/os-release", rhel),
            (
                "/etc/redhat-release",
                "Red Hat Enterprise Linux release 9.4 (Plow)\n",
            ),
        ]));
        assert_eq!(f["distribution"], "RedHat");
        assert_eq!(f["os_family"], "RedHat");
        assert_eq!(f["distribution_version"], "9.4");
        assert_eq!(f["distribution_major_version"], "9");
        let rocky = "NAME=\"Rocky Linux\"\nVERSION_ID=\"9.3\"\nID=\"rocky\"\n";
        let f = distribution(&files(&[
            ("/etc/os-release", rocky),
            (
                "/etc/redhat-release",
                "Rocky Linux release 9.3 (Blue Onyx)\n",
            ),
        ]));
        assert_eq!(f["distribution"], "Rocky");
        assert_eq!(f["os_family"], "RedHat");
        let alma = "NAME=\"AlmaLinux\"\nVERSION_ID=\"9.3\"\nID=\"almalinux\"\n";
        let f = distribution(&files(&[
            ("/etc/os-release", alma),
            (
                "/etc/redhat-release",
                "AlmaLinux release 9.3 (Shamrock Pampas Cat)\n",
            ),
        ]));
        assert_eq!(f["distribution"], "AlmaLinux");
        assert_eq!(f["os_family"], "RedHat");
    }

    #[test]
    fn ubuntu_suse_arch_alpine() {
        let ubuntu = "PRETTY_NAME=\"Ubuntu 22.04.4 LTS\"\nNAME=\"Ubuntu\"\nVERSION_ID=\"22.04\"\nVERSION=\"22.04.4 LTS (Jammy Jellyfish)\"\nVERSION_CODENAME=jammy\nID=ubuntu\nID_LIKE=debian\n";
        let f = distribution(&files(&[
            ("/etc/os-release", ubuntu),
            ("/etc/debian_version", "bookworm/sid\n"),
        ]));
        assert_eq!(f["distribution"], "Ubuntu");
        assert_eq!(f["os_family"], "Debian");
        assert_eq!(f["distribution_version"], "22.04");
        assert_eq!(f["distribution_release"], "jammy");
        let leap = "NAME=\"openSUSE Leap\"\nVERSION=\"15.5\"\nID=\"opensuse-leap\"\nID_LIKE=\"suse opensuse\"\nVERSION_ID=\"15.5\"\n";
        let f = distribution(&files(&[("/etc/os-release", leap)]));
        assert_eq!(f["distribution"], "openSUSE Leap");
        assert_eq!(f["os_family"], "Suse");
        assert_eq!(f["distribution_release"], "5");
        let arch = "NAME=\"Arch Linux\"\nPRETTY_NAME=\"Arch Linux\"\nID=arch\nBUILD_ID=rolling\n";
        let f = distribution(&files(&[
            ("/etc/os-release", arch),
            ("/etc/arch-release", ""),
        ]));
        assert_eq!(f["distribution"], "Archlinux");
        assert_eq!(f["os_family"], "Archlinux");
        let alpine = "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19.1\n";
        let f = distribution(&files(&[
            ("/etc/os-release", alpine),
            ("/etc/alpine-release", "3.19.1\n"),
        ]));
        assert_eq!(f["distribution"], "Alpine");
        assert_eq!(f["os_family"], "Alpine");
        assert_eq!(f["distribution_version"], "3.19.1");
    }

    #[test]
    fn subsets_follow_ansible() {
        assert_eq!(
            subsets(&["all".into()]).unwrap(),
            vec!["min", "hardware", "network", "virtual", "rest"]
        );
        assert_eq!(subsets(&["!all".into()]).unwrap(), vec!["min"]);
        assert_eq!(
            subsets(&["!all,hardware".into()]).unwrap(),
            vec!["min", "hardware"]
        );
        // As in Ansible: exclusions alone leave the minimal facts only.
        assert_eq!(subsets(&["!hardware".into()]).unwrap(), vec!["min"]);
        assert_eq!(
            subsets(&["all".into(), "!hardware".into()]).unwrap(),
            vec!["min", "network", "virtual", "rest"]
        );
        assert_eq!(
            subsets(&["network".into()]).unwrap(),
            vec!["min", "network"]
        );
        assert!(subsets(&["facter".into()]).unwrap_err().contains("facter"));
    }

    #[test]
    fn mtab_escapes_and_netmask() {
        assert_eq!(unescape_mtab("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(netmask(24), "255.255.255.0");
        assert_eq!(netmask(0), "0.0.0.0");
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(20_788), (2026, 12, 1));
    }
}
