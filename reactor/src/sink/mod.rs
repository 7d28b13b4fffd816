//! Sinks: encode rows and write them out.
//!
//! A file sink writes CSV (with a header row) or JSON lines; a changelog
//! stream's rows carry an `op` column (`+I`, `-U`, `+U`, `-D`). Output is
//! buffered and flushed at the end of the run; a file sink creates its
//! parent directories. In a run without checkpoints a file sink on a file
//! system that allows it writes with `O_DIRECT` (`go_direct`, see
//! `direct`), and `close` ends it. The stdout sink writes CSV; when
//! several streams print to stdout each line is prefixed with the stream's
//! name. The discard sink (`laminar bench`) only counts; in a paced run
//! every sink records the latency of the rows it receives (see `pace`).

mod direct;

use std::cell::RefCell;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::rc::Rc;

use laminar_exec::batch::Batch;
use laminar_exec::format::{Encoder, Format};
use laminar_exec::plan::{SinkConnector, SinkNode};

use hdrhistogram::Histogram;

use crate::error::RunError;
use crate::net::subscribe::Hub;
use crate::pace::{self, latency_histogram, Pace};
use direct::DirectFile;

enum Target {
    File {
        path: PathBuf,
        writer: BufWriter<File>,
    },
    /// A file written with `O_DIRECT` (see `direct`).
    Direct(DirectFile),
    Stdout {
        prefix: Option<Vec<u8>>,
    },
    /// Subscribers over TCP (`laminar serve`, see `subscribe`).
    Tcp {
        hub: Rc<RefCell<Hub>>,
    },
    Discard,
}

pub struct Sink {
    pub name: String,
    target: Target,
    encoder: Box<dyn Encoder>,
    buffer: Vec<u8>,
    pub rows: u64,
    /// In a paced run (`laminar bench`): the run's clock and the latency
    /// of every row received (see `pace`).
    latency: Option<(Pace, Histogram<u64>)>,
}

/// What opening a sink may need besides its plan node.
pub struct SinkContext {
    /// Sinks of the plan that print to stdout (more than one: each line
    /// is prefixed with its stream's name).
    pub stdout_sinks: usize,
    pub pace: Option<Pace>,
    /// Its committed position at a checkpoint (bytes, rows).
    pub resume: Option<(u64, u64)>,
    /// `laminar serve`: the listener bound for a tcp sink.
    pub listener: Option<std::net::TcpListener>,
    pub subscriber_buffer_bytes: usize,
}

/// A tcp sink's subscribers and the listener they connect to: the shard
/// runs the accept loop.
pub type Subscribers = (Rc<RefCell<Hub>>, std::net::TcpListener);

/// Opens sink `node` (on shard 0): the sink connector registry, the only
/// code besides the planner's options that names sink connectors.
pub fn open(node: &SinkNode, cx: SinkContext) -> Result<(Sink, Option<Subscribers>), RunError> {
    if let SinkConnector::Tcp { .. } = node.connector {
        let listener = cx.listener.ok_or_else(|| RunError::Source {
            source_name: node.name.clone(),
            path: "tcp".into(),
            reason: "a tcp sink needs `laminar serve`".into(),
        })?;
        let hub = Rc::new(RefCell::new(Hub::new(&node.name, cx.subscriber_buffer_bytes)));
        let sink = Sink::open_tcp(node, Rc::clone(&hub), cx.resume.map(|(_, rows)| rows));
        return Ok((sink, Some((hub, listener))));
    }
    Ok((Sink::open_at(node, cx.stdout_sinks, cx.pace, cx.resume)?, None))
}

/// How many sinks of `sinks` print to stdout.
pub fn stdout_sinks(sinks: &[SinkNode]) -> usize {
    sinks.iter().filter(|s| s.connector == SinkConnector::Stdout).count()
}

/// Bytes buffered before a write to the target.
const BUFFER_BYTES_MAX: usize = 1 << 20;

impl Sink {
    pub fn open(node: &SinkNode, stdout_sinks: usize, pace: Option<Pace>) -> Result<Sink, RunError> {
        Sink::open_at(node, stdout_sinks, pace, None)
    }

    /// The encoder a file or stdout sink writes rows with; None for sinks
    /// that do not write encoded bytes (tcp subscribers, discard). Shards
    /// other than 0 encode with it before sending rows to the sink (see
    /// `write_encoded`).
    pub fn encoder_for(node: &SinkNode) -> Option<Box<dyn Encoder>> {
        match &node.connector {
            SinkConnector::File { format, .. } => Some(format.encoder(&node.schema, node.changelog)),
            SinkConnector::Stdout => Some(Format::Csv.encoder(&node.schema, node.changelog)),
            SinkConnector::Discard | SinkConnector::Tcp { .. } => None,
        }
    }

