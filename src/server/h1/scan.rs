//! HTTP/1 heads scanned in one pass into byte ranges of the read buffer.
//!
//! Hand-written for the fast path because httparse, plus the pass over its results that turned
//! its slices back into ranges, was about 3,500 of the ~11,300 user-space instructions of a
//! proxied request (callgrind, session 11). The grammar is httparse's default one, byte for
//! byte, and a differential test holds the two to the same verdicts:
//! - tokens (method, field names) are RFC 9110 tchars; the target is `!`..`~` or obs-text; a
//!   field value is HTAB, SP, VCHAR or obs-text, with the whitespace around it trimmed;
//! - lines end in CRLF or a bare LF; a CR not followed by LF is an error;
//! - obs-fold (a line starting with whitespace), whitespace before a colon, and any version but
//!   HTTP/1.0 and HTTP/1.1 are errors;
//! - empty lines before the start line are skipped.

use std::ops::Range;

/// A field line: name and value as ranges of the scanned buffer.
pub type Field = (Range<usize>, Range<usize>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanError {
    /// Not HTTP/1.0 or HTTP/1.1.
    Version,
    /// More field lines than allowed.
    TooManyFields,
    /// Anything else that breaks the grammar.
    Malformed(&'static str),
}

impl std::fmt::Display for ScanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScanError::Version => f.write_str("unsupported HTTP version"),
            ScanError::TooManyFields => f.write_str("too many header fields"),
            ScanError::Malformed(what) => f.write_str(what),
        }
    }
}

/// `Ok(None)`: the head is not complete yet (and nothing seen so far is invalid).
pub type Scan<T> = Result<Option<T>, ScanError>;

pub struct RequestLine {
    pub method: Range<usize>,
    pub target: Range<usize>,
    pub target_ascii: bool,
    pub http10: bool,
    /// Where the field lines start.
    pub end: usize,
}

pub struct StatusLine {
    pub http10: bool,
    pub status: u16,
    pub reason: Range<usize>,
    pub end: usize,
}

const fn byte_set(ranges: &[(u8, u8)]) -> [bool; 256] {
    let mut set = [false; 256];
    let mut r = 0;
    while r < ranges.len() {
        let mut b = ranges[r].0 as usize;
        while b <= ranges[r].1 as usize {
            set[b] = true;
            b += 1;
        }
        r += 1;
    }
    set
}

/// tchar (RFC 9110 §5.6.2).
static TOKEN: [bool; 256] = byte_set(&[
    (b'A', b'Z'),
    (b'a', b'z'),
    (b'0', b'9'),
    (b'!', b'!'),
    (b'#', b'\''),
    (b'*', b'+'),
    (b'-', b'.'),
    (b'^', b'`'),
    (b'|', b'|'),
    (b'~', b'~'),
]);

/// Bytes of a request target: visible ASCII and obs-text (what httparse accepts).
static TARGET: [bool; 256] = byte_set(&[(b'!', b'~'), (0x80, 0xff)]);

/// field-value and reason-phrase bytes: HTAB, SP, VCHAR, obs-text.
static TEXT: [bool; 256] = byte_set(&[(b'\t', b'\t'), (b' ', b'~'), (0x80, 0xff)]);

/// Skips empty lines before a start line (RFC 9112 §2.2).
fn skip_empty_lines(buf: &[u8]) -> Scan<usize> {
    let mut i = 0;
    loop {
        match buf.get(i) {
            None => return Ok(None),
            Some(b'\n') => i += 1,
            Some(b'\r') => match buf.get(i + 1) {
                None => return Ok(None),
                Some(b'\n') => i += 2,
                Some(_) => return Err(ScanError::Malformed("CR without LF")),
            },
            Some(_) => return Ok(Some(i)),
        }
    }
}

