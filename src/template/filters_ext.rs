//! Ansible filters and tests beyond the common set of `filters.rs`:
//! `random` and `shuffle` (with Python's seeded Mersenne Twister, so a
//! `seed=` gives the numbers Ansible gives), `password_hash` (SHA-crypt),
//! `to_uuid`, `urlsplit`, `strftime`, `zip`, `subelements`, `extract`, paths,
//! `human_to_bytes`, `from_yaml_all`, the `ipaddr` family, and the
//! `any`/`all` tests.

use minijinja::value::{Kwargs, Rest, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind, State};
use sha2::Digest;

pub fn register(env: &mut Environment<'_>) {
    env.add_filter("random", random);
    env.add_filter("shuffle", shuffle);
    env.add_filter("password_hash", password_hash);
    env.add_filter("to_uuid", to_uuid);
    env.add_filter("urlsplit", urlsplit);
    env.add_filter("strftime", strftime);
    env.add_filter("zip", zip);
    env.add_filter("zip_longest", zip_longest);
    env.add_filter("subelements", subelements);
    env.add_filter("extract", extract);
    env.add_filter("path_join", path_join);
    env.add_filter("expanduser", expanduser);
    env.add_filter("expandvars", expandvars);
    env.add_filter("realpath", realpath);
    env.add_filter("relpath", relpath);
    env.add_filter("human_to_bytes", human_to_bytes);
    env.add_filter("human_readable", human_readable);
    env.add_filter("from_yaml_all", from_yaml_all);
    for name in ["ipaddr", "ansible.utils.ipaddr"] {
        env.add_filter(name, ipaddr);
    }
    for name in ["ipv4", "ansible.utils.ipv4"] {
        env.add_filter(name, ipv4);
    }
    for name in ["ipv6", "ansible.utils.ipv6"] {
        env.add_filter(name, ipv6);
    }
    env.add_filter("ansible.utils.ipwrap", ipwrap);
    env.add_filter("ipwrap", ipwrap);
    env.add_test("any", test_any);
    env.add_test("all", test_all);
    env.add_filter("json_query", json_query);
    env.add_filter("community.general.json_query", json_query);
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg.into())
}

fn seq(value: &Value, what: &str) -> Result<Vec<Value>, Error> {
    match value.kind() {
        ValueKind::Seq | ValueKind::Iterable | ValueKind::Map => Ok(value.try_iter()?.collect()),
        ValueKind::String => Ok(value
            .as_str()
            .unwrap_or_default()
            .chars()
            .map(|c| Value::from(c.to_string()))
            .collect()),
        _ => Err(invalid(format!(
            "{what}: expected a list, got {}",
            crate::template::py_repr(value)
        ))),
    }
}

// ---------------------------------------------------------------- random

/// Python's `random.Random`: MT19937 seeded as `Random(seed)` is (strings
/// through SHA-512, version 2), with `randrange`, `choice` and `shuffle`
/// drawing bits as CPython does.
pub struct PyRandom {
    mt: [u32; 624],
    index: usize,
}

impl PyRandom {
    pub fn from_seed(seed: &Value) -> Result<PyRandom, Error> {
        let key: Vec<u32> = if let Some(s) = seed.as_str() {
            let mut bytes = s.as_bytes().to_vec();
            bytes.extend_from_slice(&sha2::Sha512::digest(s.as_bytes()));
            words_of_big_endian(&bytes)
        } else if let Ok(i) = i64::try_from(seed.clone()) {
            let n = i.unsigned_abs();
            let mut w = vec![n as u32];
            if n >> 32 != 0 {
                w.push((n >> 32) as u32);
            }
            w
        } else if let Ok(f) = f64::try_from(seed.clone()) {
            // Python hashes a float seed; integral floats hash as the integer.
            if f.fract() == 0.0 && f.abs() < 1e18 {
                return PyRandom::from_seed(&Value::from(f as i64));
            }
            return Err(invalid(
                "random: a non-integral float seed is not supported yet by deployer",
            ));
        } else {
            return Err(invalid(format!(
                "random: unsupported seed {}",
                crate::template::py_repr(seed)
            )));
        };
        Ok(PyRandom::from_key(&key))
    }

