//! Read-only inspection of a log directory, for operators (`rwal inspect`, `rwal verify`): what
//! is there, and every record that fails verification, named by segment and offset. Nothing is
//! opened for writing, nothing is locked, nothing is repaired: it can run beside an open log
//! (seeing a moment's state) or on a copy.

use std::path::{Path, PathBuf};

use crate::control::{self, ControlState};
use crate::error::{Error, Result};
use crate::record::{self, Invalid, RecordKind};
use crate::segment::{self, HeaderError, SegmentHeader, HEADER_REGION_BYTES};
use crate::Lsn;

/// What a directory holds.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// The directory.
    pub dir: PathBuf,
    /// The newest valid control-file copy: its generation and contents.
    pub control: Option<(u64, ControlState)>,
    /// Which of the two control copies verify.
    pub control_copies_valid: [bool; 2],
    /// Every segment file, in log order.
    pub segments: Vec<SegmentInfo>,
    /// Every problem found, in log order.
    pub problems: Vec<Problem>,
    /// Valid records found in the chain from the first retained LSN.
    pub records: u64,
    /// The last LSN of that chain.
    pub last_lsn: Lsn,
    /// Durable watermark: the control file's, raised by the records' own claims.
    pub proven_durable_lsn: Lsn,
}

/// One segment file.
#[derive(Debug, Clone)]
pub struct SegmentInfo {
    /// File name.
    pub name: String,
    /// File size in bytes.
    pub file_bytes: u64,
    /// Its header, or why it could not be read (`None` for a prepared, never used segment).
    pub header: Option<std::result::Result<SegmentHeader, String>>,
    /// First and last LSN of the valid records in it.
    pub lsn_range: Option<(Lsn, Lsn)>,
    /// Valid records in it.
    pub records: u64,
    /// System records among them.
    pub system_records: u64,
    /// Bytes used by valid records (headers and padding included).
    pub record_bytes: u64,
}

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Acknowledged data is damaged or missing: at or below the durable watermark, or in a
    /// segment file whose length changed after it was written (no crash leaves one).
    Corruption,
    /// An unfinished write past the watermark, which recovery cuts: normal after a crash.
    TornTail,
}

/// A record or file that fails verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// How bad.
    pub severity: Severity,
    /// The file.
    pub segment: String,
    /// Byte offset in it.
    pub offset: u64,
    /// The LSN expected there.
    pub lsn: Lsn,
    /// What is wrong (checksums expected and found, or the header problem).
    pub detail: String,
}

/// Inspects `dir` without changing anything.
pub fn inspect(dir: &Path) -> Result<Inspection> {
    // The directory first, so that a wrong path is named as one (not as a missing log).
    let mut names: Vec<(u64, String)> = std::fs::read_dir(dir)
        .map_err(|e| Error::io("list", dir, e))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter_map(|name| segment::parse_file_name(&name).map(|sequence| (sequence, name)))
        .collect();
    names.sort();
    let control_path = dir.join(control::FILE_NAME);
    let mut problems = Vec::new();
    let control_bytes = match std::fs::read(&control_path) {
        Ok(bytes) => Some(bytes),
        // Segments without a control file: a damaged log, not an absent one (recovery refuses
        // it too).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !names.is_empty() => {
            problems.push(control_problem("missing, but segment files exist"));
            None
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NoLog {
                dir: dir.to_path_buf(),
            })
        }
        Err(e) => return Err(Error::io("read", &control_path, e)),
    };
    let copies = match &control_bytes {
        Some(bytes) => control::decode_copies(bytes, &control_path)?,
        None => [None, None],
    };
    let control = copies
        .iter()
        .flatten()
        .max_by_key(|(generation, _)| *generation)
        .cloned();
    if control_bytes.is_some() && control.is_none() {
        // Recovery refuses such a log: its durable watermark, checkpoint and first LSN are
        // lost, and the records below cannot be checked against them.
        problems.push(control_problem("both control copies are damaged"));
    }
    let state = control
        .as_ref()
        .map(|(_, s)| s.clone())
        .unwrap_or_else(ControlState::empty);
    let mut walk = Walk {
        expected: state.first_lsn,
        watermark: state.durable_lsn,
        ended: false,
        records: 0,
        problems,
    };
    let mut segments = Vec::new();
    for (sequence, name) in &names {
        let path = dir.join(name);
        let bytes = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
        segments.push(walk.segment(*sequence, name, &bytes));
    }
    if walk.expected <= walk.watermark {
        walk.problems.push(Problem {
            severity: Severity::Corruption,
            segment: names.last().map(|(_, n)| n.clone()).unwrap_or_default(),
            offset: 0,
            lsn: walk.expected,
            detail: format!(
                "records {}..={} are missing below the durable watermark",
                walk.expected, walk.watermark
            ),
        });
    }
    Ok(Inspection {
        dir: dir.to_path_buf(),
        control,
        control_copies_valid: [copies[0].is_some(), copies[1].is_some()],
        segments,
        problems: walk.problems,
        records: walk.records,
        last_lsn: walk.expected - 1,
        proven_durable_lsn: walk.watermark,
    })
}

/// A problem of the control file: always corruption (a log cannot be recovered without it).
fn control_problem(detail: &str) -> Problem {
    Problem {
        severity: Severity::Corruption,
        segment: control::FILE_NAME.to_string(),
        offset: 0,
        lsn: 0,
        detail: detail.to_string(),
    }
}

