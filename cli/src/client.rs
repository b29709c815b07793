//! `rwal client`: speaks the client protocol of `rwal node` (`docs/network.md` section 3).

use std::ffi::OsString;
use std::io::{BufReader, BufWriter};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::node::proto::{self, Body};

const HELP: &str = "\
usage: rwal client --addr HOST:PORT [--timeout SECONDS] COMMAND

  append [--client-id N] [--request-id N] DATA
                      append DATA (its bytes as given), wait until it is committed, print
                      `LSN EPOCH`; follows the leader; retries (same ids) after a timeout or
                      a lost connection. The client id is random unless given; under a
                      client id given again, a new append needs a higher --request-id (a
                      repeated one is answered with the first copy's LSN), and only one
                      append may be in flight
  load [--count N] [--size BYTES] [--client-id N] [--request-id N]
                      append N records (default 1) one after another, with request ids from
                      --request-id on; print `LSN EPOCH` for each. A record holds its request
                      id in decimal, padded with zeros to BYTES: a run given up on is resumed
                      with the same --client-id and the --request-id it names
  read [--from LSN] [--max N] [--linearizable]
                      print committed records as `LSN EPOCH DATA` from LSN (default: the
                      oldest the node retains), at most N (default 1000; stale by default: this
                      node's committed log; --linearizable confirms with the leader first,
                      asked again while there is none, until --timeout). Fewer than N is
                      not the end of the log: a busy node answers less. DATA is escaped so
                      that each record is one line: printable ASCII stays as it is, but for
                      \\ ' \" written \\\\ \\' \\\"; tab, CR, LF are \\t \\r \\n; other bytes \\xNN
  status              print the node's status as JSON
  add-learner ID      make node ID a learner (it receives the log, does not vote); prints
                      the LSN of the change once committed and applied; follows the
                      leader (a change a new leader's entry replaced goes to it). Node ID is
                      started with --join on an empty directory, and reachable at the
                      address the members' `peer` lines give for it
  add-voter ID        make learner ID a voter, once it has caught up (asked again until
                      then, or until --timeout); prints as add-learner does
  remove ID           remove node ID from the cluster (a voter or a learner); its peers stop
                      talking to it. A member whose log was lost is removed, then added again

A command takes only its own flags and words: anything else is refused.

Exit status: 0 done; 3 the outcome is unknown (an append or a membership change was given up
on after it reached a node, and may have been made: send the append again with the ids printed,
look at `status` for the change), or it was made and its answer could not be printed (standard
error says what was made); 2 any other failure (the request that failed was not made,
or a read failed; a `load` stopped part way made the records it printed before); 141 a read's
or status's output met a closed pipe (`rwal client read | head`).";

struct Client {
    addr: SocketAddr,
    /// The address given (`--addr`): where a redirected call goes back to when the leader it
    /// was sent to stops answering (that node knows the next leader).
    given: SocketAddr,
    /// Every address `--addr` resolved to, `given` among them: a connection refused at
    /// `given` moves it to the next one for the next attempt. A node listens on one IP address
    /// (`--client-listen`), and `localhost` may resolve to `::1` first while the node listens
    /// on `127.0.0.1`; until 2026-12-07 only the first address was ever tried.
    given_all: Vec<SocketAddr>,
    /// Where `given` is in `given_all`.
    given_at: usize,
    stream: Option<(BufReader<TcpStream>, BufWriter<TcpStream>)>,
    timeout: Duration,
    /// Whether the request of the last `call_leader` began to be written on a connection, on
    /// any attempt since the last NOT_LEADER answer (which says the attempt it answers was not
    /// made).
    request_written: bool,
    /// Whether some attempt of the last `call_leader` wrote the request and got no answer
    /// saying it was not made (a NOT_LEADER): only then may an append given up on be in the
    /// log. Unlike `request_written`, a later NOT_LEADER does not clear it: it says nothing of
    /// the attempts before it (a leader that took the request and went down before answering).
    maybe_made: bool,
    /// The command failed after a request that changes the log reached a node: it may have
    /// been made (exit status 3).
    outcome_unknown: bool,
}

/// Why a call failed.
enum CallFailure {
    /// The connection failed or timed out: another try (or node) may answer.
    Transient(String),
    /// What answered does not speak the client protocol: trying again will not help.
    NotRwal(String),
}

impl CallFailure {
    fn message(self) -> String {
        match self {
            CallFailure::Transient(m) | CallFailure::NotRwal(m) => m,
        }
    }
}

/// Whether a write failed because the other side closed the connection.
fn is_closed(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
    )
}

impl Client {
    /// A client of the node at `addr`, not connected yet.
    #[cfg(test)]
    fn new(addr: SocketAddr, timeout: Duration) -> Client {
        Client::at_any(vec![addr], timeout)
    }

    /// A client of the node at one of `addrs` (at least one: the addresses a name resolved
    /// to), the first tried first.
    fn at_any(addrs: Vec<SocketAddr>, timeout: Duration) -> Client {
        let addr = addrs[0];
        Client {
            addr,
            given: addr,
            given_all: addrs,
            given_at: 0,
            stream: None,
            timeout,
            request_written: false,
            maybe_made: false,
            outcome_unknown: false,
        }
    }

    /// One request and its answer, waiting for the answer until `deadline` at the latest.
    fn call(
        &mut self,
        op: u8,
        body: &[u8],
        deadline: Instant,
    ) -> Result<(u8, Vec<u8>), CallFailure> {
        let left = || {
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1))
        };
        if self.stream.is_none() {
            // One of several addresses a name resolved to gets a second at most, so that one
            // that drops connections (an IPv6 address firewalled) does not take the whole
            // timeout before the next is tried.
            let patience = if self.given_all.len() > 1 && self.addr == self.given {
                left().min(Duration::from_secs(1))
            } else if self.addr != self.given {
                // A leader it was sent to that is down: the node given names the next one.
                left().min(FOLLOWED_LEADER_PATIENCE)
            } else {
                left()
            };
            let stream = TcpStream::connect_timeout(&self.addr, patience).map_err(|e| {
                let failure =
                    CallFailure::Transient(format!("cannot connect to {}: {e}", self.addr));
                self.next_given_address();
                failure
            })?;
            let _ = stream.set_nodelay(true);
            let reader = BufReader::new(
                stream
                    .try_clone()
                    .map_err(|e| CallFailure::Transient(e.to_string()))?,
            );
            self.stream = Some((reader, BufWriter::new(stream)));
        }
        let (reader, writer) = self.stream.as_mut().expect("connected above");
        // Every read and write waits at most until the deadline, whatever came before it: a
        // timeout set once per call bounded each read, and a reply trickled in a byte at a
        // time could take many times the timeout.
        let mut reader = DeadlineReader {
            reader,
            deadline,
            looked_late: false,
        };
        let mut writer = DeadlineWriter { writer, deadline };
        // A call whose time ran out before its first byte went sent nothing.
        time_left(deadline)
            .map_err(|_| CallFailure::Transient(format!("no answer from {} in time", self.addr)))?;
        // Before the write: a write that fails may still have put the whole request out.
        self.request_written = true;
        let written = proto::write_message(&mut writer, op, body);
        let outcome = match written {
            Ok(()) => proto::read_message(&mut reader, proto::RESPONSE_BYTES_MAX),
            // What answered may have refused the request before it took all of it, and closed
            // (a node's peer port answers with its magic): its answer, already here, says more
            // than the failed write, which alone would be retried as a lost connection.
            Err(e) if is_closed(&e) => {
                match proto::read_message(&mut reader, proto::RESPONSE_BYTES_MAX) {
                    Err(answer) if answer.kind() == std::io::ErrorKind::InvalidData => Err(answer),
                    _ => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        let addr = self.addr;
        match outcome {
            Ok(Some((code, reply))) if code <= proto::NOT_MADE => Ok((code, reply)),
            Ok(Some((code, _))) => {
                self.stream = None;
                Err(CallFailure::NotRwal(format!(
                    "{addr} answered with status {code}, which the client protocol does not \
                     have: is it an rwal node's client port?"
                )))
            }
            Ok(None) => {
                self.stream = None;
                Err(CallFailure::Transient(format!(
                    "{addr} closed the connection"
                )))
            }
            Err(e) => {
                self.stream = None;
                Err(match e.kind() {
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                        CallFailure::Transient(format!("no answer from {addr} in time"))
                    }
                    std::io::ErrorKind::InvalidData if proto::PeerProtocol::is(&e) => {
                        CallFailure::NotRwal(format!(
                            "{addr} is an rwal node's peer port (its `--listen`), not its client \
                             port (`--client-listen`)"
                        ))
                    }
                    std::io::ErrorKind::InvalidData => CallFailure::NotRwal(format!(
                        "{addr} does not speak the client protocol ({e}): is it an rwal \
                         node's client port?"
                    )),
                    _ => CallFailure::Transient(format!("{addr}: {e}")),
                })
            }
        }
    }

    /// Calls the node given until it answers other than RETRY, or the connection holds, within
    /// the timeout; any answer but OK is the error. For a request that changes nothing and is
    /// about this node (STATUS): a RETRY (the node at its connection or descriptor limit) and
    /// a lost connection (one the node closed while idle) are asked again, every 50 ms. Until
    /// 2026-12-07 it asked once, and either ended `status` with exit status 2.
    fn call_here(&mut self, op: u8, body: &[u8]) -> Result<Vec<u8>, String> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let last = match self.call(op, body, deadline) {
                Ok((proto::OK, reply)) => return Ok(reply),
                Ok((proto::RETRY, reply)) => format!(
                    "{} answered RETRY: {}",
                    self.addr,
                    String::from_utf8_lossy(&reply)
                ),
                Ok((_, reply)) => return Err(format!("{}: {}", self.addr, refusal(&reply))),
                Err(CallFailure::Transient(message)) => message,
                Err(failure @ CallFailure::NotRwal(_)) => return Err(failure.message()),
            };
            if Instant::now() + Duration::from_millis(50) >= deadline {
                return Err(format!("{GAVE_UP} {:?}: {last}", self.timeout));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Calls until a node answers other than NOT_LEADER, RETRY or NOT_MADE, following the leader a
    /// NOT_LEADER names, within the timeout: for appends (whose ids make a second copy
    /// harmless) and reads (which change nothing).
    fn call_leader(&mut self, op: u8, body: &[u8]) -> Result<Vec<u8>, String> {
        self.call_leader_with(op, body, true)
    }

    /// [`call_leader`](Client::call_leader) for a request that is not safe to send twice (a
    /// membership change, which carries no ids): it follows the leader and asks again after a
    /// NOT_MADE, but once the request began to be written, a RETRY or a lost connection ends
    /// the call, saying that the outcome is unknown.
    fn call_leader_once(&mut self, op: u8, body: &[u8]) -> Result<Vec<u8>, String> {
        self.call_leader_with(op, body, false)
    }

    fn call_leader_with(&mut self, op: u8, body: &[u8], resend: bool) -> Result<Vec<u8>, String> {
        let unknown = |why: &str| {
            format!(
                "{why}; the request reached the node, so it may have been made: look at \
                 `status` before sending it again"
            )
        };
        let deadline = Instant::now() + self.timeout;
        self.request_written = false;
        self.maybe_made = false;
        let mut last = String::new();
        let mut redirects_in_a_row = 0;
        while Instant::now() < deadline {
            // A leader it was sent to may have lost power or been cut off without closing
            // anything: its kernel may still accept the connection, and nothing answers. The
            // node given names the next leader, so a followed leader gets a bounded attempt.
            // Not a request sent once only: past that bound it could not be sent again, and
            // the command gave up as "may have been made" after 5 s whatever its `--timeout`
            // (found by review on 2026-12-08); its connection is bounded instead (`call`).
            let attempt_deadline = if self.addr == self.given || !resend {
                deadline
            } else {
                deadline.min(Instant::now() + followed_leader_patience(body.len()))
            };
            if !resend {
                // On a fresh connection each time: one kept from an earlier answer (NOT_LEADER
                // from a node that then stopped, or closed it for a newcomer) fails the
                // request after it was written, which reads as "may have been made" of a
                // request no node read (found by review on 2026-12-08).
                self.stream = None;
            }
            let mut redirected = false;
            let made_before = self.maybe_made;
            let outcome = self.call(op, body, attempt_deadline);
            if self.request_written
                && !matches!(outcome, Ok((proto::NOT_LEADER | proto::NOT_MADE, _)))
            {
                self.maybe_made = true;
            }
            match outcome {
                Ok((proto::OK, reply)) => return Ok(reply),
                Ok((proto::NOT_LEADER, reply)) => {
                    // A definite "not made here": what follows (a leader that cannot be
                    // reached) must not be reported as a request that may have been made.
                    self.request_written = false;
                    let mut b = Body(&reply);
                    let leader = b.u64("leader").unwrap_or(0);
                    let address = String::from_utf8_lossy(b.rest()).into_owned();
                    last = format!("node at {} is not the leader (leader: {leader})", self.addr);
                    match address.parse() {
                        Ok(addr) if addr != self.addr => {
                            self.addr = addr;
                            self.stream = None;
                            redirected = true;
                            redirects_in_a_row += 1;
                            // Two nodes may name each other while leadership moves (a
                            // transfer): only the first hop in a row goes at once.
                            if redirects_in_a_row == 1 {
                                continue;
                            }
                        }
                        // A leader that stepped down knows no other yet: the node given
                        // learns the next one.
                        _ => self.back_to_given(),
                    }
                }
                // Like NOT_LEADER, a definite "not made": asked again even where a request
                // must not be sent twice.
                Ok((proto::NOT_MADE, reply)) => {
                    self.request_written = false;
                    last = format!(
                        "{} answered NOT_MADE: {}",
                        self.addr,
                        String::from_utf8_lossy(&reply)
                    );
                    // A node at its connection limit answers NOT_MADE as it turns the connection
                    // away, and closes it: the request sent again on that connection would fail
                    // as a lost connection after it was written, which reads as "may have been
                    // made". So the next attempt connects again, whatever said NOT_MADE (a
                    // connect every 50 ms while a change waits for a learner to catch up).
                    self.stream = None;
                }
                Ok((proto::RETRY, reply)) => {
                    last = format!(
                        "{} answered RETRY: {}",
                        self.addr,
                        String::from_utf8_lossy(&reply)
                    );
                    if !resend {
                        self.outcome_unknown = true;
                        return Err(unknown(&last));
                    }
                }
                Ok((_, reply)) => {
                    // Refused here, so not made by this attempt; an earlier one that reached
                    // a node (a leader that took the request and went down) may have been:
                    // the refusal says nothing of it (this node may refuse what that one
                    // took, a record over its smaller limit, say).
                    self.maybe_made = made_before;
                    let refused = refusal(&reply);
                    if made_before && matches!(op, proto::OP_APPEND | proto::OP_MEMBERSHIP) {
                        self.outcome_unknown = true;
                        return Err(format!(
                            "{refused} (from {}; an earlier attempt reached another node, \
                             which may have made the request)",
                            self.addr
                        ));
                    }
                    return Err(format!("{refused} (from {})", self.addr));
                }
                Err(CallFailure::NotRwal(message)) => {
                    // What answers now is no node, and made nothing; it says nothing of an
                    // earlier attempt that may have reached a leader (one that took the
                    // request and went down).
                    self.maybe_made = made_before;
                    // Only a request that changes the log can have been made; a read's failure
                    // is a failed read.
                    if made_before && matches!(op, proto::OP_APPEND | proto::OP_MEMBERSHIP) {
                        self.outcome_unknown = true;
                        if !resend {
                            return Err(unknown(&message));
                        }
                    }
                    return Err(message);
                }
                Err(CallFailure::Transient(message)) => {
                    if !resend && self.request_written {
                        self.outcome_unknown = true;
                        return Err(unknown(&message));
                    }
                    last = message;
                    // A leader it was sent to that stopped answering (killed, cut off) may
                    // never come back: ask the node given again, which names the next one.
                    self.back_to_given();
                }
            }
            if !redirected {
                redirects_in_a_row = 0;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("{GAVE_UP} {:?}: {last}", self.timeout))
    }

    /// Talks to the node given on the command line again (from a leader it was sent to).
    /// After a failed connection to the address given: the next of the addresses it resolved
    /// to, for the next attempt (the callers retry, within their one deadline).
    fn next_given_address(&mut self) {
        if self.addr != self.given || self.given_all.len() < 2 {
            return;
        }
        self.given_at = (self.given_at + 1) % self.given_all.len();
        self.given = self.given_all[self.given_at];
        self.addr = self.given;
    }

    fn back_to_given(&mut self) {
        if self.addr != self.given {
            self.addr = self.given;
            self.stream = None;
        }
    }
}

/// The time left until `deadline`, or a `TimedOut` error once it has passed.
fn time_left(deadline: Instant) -> std::io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the call's time ran out",
        ));
    }
    Ok(left)
}

