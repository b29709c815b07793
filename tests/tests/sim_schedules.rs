//! Thousands of seeded random schedules on the simulated disk: appends, batches, commits,
//! truncations, reads, maintenance, checkpoints with snapshots, compactions, resets to a
//! snapshot (what a replica that is sent one does), failed syncs and
//! writes, full disks, crashes that keep an arbitrary subset of unsynced sectors (between calls,
//! or inside one: at a write or a sync that panics), bit flips, and recoveries that fail part
//! way (a failed write, sync or creation; then perhaps a crash) before one succeeds.
//! After every recovery the log must hold every acknowledged record from its first retained LSN
//! on, byte for byte, in order, and nothing that was never appended; the latest acknowledged
//! checkpoint (or one whose outcome was unknown) with its snapshot's exact bytes; and no record
//! after that checkpoint compacted away. A bit flip in a record at or below the control file's
//! watermark must be reported as corruption, never returned as data.
//!
//! `RWAL_SIM_SEEDS=N` runs N seeds (default 2000); `RWAL_SIM_SEED=S` replays one.

use rwal_tests::rounds;
use rwal_wal::rng::Rng;
use rwal_wal::{record, segment, Backend, Error, Options, RecoveryMode, SimDisk, Wal};

struct Schedule {
    seed: u64,
    rng: Rng,
    disk: SimDisk,
    wal: Option<Wal>,
    /// Every record appended and not cut, by LSN - 1.
    model: Vec<Vec<u8>>,
    /// Every record up to this LSN was acknowledged durable.
    acked: u64,
    /// The control file's watermark is at least this (after a maintain or a clean open).
    control_watermark: u64,
    /// The latest checkpoint acknowledged: its LSN and snapshot.
    checkpoint: Option<(u64, Vec<u8>)>,
    /// A later checkpoint whose call failed: it may or may not have taken effect.
    checkpoint_unsure: Option<(u64, Vec<u8>)>,
    /// A reset whose call failed and poisoned the log: its LSN and snapshot. The crash that
    /// follows leaves the old log or the reset one.
    reset_unsure: Option<(u64, Vec<u8>)>,
    crashes: u32,
    /// Draws the failures of recoveries (`fail_recoveries`). A generator of its own: the
    /// schedule's other draws stay what they were before recoveries failed.
    recovery_rng: Rng,
    /// Recoveries that failed on the failure armed for them.
    failed_recoveries: u32,
    /// Draws the crashes inside a call (`arm_crash_inside_a_call`); a generator of its own too.
    stop_rng: Rng,
    /// A panic is armed at the disk's next write or sync: the call that meets it stops there,
    /// and the machine crashes.
    crash_armed: bool,
    /// How many writes and syncs the panic armed still let through when the step in progress
    /// began (`SimDisk::panic_after_left`): a crash in the step came that deep inside its call.
    crash_left_at_step: Option<u64>,
    /// What the call in progress may have left half done if it stops inside: a truncation's
    /// cut, a checkpoint, a reset (`interrupted`).
    in_flight: Option<InFlight>,
    /// Crashes inside a call.
    crashes_inside_calls: u32,
    /// Records of an append stopped half way, which the next recovery may find (a prefix).
    maybe_appended: Vec<Vec<u8>>,
}

/// A change that a crash inside its call may leave done or not.
enum InFlight {
    /// Records being appended: a crash may keep a prefix of them (as of any records not
    /// committed yet), though the call never returned their LSNs.
    Append(Vec<Vec<u8>>),
    Truncation(u64),
    Checkpoint(u64, Vec<u8>),
    Reset(u64, Vec<u8>),
}

/// Recoveries that found records of an append stopped half way (for the test's summary).
static STOPPED_APPENDS_FOUND: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Crashes inside a call met past the call's own seventh write or sync (until 2026-12-06 none
/// was armed there; until the evening, past the seventh since it was armed, in that call or in
/// earlier ones).
static DEEP_CRASHES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Opens stopped by a crash in the middle of their recovery (`crash_inside_an_open`).
static RECOVERIES_CRASHED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn options(disk: &SimDisk) -> Options {
    Options::new()
        .backend(Backend::Simulated(disk.clone()))
        .segment_bytes(1 << 20)
        .background_threads(false)
}

