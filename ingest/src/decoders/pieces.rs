//! Cutting a large NDJSON input, read as a stream, into pieces of whole
//! lines that decode on their own, so memory follows the piece and not
//! the file. Each format says where its lines may be cut ([`LineCuts`]).

use std::io::{self, Read};

/// Where a format lets an NDJSON input be cut. Shown every line in input
/// order; a first pass over the whole input comes before that where the
/// answer depends on lines further on.
pub trait LineCuts: Send {
    /// Whether [`learn`](Self::learn) must see the whole input first.
    fn needs_first_pass(&self) -> bool {
        false
    }

    /// One line of the first pass, in input order.
    fn learn(&mut self, _line: &[u8]) {}

    /// Whether a piece may end just after `line`, the input's next line.
    fn after(&mut self, line: &[u8]) -> bool;
}

/// Lines that each stand alone: a piece may end after any of them.
#[derive(Debug, Clone, Copy)]
pub struct AnyLine;

impl LineCuts for AnyLine {
    fn after(&mut self, _line: &[u8]) -> bool {
        true
    }
}

/// Whole lines of an input, numbered from `first_line` (1-based).
#[derive(Debug)]
pub struct Piece {
    pub bytes: Vec<u8>,
    pub first_line: usize,
}

/// Bytes asked of the reader at a time.
const READ_CHUNK: u64 = 1 << 20;

/// Reads `reader` until `head` holds more than `at_least` bytes and a
/// whole first line, or the input ends.
pub fn read_head(reader: &mut dyn Read, head: &mut Vec<u8>, at_least: usize) -> io::Result<()> {
    loop {
        let want = at_least
            .saturating_add(1)
            .saturating_sub(head.len())
            .clamp(READ_CHUNK as usize, 4 * READ_CHUNK as usize);
        let got = (&mut *reader).take(want as u64).read_to_end(head)?;
        let whole_first_line = || memchr::memchr(b'\n', head).is_some();
        if got < want || (head.len() > at_least && whole_first_line()) {
            return Ok(());
        }
    }
}

/// Whether a head of input starts as NDJSON: its first non-blank line is a
/// JSON document of its own and more follows it.
pub fn starts_ndjson(head: &[u8]) -> bool {
    let body = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let Some(lead) = body.iter().position(|b| !b.is_ascii_whitespace()) else {
        return false;
    };
    let Some(first_end) = memchr::memchr(b'\n', &body[lead..]).map(|p| lead + p) else {
        return false;
    };
    body[first_end..].iter().any(|b| !b.is_ascii_whitespace())
        && serde_json::from_slice::<serde::de::IgnoredAny>(&body[lead..first_end]).is_ok()
}

/// Shows every line of `reader` to `cuts` (the first pass). A read error
/// comes after the whole lines before it were shown.
pub fn learn_all(mut reader: impl Read, cuts: &mut dyn LineCuts) -> io::Result<()> {
    let mut buffer = Vec::new();
    loop {
        let read = (&mut reader).take(READ_CHUNK).read_to_end(&mut buffer);
        let mut start = 0;
        while let Some(newline) = memchr::memchr(b'\n', &buffer[start..]) {
            let end = start + newline + 1;
            cuts.learn(&buffer[start..end]);
            start = end;
        }
        buffer.drain(..start);
        if read? == 0 {
            if !buffer.is_empty() {
                cuts.learn(&buffer);
            }
            return Ok(());
        }
    }
}

/// Pieces of about `piece_bytes` of whole lines, read from a stream.
pub struct PieceReader<'r> {
    reader: Box<dyn Read + 'r>,
    /// Read and not yet handed out from `start` on; begins with the head.
    buffer: Vec<u8>,
    start: usize,
    /// How far into `buffer` the cuts have seen, and the lines since `start`.
    scanned: usize,
    scanned_lines: usize,
    next_line: usize,
    piece_bytes: usize,
    cuts: Box<dyn LineCuts>,
    ended: bool,
    /// A read error, reported once the whole lines before it are handed out.
    failed: Option<io::Error>,
    /// Bytes read from the input so far, the head included.
    read_bytes: u64,
    /// Bytes handed out as pieces so far.
    handed_out: u64,
}

impl std::fmt::Debug for PieceReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PieceReader")
            .field("buffered", &(self.buffer.len() - self.start))
            .field("next_line", &self.next_line)
            .field("read_bytes", &self.read_bytes)
            .finish_non_exhaustive()
    }
}