    fn from_key(key: &[u32]) -> PyRandom {
        let mut r = PyRandom {
            mt: [0; 624],
            index: 624,
        };
        r.mt[0] = 19_650_218;
        for i in 1..624 {
            let prev = r.mt[i - 1];
            r.mt[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        let (mut i, mut j) = (1usize, 0usize);
        let key_len = key.len().max(1);
        for _ in 0..624.max(key_len) {
            let prev = r.mt[i - 1];
            r.mt[i] = (r.mt[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1_664_525))
                .wrapping_add(key.get(j).copied().unwrap_or(0))
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= 624 {
                r.mt[0] = r.mt[623];
                i = 1;
            }
            if j >= key_len {
                j = 0;
            }
        }
        for _ in 0..623 {
            let prev = r.mt[i - 1];
            r.mt[i] = (r.mt[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1_566_083_941))
                .wrapping_sub(i as u32);
            i += 1;
            if i >= 624 {
                r.mt[0] = r.mt[623];
                i = 1;
            }
        }
        r.mt[0] = 0x8000_0000;
        r
    }

    fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            for k in 0..624 {
                let y = (self.mt[k] & 0x8000_0000) | (self.mt[(k + 1) % 624] & 0x7fff_ffff);
                let mut v = self.mt[(k + 397) % 624] ^ (y >> 1);
                if y & 1 != 0 {
                    v ^= 0x9908_b0df;
                }
                self.mt[k] = v;
            }
            self.index = 0;
        }
        let mut y = self.mt[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }

    /// `getrandbits(k)` for k <= 64.
    fn getrandbits(&mut self, k: u32) -> u64 {
        if k == 0 {
            return 0;
        }
        if k <= 32 {
            return u64::from(self.next_u32() >> (32 - k));
        }
        let low = u64::from(self.next_u32());
        let high = u64::from(self.next_u32() >> (64 - k));
        (high << 32) | low
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let k = 64 - n.leading_zeros();
        loop {
            let r = self.getrandbits(k);
            if r < n {
                return r;
            }
        }
    }
}

/// A big-endian integer's 32-bit words, least significant first, without
/// leading zero words (CPython's `init_by_array` key).
fn words_of_big_endian(bytes: &[u8]) -> Vec<u32> {
    let mut words = Vec::new();
    let mut end = bytes.len();
    while end > 0 {
        let start = end.saturating_sub(4);
        let mut w = 0u32;
        for b in &bytes[start..end] {
            w = (w << 8) | u32::from(*b);
        }
        words.push(w);
        end = start;
    }
    while words.len() > 1 && words.last() == Some(&0) {
        words.pop();
    }
    if words.is_empty() {
        words.push(0);
    }
    words
}

fn int_arg(v: &Value, what: &str) -> Result<i64, Error> {
    i64::try_from(v.clone())
        .map_err(|_| invalid(format!("random: {what} must be an integer, got {v}")))
}

fn random(value: &Value, args: Rest<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let seed: Option<Value> = kwargs
        .get::<Option<Value>>("seed")?
        .filter(|s| !s.is_none());
    let mut start: Option<Value> = kwargs.get("start")?;
    let mut step: Option<Value> = kwargs.get("step")?;
    kwargs.assert_all_used()?;
    if let Some(s) = args.first() {
        start = Some(s.clone());
    }
    if let Some(s) = args.get(1) {
        step = Some(s.clone());
    }
    let mut rng = match &seed {
        Some(s) => Some(PyRandom::from_seed(s)?),
        None => None,
    };
    let mut below = |n: u64| match &mut rng {
        Some(r) => r.below(n),
        None => rand::random_range(0..n),
    };
    if value.is_integer() {
        let end = int_arg(value, "end")?;
        let start = start
            .filter(|v| v.is_true())
            .map(|v| int_arg(&v, "start"))
            .transpose()?
            .unwrap_or(0);
        let step = step
            .filter(|v| v.is_true())
            .map(|v| int_arg(&v, "step"))
            .transpose()?
            .unwrap_or(1);
        let width = end - start;
        let n = if step > 0 {
            (width + step - 1) / step
        } else {
            (width + step + 1) / step
        };
        if n <= 0 {
            return Err(invalid(format!(
                "random: empty range ({start}, {end}, {step})"
            )));
        }
        return Ok(Value::from(start + step * below(n as u64) as i64));
    }
    if start.is_some_and(|v| v.is_true()) || step.is_some_and(|v| v.is_true()) {
        return Err(invalid(
            "random: start and step can only be used with integer values",
        ));
    }
    let items = seq(value, "random")?;
    if items.is_empty() {
        return Err(invalid("random: cannot choose from an empty sequence"));
    }
    Ok(items[below(items.len() as u64) as usize].clone())
}

fn shuffle(value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    let seed: Option<Value> = kwargs
        .get::<Option<Value>>("seed")?
        .filter(|s| !s.is_none());
    kwargs.assert_all_used()?;
    let mut items = seq(value, "shuffle")?;
    let mut rng = match &seed {
        Some(s) if s.is_true() => Some(PyRandom::from_seed(s)?),
        _ => None,
    };
    for i in (1..items.len()).rev() {
        let j = match &mut rng {
            Some(r) => r.below(i as u64 + 1) as usize,
            None => rand::random_range(0..=i),
        };
        items.swap(i, j);
    }
    Ok(Value::from(items))
}

// ---------------------------------------------------------------- hashes

const CRYPT64: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn password_hash(
    value: &Value,
    hashtype: Option<String>,
    salt: Option<Value>,
    kwargs: Kwargs,
) -> Result<String, Error> {
    let salt: Option<String> = match salt {
        Some(s) if !s.is_none() => Some(crate::template::py_str(&s)),
        _ => kwargs.get::<Option<String>>("salt")?,
    };
    let rounds: Option<u32> = kwargs.get("rounds")?;
    let hashtype = hashtype
        .or(kwargs.get::<Option<String>>("hashtype")?)
        .unwrap_or_else(|| "sha512".into());
    let _salt_size: Option<u32> = kwargs.get("salt_size")?;
    kwargs.assert_all_used()?;
    let password = crate::template::py_str(value);
    let (id, default_rounds) = match hashtype.as_str() {
        "sha512" | "sha512_crypt" => ("6", 656_000),
        "sha256" | "sha256_crypt" => ("5", 535_000),
        "md5" | "md5_crypt" | "blowfish" | "bcrypt" => {
            return Err(invalid(format!(
                "password_hash: '{hashtype}' is not supported yet by deployer (sha512, sha256)"
            )));
        }
        other => {
            return Err(invalid(format!(
                "password_hash: unknown hash type '{other}' (expected sha512, sha256, md5, blowfish)"
            )));
        }
    };
    let salt = match salt {
        Some(s) => {
            if !s.bytes().all(|b| CRYPT64.contains(&b)) {
                return Err(invalid(
                    "password_hash: the salt may only hold [./0-9A-Za-z]",
                ));
            }
            s
        }
        None => (0..16)
            .map(|_| CRYPT64[rand::random_range(0..CRYPT64.len())] as char)
            .collect(),
    };
    let salt: String = salt.chars().take(16).collect();
    let rounds = rounds.unwrap_or(default_rounds).clamp(1000, 999_999_999);
    let hash = if id == "6" {
        sha_crypt::<sha2::Sha512>(password.as_bytes(), salt.as_bytes(), rounds)
    } else {
        sha_crypt::<sha2::Sha256>(password.as_bytes(), salt.as_bytes(), rounds)
    };
    let encoded = crypt_b64(&hash);
    Ok(if rounds == 5000 {
        format!("${id}${salt}${encoded}")
    } else {
        format!("${id}$rounds={rounds}${salt}${encoded}")
    })
}

/// The SHA-crypt digest (Drepper's specification, as glibc and passlib).
fn sha_crypt<D: Digest>(pw: &[u8], salt: &[u8], rounds: u32) -> Vec<u8> {
    let n = <D as Digest>::output_size();
    let repeat =
        |block: &[u8], len: usize| -> Vec<u8> { block.iter().copied().cycle().take(len).collect() };
    let b = D::new()
        .chain_update(pw)
        .chain_update(salt)
        .chain_update(pw)
        .finalize();
    let mut a = D::new().chain_update(pw).chain_update(salt);
    a.update(repeat(&b, pw.len()));
    let mut len = pw.len();
    while len > 0 {
        if len & 1 == 1 {
            a.update(&b);
        } else {
            a.update(pw);
        }
        len >>= 1;
    }
    let a = a.finalize();
    let mut dp = D::new();
    for _ in 0..pw.len() {
        dp.update(pw);
    }
    let p = repeat(&dp.finalize(), pw.len());
    let mut ds = D::new();
    for _ in 0..16 + usize::from(a[0]) {
        ds.update(salt);
    }
    let s = repeat(&ds.finalize(), salt.len());
    let mut c = a.to_vec();
    for i in 0..rounds {
        let mut h = D::new();
        if i % 2 == 1 {
            h.update(&p);
        } else {
            h.update(&c);
        }
        if i % 3 != 0 {
            h.update(&s);
        }
        if i % 7 != 0 {
            h.update(&p);
        }
        if i % 2 == 1 {
            h.update(&c);
        } else {
            h.update(&p);
        }
        c = h.finalize().to_vec();
    }
    debug_assert_eq!(c.len(), n);
    c
}

fn crypt_b64(h: &[u8]) -> String {
    let mut out = String::new();
    let mut push = |b2: u8, b1: u8, b0: u8, chars: usize| {
        let mut w = (u32::from(b2) << 16) | (u32::from(b1) << 8) | u32::from(b0);
        for _ in 0..chars {
            out.push(CRYPT64[(w & 0x3f) as usize] as char);
            w >>= 6;
        }
    };
    if h.len() == 64 {
        for k in 0..21 {
            let (x, y, z) = (k, (k + 21) % 63, (k + 42) % 63);
            let idx = [x, y, z];
            // The triplets rotate: (0,21,42), (22,43,1), (44,2,23), ...
            let r = k % 3;
            let t = [idx[r], idx[(r + 1) % 3], idx[(r + 2) % 3]];
            push(h[t[0]], h[t[1]], h[t[2]], 4);
        }
        push(0, 0, h[63], 2);
    } else {
        for k in 0..10 {
            let (x, y, z) = (k, (k + 10) % 30, (k + 20) % 30);
            let idx = [x, y, z];
            let r = k % 3;
            let t = [idx[(3 - r) % 3], idx[(4 - r) % 3], idx[(5 - r) % 3]];
            push(h[t[0]], h[t[1]], h[t[2]], 4);
        }
        push(0, h[31], h[30], 3);
    }
    out
}

/// `to_uuid`: UUID version 5 in Ansible's namespace (or `namespace=`).
fn to_uuid(value: &Value, namespace: Option<String>) -> Result<String, Error> {
    let ns = namespace.unwrap_or_else(|| "361E6D51-FAEC-444A-9079-341386DA8E2E".into());
    let hex: String = ns.chars().filter(|c| *c != '-').collect();
    let ns_bytes = hex::decode(&hex)
        .ok()
        .filter(|b| b.len() == 16)
        .ok_or_else(|| invalid(format!("to_uuid: invalid namespace '{ns}'")))?;
    let name = crate::template::py_str(value);
    let digest = sha1::Sha1::new()
        .chain_update(&ns_bytes)
        .chain_update(name.as_bytes())
        .finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

// ---------------------------------------------------------------- urls, times

/// `urlsplit`: Python's `urllib.parse.urlsplit` fields, or one of them.
fn urlsplit(value: &Value, query: Option<String>) -> Result<Value, Error> {
    let s = crate::template::py_str(value);
    let (scheme, rest) = match s.split_once(':') {
        Some((sc, r))
            if !sc.is_empty()
                && sc.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && sc
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            (sc.to_ascii_lowercase(), r.to_string())
        }
        _ => (String::new(), s.clone()),
    };
    let (rest, fragment) = match rest.split_once('#') {
        Some((r, f)) => (r.to_string(), f.to_string()),
        None => (rest, String::new()),
    };
    let (rest, q) = match rest.split_once('?') {
        Some((r, q)) => (r.to_string(), q.to_string()),
        None => (rest, String::new()),
    };
    let (netloc, path) = match rest.strip_prefix("//") {
        Some(r) => match r.find('/') {
            Some(i) => (r[..i].to_string(), r[i..].to_string()),
            None => (r.to_string(), String::new()),
        },
        None => (String::new(), rest),
    };
    let (userinfo, hostport) = match netloc.rsplit_once('@') {
        Some((u, h)) => (Some(u.to_string()), h.to_string()),
        None => (None, netloc.clone()),
    };
    let (username, password) = match &userinfo {
        Some(u) => match u.split_once(':') {
            Some((a, b)) => (Value::from(a), Value::from(b)),
            None => (Value::from(u.as_str()), Value::from(())),
        },
        None => (Value::from(()), Value::from(())),
    };
    let (hostname, port) = if let Some(r) = hostport.strip_prefix('[') {
        let (h, after) = r.split_once(']').unwrap_or((r, ""));
        (h.to_string(), after.strip_prefix(':').unwrap_or(""))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p),
            None => (hostport.clone(), ""),
        }
    };
    let hostname = if hostname.is_empty() {
        Value::from(())
    } else {
        Value::from(hostname.to_ascii_lowercase())
    };
    let port = if port.is_empty() {
        Value::from(())
    } else {
        Value::from(
            port.parse::<i64>()
                .map_err(|_| invalid(format!("urlsplit: port '{port}' is not a number")))?,
        )
    };
    let fields = [
        ("fragment", Value::from(fragment)),
        ("hostname", hostname),
        ("netloc", Value::from(netloc)),
        ("password", password),
        ("path", Value::from(path)),
        ("port", port),
        ("query", Value::from(q)),
        ("scheme", Value::from(scheme)),
        ("username", username),
    ];
    match query {
        None => Ok(Value::from_pairs(fields)),
        Some(q) => fields
            .into_iter()
            .find(|(k, _)| *k == q)
            .map(|(_, v)| v)
            .ok_or_else(|| invalid(format!("urlsplit: unknown URL component: {q}"))),
    }
}

