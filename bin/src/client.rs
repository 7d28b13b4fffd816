//! `laminar ingest` and `laminar tail`: the clients of `laminar serve`'s
//! tcp sources and sinks, for people and tests.
//!
//! `ingest` sends files (or stdin) line by line over one connection,
//! half-closes it, and waits for the server's answer: `OK <rows> rows
//! <malformed> malformed` once the WAL holds every line on disk (it then
//! survives kill -9). Any other ending means the lines must be sent
//! again; the exit status says so.
//!
//! `tail` prints a tcp sink's JSON lines as they come.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};

fn connect(addr: &str) -> Result<TcpStream> {
    let addrs: Vec<_> = addr
        .to_socket_addrs()
        .with_context(|| format!("resolving {addr}"))?
        .collect();
    let mut last = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, Duration::from_secs(10)) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) => Err(e).with_context(|| format!("connecting to {addr}")),
        None => bail!("{addr} resolves to no address"),
    }
}

pub fn ingest(addr: &str, files: &[PathBuf], ack_timeout: Duration) -> Result<()> {
    // Every file opens before anything is sent: a missing one must not
    // leave half the input sent.
    let mut opened = files
        .iter()
        .map(|f| {
            std::fs::File::open(f)
                .map(|file| (f.display().to_string(), file))
                .with_context(|| format!("opening {}", f.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut stream = connect(addr)?;
    let _ = stream.set_nodelay(true);
    let mut sent = 0u64;
    // Sending may fail because the server refused or stopped: its answer
    // then says why, so it is read whatever happened here.
    let sending = send_all(&mut stream, addr, &mut opened, &mut sent);
    stream
        .set_read_timeout(Some(ack_timeout))
        .context("setting a timeout")?;
    let mut answer = String::new();
    let read = BufReader::new(&stream).take(4096).read_line(&mut answer);
    match read {
        Ok(_) if answer.starts_with("OK ") && sending.is_ok() => {
            eprintln!("{addr}: {} ({sent} bytes sent; durable)", answer.trim_end());
            Ok(())
        }
        Ok(n) if n > 0 => bail!("{addr}: {}: send these lines again", answer.trim_end()),
        _ if sending.is_err() => sending.context("send these lines again"),
        Ok(_) => bail!("{addr} closed the connection without acknowledging: send these lines again"),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
            bail!("{addr} did not acknowledge within {ack_timeout:?}: the lines may or may not be durable")
        }
        Err(e) => Err(e).with_context(|| format!("waiting for {addr}'s acknowledgement: send these lines again")),
    }
}

/// Sends the files (or stdin) line by line, then half-closes.
fn send_all(stream: &mut TcpStream, addr: &str, files: &mut [(String, std::fs::File)], sent: &mut u64) -> Result<()> {
    let mut copy = |reader: &mut dyn Read, name: &str| -> Result<()> {
        let mut buf = vec![0u8; 256 << 10];
        let mut last = b'\n';
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).with_context(|| format!("reading {name}")),
            };
            stream
                .write_all(&buf[..n])
                .with_context(|| format!("sending {name} to {addr}"))?;
            *sent += n as u64;
            last = buf[n - 1];
        }
        // Files are concatenated line by line.
        if last != b'\n' {
            stream.write_all(b"\n").with_context(|| format!("sending to {addr}"))?;
        }
        Ok(())
    };
    if files.is_empty() {
        copy(&mut std::io::stdin().lock(), "stdin")?;
    }
    for (name, file) in files.iter_mut() {
        copy(file, name)?;
    }
    stream
        .shutdown(Shutdown::Write)
        .with_context(|| format!("finishing the stream to {addr}"))
}

pub fn tail(addr: &str, limit: Option<u64>) -> Result<()> {
    let stream = connect(addr)?;
    let mut out = std::io::stdout().lock();
    let mut lines = 0u64;
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    while limit.is_none_or(|l| lines < l) {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .with_context(|| format!("reading from {addr}"))?;
        if n == 0 {
            break;
        }
        if line.starts_with(b"ERR ") {
            bail!("{addr}: {}", String::from_utf8_lossy(&line).trim_end());
        }
        match out.write_all(&line).and_then(|()| out.flush()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(e).context("writing to stdout"),
        }
        lines += 1;
    }
    Ok(())
}