/// `HTTP/1.0` or `HTTP/1.1` at `i`: whether it is 1.0.
fn version(buf: &[u8], i: usize) -> Scan<bool> {
    match buf.get(i..i + 8) {
        Some(b"HTTP/1.1") => Ok(Some(false)),
        Some(b"HTTP/1.0") => Ok(Some(true)),
        Some(_) => Err(ScanError::Version),
        None if b"HTTP/1.".starts_with(&buf[i.min(buf.len())..]) => Ok(None),
        None => Err(ScanError::Version),
    }
}

/// A line end (CRLF or LF) at `i`: where the next line starts.
fn line_end(buf: &[u8], i: usize, what: &'static str) -> Scan<usize> {
    match buf.get(i) {
        None => Ok(None),
        Some(b'\n') => Ok(Some(i + 1)),
        Some(b'\r') => match buf.get(i + 1) {
            None => Ok(None),
            Some(b'\n') => Ok(Some(i + 2)),
            Some(_) => Err(ScanError::Malformed(what)),
        },
        Some(_) => Err(ScanError::Malformed(what)),
    }
}

fn skip(buf: &[u8], i: usize, set: &[bool; 256]) -> usize {
    buf[i.min(buf.len())..]
        .iter()
        .position(|&b| !set[b as usize])
        .map_or(buf.len(), |n| i + n)
}

/// Skips field-value bytes eight at a time: a word with no control byte (below 0x20, or DEL)
/// is all text; otherwise its first control byte ends the value unless it is HTAB.
fn skip_text(buf: &[u8], mut i: usize) -> usize {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGH: u64 = ONES * 0x80;
    while let Some(chunk) = buf.get(i..i + 8) {
        let w = u64::from_le_bytes([
            chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7],
        ]);
        // "Has a byte below n" (n <= 0x80) tests: a borrow only starts at such a byte, so the
        // lowest flagged byte is exact (the ones above it may not be).
        let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
        let del = w ^ (ONES * 0x7f);
        let is_del = del.wrapping_sub(ONES) & !del & HIGH;
        let controls = below_space | is_del;
        if controls == 0 {
            i += 8;
            continue;
        }
        i += (controls.trailing_zeros() / 8) as usize;
        if buf[i] != b'\t' {
            return i;
        }
        i += 1;
    }
    skip(buf, i, &TEXT)
}

/// `method SP target SP HTTP/1.x CRLF`.
pub fn request_line(buf: &[u8]) -> Scan<RequestLine> {
    let Some(start) = skip_empty_lines(buf)? else {
        return Ok(None);
    };
    let method_end = skip(buf, start, &TOKEN);
    match buf.get(method_end) {
        None => return Ok(None),
        Some(b' ') if method_end > start => {}
        Some(_) => return Err(ScanError::Malformed("invalid method")),
    }
    let target_start = method_end + 1;
    let target_end = skip(buf, target_start, &TARGET);
    match buf.get(target_end) {
        None => return Ok(None),
        Some(b' ') if target_end > target_start => {}
        Some(_) => return Err(ScanError::Malformed("invalid request target")),
    }
    let target = &buf[target_start..target_end];
    let target_ascii = target.is_ascii();
    if !target_ascii && std::str::from_utf8(target).is_err() {
        return Err(ScanError::Malformed("request target is not UTF-8"));
    }
    let Some(http10) = version(buf, target_end + 1)? else {
        return Ok(None);
    };
    let Some(end) = line_end(buf, target_end + 9, "invalid request line end")? else {
        return Ok(None);
    };
    Ok(Some(RequestLine {
        method: start..method_end,
        target: target_start..target_end,
        target_ascii,
        http10,
        end,
    }))
}

