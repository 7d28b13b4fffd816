//! Record reading shared by the connectors that read bytes: records (a
//! line, or a CSV record over several lines), what a file reader does
//! with each (`RecordDecoding`), the per-partition watermark tracker, and
//! the dead-letter file.

use std::fs::File;
use std::io::{BufRead, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use laminar_exec::batch::{Batch, Op};
use laminar_exec::format::{csv_record_incomplete_with, Decoder, Format};
use laminar_exec::plan::WatermarkSpec;
use laminar_exec::types::Value;

use super::reader::{io_error, MalformedRecord, ReadState, MALFORMED_REPORTS_MAX, RECORD_BYTES_MAX};
use crate::error::RunError;

/// What a reader of one file partition (`file`, `follow`) does with each
/// record it reads: decodes it into the batch, with the watermark mark
/// after it when it advanced, or reports, dead-letters and counts it.
pub(crate) struct RecordDecoding {
    /// None until a followed file's first line says whether it is a
    /// header (see `follow`); a record is decoded only after.
    pub decoder: Option<Box<dyn Decoder>>,
    pub watermark: WatermarkTracker,
    pub dead_letter: Option<DeadLetter>,
    /// The path, as reports name it.
    pub location: String,
}

impl RecordDecoding {
    /// Takes one record (`record`, read as `read` says, starting at
    /// physical line `first_line`).
    pub fn apply(
        &mut self,
        read: &RecordRead,
        record: &[u8],
        first_line: u64,
        st: &mut ReadState,
        batch: &mut Batch,
        on_malformed: &mut dyn FnMut(MalformedRecord<'_>),
    ) -> Result<(), RunError> {
        st.bytes_read += read.bytes;
        if read.blank {
            return Ok(()); // blank lines are not records
        }
        let decoder = self
            .decoder
            .as_deref_mut()
            .expect("a record is decoded once its file's header is decided");
        match read.decode(record, decoder, &mut st.scratch) {
            Ok(()) => {
                debug_assert_eq!(st.scratch.len(), st.width);
                // Moved, not cloned, into the batch.
                let advanced = self.watermark.observe(&st.scratch);
                batch.push_owned(Op::Insert, st.scratch.drain(..));
                st.rows += 1;
                if let Some(w) = advanced {
                    batch.push_mark(w);
                }
            }
            Err(reason) => self.reject(record, first_line, &reason, st, on_malformed)?,
        }
        Ok(())
    }

    /// A malformed record: counted, reported (the first
    /// `MALFORMED_REPORTS_MAX`), dead-lettered.
    pub fn reject(
        &mut self,
        record: &[u8],
        first_line: u64,
        reason: &str,
        st: &mut ReadState,
        on_malformed: &mut dyn FnMut(MalformedRecord<'_>),
    ) -> Result<(), RunError> {
        st.malformed += 1;
        if st.malformed <= MALFORMED_REPORTS_MAX {
            on_malformed(MalformedRecord {
                source: &st.name,
                location: &self.location,
                line: first_line,
                reason,
            });
        }
        match &mut self.dead_letter {
            Some(d) => d.write(record),
            None => Ok(()),
        }
    }

    pub fn flush_dead_letters(&mut self) -> Result<(), RunError> {
        self.dead_letter.as_mut().map_or(Ok(()), DeadLetter::flush)
    }

    /// The dead-letter file's committed length (0 without one).
    pub fn dead_letter_len(&mut self) -> Result<u64, RunError> {
        Ok(self
            .dead_letter
            .as_mut()
            .map(DeadLetter::committed_len)
            .transpose()?
            .unwrap_or(0))
    }

    /// Continues from a checkpoint: its watermark and dead-letter length.
    pub fn resume(&mut self, state: &super::reader::SourceState) -> Result<(), RunError> {
        if let Some(d) = &mut self.dead_letter {
            d.cut_to(state.dead_letter_bytes)?;
        }
        self.watermark.max_time = state.max_time;
        self.watermark.current = state.watermark;
        Ok(())
    }
}

/// Tracks `max(event time) - delay` for one partition.
pub(crate) struct WatermarkTracker {
    pub spec: Option<WatermarkSpec>,
    pub max_time: i64,
    pub current: i64,
}

impl WatermarkTracker {
    pub fn new(spec: Option<WatermarkSpec>) -> WatermarkTracker {
        WatermarkTracker {
            spec,
            max_time: i64::MIN,
            current: i64::MIN,
        }
    }

    /// Takes `time` as the largest event time seen so far (events before
    /// this reader's part of a split source); returns the new watermark
    /// if it advanced.
    pub fn advance_to(&mut self, time: i64) -> Option<i64> {
        let spec = self.spec?;
        if time <= self.max_time {
            return None;
        }
        self.max_time = time;
        let w = time.saturating_sub(spec.delay_ms);
        (w > self.current).then(|| {
            self.current = w;
            w
        })
    }

    /// Observes a row; returns the new watermark if it advanced.
    pub fn observe(&mut self, row: &[Value]) -> Option<i64> {
        match row[self.spec?.column] {
            Value::Ts(t) | Value::Int(t) => self.advance_to(t),
            _ => None,
        }
    }
}

/// A source's dead-letter file: every malformed record, one per line.
pub(crate) struct DeadLetter {
    pub path: PathBuf,
    writer: BufWriter<File>,
}

impl DeadLetter {
    /// Creates (or, resuming, opens without truncating: `cut_to` then
    /// cuts it back) the file.
    pub fn open(path: &Path, resuming: bool) -> Result<DeadLetter, RunError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io_error("creating dead-letter directory", parent))?;
        }
        let file = if resuming {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
        } else {
            File::create(path)
        }
        .map_err(io_error("creating dead-letter file", path))?;
        Ok(DeadLetter {
            path: path.to_path_buf(),
            writer: BufWriter::new(file),
        })
    }

    pub fn write(&mut self, record: &[u8]) -> Result<(), RunError> {
        self.writer
            .write_all(record)
            .and_then(|_| self.writer.write_all(b"\n"))
            .map_err(io_error("writing dead-letter file", &self.path))
    }

    pub fn flush(&mut self) -> Result<(), RunError> {
        self.writer
            .flush()
            .map_err(io_error("writing dead-letter file", &self.path))
    }

    /// Flushes and returns the length on disk (what a checkpoint commits).
    pub fn committed_len(&mut self) -> Result<u64, RunError> {
        self.flush()?;
        Ok(self
            .writer
            .get_ref()
            .metadata()
            .map_err(io_error("writing dead-letter file", &self.path))?
            .len())
    }

    /// Cuts the file back to a checkpoint's committed length.
    pub fn cut_to(&mut self, len: u64) -> Result<(), RunError> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(io_error("opening dead-letter file", &self.path))?;
        file.set_len(len)
            .and_then(|()| file.seek(SeekFrom::End(0)).map(drop))
            .map_err(io_error("writing dead-letter file", &self.path))?;
        self.writer = BufWriter::new(file);
        Ok(())
    }
}

