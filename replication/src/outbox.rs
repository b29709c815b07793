//! What a replica sends between two calls of `take_messages`, with a leader's appends to one
//! follower merged into one message (docs/replication.md section 3.2).
//!
//! raft-rs sends one `MsgAppend` per follower for each proposal: 64 proposals taken in one
//! round make 64 messages to each follower, each stepped apart there and each answered with
//! its own acknowledgement, which the leader steps apart again. Merged, a round costs one
//! message and one acknowledgement per follower. raft-rs has this built in (`batch_append`),
//! but without a size limit: a follower catching up is sent up to `max_inflight_msgs`
//! messages at once, which it would merge into one of hundreds of megabytes. Here a merge
//! stops at `max_bytes_per_message`.

use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};

use crate::transport::Envelope;

/// Outgoing messages, in the order raft produced them for each peer.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    envelopes: Vec<Envelope>,
    /// The encoded size of each queued envelope's entries (0 for anything but an append), kept
    /// as appends merge: summing a merged message's entries at each merge made a round of n
    /// proposals cost n^2 / 2 entry sizes per follower.
    entry_bytes: Vec<u64>,
}

impl Outbox {
    /// Queues a raft message; an append merges into the last message queued for the same
    /// peer when that one is an append of the same term that it continues and the two carry
    /// `max_bytes` of entries at most together.
    pub(crate) fn push_raft(&mut self, message: Message, max_bytes: u64) {
        let bytes = entry_bytes(&message);
        let Some(message) = self.merge_into_last(message, bytes, max_bytes) else {
            return;
        };
        self.envelopes.push(Envelope::Raft(message));
        self.entry_bytes.push(bytes);
    }

    /// Queues anything else (snapshot chunks) as it is.
    pub(crate) fn push(&mut self, envelope: Envelope) {
        self.envelopes.push(envelope);
        self.entry_bytes.push(0);
    }

    /// Everything queued since the last call.
    pub(crate) fn take(&mut self) -> Vec<Envelope> {
        debug_assert_eq!(self.envelopes.len(), self.entry_bytes.len());
        self.entry_bytes.clear();
        std::mem::take(&mut self.envelopes)
    }

    /// Merges `message` (whose entries take `bytes`) into the last message to its peer if it
    /// may; gives it back if not.
    fn merge_into_last(&mut self, message: Message, bytes: u64, max_bytes: u64) -> Option<Message> {
        if message.get_msg_type() != MessageType::MsgAppend {
            return Some(message);
        }
        // Only the last message to this peer: merging past another one (a heartbeat, a vote)
        // would reorder the two.
        let last = self
            .envelopes
            .iter_mut()
            .zip(self.entry_bytes.iter_mut())
            .rev()
            .find_map(|(envelope, queued_bytes)| match envelope {
                Envelope::Raft(queued) if queued.to == message.to => {
                    Some(Some((queued, queued_bytes)))
                }
                Envelope::SnapshotChunk(chunk) if chunk.to == message.to => Some(None),
                _ => None,
            });
        match last.flatten() {
            Some((queued, queued_bytes))
                if continues(queued, &message) && *queued_bytes + bytes <= max_bytes =>
            {
                append(queued, message);
                *queued_bytes += bytes;
                None
            }
            _ => Some(message),
        }
    }
}

/// Whether `next` may be merged into `queued` as far as raft goes: both appends from the same
/// leader's term, with nothing but entries and a commit index, `next` starting where `queued`
/// ends. (The caller also keeps the entries together within the byte limit; one message is
/// never split: a single entry larger than that goes alone, as raft sends it.)
fn continues(queued: &Message, next: &Message) -> bool {
    let plain = |m: &Message| {
        m.get_msg_type() == MessageType::MsgAppend
            && m.context.is_empty()
            && !m.reject
            && m.request_snapshot == 0
    };
    if !plain(queued) || !plain(next) || queued.from != next.from || queued.term != next.term {
        return false;
    }
    let (end_index, end_term) = match queued.entries.last() {
        Some(entry) => (entry.index, entry.term),
        None => (queued.index, queued.log_term),
    };
    next.index == end_index && next.log_term == end_term
}

fn entry_bytes(message: &Message) -> u64 {
    message
        .entries
        .iter()
        .map(|entry| u64::from(entry.compute_size()))
        .sum()
}

