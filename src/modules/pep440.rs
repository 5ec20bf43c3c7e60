//! Python package requirements and versions (PEP 508 names, PEP 440
//! versions and specifiers), as far as Ansible's `pip` module reads them: a
//! requirement's canonical name, its text as `packaging` writes it back, and
//! whether an installed version satisfies it (`prereleases=True`).
//!
//! Environment markers (`; python_version < "3"`) and direct references
//! (`name @ url`) are not read: [`Requirement::parse`] says so, and the
//! `pip` module refuses them as not supported yet.

use std::cmp::Ordering;

/// A PEP 440 version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    epoch: u64,
    release: Vec<u64>,
    /// (0 = a, 1 = b, 2 = rc, number).
    pre: Option<(u8, u64)>,
    post: Option<u64>,
    dev: Option<u64>,
    local: Option<String>,
}

impl Version {
    /// Parses a version in any spelling PEP 440 accepts (`1.0`, `v1.0-RC1`,
    /// `1.0.post2.dev3+local`).
    pub fn parse(s: &str) -> Option<Version> {
        let s = s.trim().to_ascii_lowercase();
        let s = s.strip_prefix('v').unwrap_or(&s);
        let (public, local) = match s.split_once('+') {
            Some((p, l)) => {
                if l.is_empty()
                    || !l
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c))
                {
                    return None;
                }
                (p, Some(l.replace(['-', '_'], ".")))
            }
            None => (s, None),
        };
        let (epoch, rest) = match public.split_once('!') {
            Some((e, r)) => (e.parse().ok()?, r),
            None => (0, public),
        };
        let b = rest.as_bytes();
        let mut i = 0;
        let num = |i: &mut usize| -> Option<u64> {
            let start = *i;
            while *i < b.len() && b[*i].is_ascii_digit() {
                *i += 1;
            }
            rest[start..*i].parse().ok()
        };
        let mut release = vec![num(&mut i)?];
        while i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
            i += 1;
            release.push(num(&mut i)?);
        }
        let sep = |i: &mut usize| {
            if *i < b.len() && matches!(b[*i], b'.' | b'-' | b'_') {
                *i += 1;
            }
        };
        let word = |i: &mut usize, words: &[&str]| -> Option<String> {
            let mut j = *i;
            sep(&mut j);
            let tail = &rest[j..];
            let w = words.iter().find(|w| tail.starts_with(**w))?;
            *i = j + w.len();
            Some((*w).to_string())
        };
        let opt_num = |i: &mut usize| -> u64 {
            let mut j = *i;
            sep(&mut j);
            if j < b.len() && b[j].is_ascii_digit() {
                *i = j;
                num(i).unwrap_or(0)
            } else {
                0
            }
        };
        let mut pre = None;
        if let Some(w) = word(
            &mut i,
            &["alpha", "beta", "preview", "pre", "rc", "a", "b", "c"],
        ) {
            let kind = match w.as_str() {
                "alpha" | "a" => 0,
                "beta" | "b" => 1,
                _ => 2,
            };
            pre = Some((kind, opt_num(&mut i)));
        }
        let mut post = None;
        if let Some(_w) = word(&mut i, &["post", "rev", "r"]) {
            post = Some(opt_num(&mut i));
        } else if i < b.len() && b[i] == b'-' && i + 1 < b.len() && b[i + 1].is_ascii_digit() {
            i += 1;
            post = num(&mut i);
        }
        let mut dev = None;
        if word(&mut i, &["dev"]).is_some() {
            dev = Some(opt_num(&mut i));
        }
        if i != b.len() {
            return None;
        }
        Some(Version {
            epoch,
            release,
            pre,
            post,
            dev,
            local,
        })
    }

    fn is_prerelease(&self) -> bool {
        self.pre.is_some() || self.dev.is_some()
    }

    /// The version without its local part.
    fn public(&self) -> Version {
        Version {
            local: None,
            ..self.clone()
        }
    }

    /// Epoch and release only.
    fn base(&self) -> Version {
        Version {
            epoch: self.epoch,
            release: self.release.clone(),
            pre: None,
            post: None,
            dev: None,
            local: None,
        }
    }

    fn key(&self) -> SortKey {
        let mut rel = self.release.clone();
        while rel.len() > 1 && rel.last() == Some(&0) {
            rel.pop();
        }
        // A dev release of a final version sorts before its pre-releases.
        let pre = match (self.pre, self.post, self.dev) {
            (None, None, Some(_)) => (-1, 0, 0),
            (None, _, _) => (1, 0, 0),
            (Some((k, n)), _, _) => (0, k, n),
        };
        let post = self.post.map_or((-1, 0), |n| (0, n));
        let dev = self.dev.map_or((1, 0), |n| (0, n));
        (self.epoch, rel, pre, post, dev)
    }
}