/// Reads a connection's buffered input, each read that reaches the socket waiting at most
/// until the call's deadline; past it, one last look at what the socket holds already (an
/// answer that arrived in time while this thread did not run is not thrown away).
struct DeadlineReader<'a> {
    reader: &'a mut BufReader<TcpStream>,
    deadline: Instant,
    /// The last look past the deadline was taken.
    looked_late: bool,
}

impl std::io::Read for DeadlineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.reader.buffer().is_empty() {
            let left = match time_left(self.deadline) {
                Ok(left) => left,
                Err(late) if self.looked_late => return Err(late),
                Err(_) => {
                    self.looked_late = true;
                    Duration::from_millis(1)
                }
            };
            self.reader.get_ref().set_read_timeout(Some(left))?;
        }
        self.reader.read(buf)
    }
}

/// Writes to a connection through its buffer, each write that reaches the socket waiting at
/// most until the call's deadline.
struct DeadlineWriter<'a> {
    writer: &'a mut BufWriter<TcpStream>,
    deadline: Instant,
}

impl DeadlineWriter<'_> {
    fn bound(&self) -> std::io::Result<()> {
        let left = time_left(self.deadline)?;
        self.writer.get_ref().set_write_timeout(Some(left))
    }
}

impl std::io::Write for DeadlineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bound()?;
        self.writer.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.bound()?;
        self.writer.flush()
    }
}