impl Schedule {
    fn new(seed: u64) -> Schedule {
        let disk = SimDisk::new();
        let wal = Wal::open("/sim", options(&disk)).unwrap();
        Schedule {
            seed,
            rng: Rng::new(seed),
            disk,
            wal: Some(wal),
            model: Vec::new(),
            acked: 0,
            control_watermark: 0,
            checkpoint: None,
            checkpoint_unsure: None,
            reset_unsure: None,
            crashes: 0,
            recovery_rng: Rng::new(seed ^ 0x0bec_0e12),
            failed_recoveries: 0,
            stop_rng: Rng::new(seed ^ 0x57a1_1ca1),
            crash_armed: false,
            crash_left_at_step: None,
            in_flight: None,
            crashes_inside_calls: 0,
            maybe_appended: Vec::new(),
        }
    }

    /// The latest checkpoint's LSN (0: none): no cut may go below it, nothing after it is
    /// compacted.
    fn checkpoint_lsn(&self) -> u64 {
        self.checkpoint.as_ref().map_or(0, |(lsn, _)| *lsn)
    }

    fn wal(&self) -> &Wal {
        self.wal.as_ref().expect("open")
    }

    fn payload(&mut self) -> Vec<u8> {
        let len = match self.rng.below(20) {
            0 => self.rng.below(400 << 10) as usize,
            1..=3 => 0,
            _ => self.rng.below(2000) as usize,
        };
        let mut bytes = vec![0u8; len];
        self.rng.fill(&mut bytes);
        bytes
    }