impl<'r> PieceReader<'r> {
    /// Pieces of `head` followed by the rest of `reader`.
    pub fn new(
        reader: Box<dyn Read + 'r>,
        head: Vec<u8>,
        piece_bytes: usize,
        cuts: Box<dyn LineCuts>,
    ) -> Self {
        PieceReader {
            reader,
            read_bytes: head.len() as u64,
            buffer: head,
            start: 0,
            scanned: 0,
            scanned_lines: 0,
            next_line: 1,
            piece_bytes: piece_bytes.max(1),
            cuts,
            ended: false,
            failed: None,
            handed_out: 0,
        }
    }

    /// A reader whose input already failed while its head was read: the
    /// head's whole lines come out, then the error.
    pub fn failed_with(mut self, error: Option<io::Error>) -> Self {
        self.failed = error;
        self
    }

    /// Bytes read from the input so far.
    pub fn read_bytes(&self) -> u64 {
        self.read_bytes
    }

    /// Bytes handed out as pieces so far.
    pub fn handed_out(&self) -> u64 {
        self.handed_out
    }

    /// The next piece; `None` once the input is used up. A read error
    /// comes after the pieces of the whole lines before it; the unfinished
    /// line it interrupted is dropped.
    pub fn next_piece(&mut self) -> io::Result<Option<Piece>> {
        loop {
            while let Some(newline) = memchr::memchr(b'\n', &self.buffer[self.scanned..]) {
                let end = self.scanned + newline + 1;
                let may_cut = self.cuts.after(&self.buffer[self.scanned..end]);
                self.scanned = end;
                self.scanned_lines += 1;
                if may_cut && end - self.start >= self.piece_bytes {
                    return Ok(Some(self.cut(end)));
                }
            }
            if self.ended {
                if self.start == self.buffer.len() {
                    return Ok(None);
                }
                let end = self.buffer.len();
                return Ok(Some(self.cut(end)));
            }
            if let Some(error) = self.failed.take() {
                if self.scanned > self.start {
                    self.failed = Some(error);
                    let end = self.scanned;
                    return Ok(Some(self.cut(end)));
                }
                self.start = self.buffer.len();
                self.ended = true;
                return Err(error);
            }
            self.fill();
        }
    }

    fn fill(&mut self) {
        if self.start > 0 {
            self.buffer.drain(..self.start);
            self.scanned -= self.start;
            self.start = 0;
        }
        let want = (self.piece_bytes as u64).clamp(READ_CHUNK, 4 * READ_CHUNK);
        let before = self.buffer.len();
        let read = (&mut self.reader).take(want).read_to_end(&mut self.buffer);
        self.read_bytes += (self.buffer.len() - before) as u64;
        match read {
            Ok(got) => self.ended = (got as u64) < want,
            Err(error) => self.failed = Some(error),
        }
    }