/// How long one attempt at a leader the client was sent to may take before the client asks the
/// node given again, besides the time its request takes to upload. A retry is harmless (an
/// append's ids make a second copy apply as nothing) and costs one reconnection; a leader
/// that is down costs this long.
const FOLLOWED_LEADER_PATIENCE: Duration = Duration::from_secs(5);

/// The slowest upload a followed leader's attempt allows for: 1 MiB/s.
const UPLOAD_BYTES_PER_SECOND: u64 = 1 << 20;

/// [`FOLLOWED_LEADER_PATIENCE`] plus the time a request of `body_bytes` takes to upload at
/// [`UPLOAD_BYTES_PER_SECOND`]. Until 2026-12-07 the 5 s covered the upload too, so a record
/// of 16 MiB sent through a follower over a link slower than about 3 MB/s was cut and sent
/// again every 5 s, and never got through.
fn followed_leader_patience(body_bytes: usize) -> Duration {
    FOLLOWED_LEADER_PATIENCE
        + Duration::from_millis(body_bytes as u64 * 1000 / UPLOAD_BYTES_PER_SECOND)
}

/// The text of an ERROR answer.
fn refusal(reply: &[u8]) -> String {
    if reply.is_empty() {
        return "the node refused the request without saying why".into();
    }
    String::from_utf8_lossy(reply).into_owned()
}

/// A `load` record: its request id `i` in decimal, padded with zeros on the left to `size`
/// bytes (or longer if `i` needs more digits). Made of the request id, not of the record's
/// place in the run, so that a run resumed from the request id a failure named sends that
/// request's data again (it sent other data, which the node refuses under a reused id).
fn load_record(i: u64, size: usize) -> String {
    let digits = i.to_string();
    let mut record = "0".repeat(size.saturating_sub(digits.len()));
    record.push_str(&digits);
    record
}

/// The largest `load` record: a node's largest record (16 MiB by default) holds the client's
/// two ids (16 bytes) and the data. (The request limit allows 16 bytes more, which a node then
/// refuses as a record over its limit.)
const RECORD_BYTES_MAX: u64 = (16 << 20) - 16;

/// The longest `--timeout`: a day.
const TIMEOUT_MAX_SECONDS: u64 = 24 * 60 * 60;

/// For an append the client gave up on, or whose outcome is `unknown` otherwise (as opposed
/// to an ERROR answer): whether it may be in the log. One that some attempt `written` to a
/// connection may be: the message names the ids that retry it without writing it twice. One
/// that no attempt of this run wrote (none connected) was not sent by this run, and the
/// message says so (it used to get the same hint, as if this run might have written it); an
/// earlier run with the same ids may have, so the ids that retry it are named all the same.
fn retry_hint(
    error: String,
    unknown: bool,
    written: bool,
    client_id: u64,
    request_id: u64,
) -> String {
    if !error.starts_with(GAVE_UP) && !unknown {
        return error;
    }
    if !written {
        return format!(
            "{error}\nthis run did not send the append (no node it reached could take it, or none \
             was reached); if an earlier run sent it with --client-id {client_id} --request-id {request_id}, it may \
             be in the log: send it again with those ids, never with new ones"
        );
    }
    format!(
        "{error}\nthe append may or may not be in the log: to retry it without writing it twice \
         (while the node still remembers this client id: among the last 100 000 to append), \
         send it again with --client-id {client_id} --request-id {request_id}"
    )
}

/// How `call_leader` says it ran out of time.
const GAVE_UP: &str = "gave up after";

fn number(parser: &mut lexopt::Parser, what: &str) -> Result<u64, String> {
    let value = parser.value().map_err(|e| e.to_string())?;
    value
        .to_string_lossy()
        .parse()
        .map_err(|_| format!("{what}: {value:?} is not a number"))
}

fn default_client_id() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (nanos ^ (u64::from(std::process::id()) << 32)) | 1
}

/// The flags of each command, besides `--addr` and `--timeout` (every command's), and whether
/// it takes DATA.
const COMMANDS: [(&str, &[&str], bool); 7] = [
    ("append", &["--client-id", "--request-id"], true),
    (
        "load",
        &["--count", "--size", "--client-id", "--request-id"],
        false,
    ),
    ("read", &["--from", "--max", "--linearizable"], false),
    ("status", &[], false),
    ("add-learner", &[], true),
    ("add-voter", &[], true),
    ("remove", &[], true),
];

/// `name` (without `--`) as the flag of some command.
fn command_flag(name: &str) -> Option<&'static str> {
    COMMANDS
        .iter()
        .flat_map(|(_, flags, _)| flags.iter())
        .find(|flag| flag.strip_prefix("--") == Some(name))
        .copied()
}

/// What `rwal client` was given.
struct Arguments {
    /// Every address `--addr` resolved to (at least one).
    addr: Option<Vec<SocketAddr>>,
    timeout: Duration,
    command: Option<String>,
    /// The words after the command: append's DATA, as given (not necessarily UTF-8).
    words: Vec<OsString>,
    /// The commands' flags given, by name (`--count`): a command refuses the others'.
    flags: Vec<&'static str>,
    client_id: u64,
    request_id: u64,
    count: u64,
    size: usize,
    from: u64,
    max: u32,
    linearizable: bool,
}

/// The arguments; `None` after `--help`, which is printed.
fn parse(args: Vec<OsString>) -> Result<Option<Arguments>, String> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut a = Arguments {
        addr: None,
        timeout: Duration::from_secs(30),
        command: None,
        words: Vec::new(),
        flags: Vec::new(),
        client_id: default_client_id(),
        request_id: 1,
        count: 1,
        size: 128,
        from: 0,
        max: 1000,
        linearizable: false,
    };
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        use lexopt::Arg::{Long, Short, Value};
        if let Long(name) = arg {
            a.flags.extend(command_flag(name));
        }
        match arg {
            Long("help") | Short('h') => {
                out!("{HELP}");
                return Ok(None);
            }
            Long("addr") => a.addr = Some(address(&mut parser)?),
            Long("timeout") => {
                let seconds = number(&mut parser, "--timeout")?;
                if !(1..=TIMEOUT_MAX_SECONDS).contains(&seconds) {
                    return Err(format!(
                        "--timeout: {seconds} is out of range (1 to {TIMEOUT_MAX_SECONDS} seconds)"
                    ));
                }
                a.timeout = Duration::from_secs(seconds);
            }
            Long("client-id") => a.client_id = number(&mut parser, "--client-id")?,
            Long("request-id") => a.request_id = number(&mut parser, "--request-id")?,
            Long("count") => a.count = number(&mut parser, "--count")?,
            Long("size") => {
                let bytes = number(&mut parser, "--size")?;
                if bytes > RECORD_BYTES_MAX {
                    return Err(format!(
                        "--size: {bytes} is larger than a node takes ({RECORD_BYTES_MAX} bytes)"
                    ));
                }
                a.size = bytes as usize;
            }
            Long("from") => a.from = number(&mut parser, "--from")?,
            Long("max") => a.max = number(&mut parser, "--max")?.min(u64::from(u32::MAX)) as u32,
            Long("linearizable") => a.linearizable = true,
            Value(value) if a.command.is_none() => a.command = Some(value.to_string_lossy().into()),
            Value(value) => a.words.push(value),
            other => return Err(format!("{}\n\n{HELP}", other.unexpected())),
        }
    }
    Ok(Some(a))
}