    fn step(&mut self) {
        self.settle_checkpoint();
        if !self.crash_armed && self.stop_rng.one_in(25) {
            self.arm_crash_inside_a_call();
        }
        self.crash_left_at_step = self.disk.panic_after_left();
        let stepped =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.step_unguarded()));
        if let Err(panic) = stepped {
            self.crashed_inside_a_call(panic);
        }
        self.in_flight = None;
    }

    /// Arms a panic at the disk's next write, its next sync, or a later write or sync (deeper
    /// inside a call that writes and syncs several times: a checkpoint, a truncation, a
    /// reset; or in a later call). Most of the later ones among the next six, one in four
    /// among the next 48: a checkpoint of a large snapshot writes and syncs more than six
    /// times (until 2026-12-06 no crash came past the seventh step).
    fn arm_crash_inside_a_call(&mut self) {
        match self.stop_rng.below(3) {
            0 => self.disk.panic_on_next_write(),
            1 => self.disk.panic_on_next_sync(),
            _ => {
                let reach = if self.stop_rng.one_in(4) { 48 } else { 6 };
                self.disk.panic_after(1 + self.stop_rng.below(reach))
            }
        }
        self.crash_armed = true;
    }

    /// A panic stopped a step's call: if it is the one armed (spent, with its text), the
    /// machine crashes there, after what the call may have left half done is noted as
    /// unsure; any other panic goes on.
    fn crashed_inside_a_call(&mut self, panic: Box<dyn std::any::Any + Send>) {
        let ours = SimDisk::is_armed_panic(panic.as_ref());
        if !(ours && self.crash_armed && !self.disk.has_armed_panic()) {
            std::panic::resume_unwind(panic);
        }
        self.interrupted();
        self.crashes_inside_calls += 1;
        if self.crash_left_at_step.is_some_and(|left| left >= 7) {
            DEEP_CRASHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.crash();
    }

    /// The call in progress stopped or failed half way: its change may or may not take
    /// effect at the crash that follows.
    fn interrupted(&mut self) {
        match self.in_flight.take() {
            // Only the records up to the cut are certain (recovery finishes a declared cut).
            Some(InFlight::Truncation(cut)) => self.acked = self.acked.min(cut),
            Some(InFlight::Checkpoint(lsn, snapshot)) => {
                self.checkpoint_unsure = Some((lsn, snapshot))
            }
            Some(InFlight::Reset(lsn, snapshot)) => self.reset_unsure = Some((lsn, snapshot)),
            Some(InFlight::Append(records)) => self.maybe_appended = records,
            None => {}
        }
    }

    /// What an append (`op`) of the records in flight returned: on success they join the
    /// model; a full disk appends none; a poisoned log may have kept a prefix of them.
    fn appended(&mut self, op: &str, appended: Result<u64, Error>) {
        match appended {
            Ok(first) => {
                assert_eq!(first, self.model.len() as u64 + 1, "seed {}", self.seed);
                let Some(InFlight::Append(records)) = self.in_flight.take() else {
                    unreachable!()
                };
                self.model.extend(records);
            }
            Err(Error::NoSpace { .. }) => self.in_flight = None,
            Err(e) if is_poison(&e) => {
                self.interrupted();
                self.crash();
            }
            Err(e) => panic!("seed {}: {op}: {e}", self.seed),
        }
    }

    fn step_unguarded(&mut self) {
        let op = self.rng.below(112);
        if std::env::var_os("RWAL_SIM_TRACE").is_some() {
            let wal = self.wal();
            eprintln!(
                "op {op:>2}: model {} acked {} wm {} | last {} durable {}",
                self.model.len(),
                self.acked,
                self.control_watermark,
                wal.last_lsn(),
                wal.durable_lsn()
            );
        }
        match op {
            0..=34 => {
                let data = self.payload();
                self.in_flight = Some(InFlight::Append(vec![data]));
                let Some(InFlight::Append(records)) = &self.in_flight else {
                    unreachable!()
                };
                let appended = self.wal().append(&records[0]);
                self.appended("append", appended);
            }
            35..=44 => {
                let batch: Vec<Vec<u8>> =
                    (0..1 + self.rng.below(8)).map(|_| self.payload()).collect();
                self.in_flight = Some(InFlight::Append(batch));
                let Some(InFlight::Append(records)) = &self.in_flight else {
                    unreachable!()
                };
                let slices: Vec<&[u8]> = records.iter().map(|b| b.as_slice()).collect();
                let appended = self.wal().append_batch(&slices);
                self.appended("batch", appended);
            }
            45..=64 => {
                let last = self.model.len() as u64;
                match self.wal().commit(last) {
                    Ok(()) => self.acked = last,
                    Err(e) if is_poison(&e) => self.crash(),
                    Err(e) => panic!("seed {}: commit: {e}", self.seed),
                }
            }
            65..=69 => {
                let last = self.model.len() as u64;
                let cut = last - self.rng.below(last.min(30) + 1);
                if cut < self.checkpoint_lsn() {
                    match self.wal().truncate_after(cut) {
                        Err(Error::InvalidArgument { .. } | Error::Compacted { .. }) => {}
                        Err(e) if is_poison(&e) => self.crash(),
                        other => panic!(
                            "seed {}: truncate_after({cut}) below the checkpoint at {}: {other:?}",
                            self.seed,
                            self.checkpoint_lsn()
                        ),
                    }
                    return;
                }
                self.in_flight = Some(InFlight::Truncation(cut));
                match self.wal().truncate_after(cut) {
                    Ok(()) => {
                        self.in_flight = None;
                        self.model.truncate(cut as usize);
                        self.acked = self.acked.min(cut);
                        self.control_watermark = self.control_watermark.min(cut);
                    }
                    Err(e) if is_poison(&e) => {
                        // A truncation stopped half way may or may not take effect after a
                        // crash (recovery finishes it if it was declared).
                        self.interrupted();
                        self.crash();
                    }
                    Err(e) => panic!("seed {}: truncate_after({cut}): {e}", self.seed),
                }
            }
            70..=74 => match self.wal().maintain() {
                Ok(()) => self.control_watermark = self.wal().durable_lsn(),
                Err(Error::NoSpace { .. }) => {}
                Err(e) if is_poison(&e) => self.crash(),
                Err(e) => panic!("seed {}: maintain: {e}", self.seed),
            },
            75..=84 => self.check_reads(),
            85..=87 => self.disk.fail_sync_after(self.rng.below(3), libc::EIO),
            88 => self.disk.fail_next_write(libc::EIO),
            89 => self.disk.fail_next_create(libc::ENOSPC),
            90..=96 => self.crash(),
            97..=99 => self.flip_and_check(),
            100..=104 => self.take_checkpoint(),
            105..=107 => self.compact(),
            108..=109 => self.check_snapshot(),
            _ => self.reset_to_snapshot(),
        }
    }

    /// A checkpoint at a durable LSN not below the latest one, with a snapshot naming it.
    fn take_checkpoint(&mut self) {
        let durable = self.wal().durable_lsn();
        let low = self.checkpoint_lsn().max(1);
        if durable < low {
            return;
        }
        let lsn = low + self.rng.below(durable - low + 1);
        let mut snapshot = format!("state at {lsn}, seed {} ", self.seed).into_bytes();
        // Now and then a snapshot of several chunks.
        let extra = match self.rng.below(10) {
            0 => self.rng.below(3 << 20) as usize,
            _ => self.rng.below(3000) as usize,
        };
        let mut tail = vec![0u8; extra];
        self.rng.fill(&mut tail);
        snapshot.extend_from_slice(&tail);
        self.in_flight = Some(InFlight::Checkpoint(lsn, snapshot.clone()));
        let taken = self.wal().checkpoint(lsn, Some(&snapshot));
        self.in_flight = None;
        match taken {
            Ok(()) => {
                self.checkpoint = Some((lsn, snapshot));
                self.checkpoint_unsure = None;
            }
            Err(e) if is_poison(&e) => {
                self.checkpoint_unsure = Some((lsn, snapshot));
                self.crash();
            }
            // A failed write or a full disk before the control file named it: not taken, but
            // treated as unsure all the same (the test knows no more than a caller would).
            Err(Error::NoSpace { .. } | Error::Io { .. }) => {
                self.checkpoint_unsure = Some((lsn, snapshot));
            }
            Err(e) => panic!("seed {}: checkpoint({lsn}): {e}", self.seed),
        }
    }

    /// Replaces the log with "empty after LSN `lsn`", the state a snapshot: ahead of the log (a
    /// replica far behind), or inside it (one whose tail diverged).
    fn reset_to_snapshot(&mut self) {
        let last = self.model.len() as u64;
        let lsn = match self.rng.below(3) {
            0 => last.saturating_sub(self.rng.below(20)).max(1),
            _ => last + 1 + self.rng.below(40),
        };
        let unsure_lsn = self.checkpoint_unsure.as_ref().map(|(lsn, _)| *lsn);
        if lsn == self.checkpoint_lsn() || Some(lsn) == unsure_lsn {
            return;
        }
        let mut snapshot = format!("reset to {lsn}, seed {} ", self.seed).into_bytes();
        let mut tail = vec![0u8; self.rng.below(5000) as usize];
        self.rng.fill(&mut tail);
        snapshot.extend_from_slice(&tail);
        self.in_flight = Some(InFlight::Reset(lsn, snapshot.clone()));
        let reset = self.wal().reset_to_snapshot(lsn, 7, &snapshot);
        self.in_flight = None;
        match reset {
            Ok(()) => {
                self.adopt_reset(lsn, snapshot);
                let wal = self.wal();
                assert_eq!(
                    (wal.first_lsn(), wal.last_lsn(), wal.durable_lsn()),
                    (lsn + 1, lsn, lsn),
                    "seed {}",
                    self.seed
                );
            }
            Err(e) if is_poison(&e) => {
                self.reset_unsure = Some((lsn, snapshot));
                self.crash();
            }
            // Refused before the control file changed: the old log stands.
            Err(Error::NoSpace { .. } | Error::Io { .. }) => {}
            Err(e) => panic!("seed {}: reset_to_snapshot({lsn}): {e}", self.seed),
        }
    }

    /// The model of a log reset to a snapshot at `lsn`: records up to `lsn` are in the
    /// snapshot (placeholders, never read: the log starts after them), all of it durable.
    fn adopt_reset(&mut self, lsn: u64, snapshot: Vec<u8>) {
        self.model.resize(lsn as usize, Vec::new());
        self.model.truncate(lsn as usize);
        self.acked = lsn;
        self.control_watermark = lsn;
        self.checkpoint = Some((lsn, snapshot));
        self.checkpoint_unsure = None;
    }

    fn compact(&mut self) {
        match self.wal().compact_now() {
            Ok(report) => {
                assert_eq!(
                    report.first_lsn,
                    self.wal().first_lsn(),
                    "seed {}",
                    self.seed
                );
                self.settle_checkpoint();
                self.check_first_lsn(self.wal());
            }
            Err(e) if is_poison(&e) => self.crash(),
            Err(Error::NoSpace { .. } | Error::Io { .. }) => {}
            Err(e) => panic!("seed {}: compact_now: {e}", self.seed),
        }
    }

    /// Nothing after the latest checkpoint is compacted away.
    fn check_first_lsn(&self, wal: &Wal) {
        assert!(
            wal.first_lsn() <= self.checkpoint_lsn() + 1,
            "seed {}: first LSN {} past the checkpoint at {}",
            self.seed,
            wal.first_lsn(),
            self.checkpoint_lsn()
        );
    }

    /// Takes the unsure checkpoint for the acknowledged one if the log names its LSN and the
    /// acknowledged one's differs (a same-LSN one is told apart by its bytes, in
    /// `check_snapshot`).
    fn settle_checkpoint(&mut self) {
        let found = self.wal().latest_checkpoint().map(|c| c.lsn);
        let Some(unsure_lsn) = self.checkpoint_unsure.as_ref().map(|(lsn, _)| *lsn) else {
            return;
        };
        if found == Some(unsure_lsn) && self.checkpoint_lsn() != unsure_lsn {
            self.checkpoint = self.checkpoint_unsure.take();
        }
    }

    /// The log's latest checkpoint is the model's, with the same snapshot bytes (or, for an
    /// unsure checkpoint at the same LSN, that one's, which it then becomes).
    fn check_snapshot(&mut self) {
        self.settle_checkpoint();
        let wal = self.wal.as_ref().expect("open");
        let latest = wal.latest_checkpoint();
        assert_eq!(
            latest.as_ref().map(|c| c.lsn),
            self.checkpoint.as_ref().map(|(lsn, _)| *lsn),
            "seed {}",
            self.seed
        );
        let Some((lsn, bytes)) = self.checkpoint.as_ref() else {
            return;
        };
        let lsn = *lsn;
        let mut reader = match wal.open_snapshot() {
            Ok(reader) => {
                reader.unwrap_or_else(|| panic!("seed {}: no snapshot at {lsn}", self.seed))
            }
            Err(e) if is_poison(&e) => return,
            Err(e) => panic!("seed {}: open_snapshot: {e}", self.seed),
        };
        let mut read = Vec::new();
        std::io::Read::read_to_end(&mut reader, &mut read)
            .unwrap_or_else(|e| panic!("seed {}: reading the snapshot at {lsn}: {e}", self.seed));
        if read == *bytes {
            return;
        }
        let unsure_matches = self
            .checkpoint_unsure
            .as_ref()
            .is_some_and(|(unsure_lsn, unsure)| *unsure_lsn == lsn && read == *unsure);
        assert!(
            unsure_matches,
            "seed {}: the snapshot at {lsn} differs",
            self.seed
        );
        self.checkpoint = self.checkpoint_unsure.take();
    }

    fn check_reads(&mut self) {
        let durable = self.wal().durable_lsn();
        assert!(
            durable >= self.acked,
            "seed {}: durable {durable} < acked {}",
            self.seed,
            self.acked
        );
        let first = self.wal().first_lsn();
        if durable < first {
            return;
        }
        let from = first + self.rng.below(durable - first + 1);
        let mut reader = match self.wal().reader(from) {
            Ok(reader) => reader,
            Err(e) if is_poison(&e) => return,
            Err(e) => panic!("seed {}: reader({from}): {e}", self.seed),
        };
        for _ in 0..20 {
            match reader.next() {
                Ok(Some(record)) => {
                    assert!(record.lsn <= durable);
                    assert_eq!(
                        record.data,
                        &self.model[record.lsn as usize - 1][..],
                        "seed {} lsn {}",
                        self.seed,
                        record.lsn
                    );
                }
                Ok(None) => break,
                Err(e) if is_poison(&e) => break,
                Err(e) => panic!("seed {}: reader: {e}", self.seed),
            }
        }
    }

    /// Crashes, recovers, and checks the invariant.
    fn crash(&mut self) {
        self.crashes += 1;
        let crashed = self.disk.crash(self.rng.next_u64());
        // Disarmed before the old log is dropped: its close must not meet what is armed.
        self.disk.clear_faults();
        self.crash_armed = false;
        drop(self.wal.take());
        self.disk = crashed;
        self.fail_recoveries();
        self.reopen();
    }

    /// Now and then, opens that meet a failure armed for them before the one that succeeds:
    /// a write or a sync (file or directory) that fails, perhaps forgetting what it could not
    /// write, a file that cannot be created, or a crash in the middle of the open
    /// (`crash_inside_an_open`). An open either succeeds (the failure came
    /// where recovery needs no write, or not at all) or fails naming the failure, and either
    /// way leaves the disk so that a later recovery, after a crash or not, finds every
    /// acknowledged record (checked by `reopen`). What a failed open wrote and did not sync is
    /// what a crash then keeps or loses.
    fn fail_recoveries(&mut self) {
        while self.recovery_rng.one_in(3) {
            let rng = &mut self.recovery_rng;
            let errno = if rng.one_in(3) {
                libc::ENOSPC
            } else {
                libc::EIO
            };
            let kind = rng.below(6);
            match kind {
                0 => self.disk.fail_sync_after(rng.below(4), libc::EIO),
                1 => self.disk.fail_next_sync_forgetting_writes(libc::EIO),
                2 => self.disk.fail_next_write(errno),
                3 => self.disk.fail_next_dir_sync(libc::EIO),
                4 => self.disk.fail_next_create(errno),
                _ => {
                    // Every write and sync an open was seen to make here: on 2026-12-06,
                    // armed as far as the 48th in 2 000 seeds, no crash came past the sixth
                    // (the opens armed further all succeeded).
                    let passing = rng.below(6);
                    self.crash_inside_an_open(passing);
                    continue;
                }
            }
            match Wal::open("/sim", options(&self.disk)) {
                // Dropped: its close, which syncs, may meet the failure if the open did not.
                Ok(wal) => {
                    // A failed sync is never passed over: what it should have made durable
                    // may not be. (A failed write or creation could be, if nothing needs it;
                    // none was in the runs so far.)
                    let met = !self.disk.has_armed_failure();
                    assert!(
                        !(met && matches!(kind, 0 | 1 | 3)),
                        "seed {}: an open met a failed sync and succeeded",
                        self.seed
                    );
                    drop(wal)
                }
                Err(e) => {
                    let named = matches!(e, Error::NoSpace { .. })
                        || ["(os error 5)", "(os error 28)"]
                            .iter()
                            .any(|code| e.to_string().contains(code));
                    assert!(
                        named,
                        "seed {}: an open that met a failed write or sync failed with another \
                         error: {e}",
                        self.seed
                    );
                    self.failed_recoveries += 1;
                }
            }
            self.disk.clear_faults();
            if self.recovery_rng.one_in(2) {
                self.disk = self.disk.crash(self.recovery_rng.next_u64());
            }
        }
    }

    /// Lets `passing` writes and file syncs of an open through and makes the next one panic,
    /// which stops the open there as a crash of the machine would stop its recovery; the
    /// machine then crashes with what the disk held. Whatever the stopped recovery left
    /// half done (a prepared segment, a control file written and not synced, a cut or a
    /// reset being finished), the next recovery must start from it and keep every
    /// acknowledged record (checked by the open that finally succeeds). An open that made
    /// fewer writes and syncs than that succeeds, and its log is closed.
    ///
    /// As in `crashed_inside_a_call`, the crash image is taken after the panic unwound. The
    /// open's unwinding drops what it built and writes and syncs nothing on the way out: the
    /// `Wal`, whose drop would close it (and sync), is built at the very end of the open.
    fn crash_inside_an_open(&mut self, passing: u64) {
        self.disk.panic_after(passing);
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Wal::open("/sim", options(&self.disk))
        }));
        match opened {
            Ok(Ok(wal)) => {
                assert!(
                    self.disk.has_armed_panic(),
                    "seed {}: an open met the panic armed for it and succeeded",
                    self.seed
                );
                // Disarmed first: its close is not the open, and must not meet it.
                self.disk.clear_faults();
                drop(wal);
                return;
            }
            // A sync that panicked, which the log turns into a failed sync.
            Ok(Err(e)) => assert!(
                e.to_string().contains(SimDisk::ARMED_PANIC) && !self.disk.has_armed_panic(),
                "seed {}: an open with a panic armed failed with: {e}",
                self.seed
            ),
            Err(panic) => {
                if !SimDisk::is_armed_panic(panic.as_ref()) || self.disk.has_armed_panic() {
                    std::panic::resume_unwind(panic);
                }
            }
        }
        RECOVERIES_CRASHED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.disk.clear_faults();
        self.crashes += 1;
        self.disk = self.disk.crash(self.recovery_rng.next_u64());
    }

    fn reopen(&mut self) {
        let wal = Wal::open("/sim", options(&self.disk))
            .unwrap_or_else(|e| panic!("seed {}: reopen: {e}", self.seed));
        if let Some((lsn, snapshot)) = self.reset_unsure.take() {
            // The reset took effect if the log names its checkpoint (no other checkpoint is at
            // that LSN: see `reset_to_snapshot`); then the log is exactly the reset one.
            if wal.latest_checkpoint().is_some_and(|c| c.lsn == lsn) {
                assert_eq!(
                    (wal.first_lsn(), wal.last_lsn()),
                    (lsn + 1, lsn),
                    "seed {}: a reset to {lsn} half done",
                    self.seed
                );
                self.adopt_reset(lsn, snapshot);
            }
        }
        let last = wal.last_lsn();
        // Records of an append stopped half way: the log may hold a prefix of them, which the
        // reader below compares as any other.
        let maybe = std::mem::take(&mut self.maybe_appended);
        let known = self.model.len() as u64;
        if last > known && last - known <= maybe.len() as u64 {
            self.model
                .extend(maybe.into_iter().take((last - known) as usize));
            STOPPED_APPENDS_FOUND.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        assert!(
            last >= self.acked,
            "seed {}: acknowledged LSN {} lost, log ends at {last}",
            self.seed,
            self.acked
        );
        assert!(
            last <= self.model.len() as u64,
            "seed {}: LSN {last} was never appended",
            self.seed
        );
        assert_eq!(wal.durable_lsn(), last);
        let mut expected = wal.first_lsn();
        let mut reader = wal.reader(expected).unwrap();
        while let Some(record) = reader.next().unwrap() {
            assert_eq!(record.lsn, expected, "seed {}", self.seed);
            assert_eq!(
                record.data,
                &self.model[expected as usize - 1][..],
                "seed {} lsn {expected}",
                self.seed
            );
            expected += 1;
        }
        assert_eq!(expected, last + 1, "seed {}", self.seed);
        drop(reader);
        self.model.truncate(last as usize);
        self.acked = last;
        self.control_watermark = last;
        self.wal = Some(wal);
        // The checkpoint: the acknowledged one, or a later one whose call failed; whichever
        // the log names, the unsure one is decided now.
        self.check_snapshot();
        self.checkpoint_unsure = None;
        self.check_first_lsn(self.wal());
    }

    /// Flips one bit inside a record at or below the control watermark; recovery must report
    /// corruption. Then repairs the schedule by reopening in point-in-time mode.
    fn flip_and_check(&mut self) {
        let watermark = self.control_watermark;
        // Above the checkpoint: records at or below it may be compacted away, and a lossy
        // recovery that ends below it resets the log to it.
        let floor = self.checkpoint_lsn();
        if watermark <= floor {
            return;
        }
        // Crash first, so the disk holds exactly what recovery will read.
        let crashed = self.disk.crash(self.rng.next_u64());
        self.disk.clear_faults();
        self.crash_armed = false;
        drop(self.wal.take());
        self.disk = crashed;
        let target = floor + 1 + self.rng.below(watermark - floor);
        let (name, offset, stored) = find_record(&self.disk, target)
            .unwrap_or_else(|| panic!("seed {}: record {target} not on disk", self.seed));
        let byte = offset + self.rng.below(stored);
        self.disk.flip_bit(&name, byte, self.rng.below(8) as u8);
        match Wal::open("/sim", options(&self.disk)) {
            Err(Error::Corrupted { lsn, .. }) => assert!(lsn <= target, "seed {}: corruption reported at {lsn}, flipped {target}", self.seed),
            Ok(wal) => panic!("seed {}: flipped bit in record {target} (watermark {watermark}) went unnoticed: last {}", self.seed, wal.last_lsn()),
            Err(e) => panic!("seed {}: {e}", self.seed),
        }
        let pit = options(&self.disk).recovery_mode(RecoveryMode::PointInTime);
        let wal = Wal::open("/sim", pit)
            .unwrap_or_else(|e| panic!("seed {}: point in time: {e}", self.seed));
        assert_eq!(wal.last_lsn(), target - 1, "seed {}", self.seed);
        drop(wal);
        self.acked = target - 1;
        self.model.truncate(target as usize - 1);
        self.reopen();
    }
}

