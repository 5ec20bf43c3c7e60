//! `images.lock`: the image each tag the project uses resolved to, written by
//! `deployer pin` and committed with the project. When the file exists, every
//! image a container or compose task uses must be in it, and apply runs the
//! locked image, not whatever the tag points to today:
//!
//! ```yaml
//! # images.lock: written by `deployer pin`; ...
//! postgres:18.1-bookworm:
//!   digest: sha256:4f...   # the registry's manifest digest
//! deployer-testbed/app:1:
//!   id: sha256:9a...       # a local image with no registry digest: its image ID
//! ```
//!
//! A `digest` is pulled by digest when the host's tag points elsewhere, and the
//! tag is moved back to it; an `id` (an image built or loaded on the host, that
//! no registry knows) must already be what the tag points to.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::yaml::{self, LocatedError};

/// The file's name, at the project root.
pub const FILE: &str = "images.lock";

/// What one image reference is pinned to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pin {
    /// A registry manifest digest (`sha256:...`).
    Digest(String),
    /// A local image ID (`sha256:...`), for images no registry serves.
    Id(String),
}

impl Pin {
    pub fn text(&self) -> String {
        match self {
            Pin::Digest(d) => format!("digest {d}"),
            Pin::Id(i) => format!("image ID {i}"),
        }
    }
}

/// A loaded `images.lock`.
#[derive(Clone, Debug, Default)]
pub struct ImagesLock {
    pub path: PathBuf,
    pub images: BTreeMap<String, Pin>,
}

fn is_sha256(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl ImagesLock {
    /// Reads `images.lock` in `root`; `Ok(None)` when there is none.
    pub fn load(root: &Path) -> Result<Option<ImagesLock>, LocatedError> {
        let path = root.join(FILE);
        if !path.exists() {
            return Ok(None);
        }
        let doc = yaml::load_file(&path)?;
        let mut images = BTreeMap::new();
        if doc.is_null() {
            return Ok(Some(ImagesLock { path, images }));
        }
        for (image, entry) in doc
            .expect_map("images.lock (image reference: {digest: sha256:...} or {id: sha256:...})")?
        {
            let fields =
                entry.expect_map("an image's pin ({digest: sha256:...} or {id: sha256:...})")?;
            let mut pin = None;
            for (k, v) in fields {
                let s = v.expect_str(k)?;
                if !is_sha256(&s) {
                    return Err(LocatedError::new(
                        &v.loc,
                        format!(
                            "{image}: {k}: expected sha256: followed by 64 hex digits, got '{s}'"
                        ),
                    ));
                }
                let p = match k {
                    "digest" => Pin::Digest(s),
                    "id" => Pin::Id(s),
                    other => {
                        return Err(LocatedError::new(
                            &v.loc,
                            format!("{image}: unknown key '{other}': expected digest or id"),
                        ));
                    }
                };
                if pin.replace(p).is_some() {
                    return Err(LocatedError::new(
                        &v.loc,
                        format!("{image}: give either digest or id, not both"),
                    ));
                }
            }
            let Some(pin) = pin else {
                return Err(LocatedError::new(
                    &entry.loc,
                    format!("{image}: expected digest: sha256:... or id: sha256:..."),
                ));
            };
            images.insert(image.to_string(), pin);
        }
        Ok(Some(ImagesLock { path, images }))
    }

    /// The file's text: sorted, one image a block, with a header saying what it is.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "# images.lock: the image each tag of this project resolved to, written by\n\
             # `deployer pin` and read by apply, which runs these images and fails when an\n\
             # image the project uses is missing here. Change a version, then run\n\
             # `deployer pin -i INVENTORY` again and commit this file with the change.\n",
        );
        for (image, pin) in &self.images {
            let (k, v) = match pin {
                Pin::Digest(d) => ("digest", d),
                Pin::Id(i) => ("id", i),
            };
            out.push_str(&format!("{}:\n  {k}: {v}\n", yaml_key(image)));
        }
        out
    }

    /// Writes the file atomically (a temporary file in the same directory, renamed).
    pub fn save(&self) -> Result<(), String> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let mut tmp =
            tempfile::NamedTempFile::new_in(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        std::io::Write::write_all(&mut tmp, self.render().as_bytes())
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        tmp.as_file()
            .sync_all()
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        // Readable like the rest of the project (tempfile makes it 0600).
        let _ = std::fs::set_permissions(
            tmp.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        );
        tmp.persist(&self.path)
            .map_err(|e| format!("{}: {}", self.path.display(), e.error))?;
        Ok(())
    }
}

/// An image reference as a YAML key: quoted when plain YAML would misread it.
fn yaml_key(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/:@".contains(c))
        && !s.starts_with(['-', ':', '@', '.'])
        && !s.contains(": ");
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_default()
    }
}