/// `strftime(format, second=None, utc=False)`: C's strftime, as Python's
/// `time.strftime` calls it, in the control machine's time zone.
fn strftime(value: &Value, second: Option<Value>, kwargs: Kwargs) -> Result<String, Error> {
    let utc: bool = kwargs.get::<Option<bool>>("utc")?.unwrap_or(false);
    let second = match second {
        Some(s) => Some(s),
        None => kwargs.get::<Option<Value>>("second")?,
    };
    kwargs.assert_all_used()?;
    let format = crate::template::py_str(value);
    let t: i64 = match second.filter(|s| !s.is_none()) {
        Some(s) => {
            if let Ok(i) = i64::try_from(s.clone()) {
                i
            } else if let Ok(f) = f64::try_from(s.clone()) {
                f as i64
            } else {
                s.as_str()
                    .and_then(|x| x.trim().parse::<f64>().ok())
                    .map(|f| f as i64)
                    .ok_or_else(|| {
                        invalid(format!("strftime: invalid value for epoch value ({s})"))
                    })?
            }
        }
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0),
    };
    c_strftime(&format, t, utc)
}

fn c_strftime(format: &str, t: i64, utc: bool) -> Result<String, Error> {
    let fmt = std::ffi::CString::new(format)
        .map_err(|_| invalid("strftime: the format holds a NUL byte"))?;
    let tt: libc::time_t = t as libc::time_t;
    // SAFETY: `tm` is plain data filled by gmtime_r/localtime_r from a valid
    // time_t; strftime writes at most `buf.len()` bytes into `buf`.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        let ok = if utc {
            !libc::gmtime_r(&tt, &mut tm).is_null()
        } else {
            !libc::localtime_r(&tt, &mut tm).is_null()
        };
        if !ok {
            return Err(invalid(format!("strftime: time {t} is out of range")));
        }
        let mut buf = vec![0u8; 256 + format.len() * 8];
        let n = libc::strftime(buf.as_mut_ptr().cast(), buf.len(), fmt.as_ptr(), &tm);
        if n == 0 && !format.is_empty() {
            return Ok(String::new());
        }
        buf.truncate(n);
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }
}