fn is_poison(e: &Error) -> bool {
    matches!(e, Error::Poisoned { .. })
}

/// Finds record `lsn` in the segment files: (file, offset, stored bytes).
fn find_record(disk: &SimDisk, lsn: u64) -> Option<(String, u64, u64)> {
    for name in disk.file_names() {
        if segment::parse_file_name(&name).is_none() {
            continue;
        }
        let bytes = disk.read_file(&name)?;
        let header =
            segment::SegmentHeader::decode(bytes[..segment::HEADER_BYTES].try_into().ok()?).ok()?;
        let mut offset = segment::HEADER_REGION_BYTES as usize;
        while let Ok((h, _)) = record::decode(header.salt, &bytes[offset..]) {
            let stored = record::stored_len(h.payload_len as usize);
            if h.lsn == lsn {
                return Some((
                    name,
                    offset as u64,
                    (record::HEADER_BYTES + h.payload_len as usize) as u64,
                ));
            }
            offset += stored;
        }
    }
    None
}

/// What one schedule went through: crashes, recoveries that failed, crashes inside a call.
fn run(seed: u64) -> (u32, u32, u32) {
    let mut schedule = Schedule::new(seed);
    for _ in 0..150 {
        schedule.step();
    }
    // A clean close and reopen keeps everything appended.
    let appended = schedule.model.len() as u64;
    let wal = schedule.wal.take().unwrap();
    // A crash armed inside a call may stop the close too.
    let closed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| wal.close()));
    let closed = match closed {
        Ok(closed) => closed,
        Err(panic) => {
            schedule.crashed_inside_a_call(panic);
            return (
                schedule.crashes,
                schedule.failed_recoveries,
                schedule.crashes_inside_calls,
            );
        }
    };
    match closed {
        Ok(()) => {
            schedule.acked = appended;
            schedule.disk.clear_faults();
            schedule.reopen();
        }
        Err(e) if is_poison(&e) => schedule.crash(),
        Err(e) => panic!("seed {seed}: close: {e}"),
    }
    (
        schedule.crashes,
        schedule.failed_recoveries,
        schedule.crashes_inside_calls,
    )
}