impl Ord for Version {
    fn cmp(&self, o: &Version) -> Ordering {
        self.key().cmp(&o.key()).then_with(|| {
            let segs = |l: &Option<String>| -> Vec<(u8, u64, String)> {
                l.as_deref()
                    .map(|l| {
                        l.split('.')
                            .map(|s| match s.parse::<u64>() {
                                Ok(n) => (1, n, String::new()),
                                Err(_) => (0, 0, s.to_string()),
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            };
            match (&self.local, &o.local) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                _ => segs(&self.local).cmp(&segs(&o.local)),
            }
        })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, o: &Version) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// What versions sort by: epoch, release (trailing zeros dropped), then the
/// pre-release, post-release and dev parts, each ranked as PEP 440 says.
type SortKey = (u64, Vec<u64>, (i8, u8, u64), (i8, u64), (i8, u64));

/// One version specifier (`>=1.0`, `==2.*`, `~=1.4.2`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Specifier {
    op: String,
    version: String,
}

const OPS: &[&str] = &["===", "~=", "==", "!=", "<=", ">=", "<", ">"];

impl Specifier {
    fn parse(s: &str) -> Option<Specifier> {
        let s = s.trim();
        let op = OPS.iter().find(|o| s.starts_with(**o))?;
        let version = s[op.len()..].trim().to_string();
        if version.is_empty() || version.contains(char::is_whitespace) {
            return None;
        }
        let spec = Specifier {
            op: (*op).to_string(),
            version,
        };
        match spec.op.as_str() {
            "===" => {}
            "==" | "!=" => {
                let v = spec.version.strip_suffix(".*").unwrap_or(&spec.version);
                let v = Version::parse(v)?;
                if spec.version.ends_with(".*") && v.local.is_some() {
                    return None;
                }
            }
            "~=" => {
                let v = Version::parse(&spec.version)?;
                if v.release.len() < 2 || v.local.is_some() {
                    return None;
                }
            }
            _ => {
                if Version::parse(&spec.version)?.local.is_some() {
                    return None;
                }
            }
        }
        Some(spec)
    }

    /// Whether `candidate` satisfies this specifier, pre-releases allowed.
    pub fn contains(&self, candidate: &str) -> bool {
        if self.op == "===" {
            return candidate.eq_ignore_ascii_case(&self.version);
        }
        let Some(c) = Version::parse(candidate) else {
            return false;
        };
        match self.op.as_str() {
            "==" => self.equal(&c),
            "!=" => !self.equal(&c),
            "~=" => {
                let Some(v) = Version::parse(&self.version) else {
                    return false;
                };
                let mut prefix = v.base();
                prefix.release.pop();
                c.public() >= v && prefix_match(&prefix.release, prefix.epoch, &c)
            }
            op => {
                let Some(v) = Version::parse(&self.version) else {
                    return false;
                };
                let p = c.public();
                match op {
                    "<=" => p <= v,
                    ">=" => p >= v,
                    "<" => {
                        p < v && !(!v.is_prerelease() && c.is_prerelease() && c.base() == v.base())
                    }
                    ">" => {
                        p > v
                            && !(v.post.is_none() && c.post.is_some() && c.base() == v.base())
                            && !(c.local.is_some() && c.base() == v.base())
                    }
                    _ => false,
                }
            }
        }
    }

    fn equal(&self, c: &Version) -> bool {
        if let Some(prefix) = self.version.strip_suffix(".*") {
            return Version::parse(prefix).is_some_and(|p| prefix_match(&p.release, p.epoch, c));
        }
        let Some(v) = Version::parse(&self.version) else {
            return false;
        };
        if v.local.is_some() {
            c == &v || c.cmp(&v) == Ordering::Equal
        } else {
            c.public().cmp(&v) == Ordering::Equal
        }
    }
}

/// Whether `c`'s release starts with `prefix` (zero-padded, as packaging's
/// prefix match pads both sides).
fn prefix_match(prefix: &[u64], epoch: u64, c: &Version) -> bool {
    if c.epoch != epoch {
        return false;
    }
    (0..prefix.len()).all(|i| c.release.get(i).copied().unwrap_or(0) == prefix[i])
}

/// A requirement as `pip` reads a package name: `name[extras] specifiers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub name: String,
    extras: Vec<String>,
    specs: Vec<Specifier>,
}

/// Why a requirement is not read.
#[derive(Debug, PartialEq, Eq)]
pub enum NotRead {
    /// Not a requirement at all (a path, an archive, a URL): pip gets it as
    /// written, as Ansible passes it.
    Invalid,
    /// A marker or a direct reference: deployer does not read those yet.
    Unsupported,
}

impl Requirement {
    pub fn parse(s: &str) -> Result<Requirement, NotRead> {
        let t = s.trim();
        let name_end = t
            .find(|c: char| !(c.is_ascii_alphanumeric() || "._-".contains(c)))
            .unwrap_or(t.len());
        let name = &t[..name_end];
        let valid_name = !name.is_empty()
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !valid_name {
            return Err(NotRead::Invalid);
        }
        let mut rest = t[name_end..].trim_start();
        let mut extras = Vec::new();
        if let Some(r) = rest.strip_prefix('[') {
            let (inside, after) = r.split_once(']').ok_or(NotRead::Invalid)?;
            for e in inside.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                if !e
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                {
                    return Err(NotRead::Invalid);
                }
                extras.push(e.to_string());
            }
            rest = after.trim_start();
        }
        if rest.contains(';') || rest.starts_with('@') {
            return Err(NotRead::Unsupported);
        }
        let rest = rest
            .strip_prefix('(')
            .and_then(|r| r.trim_end().strip_suffix(')'))
            .unwrap_or(rest);
        let mut specs = Vec::new();
        if !rest.trim().is_empty() {
            for part in rest.split(',') {
                specs.push(Specifier::parse(part).ok_or(NotRead::Invalid)?);
            }
        }
        extras.sort();
        extras.dedup();
        Ok(Requirement {
            name: name.to_string(),
            extras,
            specs,
        })
    }

    /// PEP 503's normalized name (`Foo_Bar.baz` is `foo-bar-baz`).
    pub fn canonical_name(name: &str) -> String {
        let mut out = String::new();
        let mut sep = false;
        for c in name.chars() {
            if "-_.".contains(c) {
                sep = true;
            } else {
                if sep {
                    out.push('-');
                    sep = false;
                }
                out.push(c.to_ascii_lowercase());
            }
        }
        if sep {
            out.push('-');
        }
        out
    }

    pub fn has_specifier(&self) -> bool {
        !self.specs.is_empty()
    }

    /// Whether an installed `version` satisfies every specifier.
    pub fn satisfied_by(&self, version: &str) -> bool {
        self.specs.iter().all(|s| s.contains(version))
    }
}

impl std::fmt::Display for Requirement {
    /// As `packaging` writes a requirement back: no spaces, extras and
    /// specifiers sorted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.name)?;
        if !self.extras.is_empty() {
            write!(f, "[{}]", self.extras.join(","))?;
        }
        let mut specs: Vec<String> = self
            .specs
            .iter()
            .map(|s| format!("{}{}", s.op, s.version))
            .collect();
        specs.sort();
        specs.dedup();
        write!(f, "{}", specs.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(spec: &str, v: &str) -> bool {
        Requirement::parse(&format!("x{spec}"))
            .expect("requirement")
            .satisfied_by(v)
    }

    #[test]
    fn versions_order_as_pep_440_says() {
        let order = [
            "1.0.dev1",
            "1.0a1",
            "1.0a2.dev1",
            "1.0b1",
            "1.0rc1",
            "1.0",
            "1.0+local",
            "1.0.post1",
            "1.1",
            "2!0.1",
        ];
        for w in order.windows(2) {
            let (a, b) = (Version::parse(w[0]).unwrap(), Version::parse(w[1]).unwrap());
            assert!(a < b, "{} < {}", w[0], w[1]);
        }
        assert_eq!(
            Version::parse("1.0")
                .unwrap()
                .cmp(&Version::parse("1.0.0").unwrap()),
            Ordering::Equal
        );
        assert_eq!(Version::parse("v1.0-RC1"), Version::parse("1.0rc1"));
        assert_eq!(Version::parse("1.0-1"), Version::parse("1.0.post1"));
        assert!(Version::parse("1.0 x").is_none());
        assert!(Version::parse("banana").is_none());
    }

    #[test]
    fn specifiers_match_as_packaging_does() {
        assert!(ok("==1.0", "1.0.0"));
        assert!(ok("==1.0", "1.0+abc"));
        assert!(!ok("==1.0", "1.0.post1"));
        assert!(ok("==1.*", "1.9"));
        assert!(!ok("==1.*", "2.0"));
        assert!(ok("!=1.0", "2.0"));
        assert!(ok(">=1.0,<2.0", "1.5"));
        assert!(!ok(">=1.0,<2.0", "2.0"));
        assert!(!ok("<2.0", "2.0rc1"));
        assert!(ok("<2.0rc2", "2.0rc1"));
        assert!(!ok(">1.0", "1.0.post1"));
        assert!(ok(">1.0", "1.1"));
        assert!(ok("~=1.4.2", "1.4.9"));
        assert!(!ok("~=1.4.2", "1.5"));
        assert!(ok("~=1.4", "1.9"));
        assert!(ok(">=1.0", "2.0a1"));
        assert!(ok("===1.0", "1.0"));
        assert!(!ok("===1.0", "1.0.0"));
    }

    #[test]
    fn requirements_read_and_write_back_as_packaging() {
        let r = Requirement::parse("Foo_Bar [b,a] >= 1.0 , <2").unwrap();
        assert_eq!(r.to_string(), "Foo_Bar[a,b]<2,>=1.0");
        assert_eq!(Requirement::canonical_name(&r.name), "foo-bar");
        assert!(r.has_specifier());
        assert!(!Requirement::parse("dplpip").unwrap().has_specifier());
        assert_eq!(
            Requirement::parse("/srv/x-1.0-py3-none-any.whl"),
            Err(NotRead::Invalid)
        );
        assert_eq!(Requirement::parse("x >= banana"), Err(NotRead::Invalid));
        assert_eq!(
            Requirement::parse("x; python_version>'3'"),
            Err(NotRead::Unsupported)
        );
        assert_eq!(
            Requirement::parse("x @ https://example.invalid/x.whl"),
            Err(NotRead::Unsupported)
        );
    }
}