    /// Takes `rows` rows another shard encoded with `encoder_for`'s
    /// encoder: the bytes the sink would have written for them.
    pub fn write_encoded(&mut self, bytes: &[u8], rows: u64) -> Result<(), RunError> {
        if let Target::Direct(direct) = &mut self.target {
            // Straight into the block being filled: one copy, not two.
            self.rows += rows;
            return direct.append(bytes);
        }
        debug_assert!(matches!(self.target, Target::File { .. } | Target::Stdout { .. }));
        self.append(bytes);
        self.rows += rows;
        if self.buffer.len() >= BUFFER_BYTES_MAX {
            self.drain()?;
        }
        Ok(())
    }

    /// Opens a TCP sink whose subscribers `hub` holds; it resumes its row
    /// count from a checkpoint, if given.
    pub fn open_tcp(node: &SinkNode, hub: Rc<RefCell<Hub>>, rows: Option<u64>) -> Sink {
        Sink {
            name: node.name.clone(),
            target: Target::Tcp { hub },
            encoder: Format::Json.encoder(&node.schema, node.changelog),
            buffer: Vec::new(),
            rows: rows.unwrap_or(0),
            latency: None,
        }
    }

    /// Opens a sink; `resume` is its committed position at a checkpoint
    /// (bytes, rows): a file is cut back to those bytes and written on
    /// from there, without a second header.
    pub fn open_at(
        node: &SinkNode,
        stdout_sinks: usize,
        pace: Option<Pace>,
        resume: Option<(u64, u64)>,
    ) -> Result<Sink, RunError> {
        let encoder = Sink::encoder_for(node);
        let target = match &node.connector {
            SinkConnector::File { path, .. } => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(|source| RunError::Io {
                        operation: "creating sink directory",
                        path: parent.to_path_buf(),
                        source,
                    })?;
                }
                let file = match resume {
                    None => File::create(path),
                    Some((bytes, _)) => std::fs::OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(false)
                        .open(path)
                        .and_then(|mut f| {
                            let len = f.metadata()?.len();
                            if len < bytes {
                                return Err(std::io::Error::other(format!(
                                    "the file has {len} bytes but the checkpoint committed {bytes}: it was changed since"
                                )));
                            }
                            f.set_len(bytes)?;
                            f.seek(SeekFrom::End(0))?;
                            Ok(f)
                        }),
                }
                .map_err(|source| RunError::Io {
                    operation: if resume.is_some() { "resuming sink file" } else { "creating sink file" },
                    path: path.clone(),
                    source,
                })?;
                Target::File {
                    path: path.clone(),
                    writer: BufWriter::with_capacity(1 << 20, file),
                }
            }
            SinkConnector::Stdout => {
                let prefix = (stdout_sinks > 1).then(|| format!("{}: ", node.name).into_bytes());
                Target::Stdout { prefix }
            }
            SinkConnector::Discard => Target::Discard,
            SinkConnector::Tcp { .. } => panic!("a tcp sink opens with open_tcp"),
        };
        let mut sink = Sink {
            name: node.name.clone(),
            target,
            // Discard writes nothing; CSV keeps its code path uniform.
            encoder: encoder.unwrap_or_else(|| Format::Csv.encoder(&node.schema, node.changelog)),
            buffer: Vec::new(),
            rows: 0,
            latency: pace.map(|p| (p, latency_histogram())),
        };
        match resume {
            Some((_, rows)) => sink.rows = rows,
            None => {
                let mut header = Vec::new();
                sink.encoder.header(&mut header);
                sink.append(&header);
            }
        }
        Ok(sink)
    }

    fn append(&mut self, encoded: &[u8]) {
        match &self.target {
            Target::Stdout { prefix: Some(p) } => {
                for line in encoded.split_inclusive(|&b| b == b'\n') {
                    self.buffer.extend_from_slice(p);
                    self.buffer.extend_from_slice(line);
                }
            }
            _ => self.buffer.extend_from_slice(encoded),
        }
    }

    pub fn write(&mut self, batch: &Batch) -> Result<(), RunError> {
        if batch.is_empty() {
            return Ok(());
        }
        if let Some((pace, hist)) = &mut self.latency {
            pace::record(hist, batch.origin_ns(), pace.now_ns(), batch.len() as u64);
        }
        if let Target::Discard = self.target {
            self.rows += batch.len() as u64;
            return Ok(());
        }
        let mut encoded = std::mem::take(&mut self.buffer);
        let prefixed = matches!(self.target, Target::Stdout { prefix: Some(_) });
        if prefixed {
            let mut tmp = Vec::new();
            for (op, row) in batch.rows() {
                tmp.clear();
                self.encoder.row(op, row, &mut tmp);
                self.buffer = encoded;
                self.append(&tmp);
                encoded = std::mem::take(&mut self.buffer);
            }
        } else {
            for (op, row) in batch.rows() {
                self.encoder.row(op, row, &mut encoded);
            }
        }
        self.buffer = encoded;
        self.rows += batch.len() as u64;
        if let Target::Tcp { hub } = &self.target {
            // Sent at once: subscribers want rows as they happen.
            hub.borrow_mut().publish(&self.buffer);
            self.buffer.clear();
            return Ok(());
        }
        // A direct file takes each batch's bytes while they are in cache.
        if self.buffer.len() >= BUFFER_BYTES_MAX || matches!(self.target, Target::Direct(_)) {
            self.drain()?;
        }
        Ok(())
    }

    /// Writes a file sink's later bytes with `O_DIRECT`, if its file system
    /// allows (see `direct`). For runs without checkpoints, before the
    /// first write.
    pub async fn go_direct(&mut self) -> Result<(), RunError> {
        let Target::File { path, writer } = &self.target else {
            return Ok(());
        };
        assert_eq!(writer.buffer().len(), 0, "a sink goes direct before it writes");
        // Regular files only: a FIFO or a device takes no aligned blocks.
        if !writer.get_ref().metadata().is_ok_and(|m| m.is_file()) {
            return Ok(());
        }
        if let Some(direct) = DirectFile::open(path).await {
            self.target = Target::Direct(direct);
            // The header, buffered at open: bytes that come encoded from
            // other shards go straight to the file and must follow it.
            self.drain()?;
        }
        Ok(())
    }

    /// `finish`, and the end of the sink: a direct file's last writes are
    /// waited for and its last bytes written.
    pub async fn close(&mut self) -> Result<(), RunError> {
        if let Target::Direct(_) = self.target {
            self.drain()?;
            let Target::Direct(direct) = std::mem::replace(&mut self.target, Target::Discard) else {
                unreachable!("matched above")
            };
            return direct.finish().await;
        }
        self.finish()
    }

    fn drain(&mut self) -> Result<(), RunError> {
        match &mut self.target {
            Target::Direct(direct) => direct.append(&self.buffer)?,
            Target::File { path, writer } => writer.write_all(&self.buffer).map_err(|source| RunError::Io {
                operation: "writing sink file",
                path: path.clone(),
                source,
            })?,
            Target::Stdout { .. } => std::io::stdout()
                .lock()
                .write_all(&self.buffer)
                .map_err(RunError::Stdout)?,
            Target::Tcp { hub } => hub.borrow_mut().publish(&self.buffer),
            Target::Discard => {}
        }
        self.buffer.clear();
        Ok(())
    }

    /// Writes everything buffered and flushes the target.
    pub fn finish(&mut self) -> Result<(), RunError> {
        self.drain()?;
        match &mut self.target {
            Target::File { path, writer } => writer.flush().map_err(|source| RunError::Io {
                operation: "flushing sink file",
                path: path.clone(),
                source,
            }),
            Target::Stdout { .. } => std::io::stdout().lock().flush().map_err(RunError::Stdout),
            // The last partial block is written by `close`.
            Target::Direct(_) | Target::Tcp { .. } | Target::Discard => Ok(()),
        }
    }

    /// Writes everything buffered to the target and returns the committed
    /// position (bytes of a file; 0 otherwise, and rows): what a
    /// checkpoint records, once the coordinator has synced the file.
    pub fn commit_position(&mut self) -> Result<(u64, u64), RunError> {
        self.finish()?;
        let bytes = match &mut self.target {
            Target::File { path, writer } => writer.stream_position().map_err(|source| RunError::Io {
                operation: "writing sink file",
                path: path.clone(),
                source,
            })?,
            Target::Direct(_) => unreachable!("runs with checkpoints keep buffered file sinks"),
            _ => 0,
        };
        Ok((bytes, self.rows))
    }

    /// The latency histogram of a paced run.
    pub fn take_latency(&mut self) -> Option<Histogram<u64>> {
        self.latency.take().map(|(_, h)| h)
    }
}
