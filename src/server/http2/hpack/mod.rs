//! HPACK (RFC 7541). The decoder keeps the dynamic table the client's encoder builds. The
//! encoder never indexes: it sends the static table's entries and names, and every other field
//! as a plain literal, so responses can be encoded from the HTTP/1.1 head's bytes as they are,
//! with no table to search or keep.

pub mod huffman;
pub mod table;

use table::{DynamicTable, STATIC};

/// Our SETTINGS_HEADER_TABLE_SIZE: the most the client's encoder may use.
pub const TABLE_SIZE: usize = 4096;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HpackError {
    #[error("header block ends inside a field")]
    Truncated,
    #[error("integer too large in header block")]
    Integer,
    #[error("header table index {0} does not exist")]
    Index(usize),
    #[error(transparent)]
    Huffman(#[from] huffman::HuffmanError),
    #[error("dynamic table size update to {0} exceeds the limit")]
    TableSize(usize),
    #[error("dynamic table size update after the first field")]
    LateTableSizeUpdate,
}

pub struct Decoder {
    table: DynamicTable,
    name_buf: Vec<u8>,
    value_buf: Vec<u8>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            table: DynamicTable::new(TABLE_SIZE),
            name_buf: Vec::new(),
            value_buf: Vec::new(),
        }
    }
}

/// Where a decoded string is: in the block itself, or in one of the decoder's buffers.
#[derive(Clone, Copy)]
enum Str {
    Block(usize, usize),
    Name,
    Value,
}

impl Decoder {
    /// Decodes a whole header block, calling `field` with each name and value in order. A block
    /// is always decoded to its end, even when the caller will refuse the request, because the
    /// dynamic table must stay in step with the client's. Any error is a connection error
    /// (COMPRESSION_ERROR).
    pub fn decode(&mut self, block: &[u8], mut field: impl FnMut(&[u8], &[u8])) -> Result<(), HpackError> {
        let mut at = 0;
        let mut first = true;
        while at < block.len() {
            let b = block[at];
            if b & 0x80 != 0 {
                let index = integer(block, &mut at, 7)?;
                let (name, value) = entry(&self.table, index)?;
                field(name, value);
            } else if b & 0xe0 == 0x20 {
                let size = integer(block, &mut at, 5)?;
                if !first {
                    return Err(HpackError::LateTableSizeUpdate);
                }
                if size > TABLE_SIZE {
                    return Err(HpackError::TableSize(size));
                }
                self.table.set_max(size);
                continue;
            } else {
                // Literal: with incremental indexing (01), without (0000) or never indexed (0001).
                let indexing = b & 0x40 != 0;
                let index = integer(block, &mut at, if indexing { 6 } else { 4 })?;
                let name = if index == 0 {
                    string(block, &mut at, &mut self.name_buf, Str::Name)?
                } else {
                    entry(&self.table, index)?;
                    Str::Name
                };
                let value = string(block, &mut at, &mut self.value_buf, Str::Value)?;
                if index != 0 {
                    // The name is the table's; copied so the table can change below.
                    let (n, _) = entry(&self.table, index)?;
                    self.name_buf.clear();
                    self.name_buf.extend_from_slice(n);
                }
                let name = resolve(block, &self.name_buf, &self.value_buf, name);
                let value = resolve(block, &self.name_buf, &self.value_buf, value);
                field(name, value);
                if indexing {
                    self.table.insert(name, value);
                }
            }
            first = false;
        }
        Ok(())
    }
}

fn entry(table: &DynamicTable, index: usize) -> Result<(&[u8], &[u8]), HpackError> {
    match index {
        0 => Err(HpackError::Index(0)),
        1..=61 => Ok(STATIC[index - 1]),
        _ => table.get(index - 62).ok_or(HpackError::Index(index)),
    }
}

fn resolve<'a>(block: &'a [u8], name: &'a [u8], value: &'a [u8], s: Str) -> &'a [u8] {
    match s {
        Str::Block(from, to) => &block[from..to],
        Str::Name => name,
        Str::Value => value,
    }
}

/// An integer with an `n`-bit prefix (§5.1), starting at `block[*at]`.
fn integer(block: &[u8], at: &mut usize, n: u32) -> Result<usize, HpackError> {
    let mask = (1usize << n) - 1;
    let mut value = usize::from(*block.get(*at).ok_or(HpackError::Truncated)?) & mask;
    *at += 1;
    if value < mask {
        return Ok(value);
    }
    let mut shift = 0;
    loop {
        let b = *block.get(*at).ok_or(HpackError::Truncated)?;
        *at += 1;
        // Nothing in a header block needs more than 28 bits; larger is an attack or garbage.
        if shift > 21 {
            return Err(HpackError::Integer);
        }
        value += usize::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
}

/// A string literal (§5.2): plain ones stay in the block, Huffman-coded ones are decoded into
/// `buf`.
fn string(block: &[u8], at: &mut usize, buf: &mut Vec<u8>, into: Str) -> Result<Str, HpackError> {
    let huffman = *block.get(*at).ok_or(HpackError::Truncated)? & 0x80 != 0;
    let len = integer(block, at, 7)?;
    let end = at
        .checked_add(len)
        .filter(|&e| e <= block.len())
        .ok_or(HpackError::Truncated)?;
    let from = *at;
    *at = end;
    if huffman {
        buf.clear();
        huffman::decode(&block[from..end], buf)?;
        Ok(into)
    } else {
        Ok(Str::Block(from, end))
    }
}

/// Appends `:status` to a header block.
pub fn encode_status(out: &mut Vec<u8>, status: u16) {
    let index = match status {
        200 => 8,
        204 => 9,
        206 => 10,
        304 => 11,
        400 => 12,
        404 => 13,
        500 => 14,
        _ => 0,
    };
    if index != 0 {
        out.push(0x80 | index);
        return;
    }
    // Literal without indexing, name `:status` (index 8), three digits.
    let digits = [
        b'0' + (status / 100 % 10) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
    ];
    out.extend_from_slice(&[0x08, 3]);
    out.extend_from_slice(&digits);
}

/// Appends a field as a literal that is not indexed; `name` is in lower case. `sensitive`
/// marks it never-indexed, so later hops do not index it either.
pub fn encode_field(out: &mut Vec<u8>, name: &[u8], value: &[u8], sensitive: bool) {
    let flags = if sensitive { 0x10 } else { 0x00 };
    match table::static_name_index(name) {
        Some(index) => integer_into(out, flags, 4, usize::from(index)),
        None => {
            out.push(flags);
            integer_into(out, 0, 7, name.len());
            out.extend_from_slice(name);
        }
    }
    integer_into(out, 0, 7, value.len());
    out.extend_from_slice(value);
}

/// `encode_field` for a name in any case (sent in lower case), as HTTP/1.1 heads carry them.
pub fn encode_field_any_case(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    match table::static_name_index_any_case(name) {
        Some(index) => integer_into(out, 0, 4, usize::from(index)),
        None => {
            out.push(0);
            integer_into(out, 0, 7, name.len());
            let at = out.len();
            out.extend_from_slice(name);
            out[at..].make_ascii_lowercase();
        }
    }
    integer_into(out, 0, 7, value.len());
    out.extend_from_slice(value);
}

fn integer_into(out: &mut Vec<u8>, flags: u8, n: u32, value: usize) {
    let mask = (1usize << n) - 1;
    if value < mask {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | mask as u8);
    let mut rest = value - mask;
    while rest >= 0x80 {
        out.push(0x80 | (rest & 0x7f) as u8);
        rest >>= 7;
    }
    out.push(rest as u8);
}

#[cfg(test)]
mod tests;
