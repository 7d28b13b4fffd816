//! The file connector read in order by one shard: CSV or JSON lines, one
//! partition, its watermark advanced after every good record. (A large
//! file may instead be read by every shard at once: `split`.)

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use laminar_exec::batch::{Batch, Op};
use laminar_exec::format::{names_columns, Decoder, Format};
use laminar_exec::plan::{SourceConnector, SourceNode};

use super::reader::{io_error, MalformedRecord, ReadState, Reader, ReaderPosition, SourceState, MALFORMED_REPORTS_MAX};
use super::record::{read_record, strip_newline, DeadLetter, WatermarkTracker};
use crate::error::RunError;

pub(crate) struct FileReader {
    path: PathBuf,
    reader: BufReader<File>,
    decoder: Box<dyn Decoder>,
    delimiter: u8,
    format: Format,
    /// Physical lines consumed (for the line numbers of errors).
    line: u64,
    dead_letter: Option<DeadLetter>,
    watermark: WatermarkTracker,
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
    } = &node.connector
    else {
        unreachable!("the registry opens files only here");
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
        decoder,
        delimiter: *delimiter,
        format: *format,
        line,
        dead_letter,
        watermark: WatermarkTracker::new(node.watermark),
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
            let Some(record) = read_record(&mut self.reader, &mut self.record, self.format, self.delimiter)
                .map_err(io_error("reading", &self.path))?
            else {
                st.exhausted = true;
                break;
            };
            let first_line = self.line + 1;
            self.line += record.lines;
            st.bytes_read += record.bytes;
            if record.blank {
                continue; // blank lines are not records
            }
            match record.decode(&self.record, self.decoder.as_mut(), &mut st.scratch) {
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
                Err(reason) => {
                    st.malformed += 1;
                    let location = self.path.display().to_string();
                    if st.malformed <= MALFORMED_REPORTS_MAX {
                        on_malformed(MalformedRecord {
                            source: &st.name,
                            location: &location,
                            line: first_line,
                            reason: &reason,
                        });
                    }
                    if let Some(d) = &mut self.dead_letter {
                        d.write(&self.record)?;
                    }
                }
            }
        }
        if st.exhausted {
            if let Some(d) = &mut self.dead_letter {
                d.flush()?;
            }
        }
        Ok(())
    }

    fn watermark(&self) -> i64 {
        self.watermark.current
    }

    fn position(&mut self, _st: &ReadState) -> Result<ReaderPosition, RunError> {
        let offset = self.reader.stream_position().map_err(io_error("reading", &self.path))?;
        let dl = self.dead_letter.as_mut().map(DeadLetter::committed_len).transpose()?;
        Ok(ReaderPosition {
            offset,
            line: self.line,
            dead_letter_bytes: dl.unwrap_or(0),
            max_time: self.watermark.max_time,
            live_connections: Vec::new(),
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
        if let Some(d) = &mut self.dead_letter {
            d.cut_to(state.dead_letter_bytes)?;
        }
        self.watermark.max_time = state.max_time;
        self.watermark.current = state.watermark;
        Ok(())
    }

    fn dead_letter_path(&self) -> Option<&Path> {
        self.dead_letter.as_ref().map(|d| d.path.as_path())
    }

    fn header_detected(&self) -> bool {
        self.header_detected
    }
}
