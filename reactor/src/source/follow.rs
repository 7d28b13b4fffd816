//! The file connector with `follow = 'true'` (`laminar serve`): the file
//! is read to its end, then whatever is appended to it, for as long as
//! the service runs. One shard reads it, in order; records, line numbers,
//! the header rule and dead letters are those of `file`.
//!
//! - **Appends.** At the end of the file the reader looks again every
//!   `poll_ms` (the shard's watchdog wakes the source loop every few
//!   milliseconds, and `ready` says whether a look is due). A last line
//!   without its newline is not a record yet: it waits, unread, for the
//!   rest (a CSV record also waits for its closing quote).
//! - **Rotation.** At the end of the file the path is looked up again; if
//!   it names another file (device or inode differ), this one was renamed
//!   away. What was appended to it before the rename is read first (its
//!   descriptor stays open), its unfinished last line is taken as a record
//!   (nothing more will come), then the new file is read from its start,
//!   its first line judged as a header again. While the path names no
//!   file, the reader stays with the old one.
//! - **Truncation.** A file shorter than what was read from it (`>
//!   file`, copy-and-truncate rotation) is read again from its start,
//!   with a warning. A file truncated and refilled past the reader's
//!   position between two looks cannot be told from one appended to.
//! - **Checkpoints.** The position is the file's identity, the offset of
//!   the first byte not taken as a record, the lines taken, the header
//!   decided for the file and whether a record over the length limit is
//!   being skipped (`FollowState`). A restart opens the same file: the
//!   path if it still names it, else the file of that identity in the
//!   path's directory (rotated while the service was down: the rest of it
//!   is read, then the new file), else, with a warning, the path from its
//!   start.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use laminar_exec::batch::Batch;
use laminar_exec::format::{csv_record_incomplete_with, names_columns, Format};
use laminar_exec::plan::{SourceConnector, SourceNode};
use laminar_exec::time::Clock;

use super::reader::{
    io_error, FollowState, MalformedRecord, ReadState, Reader, ReaderPosition, SourceState, RECORD_BYTES_MAX,
};
use super::record::{read_record, too_long_reason, DeadLetter, RecordDecoding, RecordRead, WatermarkTracker};
use crate::error::RunError;

/// Bytes read from the file at a time.
const FILL_BYTES: u64 = 1 << 20;

/// A file's device and inode numbers: what names it across renames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    device: u64,
    inode: u64,
}

impl FileId {
    fn of(m: &std::fs::Metadata) -> FileId {
        FileId {
            device: m.dev(),
            inode: m.ino(),
        }
    }
}

/// What the next look at the bytes read found.
enum Next {
    /// A whole record, in `FollowReader::record`.
    Record(RecordRead),
    /// A record over `RECORD_BYTES_MAX` with no end yet: reported, and
    /// skipped to its line's end.
    TooLong { lines: u64 },
    /// Nothing whole: more bytes are needed.
    More,
}

pub struct FollowReader {
    /// For the decoders of files to come (a rotated file has its own
    /// header line).
    node: SourceNode,
    path: PathBuf,
    format: Format,
    delimiter: u8,
    /// The `header` option.
    header_option: Option<bool>,
    poll_ms: u64,
    clock: Arc<dyn Clock>,
    file: File,
    id: FileId,
    /// Bytes read from `file`, starting at offset `base`; the first
    /// `taken` of them are records already taken.
    pending: Vec<u8>,
    base: u64,
    taken: usize,
    /// Lines taken from this file.
    line: u64,
    /// This file's header line, once its first line turned out to be one.
    header: Option<Vec<u8>>,
    /// Skipping the rest of a record over the length limit.
    skipping: bool,
    /// The path names another file now: this one is read to its end,
    /// then that one.
    draining: bool,
    records: RecordDecoding,
    record: Vec<u8>,
    header_detected: bool,
    /// The end was reached, and is looked at again at `next_poll_ms`.
    at_end: bool,
    next_poll_ms: i64,
    /// `laminar serve` is stopping: nothing more is read.
    closed: bool,
}

