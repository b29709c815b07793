//! Whose log a node's directory holds: `rwal node` records its cluster id and node id beside
//! the log at its first start, and refuses to start as another node, or in another cluster,
//! on that log (`docs/network.md` section 2.2).
//!
//! The log itself stores neither: raft's hard state and the voters are the same for node 1 of
//! one cluster and node 1 of another. A log started under the wrong identity (a volume moved
//! to another host, a mistyped `--dir` or `--id`) answers with its own term and log, and can
//! win an election and replace the cluster's acknowledged writes with its own, or vote as a
//! member whose votes it never cast (found by review on 2026-12-08).

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The file's name in the log directory.
pub(super) const FILE_NAME: &str = "node-identity";
const TEMP_NAME: &str = "node-identity.tmp";
const FIRST_LINE: &str =
    "# rwal node: the node whose log this directory holds (checked at every start)";
/// The largest file read: a few short lines.
const FILE_BYTES_MAX: u64 = 4096;

/// A node's identity: its cluster id and node id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Identity {
    pub cluster_id: u64,
    pub id: u64,
}

impl Identity {
    fn text(self) -> String {
        format!(
            "{FIRST_LINE}\ncluster-id = {}\nid = {}\n",
            self.cluster_id, self.id
        )
    }

    fn parse(text: &str, path: &Path) -> Result<Identity, String> {
        let damaged = |why: String| {
            format!(
                "{}: {why}; it records whose log this directory holds: restore it, or remove \
                 it if this is that node's log (the next start records it again)",
                path.display()
            )
        };
        let (mut cluster_id, mut id) = (None, None);
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| damaged(format!("line {line:?} is not `key = value`")))?;
            let slot = match key.trim() {
                "cluster-id" => &mut cluster_id,
                "id" => &mut id,
                other => return Err(damaged(format!("unknown key {other:?}"))),
            };
            let value: u64 = value
                .trim()
                .parse()
                .map_err(|e| damaged(format!("line {line:?}: {e}")))?;
            if slot.replace(value).is_some() {
                return Err(damaged(format!("{} given twice", key.trim())));
            }
        }
        match (cluster_id, id) {
            (Some(cluster_id), Some(id)) => Ok(Identity { cluster_id, id }),
            _ => Err(damaged("it lacks cluster-id or id".into())),
        }
    }
}

/// The identity recorded in `dir`, if any.
pub(super) fn recorded(dir: &Path) -> Result<Option<Identity>, String> {
    let path = dir.join(FILE_NAME);
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(file, FILE_BYTES_MAX), &mut text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Identity::parse(&text, &path).map(Some)
}

/// Refuses to start as `given` on the log in `dir` if that log was recorded as another node's.
pub(super) fn check(dir: &Path, given: Identity) -> Result<(), String> {
    match recorded(dir)? {
        Some(found) if found != given => Err(format!(
            "{} holds the log of node {} of cluster {} (its {FILE_NAME} file), and this node \
             was started as node {} of cluster {}: a node starts only on its own log. Check \
             --dir, --id and --cluster-id; a member whose log was lost comes back as a new \
             member (README, \"Replacing a member whose log was lost\")",
            dir.display(),
            found.id,
            found.cluster_id,
            given.id,
            given.cluster_id
        )),
        _ => Ok(()),
    }
}

/// Records `identity` in `dir` unless it is there (a new log, or one from before identities
/// were recorded), durably: written aside, synced, renamed, the directory synced. Called with
/// the log open and locked; a record found then is checked again, since another process may
/// have started on the directory, recorded its own and stopped between [`check`] and the
/// lock. Whether it recorded.
pub(super) fn record(dir: &Path, identity: Identity) -> Result<bool, String> {
    if recorded(dir)?.is_some() {
        check(dir, identity)?;
        return Ok(false);
    }
    let (temp, path): (PathBuf, PathBuf) = (dir.join(TEMP_NAME), dir.join(FILE_NAME));
    let failed = |e: std::io::Error| format!("recording {}: {e}", path.display());
    let mut file = std::fs::File::create(&temp).map_err(failed)?;
    file.write_all(identity.text().as_bytes()).map_err(failed)?;
    file.sync_all().map_err(failed)?;
    drop(file);
    std::fs::rename(&temp, &path).map_err(failed)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(failed)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record found when this node records its own (another process recorded it between
    /// this one's check and its lock) is checked, not kept quietly.
    #[test]
    fn a_record_found_at_recording_is_checked() {
        let dir = std::env::temp_dir().join(format!("rwal-identity-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let one = Identity {
            cluster_id: 9,
            id: 1,
        };
        assert_eq!(record(&dir, one), Ok(true));
        assert_eq!(record(&dir, one), Ok(false));
        let e = record(&dir, Identity { id: 2, ..one }).unwrap_err();
        assert!(e.contains("holds the log of node 1 of cluster 9"), "{e}");
        assert_eq!(recorded(&dir), Ok(Some(one)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_identity_is_read_back_as_written_and_damage_is_named() {
        let path = Path::new("/d/node-identity");
        let identity = Identity {
            cluster_id: 9,
            id: 2,
        };
        assert_eq!(Identity::parse(&identity.text(), path), Ok(identity));
        for (text, why) in [
            ("cluster-id = 9\n", "lacks"),
            ("cluster-id = 9\nid = 2\nid = 3\n", "given twice"),
            ("cluster-id = nine\nid = 2\n", "invalid digit"),
            ("cluster-id = 9\nid = 2\nname = x\n", "unknown key"),
            ("cluster-id 9\n", "not `key = value`"),
        ] {
            let e = Identity::parse(text, path).unwrap_err();
            assert!(
                e.starts_with("/d/node-identity: ") && e.contains(why),
                "{text:?}: {e}"
            );
        }
    }
}
