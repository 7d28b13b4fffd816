//! Line framing of a byte stream that arrives in arbitrary pieces (a TCP
//! connection): the bytes of each line, whole, however the pieces cut it.
//!
//! A line ends at `\n` (a `\r` before it is dropped). A line longer than
//! `line_bytes_max` is not held whole: its first `line_bytes_max` bytes
//! are kept (for the dead-letter file) and the rest dropped as it comes,
//! so a connection holds at most `line_bytes_max` bytes between pieces.

/// One framed line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framed<'a> {
    /// A whole line, without its terminator.
    Line(&'a [u8]),
    /// A line over the limit: its first `line_bytes_max` bytes.
    TooLong(&'a [u8]),
}

/// The framing state of one stream.
#[derive(Debug)]
pub struct LineFramer {
    line_bytes_max: usize,
    /// The start of a line whose newline has not come yet; or, when
    /// `returned`, the line handed out last (cleared on the next call, so
    /// the buffer is reused and nothing is allocated per line).
    partial: Vec<u8>,
    returned: bool,
    /// The current line is over the limit: dropping to its newline.
    skipping: bool,
    /// Lines completed so far (the number of the last one).
    lines: u64,
}

impl LineFramer {
    pub fn new(line_bytes_max: usize) -> LineFramer {
        assert!(line_bytes_max > 0, "a line limit of 0 frames nothing");
        LineFramer {
            line_bytes_max,
            partial: Vec::new(),
            returned: false,
            skipping: false,
            lines: 0,
        }
    }

    /// Lines completed so far: the number of the line `push` or `finish`
    /// returned last (lines count from 1).
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Bytes held for an unfinished line (at most `line_bytes_max`).
    pub fn pending(&self) -> usize {
        if self.returned {
            0
        } else {
            self.partial.len()
        }
    }

    /// What a checkpoint keeps of the framer: the unfinished line, whether
    /// it is being skipped (too long), and the lines completed.
    pub fn state(&self) -> (&[u8], bool, u64) {
        let partial: &[u8] = if self.returned { &[] } else { &self.partial };
        (partial, self.skipping, self.lines)
    }

    /// A framer continuing from `state` (see `state`).
    pub fn restored(line_bytes_max: usize, partial: &[u8], skipping: bool, lines: u64) -> LineFramer {
        let mut f = LineFramer::new(line_bytes_max);
        // A checkpoint from a larger limit: the excess is dropped as a
        // too-long line would be.
        let keep = partial.len().min(line_bytes_max);
        f.partial.extend_from_slice(&partial[..keep]);
        f.skipping = skipping || keep < partial.len();
        f.lines = lines;
        f
    }

    fn reset_returned(&mut self) {
        if self.returned {
            self.partial.clear();
            self.returned = false;
        }
    }

    /// Takes bytes up to and including the first newline of `bytes`;
    /// returns how many it took and the line they completed, if any.
    /// Call again with the rest.
    pub fn push(&mut self, bytes: &[u8]) -> (usize, Option<Framed<'_>>) {
        self.reset_returned();
        let (piece, taken, complete) = match memchr::memchr(b'\n', bytes) {
            Some(k) => (&bytes[..k], k + 1, true),
            None => (bytes, bytes.len(), false),
        };
        if !self.skipping {
            let room = self.line_bytes_max - self.partial.len();
            if piece.len() > room {
                self.partial.extend_from_slice(&piece[..room]);
                self.skipping = true;
            } else {
                self.partial.extend_from_slice(piece);
            }
        }
        if !complete {
            return (taken, None);
        }
        (taken, Some(self.complete()))
    }

    /// The stream ended: its unterminated last line, if it has one.
    pub fn finish(&mut self) -> Option<Framed<'_>> {
        self.reset_returned();
        if self.partial.is_empty() && !self.skipping {
            return None;
        }
        Some(self.complete())
    }

    fn complete(&mut self) -> Framed<'_> {
        debug_assert!(self.partial.len() <= self.line_bytes_max);
        self.lines += 1;
        self.returned = true;
        let too_long = std::mem::take(&mut self.skipping);
        if too_long {
            return Framed::TooLong(&self.partial);
        }
        let end = self.partial.len() - usize::from(self.partial.last() == Some(&b'\r'));
        Framed::Line(&self.partial[..end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own(framed: Framed<'_>) -> (bool, Vec<u8>) {
        match framed {
            Framed::Line(b) => (false, b.to_vec()),
            Framed::TooLong(b) => (true, b.to_vec()),
        }
    }

    /// Frames `pieces` to the end: (line number, too long, bytes).
    fn frame(max: usize, pieces: &[&[u8]]) -> Vec<(u64, bool, Vec<u8>)> {
        let mut f = LineFramer::new(max);
        let mut out = Vec::new();
        for mut piece in pieces.iter().copied() {
            while !piece.is_empty() {
                let (n, framed) = f.push(piece);
                if let Some((long, bytes)) = framed.map(own) {
                    out.push((f.lines(), long, bytes));
                }
                assert!(f.pending() <= max);
                piece = &piece[n..];
            }
        }
        if let Some((long, bytes)) = f.finish().map(own) {
            out.push((f.lines(), long, bytes));
        }
        out
    }

    #[test]
    fn lines_are_whole_however_the_pieces_cut_them() {
        let got = frame(100, &[b"ab", b"c\r\n\nd", b"e\nf"]);
        assert_eq!(
            got,
            vec![
                (1, false, b"abc".to_vec()),
                (2, false, Vec::new()),
                (3, false, b"de".to_vec()),
                (4, false, b"f".to_vec()),
            ]
        );
    }

    #[test]
    fn a_long_line_is_cut_at_the_limit_and_the_next_is_whole() {
        let got = frame(4, &[b"12", b"345", b"678\nok\n"]);
        assert_eq!(got, vec![(1, true, b"1234".to_vec()), (2, false, b"ok".to_vec())]);
        let got = frame(4, &[b"1234\n12345"]);
        assert_eq!(got, vec![(1, false, b"1234".to_vec()), (2, true, b"1234".to_vec())]);
    }
}