/// Opens a followed file source: the path from its start, or where the
/// checkpoint `resume` left it.
pub(crate) fn open(
    node: &SourceNode,
    clock: Arc<dyn Clock>,
    resume: Option<&SourceState>,
) -> Result<FollowReader, RunError> {
    let SourceConnector::File {
        path,
        format,
        header,
        delimiter,
        dead_letter,
        follow: Some(follow),
    } = &node.connector
    else {
        unreachable!("the registry opens followed files only here");
    };
    let file = File::open(path).map_err(io_error("opening source file", path))?;
    let id = FileId::of(&file.metadata().map_err(io_error("reading", path))?);
    let dead_letter = dead_letter
        .as_deref()
        .map(|p| DeadLetter::open(p, resume.is_some()))
        .transpose()?;
    let mut reader = FollowReader {
        node: node.clone(),
        path: path.clone(),
        format: *format,
        delimiter: *delimiter,
        header_option: *header,
        poll_ms: follow.poll_ms,
        clock,
        file,
        id,
        pending: Vec::new(),
        base: 0,
        taken: 0,
        line: 0,
        header: None,
        skipping: false,
        draining: false,
        records: RecordDecoding {
            decoder: None,
            watermark: WatermarkTracker::new(node.watermark),
            dead_letter,
            location: path.display().to_string(),
        },
        record: Vec::new(),
        header_detected: false,
        at_end: false,
        next_poll_ms: i64::MIN,
        closed: false,
    };
    match resume {
        Some(state) => reader.reopen(state)?,
        None => reader.start_file()?,
    }
    Ok(reader)
}

impl FollowReader {
    /// Whether a file's first line is judged as a header.
    fn detects_header(&self) -> bool {
        self.format == Format::Csv && self.header_option != Some(false)
    }

    /// Reads the current file from its start.
    fn start_file(&mut self) -> Result<(), RunError> {
        self.file
            .seek(SeekFrom::Start(0))
            .map_err(io_error("reading", &self.path))?;
        self.pending.clear();
        self.base = 0;
        self.taken = 0;
        self.line = 0;
        self.skipping = false;
        self.draining = false;
        self.header = None;
        self.records.decoder = if self.detects_header() {
            None // decided by the first line
        } else {
            Some(self.decoder(None)?)
        };
        Ok(())
    }

    fn decoder(&self, header: Option<&[u8]>) -> Result<Box<dyn laminar_exec::format::Decoder>, RunError> {
        self.node
            .decoder(self.format, header, self.delimiter)
            .map_err(|e| RunError::Source {
                source_name: self.node.name.clone(),
                path: self.path.clone(),
                reason: e.to_string(),
            })
    }

    /// Continues from a checkpoint: finds its file (see the module
    /// comment) and the offset in it.
    fn reopen(&mut self, state: &SourceState) -> Result<(), RunError> {
        let Some(saved) = &state.follow else {
            return Err(RunError::Recovery {
                dir: self.path.clone(),
                reason: format!(
                    "source {}: the checkpoint holds no followed file's position",
                    self.node.name
                ),
            });
        };
        let want = FileId {
            device: saved.device,
            inode: saved.inode,
        };
        if self.id != want {
            match find_by_id(&self.path, want)? {
                Some((file, found)) => {
                    tracing::info!(
                        source = %self.node.name,
                        "{} was rotated while the service was down: reading the rest of {}, then the new file",
                        self.path.display(),
                        found.display()
                    );
                    self.file = file;
                    self.id = want;
                }
                None => {
                    tracing::warn!(
                        source = %self.node.name,
                        "the file read at the checkpoint (device {}, inode {}) is no longer in {}'s directory: \
                         reading {} from its start; lines appended to the old file after the checkpoint are lost",
                        want.device,
                        want.inode,
                        self.path.display(),
                        self.path.display()
                    );
                    return self.start_file();
                }
            }
        }
        let len = self.file.metadata().map_err(io_error("reading", &self.path))?.len();
        if len < state.offset {
            tracing::warn!(
                source = %self.node.name,
                "{} is shorter ({len} bytes) than the checkpoint had read ({}): it was truncated; reading it from its start",
                self.path.display(),
                state.offset
            );
            return self.start_file();
        }
        self.start_file()?;
        self.file
            .seek(SeekFrom::Start(state.offset))
            .map_err(io_error("reading", &self.path))?;
        self.base = state.offset;
        self.line = state.line;
        self.skipping = saved.skipping;
        if state.line > 0 || !self.detects_header() {
            // The first line was decided before the checkpoint.
            self.header = saved.header.clone();
            self.records.decoder = Some(self.decoder(self.header.as_deref())?);
        }
        Ok(())
    }