/// What `read_record` read.
pub(crate) struct RecordRead {
    /// Physical lines it spans.
    pub lines: u64,
    pub bytes: u64,
    /// Empty (or, in JSON, only whitespace): not a record.
    pub blank: bool,
    /// Longer than `RECORD_BYTES_MAX`: malformed.
    pub too_long: bool,
}

impl RecordRead {
    /// Decodes the record read into `out` (cleared first), or says why it
    /// is malformed (the decoder's error rendered into its message: the
    /// caller reports it).
    pub fn decode(&self, record: &[u8], decoder: &mut dyn Decoder, out: &mut Vec<Value>) -> Result<(), String> {
        if self.too_long {
            return Err(too_long_reason());
        }
        out.clear();
        decoder.decode(record, out).map_err(|e| decoder.explain(record, e))
    }
}

/// Why a record over `RECORD_BYTES_MAX` is malformed.
pub(crate) fn too_long_reason() -> String {
    laminar_exec::format::too_long_reason(RECORD_BYTES_MAX)
}

/// Reads the next record into `record` (without its final newline): one
/// line, or for CSV as many as a quoted field spans (bounded by
/// `RECORD_BYTES_MAX`). None at the end of input. Every reader of a file
/// goes through here, so that records and line numbers are the same
/// whichever shard reads which part (see `split`).
pub(crate) fn read_record(
    reader: &mut impl BufRead,
    record: &mut Vec<u8>,
    format: Format,
    delimiter: u8,
) -> std::io::Result<Option<RecordRead>> {
    record.clear();
    let n = reader.read_until(b'\n', record)?;
    if n == 0 {
        return Ok(None);
    }
    let mut read = RecordRead {
        lines: 1,
        bytes: n as u64,
        blank: false,
        too_long: false,
    };
    // A quoted CSV field may span lines: keep reading until the quotes
    // balance.
    if format == Format::Csv {
        while csv_record_incomplete_with(trimmed(record), delimiter) {
            if record.len() > RECORD_BYTES_MAX {
                read.too_long = true;
                break;
            }
            let more = reader.read_until(b'\n', record)?;
            if more == 0 {
                break;
            }
            read.lines += 1;
            read.bytes += more as u64;
        }
    }
    strip_newline(record);
    read.too_long |= record.len() > RECORD_BYTES_MAX;
    read.blank = record.is_empty() || (format == Format::Json && record.iter().all(u8::is_ascii_whitespace));
    Ok(Some(read))
}

pub(crate) fn strip_newline(v: &mut Vec<u8>) {
    if v.last() == Some(&b'\n') {
        v.pop();
        if v.last() == Some(&b'\r') {
            v.pop();
        }
    }
}

fn trimmed(v: &[u8]) -> &[u8] {
    let v = v.strip_suffix(b"\n").unwrap_or(v);
    v.strip_suffix(b"\r").unwrap_or(v)
}