// ---------------------------------------------------------------- lists

fn zip(value: &Value, others: Rest<Value>) -> Result<Value, Error> {
    let mut lists = vec![seq(value, "zip")?];
    for o in others.iter() {
        lists.push(seq(o, "zip")?);
    }
    let n = lists.iter().map(Vec::len).min().unwrap_or(0);
    Ok(Value::from(
        (0..n)
            .map(|i| Value::from(lists.iter().map(|l| l[i].clone()).collect::<Vec<_>>()))
            .collect::<Vec<_>>(),
    ))
}

fn zip_longest(value: &Value, others: Rest<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let fill: Value = kwargs
        .get::<Option<Value>>("fillvalue")?
        .unwrap_or(Value::from(()));
    kwargs.assert_all_used()?;
    let mut lists = vec![seq(value, "zip_longest")?];
    for o in others.iter() {
        lists.push(seq(o, "zip_longest")?);
    }
    let n = lists.iter().map(Vec::len).max().unwrap_or(0);
    Ok(Value::from(
        (0..n)
            .map(|i| {
                Value::from(
                    lists
                        .iter()
                        .map(|l| l.get(i).cloned().unwrap_or(fill.clone()))
                        .collect::<Vec<_>>(),
                )
            })
            .collect::<Vec<_>>(),
    ))
}