/// Appends `next`'s entries to `queued` and takes its (newer) commit index.
fn append(queued: &mut Message, mut next: Message) {
    let entries = next.take_entries();
    queued.mut_entries().extend(entries);
    queued.commit = queued.commit.max(next.commit);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::SnapshotChunk;
    use raft::eraftpb::Entry;

    fn entry(index: u64, term: u64, bytes: usize) -> Entry {
        let mut entry = Entry::default();
        entry.index = index;
        entry.term = term;
        entry.data = vec![7; bytes].into();
        entry
    }

    /// An append to `to` of entries `first..=last` of `term`, after an entry of `log_term`.
    fn append_msg(
        to: u64,
        term: u64,
        log_term: u64,
        first: u64,
        last: u64,
        commit: u64,
    ) -> Message {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgAppend);
        m.from = 1;
        m.to = to;
        m.term = term;
        m.index = first - 1;
        m.log_term = log_term;
        m.commit = commit;
        for index in first..=last {
            m.mut_entries().push(entry(index, term, 100));
        }
        m
    }

    fn raft_messages(outbox: &mut Outbox) -> Vec<Message> {
        outbox
            .take()
            .into_iter()
            .map(|envelope| match envelope {
                Envelope::Raft(m) => m,
                other => panic!("expected a raft message, got {other:?}"),
            })
            .collect()
    }

    fn indexes(m: &Message) -> Vec<u64> {
        m.entries.iter().map(|e| e.index).collect()
    }

    #[test]
    fn consecutive_appends_to_one_peer_become_one_message() {
        let mut outbox = Outbox::default();
        outbox.push_raft(append_msg(2, 5, 4, 10, 10, 8), 1 << 20);
        outbox.push_raft(append_msg(3, 5, 4, 10, 10, 8), 1 << 20);
        outbox.push_raft(append_msg(2, 5, 5, 11, 12, 9), 1 << 20);
        outbox.push_raft(append_msg(3, 5, 5, 11, 11, 9), 1 << 20);
        let sent = raft_messages(&mut outbox);
        assert_eq!(sent.len(), 2);
        assert_eq!((sent[0].to, indexes(&sent[0])), (2, vec![10, 11, 12]));
        assert_eq!((sent[1].to, indexes(&sent[1])), (3, vec![10, 11]));
        // The first message's position in the log, the last one's commit.
        assert_eq!((sent[0].index, sent[0].log_term, sent[0].commit), (9, 4, 9));
        assert!(outbox.take().is_empty());
    }

    #[test]
    fn an_empty_append_carrying_a_commit_merges_both_ways() {
        let mut outbox = Outbox::default();
        let mut commit_only = append_msg(2, 5, 5, 13, 12, 12);
        assert!(commit_only.entries.is_empty());
        outbox.push_raft(append_msg(2, 5, 5, 11, 12, 9), 1 << 20);
        outbox.push_raft(commit_only.clone(), 1 << 20);
        commit_only.commit = 13;
        outbox.push_raft(commit_only, 1 << 20);
        outbox.push_raft(append_msg(2, 5, 5, 13, 13, 13), 1 << 20);
        let sent = raft_messages(&mut outbox);
        assert_eq!(sent.len(), 1);
        assert_eq!(indexes(&sent[0]), vec![11, 12, 13]);
        assert_eq!(sent[0].commit, 13);
        // A commit-only append first, then entries after the same point.
        outbox.push_raft(append_msg(3, 5, 5, 13, 12, 12), 1 << 20);
        outbox.push_raft(append_msg(3, 5, 5, 13, 14, 12), 1 << 20);
        let sent = raft_messages(&mut outbox);
        assert_eq!(sent.len(), 1);
        assert_eq!((sent[0].index, indexes(&sent[0])), (12, vec![13, 14]));
    }

    #[test]
    fn appends_that_do_not_continue_each_other_stay_apart() {
        let mut outbox = Outbox::default();
        outbox.push_raft(append_msg(2, 5, 5, 11, 12, 9), 1 << 20);
        // A gap (a probe elsewhere in the log).
        outbox.push_raft(append_msg(2, 5, 5, 20, 20, 9), 1 << 20);
        // Another term.
        outbox.push_raft(append_msg(2, 6, 5, 21, 21, 9), 1 << 20);
        // The same index, but after an entry of another term.
        outbox.push_raft(append_msg(2, 6, 5, 22, 22, 9), 1 << 20);
        assert_eq!(raft_messages(&mut outbox).len(), 4);
    }

    #[test]
    fn a_merge_never_jumps_over_another_message_to_the_same_peer() {
        let mut outbox = Outbox::default();
        outbox.push_raft(append_msg(2, 5, 5, 11, 11, 9), 1 << 20);
        let mut heartbeat = Message::default();
        heartbeat.set_msg_type(MessageType::MsgHeartbeat);
        heartbeat.to = 2;
        heartbeat.term = 5;
        outbox.push_raft(heartbeat, 1 << 20);
        outbox.push_raft(append_msg(2, 5, 5, 12, 12, 9), 1 << 20);
        let types: Vec<_> = raft_messages(&mut outbox)
            .iter()
            .map(|m| m.get_msg_type())
            .collect();
        assert_eq!(
            types,
            [
                MessageType::MsgAppend,
                MessageType::MsgHeartbeat,
                MessageType::MsgAppend
            ]
        );
        outbox.push_raft(append_msg(2, 5, 5, 11, 11, 9), 1 << 20);
        outbox.push(Envelope::SnapshotChunk(SnapshotChunk {
            from: 1,
            to: 2,
            lsn: 10,
            epoch: 5,
            offset: 0,
            total: 1,
            crc: 0,
            data: vec![0],
        }));
        outbox.push_raft(append_msg(2, 5, 5, 12, 12, 9), 1 << 20);
        assert_eq!(outbox.take().len(), 3);
    }

    #[test]
    fn a_merge_stops_at_the_byte_limit_but_a_large_entry_still_goes() {
        let one = u64::from(entry(1, 5, 100).compute_size());
        let mut outbox = Outbox::default();
        for index in 1..=10 {
            outbox.push_raft(append_msg(2, 5, 5, index, index, 0), 3 * one);
        }
        let sent = raft_messages(&mut outbox);
        let sizes: Vec<_> = sent.iter().map(|m| m.entries.len()).collect();
        assert_eq!(sizes, [3, 3, 3, 1]);
        let all: Vec<u64> = sent.iter().flat_map(indexes).collect();
        assert_eq!(all, (1..=10).collect::<Vec<_>>());
        // Below one entry's size nothing merges, and nothing is refused.
        for index in 1..=3 {
            outbox.push_raft(append_msg(2, 5, 5, index, index, 0), one - 1);
        }
        assert_eq!(raft_messages(&mut outbox).len(), 3);
    }

    #[test]
    fn only_appends_merge() {
        let mut outbox = Outbox::default();
        for _ in 0..3 {
            let mut response = Message::default();
            response.set_msg_type(MessageType::MsgAppendResponse);
            response.to = 1;
            response.index = 7;
            outbox.push_raft(response, 1 << 20);
        }
        assert_eq!(raft_messages(&mut outbox).len(), 3);
    }
}