/// The value of `--addr`: a host name or IP address, and a port; every address the name
/// resolves to (`localhost` may give `::1` before `127.0.0.1`).
fn address(parser: &mut lexopt::Parser) -> Result<Vec<SocketAddr>, String> {
    let value = parser.value().map_err(|e| e.to_string())?;
    let value = value.to_string_lossy().into_owned();
    let addrs: Vec<SocketAddr> = value
        .to_socket_addrs()
        .map_err(|e| format!("--addr {value:?}: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("--addr {value:?}: no address"));
    }
    Ok(addrs)
}

/// Refuses what `command` does not use, naming it: a flag of another command, a word it does
/// not take. Both used to be ignored (`read 3` read from the oldest record, not from LSN 3).
fn check_arguments(command: &str, flags: &[&str], words: &[OsString]) -> Result<(), String> {
    let Some((_, own, takes_data)) = COMMANDS.iter().find(|(name, ..)| *name == command) else {
        return Err(format!("unknown client command {command:?}\n\n{HELP}"));
    };
    if let Some(flag) = flags.iter().find(|flag| !own.contains(flag)) {
        let owners: Vec<&str> = COMMANDS
            .iter()
            .filter(|(_, flags, _)| flags.contains(flag))
            .map(|(name, ..)| *name)
            .collect();
        return Err(format!(
            "{command} does not take {flag} (it is a flag of {})",
            owners.join(" and ")
        ));
    }
    let what = match command {
        "add-learner" | "add-voter" | "remove" => "ID",
        _ => "DATA",
    };
    match (takes_data, words) {
        (true, [_]) | (false, []) => Ok(()),
        (true, []) => Err(format!("{command} needs {what}")),
        (true, [_, extra, ..]) => Err(format!(
            "{command} takes one {what}, and {extra:?} is a second word{}",
            if what == "DATA" {
                " (quote DATA that holds spaces)"
            } else {
                ""
            }
        )),
        (false, [word, ..]) => Err(format!(
            "{command} takes no word, and {word:?} was given (its flags: {})",
            match own.is_empty() {
                true => "none".to_string(),
                false => own.join(", "),
            }
        )),
    }
}

/// Runs `rwal client` with `args` (those after `client`); an error ends the command with
/// status 2, or 3 when a request that changes the log may have been made.
pub fn run(args: Vec<OsString>) -> Result<ExitCode, String> {
    let Some(a) = parse(args)? else {
        return Ok(ExitCode::SUCCESS);
    };
    let command = a
        .command
        .as_deref()
        .ok_or_else(|| format!("a command is required\n\n{HELP}"))?;
    check_arguments(command, &a.flags, &a.words)?;
    let addrs = a
        .addr
        .as_deref()
        .ok_or_else(|| format!("--addr is required\n\n{HELP}"))?;
    let mut client = Client::at_any(addrs.to_vec(), a.timeout);
    let outcome = match command {
        "append" => append(&mut client, &a),
        "load" => load(&mut client, &a),
        "read" => read(&mut client, &a),
        "add-learner" => membership(&mut client, proto::MEMBERSHIP_ADD_LEARNER, &a),
        "add-voter" => membership(&mut client, proto::MEMBERSHIP_ADD_VOTER, &a),
        "remove" => membership(&mut client, proto::MEMBERSHIP_REMOVE, &a),
        _ => status(&mut client),
    };
    match outcome {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(message) if client.outcome_unknown => {
            errln!("rwal: {message}");
            Ok(ExitCode::from(3))
        }
        Err(message) => Err(message),
    }
}

/// Appends one record of `bytes` as request `request` of `client_id`; prints its LSN and epoch.
fn append_one(
    client: &mut Client,
    client_id: u64,
    request: u64,
    bytes: &[u8],
) -> Result<(), String> {
    let body = [&client_id.to_le_bytes()[..], &request.to_le_bytes(), bytes].concat();
    let reply = client.call_leader(proto::OP_APPEND, &body).map_err(|e| {
        // Given up on after it reached a node: it may be in the log. So may one that ended
        // on something not speaking the protocol after an attempt that reached a node
        // (`call_leader` says so).
        client.outcome_unknown |= client.maybe_made && e.starts_with(GAVE_UP);
        retry_hint(
            e,
            client.outcome_unknown,
            client.maybe_made,
            client_id,
            request,
        )
    })?;
    let mut b = Body(&reply);
    let (lsn, epoch) = match (b.u64("lsn"), b.u64("epoch")) {
        (Ok(lsn), Ok(epoch)) => (lsn, epoch),
        (Err(e), _) | (_, Err(e)) => {
            return Err(made_but_unreadable(
                client,
                "the append",
                &e,
                &format!(
                    "send it again with --client-id {client_id} --request-id {request} to learn \
                     its LSN (it is answered the same, not written twice)"
                ),
            ))
        }
    };
    print_made(
        client,
        &format!("{lsn} {epoch}"),
        &format!(
            "the append was made at LSN {lsn}, epoch {epoch} (sent again with --client-id \
             {client_id} --request-id {request}, it is answered the same, not written twice)"
        ),
    )
}

/// The failure of a request answered OK (made) with a body that does not parse (a node of
/// another version, a broken proxy): exit status 3, as for an answer that could not be
/// printed, since a script that took 2 for "not made" would send it again (an append under new
/// ids: twice in the log). Until 2026-12-07 it was 2, and the message named no node.
fn made_but_unreadable(client: &mut Client, what: &str, error: &str, then: &str) -> String {
    client.outcome_unknown = true;
    format!(
        "the node at {} answered that {what} was made, but its answer does not parse \
         ({error}): {then}",
        client.addr
    )
}

/// Prints the answer to a request that changed the log. Unlike `out!`, a standard output that
/// fails makes the command exit 3, not 1 or 141: the change was made, and a script that took
/// any other failure for "not made" would send it again (an append under new ids: twice in the
/// log). `made` says on standard error what was made.
fn print_made(client: &mut Client, line: &str, made: &str) -> Result<(), String> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .map_err(|e| {
            client.outcome_unknown = true;
            format!("{made}, but its answer could not be written to standard output: {e}")
        })
}

/// `append DATA`: DATA's bytes as given, never made UTF-8 first (which put U+FFFD in the
/// place of other bytes, and the record acknowledged was not the one given).
fn append(client: &mut Client, a: &Arguments) -> Result<(), String> {
    let data = a.words[0].as_bytes();
    append_one(client, a.client_id, a.request_id, data)
}

fn load(client: &mut Client, a: &Arguments) -> Result<(), String> {
    let (count, request_id) = (a.count, a.request_id);
    // Checked before the first append, not when the ids run out.
    if request_id.checked_add(count.saturating_sub(1)).is_none() {
        return Err(format!(
            "--request-id {request_id} with --count {count}: the request ids overflow"
        ));
    }
    for i in 0..count {
        let record = load_record(request_id + i, a.size);
        append_one(client, a.client_id, request_id + i, record.as_bytes())?;
    }
    Ok(())
}

fn read(client: &mut Client, a: &Arguments) -> Result<(), String> {
    let mode = if a.linearizable {
        proto::READ_LINEARIZABLE
    } else {
        proto::READ_STALE
    };
    let body = [&a.from.to_le_bytes()[..], &a.max.to_le_bytes(), &[mode]].concat();
    // Asked again on RETRY (a linearizable read while no leader confirms it, a node busy or
    // stopping) until the timeout.
    let reply = client.call_leader(proto::OP_READ, &body)?;
    // Parsed whole before a line is printed: an answer that does not parse prints nothing
    // of it, and the error names the node that sent it.
    let records = read_answer(&reply).map_err(|e| {
        format!(
            "{} answered READ with a message that does not parse: {e}",
            client.addr
        )
    })?;
    for (lsn, epoch, data) in records {
        out!("{lsn} {epoch} {}", record_line(data));
    }
    Ok(())
}

/// One record of a READ answer: LSN, epoch, data.
type ReadRecord<'a> = (u64, u64, &'a [u8]);

/// The records of a READ answer (docs/network.md section 3.2).
fn read_answer(reply: &[u8]) -> Result<Vec<ReadRecord<'_>>, String> {
    let mut b = Body(reply);
    let n = b.u32("count")?;
    let mut records = Vec::new();
    // Not `Vec::with_capacity(n)`: the count is the sender's word, the records are what it sent.
    for _ in 0..n {
        let lsn = b.u64("lsn")?;
        let epoch = b.u64("epoch")?;
        let len = b.u32("length")? as usize;
        let data = b.take(len, "data")?;
        records.push((lsn, epoch, data));
    }
    b.end("the READ answer")?;
    Ok(records)
}

/// A record's data as one line of `read`'s output: escaped (`<[u8]>::escape_ascii`), so that a
/// record holding a newline cannot forge a line of its own, nor one holding terminal escapes
/// drive the terminal. It used to be printed as it was.
fn record_line(data: &[u8]) -> std::slice::EscapeAscii<'_> {
    data.escape_ascii()
}