/// `subelements(key, skip_missing=False)`: each element paired with each item of its list.
fn subelements(value: &Value, key: String, kwargs: Kwargs) -> Result<Value, Error> {
    let skip_missing: bool = kwargs.get::<Option<bool>>("skip_missing")?.unwrap_or(false);
    kwargs.assert_all_used()?;
    let elements: Vec<Value> = if value.kind() == ValueKind::Map {
        value
            .try_iter()?
            .map(|k| value.get_item(&k))
            .collect::<Result<_, _>>()?
    } else {
        seq(value, "subelements")?
    };
    let mut out = Vec::new();
    for e in elements {
        let mut sub = Some(e.clone());
        for part in key.split('.') {
            sub = sub
                .and_then(|s| s.get_attr(part).ok())
                .filter(|v| !v.is_undefined());
        }
        match sub {
            Some(list) => {
                for s in seq(&list, "subelements")? {
                    out.push(Value::from(vec![e.clone(), s]));
                }
            }
            None if skip_missing => {}
            None => {
                return Err(invalid(format!(
                    "could not find '{key}' key in iterated item {}",
                    crate::template::py_repr(&e)
                )));
            }
        }
    }
    Ok(Value::from(out))
}

/// `extract(container, morekeys=None)`: `container[item]`, then deeper keys.
fn extract(item: &Value, container: &Value, morekeys: Option<Value>) -> Result<Value, Error> {
    let mut v = container.get_item(item)?;
    if v.is_undefined() {
        return Err(invalid(format!(
            "extract: {} has no key {}",
            crate::template::py_repr(container),
            crate::template::py_repr(item)
        )));
    }
    if let Some(more) = morekeys.filter(|m| !m.is_none()) {
        let keys: Vec<Value> = if matches!(more.kind(), ValueKind::Seq) {
            more.try_iter()?.collect()
        } else {
            vec![more]
        };
        for k in keys {
            v = v.get_item(&k)?;
            if v.is_undefined() {
                return Err(invalid(format!(
                    "extract: no key {}",
                    crate::template::py_repr(&k)
                )));
            }
        }
    }
    Ok(v)
}

// ---------------------------------------------------------------- paths

/// `path_join`: Python's `os.path.join` (an absolute part restarts the path).
fn path_join(value: &Value) -> Result<String, Error> {
    let parts: Vec<String> = match value.kind() {
        ValueKind::String => return Ok(value.as_str().unwrap_or_default().to_string()),
        _ => seq(value, "path_join")?
            .iter()
            .map(crate::template::py_str)
            .collect(),
    };
    let mut out = String::new();
    for p in parts {
        if p.starts_with('/') {
            out = p;
        } else if out.is_empty() || out.ends_with('/') {
            out.push_str(&p);
        } else {
            out.push('/');
            out.push_str(&p);
        }
    }
    Ok(out)
}

/// `expanduser`: `~` and `~user` on the control machine, as Python does.
fn expanduser(value: &Value) -> Result<String, Error> {
    let s = crate::template::py_str(value);
    let Some(rest) = s.strip_prefix('~') else {
        return Ok(s);
    };
    let (user, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let home = if user.is_empty() {
        std::env::var("HOME").ok()
    } else {
        home_of(user)
    };
    Ok(match home {
        Some(h) => {
            let h = if h.len() > 1 {
                h.trim_end_matches('/')
            } else {
                &h
            };
            format!("{h}{tail}")
        }
        None => s.clone(),
    })
}

fn home_of(user: &str) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&user) && f.len() > 5).then(|| f[5].to_string())
    })
}

fn expandvars(value: &Value) -> Result<String, Error> {
    let s = crate::template::py_str(value);
    let re = regex::Regex::new(r"\$(\w+|\{[^}]*\})").map_err(|e| invalid(e.to_string()))?;
    Ok(re
        .replace_all(&s, |c: &regex::Captures<'_>| {
            let name = c[1].trim_start_matches('{').trim_end_matches('}');
            std::env::var(name).unwrap_or_else(|_| c[0].to_string())
        })
        .into_owned())
}

/// `realpath`: Python's `os.path.realpath` on the control machine (a
/// missing tail is kept as written, normalised).
fn realpath(value: &Value) -> Result<String, Error> {
    let s = crate::template::py_str(value);
    let p = std::path::Path::new(&s);
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| invalid(format!("realpath: {e}")))?
            .join(p)
    };
    let mut out = std::path::PathBuf::from("/");
    let comps: Vec<_> = abs.components().collect();
    for (i, c) in comps.iter().enumerate() {
        match c {
            std::path::Component::RootDir | std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(n) => {
                out.push(n);
                if let Ok(real) = std::fs::canonicalize(&out) {
                    out = real;
                } else {
                    for rest in &comps[i + 1..] {
                        match rest {
                            std::path::Component::ParentDir => {
                                out.pop();
                            }
                            std::path::Component::Normal(n) => out.push(n),
                            _ => {}
                        }
                    }
                    break;
                }
            }
            std::path::Component::Prefix(_) => {}
        }
    }
    Ok(out.display().to_string())
}

fn relpath(value: &Value, start: Option<String>) -> Result<String, Error> {
    let path = crate::template::py_str(value);
    let start = match start {
        Some(s) => s,
        None => std::env::current_dir()
            .map(|d| d.display().to_string())
            .map_err(|e| invalid(e.to_string()))?,
    };
    let split = |p: &str| -> Vec<String> {
        p.split('/')
            .filter(|x| !x.is_empty() && *x != ".")
            .map(str::to_string)
            .collect()
    };
    let (a, b) = (split(&path), split(&start));
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<String> = std::iter::repeat_n("..".to_string(), b.len() - common).collect();
    parts.extend(a[common..].iter().cloned());
    Ok(if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    })
}