/// `HTTP/1.x SP 3DIGIT [SP reason] CRLF`.
pub fn status_line(buf: &[u8]) -> Scan<StatusLine> {
    let Some(start) = skip_empty_lines(buf)? else {
        return Ok(None);
    };
    let Some(http10) = version(buf, start)? else {
        return Ok(None);
    };
    let i = start + 8;
    let Some(code) = buf.get(i..i + 4) else {
        let seen = &buf[i.min(buf.len())..];
        let ok = seen.first().is_none_or(|&b| b == b' ') && seen.iter().skip(1).all(u8::is_ascii_digit);
        return if ok {
            Ok(None)
        } else {
            Err(ScanError::Malformed("invalid status line"))
        };
    };
    if code[0] != b' ' || !code[1..].iter().all(u8::is_ascii_digit) {
        return Err(ScanError::Malformed("invalid status line"));
    }
    let status = code[1..].iter().fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
    let i = i + 4;
    let (reason, reason_end) = match buf.get(i) {
        None => return Ok(None),
        Some(b' ') => {
            let end = skip(buf, i + 1, &TEXT);
            // As httparse: a reason with obs-text is passed on as an empty one.
            let reason = if buf[i + 1..end].is_ascii() {
                i + 1..end
            } else {
                end..end
            };
            (reason, end)
        }
        Some(_) => (i..i, i),
    };
    let Some(end) = line_end(buf, reason_end, "invalid status line")? else {
        return Ok(None);
    };
    Ok(Some(StatusLine {
        http10,
        status,
        reason,
        end,
    }))
}

/// Field lines from `i` up to and including the empty line that ends the head, into `out`
/// (cleared first). Returns the length of the whole head.
pub fn fields(buf: &[u8], mut i: usize, out: &mut Vec<Field>, max: usize) -> Scan<usize> {
    out.clear();
    loop {
        match buf.get(i) {
            None => return Ok(None),
            Some(b'\r' | b'\n') => return line_end(buf, i, "invalid line end"),
            Some(_) => {}
        }
        let name_end = skip(buf, i, &TOKEN);
        match buf.get(name_end) {
            None => return Ok(None),
            Some(b':') if name_end > i => {}
            Some(_) => return Err(ScanError::Malformed("invalid header name")),
        }
        let mut value_start = name_end + 1;
        while let Some(b' ' | b'\t') = buf.get(value_start) {
            value_start += 1;
        }
        let mut value_end = skip_text(buf, value_start);
        let Some(next) = line_end(buf, value_end, "invalid header value")? else {
            return Ok(None);
        };
        while value_end > value_start && matches!(buf[value_end - 1], b' ' | b'\t') {
            value_end -= 1;
        }
        if out.len() == max {
            return Err(ScanError::TooManyFields);
        }
        out.push((i..name_end, value_start..value_end));
        i = next;
    }
}

/// Case-insensitive equality of `field`, bytes of a scanned field line (never CR), with `lower`,
/// a lower-case constant of letters and `-`. OR-ing 0x20 into a byte other than CR gives a
/// lower-case letter or `-` only when the byte is that letter in either case or `-` itself, so
/// eight bytes compare at once.
#[inline]
pub fn is_named(field: &[u8], lower: &[u8]) -> bool {
    debug_assert!(lower.iter().all(|&b| b.is_ascii_lowercase() || b == b'-'));
    const CASE: u64 = u64::from_le_bytes([0x20; 8]);
    #[inline(always)]
    fn word(s: &[u8], at: usize) -> u64 {
        let bytes: &[u8; 8] = s[at..at + 8].try_into().expect("eight bytes");
        u64::from_le_bytes(*bytes)
    }
    let n = field.len();
    if n != lower.len() {
        return false;
    }
    if n < 8 {
        return field.iter().zip(lower).all(|(&a, &b)| a | 0x20 == b);
    }
    let mut at = 0;
    while at + 8 < n {
        if word(field, at) | CASE != word(lower, at) {
            return false;
        }
        at += 8;
    }
    // The last eight bytes, overlapping the previous word.
    word(field, n - 8) | CASE == word(lower, n - 8)
}

#[cfg(test)]
mod tests;
