//! The file connector read in order by one shard: CSV or JSON lines, one
//! partition, its watermark advanced after every good record. (A large
//! file may instead be read by every shard at once: `split`.)

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use laminar_exec::batch::Batch;
use laminar_exec::format::{names_columns, Format};
use laminar_exec::plan::{SourceConnector, SourceNode};

use super::reader::{io_error, MalformedRecord, ReadState, Reader, ReaderPosition, SourceState};
use super::record::{read_record, strip_newline, DeadLetter, RecordDecoding, WatermarkTracker};
use crate::error::RunError;

pub(crate) struct FileReader {
    path: PathBuf,
    reader: BufReader<File>,
    delimiter: u8,
    format: Format,
    /// Physical lines consumed (for the line numbers of errors).
    line: u64,
    records: RecordDecoding,
    /// The record being decoded.
    record: Vec<u8>,
    /// No `header` option, and line 1 named the declared columns.
    header_detected: bool,
}

/// Opens a file source (`resuming`: its dead-letter file is kept, to be
/// cut back to the checkpoint's length).
pub(crate) fn open(node: &SourceNode, resuming: bool) -> Result<FileReader, RunError> {
    let SourceConnector::File {
        path,
        format,
        header,
        delimiter,
        dead_letter,
        follow: None,
    } = &node.connector
    else {
        unreachable!("the registry opens unfollowed files only here");
    };
    let file = File::open(path).map_err(io_error("opening source file", path))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut line = 0u64;
    let mut header_detected = false;
    let header_bytes = if *header != Some(false) && *format == Format::Csv {
        let mut h = Vec::new();
        reader.read_until(b'\n', &mut h).map_err(io_error("reading", path))?;
        strip_newline(&mut h);
        if header.is_none() && !names_columns(&h, *delimiter, &node.declared) {
            // No header option and a first line of data: read it as such.
            reader.seek(SeekFrom::Start(0)).map_err(io_error("reading", path))?;
            None
        } else {
            header_detected = header.is_none();
            line += 1;
            Some(h)
        }
    } else {
        None
    };
    // An empty file: no header, no rows.
    let header_bytes = header_bytes.filter(|h| !h.is_empty());
    let decoder = node
        .decoder(*format, header_bytes.as_deref(), *delimiter)
        .map_err(|e| RunError::Source {
            source_name: node.name.clone(),
            path: path.clone(),
            reason: e.to_string(),
        })?;
    let dead_letter = dead_letter
        .as_deref()
        .map(|p| DeadLetter::open(p, resuming))
        .transpose()?;
    let reader = FileReader {
        path: path.clone(),
        reader,
        delimiter: *delimiter,
        format: *format,
        line,
        records: RecordDecoding {
            decoder: Some(decoder),
            watermark: WatermarkTracker::new(node.watermark),
            dead_letter,
            location: path.display().to_string(),
        },
        record: Vec::new(),
        header_detected,
    };
    Ok(reader)
}

impl Reader for FileReader {
    fn read(
        &mut self,
        st: &mut ReadState,
        batch: &mut Batch,
        rows_max: usize,
        _index_limit: u64,
        on_malformed: &mut dyn FnMut(MalformedRecord<'_>),
    ) -> Result<(), RunError> {
        while batch.len() < rows_max {
            let Some(read) = read_record(&mut self.reader, &mut self.record, self.format, self.delimiter)
                .map_err(io_error("reading", &self.path))?
            else {
                st.exhausted = true;
                self.records.flush_dead_letters()?;
                break;
            };
            let first_line = self.line + 1;
            self.line += read.lines;
            self.records
                .apply(&read, &self.record, first_line, st, batch, on_malformed)?;
        }
        Ok(())
    }

    fn watermark(&self) -> i64 {
        self.records.watermark.current
    }

    fn position(&mut self, _st: &ReadState) -> Result<ReaderPosition, RunError> {
        let offset = self.reader.stream_position().map_err(io_error("reading", &self.path))?;
        Ok(ReaderPosition {
            offset,
            line: self.line,
            dead_letter_bytes: self.records.dead_letter_len()?,
            max_time: self.records.watermark.max_time,
            live_connections: Vec::new(),
            follow: None,
        })
    }

    fn resume(&mut self, _name: &str, state: &SourceState) -> Result<(), RunError> {
        let len = self
            .reader
            .get_ref()
            .metadata()
            .map_err(io_error("reading", &self.path))?
            .len();
        if state.offset > len {
            return Err(RunError::Recovery {
                dir: self.path.clone(),
                reason: format!(
                    "the checkpoint read {} bytes of this file, which now has {len}: the input changed",
                    state.offset
                ),
            });
        }
        self.reader
            .seek(SeekFrom::Start(state.offset))
            .map_err(io_error("reading", &self.path))?;
        self.line = state.line;
        self.records.resume(state)
    }

    fn dead_letter_path(&self) -> Option<&Path> {
        self.records.dead_letter.as_ref().map(|d| d.path.as_path())
    }

    fn header_detected(&self) -> bool {
        self.header_detected
    }
}
