//! How many file descriptors the process may still open.
//!
//! Client connections must not take the descriptors the log needs: with none left, the next
//! segment cannot be created, the node's log fails and the node stops. The common soft limit
//! of 1024 (systemd's default for services) is reached by a few hundred connections, well below
//! `CLIENT_CONNECTIONS_MAX`, so the acceptor looks before it serves one.

/// Descriptors client connections leave free for the log (new segments, snapshots, the control
/// file's rewrite), the peer connections and their handshakes: 64 for the log and the peers,
/// and 96 for the inbound handshakes the peer port runs at once (`HANDSHAKES_MAX`, 16 from
/// peers' addresses and 16 from others, each holding its stream, a clone of it, and briefly
/// `/dev/urandom`). With 64 in all, handshakes held open by anyone who can reach the peer port
/// could take the whole reserve (found by review, 2026-12-03).
pub const KEPT_FREE: u64 = 160;

/// The process's soft limit of open files (`RLIMIT_NOFILE`), read from `/proc/self/limits`;
/// `None` if that does not tell (no `/proc`, or "unlimited"). Read once, at start: reading it
/// takes a descriptor, which may be missing just when it matters.
pub fn soft_limit() -> Option<u64> {
    parse_soft_limit(&std::fs::read_to_string("/proc/self/limits").ok()?)
}

/// Descriptors open now, counted in `/proc/self/fd` (the count's own included); `None` if
/// `/proc` does not tell, and `Some(u64::MAX)` if not even that one could be opened.
pub fn open_now() -> Option<u64> {
    match std::fs::read_dir("/proc/self/fd") {
        Ok(entries) => Some(entries.count() as u64),
        Err(e) if e.raw_os_error() == Some(EMFILE) => Some(u64::MAX),
        Err(_) => None,
    }
}

/// Descriptors the process may still open under `limit`; `None` if `/proc` does not tell.
pub fn left(limit: u64) -> Option<u64> {
    open_now().map(|open| limit.saturating_sub(open))
}

/// `EMFILE`, "too many open files", on Linux.
const EMFILE: i32 = 24;

/// The soft limit of open files in the text of `/proc/self/limits`; `None` if it is missing or
/// "unlimited".
fn parse_soft_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_read_from_proc_self_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max processes             95301                95301                processes \n\
                    Max open files            1024                 524288               files     \n";
        assert_eq!(parse_soft_limit(text), Some(1024));
        assert_eq!(
            parse_soft_limit("Max open files  unlimited  unlimited  files\n"),
            None
        );
        assert_eq!(parse_soft_limit(""), None);
        // Other tests open and close files beside this one: only the bounds are certain.
        let limit = soft_limit().expect("Linux has /proc");
        let left = left(limit).expect("Linux has /proc");
        assert!(left > 0 && left < limit, "{left} of {limit}");
        assert_eq!(super::left(0), Some(0));
    }
}