#[test]
fn random_schedules_keep_every_acknowledged_record() {
    rwal_tests::quiet_armed_panics();
    if let Ok(seed) = std::env::var("RWAL_SIM_SEED") {
        run(seed.parse().expect("RWAL_SIM_SEED is a number"));
        return;
    }
    let seeds = rounds("RWAL_SIM_SEEDS", 2000);
    let (mut crashes, mut failed_recoveries, mut inside_calls) = (0, 0, 0);
    for seed in 0..seeds {
        let outcome = std::panic::catch_unwind(|| run(seed));
        match outcome {
            Ok((n, failed, inside)) => {
                crashes += n;
                failed_recoveries += failed;
                inside_calls += inside;
            }
            Err(panic) => {
                eprintln!("failing seed: {seed} (replay with RWAL_SIM_SEED={seed})");
                std::panic::resume_unwind(panic);
            }
        }
    }
    // The schedules did crash, many times: the invariant was checked, not skipped.
    assert!(
        u64::from(crashes) > seeds * 3,
        "{crashes} crashes in {seeds} seeds"
    );
    // And recoveries failed on the failures armed for them (after about a third of the crashes
    // in the runs so far; the bar is one in twenty).
    assert!(
        u64::from(failed_recoveries) * 20 > u64::from(crashes),
        "{failed_recoveries} failed recoveries in {crashes} crashes"
    );
    // And crashes came inside calls (in about one schedule in two in the runs so far).
    assert!(
        u64::from(inside_calls) * 10 > seeds,
        "{inside_calls} crashes inside a call in {seeds} seeds"
    );
    // And some recovery found records of an append stopped half way (69 in 2 000 seeds in the
    // run that set this): the model's acceptance of them was exercised.
    let found = STOPPED_APPENDS_FOUND.load(std::sync::atomic::Ordering::Relaxed);
    if seeds >= 1000 {
        assert!(found > 0, "no recovery found records of a stopped append");
    }
    // And crashes came in the middle of recoveries.
    let recoveries_crashed = RECOVERIES_CRASHED.load(std::sync::atomic::Ordering::Relaxed);
    if seeds >= 100 {
        assert!(
            recoveries_crashed > 0,
            "no crash came in the middle of a recovery"
        );
    }
    // And some crashes inside a call came past its seventh step.
    let deep = DEEP_CRASHES.load(std::sync::atomic::Ordering::Relaxed);
    if seeds >= 1000 {
        assert!(
            deep > 0,
            "no crash inside a call came past the seventh step"
        );
    }
    eprintln!(
        "{seeds} schedules, {crashes} crashes ({inside_calls} inside a call, {deep} of them past \
         its seventh step, {recoveries_crashed} inside a recovery; {found} recoveries found records of an append stopped half way), \
         {failed_recoveries} failed recoveries"
    );
}