    /// Reads more of the file into `pending`; the bytes read.
    fn fill(&mut self) -> Result<usize, RunError> {
        if self.taken > 0 && self.taken * 2 >= self.pending.len() {
            self.pending.drain(..self.taken);
            self.base += self.taken as u64;
            self.taken = 0;
        }
        let before = self.pending.len();
        (&mut self.file)
            .take(FILL_BYTES)
            .read_to_end(&mut self.pending)
            .map_err(io_error("reading", &self.path))?;
        Ok(self.pending.len() - before)
    }

    /// The next whole record of what was read; `last`: the file is done,
    /// so an unfinished last line is a record too.
    fn next(&mut self, last: bool) -> Next {
        if self.skipping {
            match memchr::memchr(b'\n', &self.pending[self.taken..]) {
                Some(i) => {
                    self.taken += i + 1;
                    self.line += 1;
                    self.skipping = false;
                }
                None => {
                    self.taken = self.pending.len();
                    return Next::More;
                }
            }
        }
        let rest = &self.pending[self.taken..];
        if rest.is_empty() {
            return Next::More;
        }
        let mut cursor = rest;
        let read = read_record(&mut cursor, &mut self.record, self.format, self.delimiter)
            .expect("reading from memory cannot fail")
            .expect("the slice is not empty");
        let ends_line = rest[read.bytes as usize - 1] == b'\n';
        let open_quote =
            self.format == Format::Csv && !read.too_long && csv_record_incomplete_with(&self.record, self.delimiter);
        if (ends_line && !open_quote) || last {
            self.taken += read.bytes as usize;
            return Next::Record(read);
        }
        if read.too_long || rest.len() > RECORD_BYTES_MAX {
            // No end in sight: count it now, skip the rest of its line.
            // Its last line has no end yet: counted when skipping ends.
            debug_assert!(!ends_line);
            self.taken = self.pending.len();
            self.skipping = true;
            return Next::TooLong { lines: read.lines - 1 };
        }
        Next::More
    }

    /// Judges a file's first line: a header (the `header` option, or the
    /// declared column names without it) or data. True: it was a header.
    fn decide_header(&mut self) -> Result<bool, RunError> {
        let is_header = self.header_option == Some(true)
            || (self.header_option.is_none() && names_columns(&self.record, self.delimiter, &self.node.declared));
        if is_header {
            self.header = (!self.record.is_empty()).then(|| self.record.clone());
            self.header_detected |= self.header_option.is_none();
        }
        self.records.decoder = Some(self.decoder(self.header.as_deref())?);
        Ok(is_header)
    }

    /// At the end of what the file holds: true if it was truncated or
    /// rotated and reading goes on.
    fn check_file(&mut self) -> Result<bool, RunError> {
        let read_to = self.base + self.pending.len() as u64;
        let len = self.file.metadata().map_err(io_error("reading", &self.path))?.len();
        if len < read_to {
            tracing::warn!(
                source = %self.node.name,
                "{} is shorter ({len} bytes) than what was read ({read_to}): it was truncated; reading it from its start",
                self.path.display()
            );
            self.start_file()?;
            return Ok(true);
        }
        match std::fs::metadata(&self.path) {
            Ok(m) if FileId::of(&m) != self.id => {
                self.draining = true;
                Ok(true)
            }
            Ok(_) => Ok(false),
            // Renamed away and not made again yet: stay with this one.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error("looking up source file", &self.path)(e)),
        }
    }

    /// Takes a whole record: the file's header, or a row (or a malformed
    /// record).
    fn take(
        &mut self,
        read: &RecordRead,
        st: &mut ReadState,
        batch: &mut Batch,
        on_malformed: &mut dyn FnMut(MalformedRecord<'_>),
    ) -> Result<(), RunError> {
        let first_line = self.line + 1;
        self.line += read.lines;
        if self.records.decoder.is_none() && self.decide_header()? {
            st.bytes_read += read.bytes;
            return Ok(());
        }
        self.records
            .apply(read, &self.record, first_line, st, batch, on_malformed)
    }

    /// The old file is read to its end: on to the file the path names.
    /// False if there is none (gone again between the look and the open:
    /// the next look).
    fn switch_file(&mut self) -> Result<bool, RunError> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.draining = false;
                return Ok(false);
            }
            Err(e) => return Err(io_error("opening source file", &self.path)(e)),
        };
        self.id = FileId::of(&file.metadata().map_err(io_error("reading", &self.path))?);
        self.file = file;
        tracing::info!(
            source = %self.node.name,
            "{} was rotated: reading the new file from its start",
            self.path.display()
        );
        self.start_file()?;
        Ok(true)
    }
}