    /// Hands out `buffer[start..end]`: the buffer itself when little
    /// follows the cut, else a copy, so pieces smaller than a read never
    /// move the rest of the buffer once per piece.
    fn cut(&mut self, end: usize) -> Piece {
        let bytes = if self.start == 0 && self.buffer.len() - end <= end {
            let mut rest = Vec::with_capacity(self.piece_bytes + READ_CHUNK as usize);
            rest.extend_from_slice(&self.buffer[end..]);
            let mut bytes = std::mem::replace(&mut self.buffer, rest);
            bytes.truncate(end);
            self.scanned = self.scanned.saturating_sub(end);
            bytes
        } else {
            let bytes = self.buffer[self.start..end].to_vec();
            self.start = end;
            bytes
        };
        self.handed_out += bytes.len() as u64;
        let piece = Piece {
            bytes,
            first_line: self.next_line,
        };
        self.next_line += self.scanned_lines;
        self.scanned_lines = 0;
        piece
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Reads at most three bytes per call, as pipes and decompressors may.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(3).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn pieces_of(body: &[u8], head_bytes: usize, piece_bytes: usize) -> Vec<Piece> {
        let mut reader = Trickle(body);
        let mut head = Vec::new();
        (&mut reader)
            .take(head_bytes as u64)
            .read_to_end(&mut head)
            .expect("head");
        let mut pieces = PieceReader::new(Box::new(reader), head, piece_bytes, Box::new(AnyLine));
        let mut out = Vec::new();
        while let Some(piece) = pieces.next_piece().expect("read") {
            out.push(piece);
        }
        assert_eq!(pieces.read_bytes(), body.len() as u64);
        out
    }

    #[test]
    fn pieces_are_whole_lines_numbered_as_in_the_input() {
        let body: String = (0..100).map(|i| format!("{{\"n\":{i}}}\n")).collect();
        let pieces = pieces_of(body.as_bytes(), 10, 64);
        assert!(pieces.len() > 5);
        let joined: Vec<u8> = pieces.iter().flat_map(|p| p.bytes.clone()).collect();
        assert_eq!(joined, body.as_bytes());
        for piece in &pieces {
            assert!(piece.bytes.ends_with(b"\n"));
            let first = std::str::from_utf8(&piece.bytes).expect("utf-8");
            let n = first.lines().next().expect("a line");
            assert_eq!(n, format!("{{\"n\":{}}}", piece.first_line - 1));
        }
    }

    #[test]
    fn a_last_line_without_newline_ends_the_last_piece() {
        let pieces = pieces_of(b"{}\n{}\n{\"last\":1}", 4, 2);
        let last = pieces.last().expect("pieces");
        assert_eq!(last.bytes, b"{\"last\":1}");
        assert_eq!(last.first_line, 3);
    }

    /// Allows a cut only after lines that hold `ok`.
    struct AfterOk;

    impl LineCuts for AfterOk {
        fn after(&mut self, line: &[u8]) -> bool {
            memchr::memmem::find(line, b"ok").is_some()
        }
    }

    #[test]
    fn pieces_end_only_where_the_format_allows() {
        let body = b"{\"a\":1}\n{\"a\":2}\n{\"a\":\"ok\"}\n{\"a\":3}\n{\"a\":\"ok\"}\n{\"a\":4}\n";
        let mut pieces = PieceReader::new(Box::new(&body[..]), Vec::new(), 1, Box::new(AfterOk));
        let mut ends = Vec::new();
        while let Some(piece) = pieces.next_piece().expect("read") {
            ends.push((piece.first_line, piece.bytes.len()));
        }
        assert_eq!(ends, [(1, 27), (4, 19), (6, 8)]);
    }

    #[test]
    fn a_read_error_keeps_the_pieces_before_it() {
        let good = b"{\"a\":1}\n{\"a\":2}\n{\"a\":3";
        let failing = (&good[..]).chain(FailingRead);
        let mut pieces = PieceReader::new(Box::new(failing), Vec::new(), 4, Box::new(AnyLine));
        let mut seen = Vec::new();
        let error = loop {
            match pieces.next_piece() {
                Ok(Some(piece)) => seen.push(piece.bytes),
                Ok(None) => panic!("the error was not reported"),
                Err(error) => break error,
            }
        };
        assert_eq!(seen, [b"{\"a\":1}\n".to_vec(), b"{\"a\":2}\n".to_vec()]);
        assert_eq!(pieces.handed_out(), 16);
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }

    /// A stream that fails on every read, as a corrupt or truncated gzip does.
    pub(crate) struct FailingRead;

    impl Read for FailingRead {
        fn read(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::new(io::ErrorKind::InvalidData, "corrupt stream"))
        }
    }

    #[test]
    fn the_first_pass_sees_every_line_once() {
        struct Count(Vec<Vec<u8>>);
        impl LineCuts for Count {
            fn learn(&mut self, line: &[u8]) {
                self.0.push(line.to_vec());
            }
            fn after(&mut self, _line: &[u8]) -> bool {
                true
            }
        }
        let body: String = (0..5000).map(|i| format!("line {i}\n")).collect();
        let mut count = Count(Vec::new());
        learn_all(Trickle(format!("{body}tail").as_bytes()), &mut count).expect("read");
        assert_eq!(count.0.len(), 5001);
        assert_eq!(count.0[4321], b"line 4321\n");
        assert_eq!(count.0[5000], b"tail");
    }

    #[test]
    fn only_line_delimited_heads_start_ndjson() {
        assert!(starts_ndjson(b"\xEF\xBB\xBF {\"a\":1}\n{\"a\":2}"));
        assert!(starts_ndjson(b"{\"a\":1}\nnot json"));
        assert!(!starts_ndjson(b"{\n  \"a\": 1\n}\n"));
        assert!(!starts_ndjson(b"[{\"a\":1},\n{\"a\":2}]"));
        assert!(!starts_ndjson(b"{\"a\":1}\n\n  \n"));
        assert!(!starts_ndjson(b"a: 1\nb: 2\n"));
    }

    #[test]
    fn the_head_holds_a_whole_first_line() {
        let body = format!("{{\"long\":\"{}\"}}\n{{}}\n", "x".repeat(3 << 20));
        let mut body = body.as_bytes();
        let mut head = Vec::new();
        read_head(&mut body, &mut head, 16).expect("read");
        let first_line = memchr::memchr(b'\n', &head).expect("a whole first line");
        assert!(first_line > 3 << 20);
        let mut small = Vec::new();
        read_head(&mut &b"{}\n{}\n"[..], &mut small, 16).expect("read");
        assert_eq!(small, b"{}\n{}\n");
    }
}