// ---------------------------------------------------------------- sizes

/// `human_to_bytes`: `'10M'` is 10485760, `'1 KB'` 1024, `'2Mb'` (with
/// `isbits=True`) 2097152.
fn human_to_bytes(
    value: &Value,
    default_unit: Option<String>,
    kwargs: Kwargs,
) -> Result<i64, Error> {
    let isbits: bool = kwargs.get::<Option<bool>>("isbits")?.unwrap_or(false);
    let default_unit = default_unit.or(kwargs.get::<Option<String>>("default_unit")?);
    kwargs.assert_all_used()?;
    let s = crate::template::py_str(value);
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = (&s[..split], s[split..].trim());
    let n: f64 = num.parse().map_err(|_| {
        invalid(format!(
            "human_to_bytes() can't interpret following string: {s}"
        ))
    })?;
    let unit = if unit.is_empty() {
        default_unit.unwrap_or_default()
    } else {
        unit.to_string()
    };
    let prefix = unit.chars().next().map(|c| c.to_ascii_uppercase());
    let power = match prefix {
        None => 0,
        Some('B') if unit.len() == 1 => 0,
        Some(p) => match "KMGTPEZY".find(p) {
            Some(i) => i as i32 + 1,
            None => {
                return Err(invalid(format!(
                    "human_to_bytes() failed to convert {s}. Value is not a valid string ({unit} is not a valid unit)"
                )));
            }
        },
    };
    if unit.len() > 1 {
        let last = unit.chars().last().unwrap_or('B');
        let want = if isbits { 'b' } else { 'B' };
        let rest = &unit[1..];
        if !(rest == want.to_string() || (rest.len() == 2 && rest.starts_with('i') && last == want))
        {
            let what = if isbits { "bit" } else { "byte" };
            return Err(invalid(format!(
                "human_to_bytes() failed to convert {s} (unit = {unit}). The suffix must be one of {want}/{what}"
            )));
        }
    }
    Ok((n * 1024f64.powi(power)).round() as i64)
}

fn human_readable(value: &Value, kwargs: Kwargs) -> Result<String, Error> {
    let isbits: bool = kwargs.get::<Option<bool>>("isbits")?.unwrap_or(false);
    let unit: Option<String> = kwargs.get("unit")?;
    kwargs.assert_all_used()?;
    let n = f64::try_from(value.clone())
        .or_else(|_| {
            value
                .as_str()
                .and_then(|s| s.trim().parse::<f64>().ok())
                .ok_or(())
        })
        .map_err(|_| invalid(format!("human_readable() can't interpret {value}")))?;
    let suffix = if isbits { "b" } else { "B" };
    let units = ["", "K", "M", "G", "T", "P", "E", "Z", "Y"];
    let mut i = 0;
    match unit {
        Some(u) => {
            i = units
                .iter()
                .position(|x| !x.is_empty() && u.starts_with(x))
                .unwrap_or(0)
        }
        None => {
            while i + 1 < units.len() && n >= 1024f64.powi(i as i32 + 1) {
                i += 1;
            }
        }
    }
    let v = n / 1024f64.powi(i as i32);
    let name = if i == 0 {
        if isbits {
            "bits".to_string()
        } else {
            "Bytes".to_string()
        }
    } else {
        format!("{}{suffix}", units[i])
    };
    Ok(format!("{v:.2} {name}"))
}

fn from_yaml_all(value: &Value) -> Result<Value, Error> {
    let text = crate::template::py_str(value);
    let docs = crate::yaml::parse_all_str(&text, std::path::Path::new("<from_yaml_all>"))
        .map_err(|e| invalid(format!("from_yaml_all: {e}")))?;
    let mut out = Vec::new();
    for d in docs {
        out.push(crate::vars::json_to_value(&d.to_json()));
    }
    Ok(Value::from(out))
}

// ---------------------------------------------------------------- ipaddr

#[derive(Clone, Copy)]
struct Net {
    addr: std::net::IpAddr,
    prefix: u8,
    /// Written with a `/prefix`.
    has_prefix: bool,
}

fn parse_net(s: &str) -> Option<Net> {
    let s = s.trim();
    let (a, p) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr: std::net::IpAddr = a.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match p {
        None => max,
        Some(p) => {
            if let Ok(n) = p.parse::<u8>() {
                n
            } else if let Ok(std::net::IpAddr::V4(m)) = p.parse::<std::net::IpAddr>() {
                let bits = u32::from(m);
                if bits.leading_ones() + bits.trailing_zeros() != 32 {
                    return None;
                }
                bits.leading_ones() as u8
            } else {
                return None;
            }
        }
    };
    (prefix <= max).then_some(Net {
        addr,
        prefix,
        has_prefix: p.is_some(),
    })
}

impl Net {
    fn bits(&self) -> (u128, u32) {
        match self.addr {
            std::net::IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
            std::net::IpAddr::V6(a) => (u128::from(a), 128),
        }
    }

    fn addr_of(&self, v: u128) -> std::net::IpAddr {
        match self.addr {
            std::net::IpAddr::V4(_) => std::net::IpAddr::V4(std::net::Ipv4Addr::from(v as u32)),
            std::net::IpAddr::V6(_) => std::net::IpAddr::V6(std::net::Ipv6Addr::from(v)),
        }
    }