/// The repository part of a reference (`registry:5000/ns/app:1` -> `registry:5000/ns/app`).
pub fn repository(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    let slash = image.rfind('/').map(|i| i + 1).unwrap_or(0);
    match image[slash..].rfind(':') {
        Some(c) => &image[..slash + c],
        None => image,
    }
}

/// The tag of a reference (`latest` when it has none, as Docker reads it).
pub fn tag(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    let slash = image.rfind('/').map(|i| i + 1).unwrap_or(0);
    match image[slash..].rfind(':') {
        Some(c) => &image[slash + c + 1..],
        None => "latest",
    }
}

/// How a run treats image references.
#[derive(Debug, Default)]
pub enum ImagePolicy {
    /// No `images.lock`: images are used by tag, as written.
    #[default]
    Unpinned,
    /// `images.lock` exists: every image must be in it, and the locked image runs.
    Locked(ImagesLock),
    /// `deployer pin`: each image is resolved on the host and collected here
    /// (image -> pin, and the host it was resolved on).
    Collect(Mutex<BTreeMap<String, (Pin, String)>>),
}

/// The policy of runs that are not applies (rollback, restore): images by tag.
pub static UNPINNED: ImagePolicy = ImagePolicy::Unpinned;

impl ImagePolicy {
    /// The policy of a run in the project at `root`.
    pub fn for_project(root: &Path) -> Result<ImagePolicy, LocatedError> {
        Ok(match ImagesLock::load(root)? {
            Some(l) => ImagePolicy::Locked(l),
            None => ImagePolicy::Unpinned,
        })
    }

    /// `deployer pin`: whether `image` was already resolved on `host` (services
    /// sharing an image ask the registry once per host).
    pub fn collected(&self, image: &str, host: &str) -> bool {
        match self {
            ImagePolicy::Collect(m) => m
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(image)
                .is_some_and(|(_, h)| h == host),
            _ => false,
        }
    }

    /// `deployer pin`: records what `image` resolved to on `host`. Two hosts that
    /// resolve one tag to different images are an error (the lock would lie for one).
    pub fn collect(&self, image: &str, pin: Pin, host: &str) -> Result<(), String> {
        let ImagePolicy::Collect(m) = self else {
            return Ok(());
        };
        let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
        match m.get(image) {
            Some((other, h)) if *other != pin => Err(format!(
                "image {image} is {} on {h} but {} on {host}: one tag, two images; \
                 pull the same image on both hosts (or pin by digest in the project) and run pin again",
                other.text(),
                pin.text()
            )),
            Some(_) => Ok(()),
            None => {
                m.insert(image.to_string(), (pin, host.to_string()));
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_repository_and_tag() {
        assert_eq!(repository("postgres:18.1-bookworm"), "postgres");
        assert_eq!(tag("postgres:18.1-bookworm"), "18.1-bookworm");
        assert_eq!(
            repository("127.0.0.1:5000/ns/app:1"),
            "127.0.0.1:5000/ns/app"
        );
        assert_eq!(tag("127.0.0.1:5000/ns/app:1"), "1");
        assert_eq!(repository("127.0.0.1:5000/ns/app"), "127.0.0.1:5000/ns/app");
        assert_eq!(tag("127.0.0.1:5000/ns/app"), "latest");
        assert_eq!(repository("app@sha256:ab"), "app");
    }

    #[test]
    fn a_lock_round_trips_and_bad_entries_name_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let d = format!("sha256:{}", "a".repeat(64));
        let i = format!("sha256:{}", "b".repeat(64));
        let lock = ImagesLock {
            path: dir.path().join(FILE),
            images: [
                ("postgres:18.1-bookworm".to_string(), Pin::Digest(d.clone())),
                ("127.0.0.1:5000/ns/app:1".to_string(), Pin::Id(i.clone())),
            ]
            .into(),
        };
        lock.save().unwrap();
        let back = ImagesLock::load(dir.path()).unwrap().unwrap();
        assert_eq!(back.images, lock.images);

        std::fs::write(dir.path().join(FILE), "app:1:\n  digest: sha256:xyz\n").unwrap();
        let e = ImagesLock::load(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("images.lock:2") && e.contains("64 hex digits"),
            "{e}"
        );
        std::fs::write(
            dir.path().join(FILE),
            format!("app:1:\n  digest: {d}\n  id: {i}\n"),
        )
        .unwrap();
        let e = ImagesLock::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("not both"), "{e}");
        assert!(
            ImagesLock::load(&dir.path().join("none"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn one_tag_two_images_is_refused() {
        let p = ImagePolicy::Collect(Default::default());
        let a = Pin::Id(format!("sha256:{}", "a".repeat(64)));
        let b = Pin::Id(format!("sha256:{}", "b".repeat(64)));
        p.collect("app:1", a.clone(), "h1").unwrap();
        p.collect("app:1", a, "h2").unwrap();
        let e = p.collect("app:1", b, "h3").unwrap_err();
        assert!(e.contains("h1") && e.contains("h3"), "{e}");
    }
}