impl Inspection {
    /// Whether any acknowledged data is damaged or missing.
    pub fn is_corrupted(&self) -> bool {
        self.problems
            .iter()
            .any(|p| p.severity == Severity::Corruption)
    }
}

struct Walk {
    expected: Lsn,
    watermark: Lsn,
    /// The chain of valid records ended (at a torn tail); later segments are past the end.
    ended: bool,
    records: u64,
    problems: Vec<Problem>,
}

impl Walk {
    fn problem(&mut self, segment: &str, offset: u64, detail: String) {
        let severity = if self.expected <= self.watermark {
            Severity::Corruption
        } else {
            Severity::TornTail
        };
        self.problem_of(severity, segment, offset, detail);
    }

    fn problem_of(&mut self, severity: Severity, segment: &str, offset: u64, detail: String) {
        self.problems.push(Problem {
            severity,
            segment: segment.to_string(),
            offset,
            lsn: self.expected,
            detail,
        });
        if severity == Severity::TornTail {
            self.ended = true;
        }
    }

    fn segment(&mut self, sequence: u64, name: &str, bytes: &[u8]) -> SegmentInfo {
        let mut info = SegmentInfo {
            name: name.to_string(),
            file_bytes: bytes.len() as u64,
            header: None,
            lsn_range: None,
            records: 0,
            system_records: 0,
            record_bytes: 0,
        };
        let header_bytes: Option<&[u8; segment::HEADER_BYTES]> = bytes
            .get(..segment::HEADER_BYTES)
            .and_then(|h| h.try_into().ok());
        let header = match header_bytes.map(SegmentHeader::decode) {
            None => Err(HeaderError::Bad(format!(
                "file of {} bytes is too short",
                bytes.len()
            ))),
            Some(Ok(h)) if h.sequence != sequence => Err(HeaderError::Bad(format!(
                "header says sequence {}, file name says {sequence}",
                h.sequence
            ))),
            Some(Ok(h)) if h.segment_bytes != bytes.len() as u64 => {
                Err(HeaderError::Resized(format!(
                    "header says {} bytes, file has {} ({})",
                    h.segment_bytes,
                    bytes.len(),
                    if (bytes.len() as u64) < h.segment_bytes {
                        "cut short"
                    } else {
                        "grown"
                    }
                )))
            }
            Some(other) => other,
        };
        let header = match header {
            Err(HeaderError::Prepared) => return info,
            Err(HeaderError::Bad(reason)) => {
                info.header = Some(Err(reason.clone()));
                if !self.ended {
                    self.problem(name, 0, format!("bad segment header: {reason}"));
                }
                return info;
            }
            // Never an unfinished write (recovery refuses it the same way: design.md 8.5).
            Err(HeaderError::Resized(reason)) => {
                info.header = Some(Err(reason.clone()));
                if !self.ended {
                    self.problem_of(
                        Severity::Corruption,
                        name,
                        0,
                        format!("segment file resized after it was written: {reason}"),
                    );
                }
                return info;
            }
            Err(HeaderError::Version(v)) => {
                info.header = Some(Err(format!("format version {v}")));
                self.problem(
                    name,
                    0,
                    format!("format version {v} is not {}", segment::FORMAT_VERSION),
                );
                return info;
            }
            Ok(header) => header,
        };
        info.header = Some(Ok(header));
        if self.ended {
            return info;
        }
        if header.first_lsn > self.expected {
            self.problem(
                name,
                0,
                format!(
                    "segment starts at LSN {}: LSNs {}..{} missing",
                    header.first_lsn, self.expected, header.first_lsn
                ),
            );
            if self.ended {
                return info;
            }
            self.expected = header.first_lsn;
        }
        let mut offset = HEADER_REGION_BYTES as usize;
        let mut lsn = header.first_lsn;
        loop {
            match record::decode(header.salt, &bytes[offset.min(bytes.len())..]) {
                Ok((h, _)) if h.lsn == lsn => {
                    let stored = record::stored_len(h.payload_len as usize);
                    if lsn >= self.expected {
                        self.watermark = self.watermark.max(h.durable_hint);
                        self.expected += 1;
                        self.records += 1;
                        info.records += 1;
                        info.system_records += u64::from(h.kind == RecordKind::System);
                        info.record_bytes += stored as u64;
                        let first = info.lsn_range.map_or(lsn, |(f, _)| f);
                        info.lsn_range = Some((first, lsn));
                    }
                    lsn += 1;
                    offset += stored;
                }
                Ok((h, _)) => {
                    self.problem(
                        name,
                        offset as u64,
                        format!("record says LSN {}, expected {lsn}", h.lsn),
                    );
                    break;
                }
                Err(Invalid::Empty) => break,
                Err(invalid) => {
                    let detail = match invalid {
                        Invalid::BadLength { .. } => {
                            "length points past the end of the segment".to_string()
                        }
                        Invalid::BadField { .. } => "impossible field".to_string(),
                        _ => String::from("checksum mismatch"),
                    };
                    let detail = format!(
                        "{detail}: checksum expected {:#010x}, found {:#010x}",
                        invalid.stored_crc(),
                        invalid.computed_crc()
                    );
                    self.problem(name, offset as u64, detail);
                    break;
                }
            }
        }
        info
    }
}