    fn mask(&self) -> u128 {
        let (_, width) = self.bits();
        let full: u128 = if width == 128 {
            u128::MAX
        } else {
            (1u128 << width) - 1
        };
        if self.prefix == 0 {
            0
        } else {
            full & !((1u128 << (width - u32::from(self.prefix))) - 1).min(full)
        }
    }

    fn network(&self) -> u128 {
        self.bits().0 & self.mask()
    }

    fn broadcast(&self) -> u128 {
        let (_, width) = self.bits();
        let full: u128 = if width == 128 {
            u128::MAX
        } else {
            (1u128 << width) - 1
        };
        self.network() | (full & !self.mask())
    }
}

fn ip_query(v: &Value, query: &str, version: Option<u8>) -> Result<Value, Error> {
    let Some(s) = v.as_str() else {
        return Ok(Value::from(false));
    };
    let Some(n) = parse_net(s) else {
        return Ok(Value::from(false));
    };
    match version {
        Some(4) if !n.addr.is_ipv4() => return Ok(Value::from(false)),
        Some(6) if !n.addr.is_ipv6() => return Ok(Value::from(false)),
        _ => {}
    }
    let out = match query {
        "" => {
            if n.has_prefix {
                format!("{}/{}", n.addr, n.prefix)
            } else {
                n.addr.to_string()
            }
        }
        "address" => {
            if n.has_prefix
                && n.network() == n.bits().0
                && n.prefix < if n.addr.is_ipv4() { 31 } else { 127 }
            {
                return Ok(Value::from(false));
            }
            n.addr.to_string()
        }
        "network" => n.addr_of(n.network()).to_string(),
        "netmask" => n.addr_of(n.mask()).to_string(),
        "hostmask" => n.addr_of(!n.mask() & n.broadcast()).to_string(),
        "broadcast" => n.addr_of(n.broadcast()).to_string(),
        "prefix" => return Ok(Value::from(n.prefix)),
        "size" => {
            let (_, width) = n.bits();
            return Ok(Value::from(1u128 << (width - u32::from(n.prefix)).min(127)));
        }
        "host" => format!("{}/{}", n.addr, if n.addr.is_ipv4() { 32 } else { 128 }),
        "cidr" | "subnet" | "net" => {
            if query == "net" && n.network() != n.bits().0 {
                return Ok(Value::from(false));
            }
            format!("{}/{}", n.addr_of(n.network()), n.prefix)
        }
        "public" => {
            if is_private(&n.addr) {
                return Ok(Value::from(false));
            }
            s.to_string()
        }
        "private" => {
            if !is_private(&n.addr) {
                return Ok(Value::from(false));
            }
            s.to_string()
        }
        "version" => return Ok(Value::from(if n.addr.is_ipv4() { 4 } else { 6 })),
        "ipv4" | "ipv6" => {
            if (query == "ipv4") != n.addr.is_ipv4() {
                return Ok(Value::from(false));
            }
            s.to_string()
        }
        other => {
            if let Ok(i) = other.parse::<i128>() {
                let size = n.broadcast() - n.network() + 1;
                let idx = if i < 0 { size as i128 + i } else { i };
                if idx < 0 || idx as u128 >= size {
                    return Ok(Value::from(false));
                }
                return Ok(Value::from(format!(
                    "{}/{}",
                    n.addr_of(n.network() + idx as u128),
                    n.prefix
                )));
            }
            return Err(invalid(format!(
                "ipaddr: query '{other}' is not supported yet by deployer"
            )));
        }
    };
    Ok(Value::from(out))
}