/// The file with identity `want` in `path`'s directory, if there is one.
fn find_by_id(path: &Path, want: FileId) -> Result<Option<(File, PathBuf)>, RunError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let entries = std::fs::read_dir(dir).map_err(io_error("listing the directory of", path))?;
    for entry in entries.flatten() {
        let candidate = entry.path();
        let Ok(m) = std::fs::metadata(&candidate) else { continue };
        if m.is_file() && FileId::of(&m) == want {
            let file = File::open(&candidate).map_err(io_error("opening source file", &candidate))?;
            return Ok(Some((file, candidate)));
        }
    }
    Ok(None)
}

impl Reader for FollowReader {
    fn read(
        &mut self,
        st: &mut ReadState,
        batch: &mut Batch,
        rows_max: usize,
        _index_limit: u64,
        on_malformed: &mut dyn FnMut(MalformedRecord<'_>),
    ) -> Result<(), RunError> {
        if self.closed {
            return Ok(());
        }
        self.at_end = false;
        while batch.len() < rows_max {
            match self.next(false) {
                Next::Record(read) => self.take(&read, st, batch, on_malformed)?,
                Next::TooLong { lines } => {
                    let first_line = self.line + 1;
                    self.line += lines;
                    if self.records.decoder.is_none() {
                        // Its first line is no header.
                        self.records.decoder = Some(self.decoder(None)?);
                    }
                    // Its first `RECORD_BYTES_MAX` bytes go to the dead
                    // letters; the rest is skipped unread.
                    let seen = &self.record[..self.record.len().min(RECORD_BYTES_MAX)];
                    self.records
                        .reject(seen, first_line, &too_long_reason(), st, on_malformed)?;
                }
                Next::More => {
                    if self.fill()? > 0 {
                        continue;
                    }
                    if self.draining {
                        // The old file is done: its unfinished last line
                        // is a record, then the new file.
                        if let Next::Record(read) = self.next(true) {
                            self.take(&read, st, batch, on_malformed)?;
                            continue;
                        }
                        if self.switch_file()? {
                            continue;
                        }
                    } else if self.check_file()? {
                        continue;
                    }
                    self.at_end = true;
                    self.next_poll_ms = self.clock.now_ms().saturating_add(self.poll_ms as i64);
                    self.records.flush_dead_letters()?;
                    break;
                }
            }
        }
        Ok(())
    }

    fn watermark(&self) -> i64 {
        self.records.watermark.current
    }

    fn position(&mut self, _st: &ReadState) -> Result<ReaderPosition, RunError> {
        Ok(ReaderPosition {
            offset: self.base + self.taken as u64,
            line: self.line,
            dead_letter_bytes: self.records.dead_letter_len()?,
            max_time: self.records.watermark.max_time,
            live_connections: Vec::new(),
            follow: Some(FollowState {
                device: self.id.device,
                inode: self.id.inode,
                header: self.header.clone(),
                skipping: self.skipping,
            }),
        })
    }

    fn resume(&mut self, _name: &str, state: &SourceState) -> Result<(), RunError> {
        // `open` found the file and the offset; the rest is the records'.
        self.records.resume(state)
    }

    fn dead_letter_path(&self) -> Option<&Path> {
        self.records.dead_letter.as_ref().map(|d| d.path.as_path())
    }

    fn header_detected(&self) -> bool {
        self.header_detected
    }

    fn bounded(&self) -> bool {
        false
    }

    fn ready(&self) -> bool {
        !self.closed && (!self.at_end || self.clock.now_ms() >= self.next_poll_ms)
    }

    fn close(&mut self) {
        self.closed = true;
    }
}

#[cfg(test)]
mod tests;