/// `add-learner ID`, `add-voter ID`, `remove ID`: prints the LSN of the change.
fn membership(client: &mut Client, change: u8, a: &Arguments) -> Result<(), String> {
    let word = a.words[0].to_string_lossy();
    let id: u64 = word
        .parse()
        .ok()
        .filter(|&id| id > 0)
        .ok_or_else(|| format!("{word:?} is not a node id (1, 2, ...)"))?;
    let body = [&[change][..], &id.to_le_bytes()].concat();
    let reply = client.call_leader_once(proto::OP_MEMBERSHIP, &body)?;
    let lsn = Body(&reply).u64("lsn").map_err(|e| {
        made_but_unreadable(client, "the change", &e, "look at `status` for its LSN")
    })?;
    print_made(
        client,
        &lsn.to_string(),
        &format!("the change was made at LSN {lsn}"),
    )
}

fn status(client: &mut Client) -> Result<(), String> {
    let reply = client.call_here(proto::OP_STATUS, &[])?;
    out!("{}", String::from_utf8_lossy(&reply));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node of the test's on loopback: its address, and the thread that takes one
    /// connection and runs `serve` with its requests (`input`) and its answers (`output`).
    fn fake_node<T: Send + 'static>(
        serve: impl FnOnce(&mut BufReader<std::net::TcpStream>, &mut std::net::TcpStream) -> T
            + Send
            + 'static,
    ) -> (SocketAddr, std::thread::JoinHandle<T>) {
        let node = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = node.local_addr().unwrap();
        let thread = std::thread::spawn(move || {
            let (stream, _) = node.accept().unwrap();
            let mut input = BufReader::new(stream.try_clone().unwrap());
            let mut output = stream;
            serve(&mut input, &mut output)
        });
        (addr, thread)
    }

    /// Sends a membership change to a node that takes one request per connection, answers it
    /// with the next of `answers` and closes that connection; the change's answer must be the
    /// last one, OK, with no doubt left about its outcome.
    fn membership_change_made_at_last(answers: Vec<(u8, Vec<u8>)>) {
        let made = answers.last().expect("an answer").1.clone();
        let node = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = node.local_addr().unwrap();
        let thread = std::thread::spawn(move || {
            for (status, body) in answers {
                let (stream, _) = node.accept().unwrap();
                let mut input = BufReader::new(stream.try_clone().unwrap());
                let mut output = stream;
                let (op, _) = proto::read_message(&mut input, proto::REQUEST_BYTES_MAX)
                    .unwrap()
                    .unwrap();
                assert_eq!(op, proto::OP_MEMBERSHIP);
                proto::write_message(&mut output, status, &body).unwrap();
            }
        });
        let mut client = Client::new(addr, Duration::from_secs(20));
        let reply = client.call_leader_once(proto::OP_MEMBERSHIP, &[0; 9]);
        assert_eq!(reply, Ok(made));
        assert!(!client.outcome_unknown);
        thread.join().unwrap();
    }

    /// An address nothing listens on: a port the OS gave out, then closed.
    fn closed_port() -> SocketAddr {
        let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        gone.local_addr().unwrap()
    }

    /// The leader a call was sent to stops answering: the call goes back to the node it was
    /// given, which names the next leader, instead of knocking on the dead one until its
    /// timeout.
    #[test]
    fn a_call_sent_to_a_leader_that_died_goes_back_to_the_node_given() {
        let dead = closed_port();
        let given = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = given.local_addr().unwrap();
        let node = std::thread::spawn(move || {
            // The first request: "not the leader, the leader is at `dead`"; the next: OK.
            for answer in 0..2 {
                let (stream, _) = given.accept().unwrap();
                let mut input = BufReader::new(stream.try_clone().unwrap());
                let mut output = stream;
                proto::read_message(&mut input, proto::REQUEST_BYTES_MAX)
                    .unwrap()
                    .unwrap();
                if answer == 0 {
                    let mut body = 2u64.to_le_bytes().to_vec();
                    body.extend_from_slice(dead.to_string().as_bytes());
                    proto::write_message(&mut output, proto::NOT_LEADER, &body).unwrap();
                } else {
                    let mut body = 5u64.to_le_bytes().to_vec();
                    body.extend_from_slice(&1u64.to_le_bytes());
                    proto::write_message(&mut output, proto::OK, &body).unwrap();
                }
            }
        });
        let mut client = Client::new(addr, Duration::from_secs(20));
        let started = Instant::now();
        let reply = client.call_leader(proto::OP_STATUS, &[]).unwrap();
        assert_eq!(Body(&reply).u64("lsn").unwrap(), 5);
        assert!(started.elapsed() < Duration::from_secs(10));
        node.join().unwrap();
    }

    /// A server that answers with the peer protocol's magic and closes before it read the
    /// whole request (a node's peer port, taking 56 bytes of a large APPEND): the client's
    /// write fails, and the answer already received names the peer port. The failed write
    /// alone was taken for a lost connection and retried until the timeout.
    #[test]
    fn an_answer_that_came_before_a_failed_write_is_read() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            // Every connection the client makes meets the same refusal.
            while let Ok((mut stream, _)) = listener.accept() {
                use std::io::{Read, Write};
                let mut hello = [0u8; 56];
                if stream.read_exact(&mut hello).is_err() {
                    return;
                }
                stream.write_all(b"RWALPEER").unwrap();
                // Closed with the rest of the request unread: a reset.
                drop(stream);
                if hello[4] == 0xff {
                    return; // the test's last connection
                }
            }
        });
        let mut client = Client::new(addr, Duration::from_secs(10));
        // Far more than the socket buffers hold, so the write is still under way at the reset.
        let body = vec![7u8; 64 << 20];
        let failure = client.call_leader(proto::OP_APPEND, &body).unwrap_err();
        assert!(failure.contains("is an rwal node's peer port"), "{failure}");
        // End the server: a connection whose fifth byte is 0xff.
        let mut last = std::net::TcpStream::connect(addr).unwrap();
        std::io::Write::write_all(&mut last, &[0xffu8; 56]).unwrap();
        server.join().unwrap();
    }

    /// A follower answers NOT_LEADER (the request was not made there) and the leader it names
    /// cannot be reached: the call that may not be resent gives up saying so, not that the
    /// request reached a node and may have been made (which it said before, the flag of the
    /// follower's written request left set).
    #[test]
    fn a_request_only_a_follower_refused_is_not_reported_as_maybe_made() {
        let dead = closed_port();
        let follower = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = follower.local_addr().unwrap();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let server = {
            let done = done.clone();
            std::thread::spawn(move || {
                while let Ok((stream, _)) = follower.accept() {
                    if done.load(std::sync::atomic::Ordering::Acquire) {
                        return;
                    }
                    let mut input = BufReader::new(stream.try_clone().unwrap());
                    let mut output = stream;
                    while let Ok(Some(_)) =
                        proto::read_message(&mut input, proto::REQUEST_BYTES_MAX)
                    {
                        let mut body = 2u64.to_le_bytes().to_vec();
                        body.extend_from_slice(dead.to_string().as_bytes());
                        proto::write_message(&mut output, proto::NOT_LEADER, &body).unwrap();
                    }
                }
            })
        };
        let mut client = Client::new(addr, Duration::from_secs(1));
        let failure = client
            .call_leader_once(proto::OP_MEMBERSHIP, &[0; 9])
            .unwrap_err();
        assert!(failure.starts_with(GAVE_UP), "{failure}");
        assert!(!failure.contains("may have been made"), "{failure}");
        assert!(!client.outcome_unknown, "exits 2, not 3");
        done.store(true, std::sync::atomic::Ordering::Release);
        drop(std::net::TcpStream::connect(addr).unwrap());
        server.join().unwrap();
    }

    /// An append the leader took and then went down without answering, after which only a
    /// follower answers (NOT_LEADER, naming the leader that is gone): given up on, it may be
    /// in the log, and the client says so (exit status 3, the ids to retry it with). The
    /// follower's NOT_LEADER used to erase what the leader's attempt left, and the client
    /// said this run had not sent the append: a script would send it again under new ids.
    #[test]
    fn an_append_a_lost_leader_took_is_reported_as_maybe_made_after_a_not_leader() {
        let leader = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let leader_addr = leader.local_addr().unwrap();
        // Takes one request whole and goes down without answering: connections are refused
        // from then on.
        let leader = std::thread::spawn(move || {
            let (stream, _) = leader.accept().unwrap();
            let mut input = BufReader::new(stream);
            let (op, _) = proto::read_message(&mut input, proto::REQUEST_BYTES_MAX)
                .unwrap()
                .unwrap();
            assert_eq!(op, proto::OP_APPEND);
        });
        let follower = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = follower.local_addr().unwrap();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let answered = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let server = {
            let (done, answered) = (done.clone(), answered.clone());
            std::thread::spawn(move || {
                while let Ok((stream, _)) = follower.accept() {
                    if done.load(std::sync::atomic::Ordering::Acquire) {
                        return;
                    }
                    let mut input = BufReader::new(stream.try_clone().unwrap());
                    let mut output = stream;
                    while let Ok(Some(_)) =
                        proto::read_message(&mut input, proto::REQUEST_BYTES_MAX)
                    {
                        let mut body = 2u64.to_le_bytes().to_vec();
                        body.extend_from_slice(leader_addr.to_string().as_bytes());
                        proto::write_message(&mut output, proto::NOT_LEADER, &body).unwrap();
                        answered.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                    }
                }
            })
        };
        let mut client = Client::new(addr, Duration::from_millis(1500));
        let failure = append_one(&mut client, 7, 9, b"debit 100").unwrap_err();
        leader.join().unwrap();
        assert!(
            answered.load(std::sync::atomic::Ordering::Acquire) >= 2,
            "the follower answered NOT_LEADER after the leader was gone"
        );
        assert!(failure.starts_with(GAVE_UP), "{failure}");
        assert_maybe_made(&client, &failure);
        done.store(true, std::sync::atomic::Ordering::Release);
        drop(std::net::TcpStream::connect(addr).unwrap());
        server.join().unwrap();
    }

    /// What an append that may have been made reports: exit status 3, and the ids (7 and 9
    /// in these tests) to send it again under.
    fn assert_maybe_made(client: &Client, failure: &str) {
        assert!(client.outcome_unknown, "exits 3, not 2: {failure}");
        assert!(
            failure.contains("may or may not be in the log")
                && failure.contains("--client-id 7 --request-id 9"),
            "{failure}"
        );
    }

    /// A node (the address returned) that names a leader which takes one request whole and
    /// goes down without answering, then (asked again) names a stranger that answers with a
    /// status the protocol does not have. The thread returned ends once all three were called.
    fn names_a_lost_leader_then_a_stranger() -> (std::thread::JoinHandle<()>, SocketAddr) {
        names_a_lost_leader_then_one_answering(9, b"")
    }

    /// The same with the second node answering `status` and `body`.
    fn names_a_lost_leader_then_one_answering(
        status: u8,
        body: &'static [u8],
    ) -> (std::thread::JoinHandle<()>, SocketAddr) {
        let leader = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let leader_addr = leader.local_addr().unwrap();
        let leader = std::thread::spawn(move || {
            let (stream, _) = leader.accept().unwrap();
            let mut input = BufReader::new(stream);
            proto::read_message(&mut input, proto::REQUEST_BYTES_MAX)
                .unwrap()
                .unwrap();
        });
        let stranger = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stranger_addr = stranger.local_addr().unwrap();
        let stranger = std::thread::spawn(move || {
            let (stream, _) = stranger.accept().unwrap();
            let mut input = BufReader::new(stream.try_clone().unwrap());
            let _ = proto::read_message(&mut input, proto::REQUEST_BYTES_MAX);
            proto::write_message(&mut &stream, status, body).unwrap();
        });
        let given = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = given.local_addr().unwrap();
        let given = std::thread::spawn(move || {
            for named in [leader_addr, stranger_addr] {
                let (stream, _) = given.accept().unwrap();
                let mut input = BufReader::new(stream.try_clone().unwrap());
                proto::read_message(&mut input, proto::REQUEST_BYTES_MAX)
                    .unwrap()
                    .unwrap();
                let mut body = 2u64.to_le_bytes().to_vec();
                body.extend_from_slice(named.to_string().as_bytes());
                proto::write_message(&mut &stream, proto::NOT_LEADER, &body).unwrap();
            }
            leader.join().unwrap();
            stranger.join().unwrap();
        });
        (given, addr)
    }

    /// An append a leader took before it went down, after which the node given names a leader
    /// at an address where something else answers (a wrong or stale `peer` line): the call
    /// ends there, but the append may be in the log, and the client says so (exit status 3,
    /// the ids to retry it with). It used to exit 2 without the ids, as if nothing was made.
    #[test]
    fn an_append_a_lost_leader_took_is_reported_as_maybe_made_after_a_stranger_answers() {
        let (given, addr) = names_a_lost_leader_then_a_stranger();
        let mut client = Client::new(addr, Duration::from_secs(10));
        let failure = append_one(&mut client, 7, 9, b"debit 100").unwrap_err();
        given.join().unwrap();
        assert!(failure.contains("does not have"), "{failure}");
        assert_maybe_made(&client, &failure);
    }

    /// An append a leader took before it went down, after which the leader the node given
    /// names next refuses it (ERROR: a smaller record limit there, say). The refusal says
    /// nothing of the first attempt, which may be in the log: exit status 3 and the ids to
    /// retry with. It exited 2, "not made", without them (found by review).
    #[test]
    fn an_append_a_lost_leader_took_is_reported_as_maybe_made_after_an_error() {
        let (given, addr) =
            names_a_lost_leader_then_one_answering(proto::ERROR, b"the record is too large");
        let mut client = Client::new(addr, Duration::from_secs(10));
        let failure = append_one(&mut client, 7, 9, b"debit 100").unwrap_err();
        given.join().unwrap();
        assert!(failure.contains("the record is too large"), "{failure}");
        assert_maybe_made(&client, &failure);
    }

    /// An ERROR to the first attempt is a plain refusal: nothing was made (exit 2).
    #[test]
    fn an_append_refused_at_once_is_not_made() {
        let node = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = node.local_addr().unwrap();
        let node = std::thread::spawn(move || {
            let (stream, _) = node.accept().unwrap();
            let mut input = BufReader::new(stream.try_clone().unwrap());
            proto::read_message(&mut input, proto::REQUEST_BYTES_MAX)
                .unwrap()
                .unwrap();
            proto::write_message(&mut &stream, proto::ERROR, b"the record is too large").unwrap();
        });
        let mut client = Client::new(addr, Duration::from_secs(10));
        let failure = append_one(&mut client, 7, 9, b"debit 100").unwrap_err();
        node.join().unwrap();
        assert!(failure.contains("the record is too large"), "{failure}");
        // Naming the node that refused (until 2026-12-07 it did not).
        assert!(failure.contains(&addr.to_string()), "{failure}");
        assert!(!client.outcome_unknown, "exits 2, not 3: {failure}");
    }

    /// The same path for a READ: a read that fails is a failed read (exit 2), never an
    /// outcome unknown (exit 3, which says an append or a change may have been made).
    #[test]
    fn a_read_ended_by_a_stranger_after_a_lost_leader_is_a_failed_read() {
        let (given, addr) = names_a_lost_leader_then_a_stranger();
        let mut client = Client::new(addr, Duration::from_secs(10));
        let body = [
            &0u64.to_le_bytes()[..],
            &1u32.to_le_bytes(),
            &[proto::READ_STALE],
        ]
        .concat();
        let failure = client.call_leader(proto::OP_READ, &body).unwrap_err();
        given.join().unwrap();
        assert!(failure.contains("does not have"), "{failure}");
        assert!(!client.outcome_unknown, "exits 2, not 3: {failure}");
    }

    /// An answer trickled in a byte at a time ends the call at its timeout, not once the last
    /// byte came: the timeout bounded each read, and each byte arrived within it.
    #[test]
    fn a_trickled_answer_ends_the_call_at_its_timeout() {
        let node = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = node.local_addr().unwrap();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let server = {
            let done = done.clone();
            std::thread::spawn(move || {
                let (stream, _) = node.accept().unwrap();
                let mut input = BufReader::new(stream.try_clone().unwrap());
                let mut output = stream;
                proto::read_message(&mut input, proto::REQUEST_BYTES_MAX)
                    .unwrap()
                    .unwrap();
                let mut answer = Vec::new();
                proto::write_message(&mut answer, proto::OK, b"{\"role\":\"leader\"}").unwrap();
                // A byte every 200 ms: 4.6 s for the whole answer.
                for byte in answer {
                    if done.load(std::sync::atomic::Ordering::Acquire)
                        || std::io::Write::write_all(&mut output, &[byte]).is_err()
                    {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            })
        };
        let mut client = Client::new(addr, Duration::from_secs(1));
        let started = Instant::now();
        let outcome = client.call_here(proto::OP_STATUS, &[]);
        let took = started.elapsed();
        done.store(true, std::sync::atomic::Ordering::Release);
        let failure = outcome.unwrap_err();
        assert!(failure.contains("in time"), "{failure}");
        assert!(took < Duration::from_secs(3), "took {took:?}");
        server.join().unwrap();
    }

    /// `status` asks the node again after a RETRY (its connection limit) and after a closed
    /// connection, and ends at its timeout naming the last answer.
    #[test]
    fn status_is_asked_again_after_retry_or_a_closed_connection() {
        let node = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = node.local_addr().unwrap();
        let node = std::thread::spawn(move || {
            // First connection: RETRY, then closed before the next answer. Second: OK. Then
            // RETRY until the client stops asking.
            let mut answers = 0;
            for (stream, _) in node.incoming().map(|s| (s.unwrap(), ())) {
                let mut input = BufReader::new(stream.try_clone().unwrap());
                let mut output = stream;
                while let Ok(Some((op, _))) =
                    proto::read_message(&mut input, proto::REQUEST_BYTES_MAX)
                {
                    assert_eq!(op, proto::OP_STATUS);
                    answers += 1;
                    match answers {
                        1 => proto::write_message(&mut output, proto::RETRY, b"full").unwrap(),
                        2 => break,
                        3 => proto::write_message(&mut output, proto::OK, b"{}").unwrap(),
                        _ => proto::write_message(&mut output, proto::RETRY, b"full").unwrap(),
                    }
                }
                if answers > 3 {
                    return answers;
                }
            }
            unreachable!("the listener ended")
        });
        let mut client = Client::new(addr, Duration::from_secs(20));
        assert_eq!(client.call_here(proto::OP_STATUS, &[]).unwrap(), b"{}");
        client.timeout = Duration::from_millis(300);
        let failure = client.call_here(proto::OP_STATUS, &[]).unwrap_err();
        assert!(
            failure.starts_with(GAVE_UP) && failure.ends_with("answered RETRY: full"),
            "{failure}"
        );
        drop(client);
        assert!(node.join().unwrap() > 4, "not asked again after RETRY");
    }

    /// A RETRY answer is asked again (a read during an election, say), not the end.
    #[test]
    fn a_call_answered_retry_is_asked_again_until_answered() {
        let (addr, node) = fake_node(move |mut input, mut output| {
            for answer in 0..3 {
                let (op, _) = proto::read_message(&mut input, proto::REQUEST_BYTES_MAX)
                    .unwrap()
                    .unwrap();
                assert_eq!(op, proto::OP_READ);
                if answer < 2 {
                    proto::write_message(&mut output, proto::RETRY, b"no leader yet").unwrap();
                } else {
                    proto::write_message(&mut output, proto::OK, &0u32.to_le_bytes()).unwrap();
                }
            }
        });
        let mut client = Client::new(addr, Duration::from_secs(20));
        let reply = client.call_leader(proto::OP_READ, &[0; 13]).unwrap();
        assert_eq!(reply, 0u32.to_le_bytes());
        node.join().unwrap();
    }

    /// A membership change answered NOT_MADE (the node proposed nothing: busy, stopping) is
    /// sent again, though a change is never sent twice after a RETRY; one answered NOT_MADE
    /// until the timeout gives up saying it was not made (exit status 2, not 3). Before
    /// NOT_MADE the node answered RETRY, and the call ended at once, "outcome unknown".
    #[test]
    fn a_membership_change_answered_not_made_is_sent_again() {
        let node = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = node.local_addr().unwrap();
        let node = std::thread::spawn(move || {
            let mut answered = 0;
            // The first call: two NOT_MADE, then made. The second: NOT_MADE until it ends. As
            // a node does, each NOT_MADE closes its connection; a connection that ends before
            // its first request ends the test's node.
            loop {
                let (stream, _) = node.accept().unwrap();
                let mut input = BufReader::new(stream.try_clone().unwrap());
                let mut output = stream;
                let mut served = 0;
                loop {
                    let Ok(Some((op, _))) =
                        proto::read_message(&mut input, proto::REQUEST_BYTES_MAX)
                    else {
                        if served == 0 {
                            return answered;
                        }
                        break;
                    };
                    assert_eq!(op, proto::OP_MEMBERSHIP);
                    answered += 1;
                    served += 1;
                    if answered == 3 {
                        proto::write_message(&mut output, proto::OK, &42u64.to_le_bytes()).unwrap();
                    } else {
                        proto::write_message(&mut output, proto::NOT_MADE, b"busy").unwrap();
                        break;
                    }
                }
            }
        });
        let mut client = Client::new(addr, Duration::from_secs(20));
        let reply = client
            .call_leader_once(proto::OP_MEMBERSHIP, &[0; 9])
            .unwrap();
        assert_eq!(reply, 42u64.to_le_bytes());
        client.timeout = Duration::from_millis(400);
        let failure = client
            .call_leader_once(proto::OP_MEMBERSHIP, &[0; 9])
            .unwrap_err();
        // The last answer, or (when the time ran out between an attempt's connection and its
        // request) that no answer came in time.
        assert!(
            failure.starts_with(GAVE_UP)
                && (failure.ends_with("busy") || failure.ends_with("in time")),
            "{failure}"
        );
        assert!(!failure.contains("may have been made"), "{failure}");
        // The last answer names the node that gave it (until 2026-12-07 it did not).
        assert!(
            failure.contains(&format!("{addr} answered NOT_MADE: busy"))
                || failure.ends_with("in time"),
            "{failure}"
        );
        assert!(!client.outcome_unknown, "exits 2, not 3");
        drop(client);
        // Ends the test's node (which may have ended already).
        let _ = std::net::TcpStream::connect(addr);
        assert!(
            node.join().unwrap() > 4,
            "the second call was not sent again"
        );
    }

    /// A node at its connection limit answers a membership change NOT_MADE and closes the
    /// connection; the change is sent again on a new one. Sent again on the closed one (until
    /// 2026-12-07, found by review), it failed after it was written, and the call ended "may
    /// have been made" (exit 3) for a change never made.
    #[test]
    fn a_membership_change_turned_away_is_sent_again_on_a_new_connection() {
        membership_change_made_at_last(vec![
            (proto::NOT_MADE, b"at capacity".to_vec()),
            (proto::NOT_MADE, b"at capacity".to_vec()),
            (proto::OK, 42u64.to_le_bytes().to_vec()),
        ]);
    }

    /// A membership change answered NOT_LEADER with no leader known (an election, a leader
    /// stopping), by a node that then closes the connection: the change goes again on a new
    /// one. Sent again on the old one (found by review on 2026-12-08), it failed after it was
    /// written, and the call ended "may have been made" (exit 3) for a change no node read.
    #[test]
    fn a_membership_change_after_a_not_leader_goes_on_a_new_connection() {
        membership_change_made_at_last(vec![
            // No leader known: leader 0, no address.
            (proto::NOT_LEADER, 0u64.to_le_bytes().to_vec()),
            (proto::OK, 7u64.to_le_bytes().to_vec()),
        ]);
    }

    /// A membership change sent through a follower to a leader that takes longer than the 5 s
    /// a followed leader's attempt gets: the change is sent once only, so the client waits for
    /// its answer until its own timeout. It gave up as "may have been made" at 5 s (found by
    /// review on 2026-12-08).
    #[test]
    fn a_membership_change_waits_for_a_slow_leader_until_its_timeout() {
        let (leader_addr, leader) = fake_node(move |input, output| {
            let (op, _) = proto::read_message(input, proto::REQUEST_BYTES_MAX)
                .unwrap()
                .unwrap();
            assert_eq!(op, proto::OP_MEMBERSHIP);
            std::thread::sleep(FOLLOWED_LEADER_PATIENCE + Duration::from_secs(1));
            proto::write_message(output, proto::OK, &9u64.to_le_bytes()).unwrap();
        });
        let (follower_addr, follower) = fake_node(move |input, output| {
            let (op, _) = proto::read_message(input, proto::REQUEST_BYTES_MAX)
                .unwrap()
                .unwrap();
            assert_eq!(op, proto::OP_MEMBERSHIP);
            let mut body = 2u64.to_le_bytes().to_vec();
            body.extend_from_slice(leader_addr.to_string().as_bytes());
            proto::write_message(output, proto::NOT_LEADER, &body).unwrap();
        });
        let mut client = Client::new(follower_addr, Duration::from_secs(30));
        let reply = client.call_leader_once(proto::OP_MEMBERSHIP, &[0; 9]);
        assert_eq!(reply, Ok(9u64.to_le_bytes().to_vec()));
        assert!(!client.outcome_unknown);
        follower.join().unwrap();
        leader.join().unwrap();
    }

    /// An append or a change answered OK (made) with a body too short to parse exits 3, not 2
    /// (which says "not made": a script would send the append again under new ids), and the
    /// message names the node.
    #[test]
    fn an_ok_answer_that_does_not_parse_is_made_not_failed() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // Two connections: a membership change goes on a new one.
        let node = std::thread::spawn(move || {
            for _ in 0..2 {
                let (stream, _) = listener.accept().unwrap();
                let mut input = BufReader::new(stream.try_clone().unwrap());
                let mut output = stream;
                // An APPEND's answer without its epoch, a MEMBERSHIP's with half its LSN.
                while let Ok(Some((op, _))) =
                    proto::read_message(&mut input, proto::REQUEST_BYTES_MAX)
                {
                    let body = match op {
                        proto::OP_APPEND => &5u64.to_le_bytes()[..],
                        _ => &[1, 2, 3, 4][..],
                    };
                    proto::write_message(&mut output, proto::OK, body).unwrap();
                }
            }
        });
        let mut client = Client::new(addr, Duration::from_secs(20));
        let failure = append_one(&mut client, 7, 9, b"data").unwrap_err();
        assert!(client.outcome_unknown, "exits 3, not 2: {failure}");
        assert!(
            failure.contains(&addr.to_string()) && failure.contains("the append was made"),
            "{failure}"
        );
        assert!(
            failure.contains("--client-id 7 --request-id 9"),
            "{failure}"
        );
        client.outcome_unknown = false;
        let arguments = parse(["add-voter", "3"].map(OsString::from).to_vec())
            .unwrap()
            .unwrap();
        let failure = membership(&mut client, proto::MEMBERSHIP_ADD_VOTER, &arguments).unwrap_err();
        assert!(client.outcome_unknown, "exits 3, not 2: {failure}");
        assert!(failure.contains("the change was made"), "{failure}");
        drop(client);
        node.join().unwrap();
    }

    /// A READ answer is parsed whole: records it does not hold, or bytes after the last one
    /// (another version of the message), fail it, naming the node; nothing of it is printed.
    #[test]
    fn a_read_answer_that_does_not_parse_is_refused_whole_naming_the_node() {
        let record = |lsn: u64, data: &[u8]| {
            let mut r = [lsn.to_le_bytes(), 2u64.to_le_bytes()].concat();
            r.extend_from_slice(&(data.len() as u32).to_le_bytes());
            r.extend_from_slice(data);
            r
        };
        let two = [&2u32.to_le_bytes()[..], &record(7, b"a"), &record(8, b"bc")].concat();
        let parsed = read_answer(&two).unwrap();
        assert_eq!(parsed, [(7, 2, &b"a"[..]), (8, 2, &b"bc"[..])]);
        let trailing = [&two[..], &[0]].concat();
        let e = read_answer(&trailing).unwrap_err();
        assert!(
            e.contains("bytes left over after the fields of the READ answer: 1"),
            "{e}"
        );
        let short = [&3u32.to_le_bytes()[..], &record(7, b"a"), &record(8, b"bc")].concat();
        let e = read_answer(&short).unwrap_err();
        assert!(e.contains("ends before its lsn"), "{e}");

        let (addr, node) = fake_node(move |mut input, mut output| {
            if let Ok(Some(_)) = proto::read_message(&mut input, proto::REQUEST_BYTES_MAX) {
                proto::write_message(&mut output, proto::OK, &trailing).unwrap();
            }
        });
        let mut client = Client::new(addr, Duration::from_secs(20));
        let arguments = parse(["read"].map(OsString::from).to_vec())
            .unwrap()
            .unwrap();
        let e = read(&mut client, &arguments).unwrap_err();
        assert!(
            e.starts_with(&format!(
                "{addr} answered READ with a message that does not parse"
            )),
            "{e}"
        );
        drop(client);
        node.join().unwrap();
    }

    /// A name that resolves to several addresses (`localhost`: `::1`, then `127.0.0.1`) is
    /// served at the first that takes a connection, not at the first given only: a refused
    /// connection moves on to the next, for a request that follows the leader and for
    /// `status` alike.
    #[test]
    fn the_resolved_addresses_are_tried_in_turn() {
        let dead = closed_port();
        let node = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let live = node.local_addr().unwrap();
        let node = std::thread::spawn(move || {
            for _ in 0..3 {
                let (stream, _) = node.accept().unwrap();
                let mut input = BufReader::new(stream.try_clone().unwrap());
                let mut output = stream;
                let (op, _) = proto::read_message(&mut input, proto::REQUEST_BYTES_MAX)
                    .unwrap()
                    .unwrap();
                let body = if op == proto::OP_STATUS {
                    &b"{}"[..]
                } else {
                    &[0; 4][..]
                };
                proto::write_message(&mut output, proto::OK, body).unwrap();
            }
        });
        let mut client = Client::at_any(vec![dead, live], Duration::from_secs(20));
        assert_eq!(client.call_here(proto::OP_STATUS, &[]).unwrap(), b"{}");
        // An address that drops connection attempts (a listener whose queue is full, as an
        // address behind a firewall) is given up on after a second, not after the timeout.
        let full = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut filling = Vec::new();
        while let Ok(stream) =
            TcpStream::connect_timeout(&full.local_addr().unwrap(), Duration::from_millis(200))
        {
            filling.push(stream);
            assert!(filling.len() < 10_000, "the listener's queue never filled");
        }
        let mut client = Client::at_any(
            vec![full.local_addr().unwrap(), live],
            Duration::from_secs(20),
        );
        let started = Instant::now();
        assert_eq!(client.call_here(proto::OP_STATUS, &[]).unwrap(), b"{}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        drop((filling, full));
        let mut client = Client::at_any(vec![dead, dead, live], Duration::from_secs(20));
        let reply = client.call_leader(proto::OP_READ, &[0; 13]).unwrap();
        assert_eq!(reply, [0; 4]);
        node.join().unwrap();
    }

    /// A followed leader's attempt allows for the upload of its request.
    #[test]
    fn a_followed_leader_gets_time_for_the_upload() {
        assert_eq!(followed_leader_patience(0), FOLLOWED_LEADER_PATIENCE);
        assert_eq!(
            followed_leader_patience(16 << 20),
            FOLLOWED_LEADER_PATIENCE + Duration::from_secs(16)
        );
    }

    #[test]
    fn only_an_append_given_up_on_names_the_ids_that_retry_it() {
        let gave_up = retry_hint(format!("{GAVE_UP} 30s: no leader"), false, true, 7, 9);
        assert!(
            gave_up.ends_with("--client-id 7 --request-id 9"),
            "{gave_up}"
        );
        let refused = "a request id must not be reused for other data".to_string();
        assert_eq!(retry_hint(refused.clone(), false, true, 7, 9), refused);
    }

    /// An append that no attempt wrote to a connection was not sent by this run, and is said
    /// not to be (the hint used to say this run may have written it); the ids that retry it
    /// are named for the case where an earlier run did.
    #[test]
    fn an_append_never_written_is_said_not_sent_by_this_run() {
        let never = retry_hint(format!("{GAVE_UP} 1s: cannot connect"), false, false, 7, 9);
        assert!(
            never.contains("this run did not send the append"),
            "{never}"
        );
        assert!(!never.contains("may or may not"), "{never}");
        assert!(never.contains("--client-id 7 --request-id 9"), "{never}");
    }

    #[test]
    fn each_command_refuses_the_flags_and_words_it_does_not_use() {
        let words = |w: &[&str]| w.iter().map(OsString::from).collect::<Vec<_>>();
        let e = check_arguments("read", &[], &words(&["3"])).unwrap_err();
        assert!(e.contains("read takes no word, and \"3\" was given"), "{e}");
        assert!(e.contains("--from"), "{e}");
        let e = check_arguments("status", &[], &words(&["extra"])).unwrap_err();
        assert!(e.contains("\"extra\""), "{e}");
        let e = check_arguments("append", &["--count"], &words(&["x"])).unwrap_err();
        assert_eq!(e, "append does not take --count (it is a flag of load)");
        let e = check_arguments("read", &["--client-id"], &[]).unwrap_err();
        assert!(e.contains("a flag of append and load"), "{e}");
        let e = check_arguments("append", &[], &words(&["a", "b"])).unwrap_err();
        assert!(e.contains("\"b\" is a second word"), "{e}");
        assert_eq!(
            check_arguments("append", &[], &[]).unwrap_err(),
            "append needs DATA"
        );
        check_arguments("append", &["--client-id", "--request-id"], &words(&["x"])).unwrap();
        check_arguments("load", &["--count", "--size", "--request-id"], &[]).unwrap();
        check_arguments("read", &["--from", "--max", "--linearizable"], &[]).unwrap();
        check_arguments("status", &[], &[]).unwrap();
        assert!(check_arguments("bogus", &[], &[])
            .unwrap_err()
            .starts_with("unknown client command \"bogus\""));
    }

    /// Each record is one line of `read`'s output, whatever its bytes.
    #[test]
    fn a_record_is_printed_escaped_on_one_line() {
        let line = record_line(b"real\n99 9 forged\x1b[2J\xff \\'\"").to_string();
        assert_eq!(line, r#"real\n99 9 forged\x1b[2J\xff \\\'\""#);
        assert_eq!(record_line(b"hello world").to_string(), "hello world");
    }

    #[test]
    fn load_records_are_padded_to_any_size() {
        assert_eq!(load_record(42, 5), "00042");
        assert_eq!(load_record(123456, 3), "123456");
        // Past the 65 535 bytes a format width takes.
        let big = load_record(7, 70_000);
        assert_eq!(big.len(), 70_000);
        assert!(big.ends_with("07") && big.starts_with("000"));
    }
}