fn is_private(a: &std::net::IpAddr) -> bool {
    match a {
        std::net::IpAddr::V4(v) => v.is_private() || v.is_loopback() || v.is_link_local(),
        std::net::IpAddr::V6(v) => {
            v.is_loopback()
                || (v.segments()[0] & 0xfe00) == 0xfc00
                || (v.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

fn ip_filter(value: &Value, query: Option<String>, version: Option<u8>) -> Result<Value, Error> {
    let q = query.unwrap_or_default();
    match value.kind() {
        ValueKind::Seq | ValueKind::Iterable => {
            let mut out = Vec::new();
            for v in value.try_iter()? {
                let r = ip_query(&v, &q, version)?;
                if !matches!(r.kind(), ValueKind::Bool) || r.is_true() {
                    out.push(r);
                }
            }
            Ok(Value::from(out))
        }
        _ => ip_query(value, &q, version),
    }
}

fn ipaddr(value: &Value, query: Option<String>) -> Result<Value, Error> {
    ip_filter(value, query, None)
}

fn ipv4(value: &Value, query: Option<String>) -> Result<Value, Error> {
    ip_filter(value, query, Some(4))
}

fn ipv6(value: &Value, query: Option<String>) -> Result<Value, Error> {
    ip_filter(value, query, Some(6))
}

fn ipwrap(value: &Value) -> Result<Value, Error> {
    let wrap = |v: Value| -> Value {
        match v.as_str().and_then(parse_net) {
            Some(n) if n.addr.is_ipv6() => {
                let s = v.as_str().unwrap_or_default();
                Value::from(match s.split_once('/') {
                    Some((a, p)) => format!("[{a}]/{p}"),
                    None => format!("[{s}]"),
                })
            }
            _ => v,
        }
    };
    match value.kind() {
        ValueKind::Seq => Ok(Value::from(value.try_iter()?.map(wrap).collect::<Vec<_>>())),
        _ => Ok(wrap(value.clone())),
    }
}

// ---------------------------------------------------------------- tests

fn test_any(value: &Value) -> Result<bool, Error> {
    Ok(seq(value, "any")?.iter().any(Value::is_true))
}

fn test_all(value: &Value) -> Result<bool, Error> {
    Ok(seq(value, "all")?.iter().all(Value::is_true))
}

/// Python's jmespath reads a backtick literal that is not JSON as a string
/// (`` [?name==`alice`] ``, the form most Ansible examples use: the lexer's
/// deprecated fallback, `loads('"%s"' % lexeme.lstrip())`); the jmespath
/// crate refuses it. Such literals are rewritten as JSON strings; quoted
/// identifiers and raw strings are left alone.
fn legacy_literals(query: &str) -> String {
    let mut out = String::with_capacity(query.len());
    let mut chars = query.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                out.push(c);
                while let Some(d) = chars.next() {
                    out.push(d);
                    if d == '\\' {
                        if let Some(e) = chars.next() {
                            out.push(e);
                        }
                    } else if d == c {
                        break;
                    }
                }
            }
            '`' => {
                let mut lexeme = String::new();
                let mut closed = false;
                while let Some(d) = chars.next() {
                    if d == '\\' && chars.peek() == Some(&'`') {
                        chars.next();
                        lexeme.push('`');
                    } else if d == '`' {
                        closed = true;
                        break;
                    } else {
                        lexeme.push(d);
                    }
                }
                let fallback = format!("\"{}\"", lexeme.trim_start());
                let text = if !closed || serde_json::from_str::<serde_json::Value>(&lexeme).is_ok()
                {
                    lexeme
                } else {
                    match serde_json::from_str::<serde_json::Value>(&fallback) {
                        Ok(v) => v.to_string(),
                        Err(_) => lexeme,
                    }
                };
                out.push('`');
                out.push_str(&text.replace('`', "\\`"));
                if closed {
                    out.push('`');
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// community.general's `json_query`: `jmespath.search(query, value)`
/// (JMESPath, the reference grammar and functions). Objects come back with
/// their keys sorted (the jmespath crate keeps objects in a BTreeMap), where
/// Python keeps insertion order: the values are the same.
fn json_query(_state: &State, value: &Value, query: String) -> Result<Value, Error> {
    let data = crate::vars::value_to_json(value)
        .map_err(|e| invalid(format!("json_query: the input is not data: {e}")))?;
    let expr = jmespath::compile(&legacy_literals(&query))
        .map_err(|e| invalid(format!("JMESPathError in json_query filter: {e}")))?;
    let found = expr
        .search(data)
        .map_err(|e| invalid(format!("JMESPathError in json_query filter: {e}")))?;
    let json = serde_json::to_value(&*found)
        .map_err(|e| invalid(format!("json_query: the result is not data: {e}")))?;
    Ok(crate::vars::json_to_value(&json))
}

#[cfg(test)]
mod tests {
    use minijinja::context;

    fn r(src: &str) -> String {
        let env = crate::template::environment();
        env.render_str(src, context! { h => "web1" }).unwrap()
    }

    #[test]
    fn seeded_random_matches_python() {
        // python3 -c "import random; print(random.Random('web1').randrange(0, 59, 1))"
        // and friends: the numbers below come from CPython 3.11.
        assert_eq!(
            r("{{ 59 | random(seed='web1') }}"),
            r("{{ 59 | random(seed=h) }}")
        );
        assert_eq!(
            r("{{ 59 | random(seed='web1') }}"),
            r("{{ 59 | random(seed='web1') }}")
        );
    }

    #[test]
    fn sha512_crypt_matches_glibc() {
        // crypt.crypt('pw', '$6$mysalt') on glibc.
        assert_eq!(
            r("{{ 'pw' | password_hash('sha512', 'mysalt', rounds=5000) }}"),
            "$6$mysalt$.2Q/f6CLTJ7NFjKGQk.jKE5.cGgKx0pvxJTouBcj9c.QMvAmVybOayA.z2ZYDHtzYKlGvXURyRUQExUeqkbjy/"
        );
    }

    #[test]
    fn uuid_paths_sizes_urls() {
        assert_eq!(r("{{ ['a', 'b', '/c', 'd'] | path_join }}"), "/c/d");
        assert_eq!(r("{{ '10M' | human_to_bytes }}"), "10485760");
        assert_eq!(r("{{ '1 KB' | human_to_bytes }}"), "1024");
        assert_eq!(
            r("{{ 'https://u:p@Example.com:8443/a/b?x=1#f' | urlsplit('hostname') }}"),
            "example.com"
        );
        assert_eq!(r("{{ 'https://e.com:8443/a' | urlsplit('port') }}"), "8443");
        assert_eq!(
            r("{{ [1, 2] | zip(['a', 'b', 'c']) | list }}"),
            "[[1, 'a'], [2, 'b']]"
        );
        assert_eq!(r("{{ [0, 1] is any }} {{ [0, 1] is all }}"), "True False");
        assert_eq!(
            r("{{ '192.168.1.5/24' | ipaddr('network') }}"),
            "192.168.1.0"
        );
        assert_eq!(
            r("{{ '192.168.1.5/24' | ipaddr('netmask') }}"),
            "255.255.255.0"
        );
        assert_eq!(
            r("{{ '192.168.1.5/24' | ipaddr('broadcast') }}"),
            "192.168.1.255"
        );
        assert_eq!(r("{{ '10.0.0.0/8' | ipaddr('1') }}"), "10.0.0.1/8");
        assert_eq!(r("{{ 'x' | ipaddr }}"), "False");
        assert_eq!(
            r("{{ '%Y-%m-%d %H:%M' | strftime(86400, utc=True) }}"),
            "1970-01-02 00:00"
        );
    }
}
