//! The static table (RFC 7541 Appendix A) and the decoder's dynamic table (§2.3.2, §4).

use std::collections::VecDeque;

pub const STATIC: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// The static-table index (1-based) of the first entry named `name`, which is in lower case.
pub fn static_name_index(name: &[u8]) -> Option<u8> {
    candidates(name.len())
        .iter()
        .copied()
        .find(|&i| STATIC[i as usize - 1].0 == name)
}

/// `static_name_index` for a name in any case, as HTTP/1.1 field names arrive.
pub fn static_name_index_any_case(name: &[u8]) -> Option<u8> {
    candidates(name.len())
        .iter()
        .copied()
        .find(|&i| STATIC[i as usize - 1].0.eq_ignore_ascii_case(name))
}

fn candidates(len: usize) -> &'static [u8] {
    // Candidates by length keep this to a few comparisons.
    match len {
        3 => &[21, 60],
        4 => &[33, 34, 37, 38, 45, 59],
        5 => &[22, 50],
        6 => &[19, 32, 35, 54],
        7 => &[36, 51, 52],
        8 => &[39, 42, 46],
        10 => &[55, 58],
        11 => &[53],
        12 => &[31, 47],
        13 => &[18, 23, 24, 30, 41, 44],
        14 => &[15, 28],
        15 => &[16, 17],
        16 => &[26, 27, 29, 61],
        17 => &[40, 57],
        18 => &[48],
        19 => &[25, 43, 49],
        25 => &[56],
        27 => &[20],
        _ => &[],
    }
}

/// Per RFC 7541 §4.1: an entry's size is its name and value plus 32.
const ENTRY_OVERHEAD: usize = 32;

struct Entry {
    /// Name and value in one allocation.
    bytes: Box<[u8]>,
    name_len: usize,
}

#[derive(Default)]
pub struct DynamicTable {
    entries: VecDeque<Entry>,
    size: usize,
    max: usize,
}

impl DynamicTable {
    pub fn new(max: usize) -> Self {
        DynamicTable {
            entries: VecDeque::new(),
            size: 0,
            max,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// Entry `i` counted from the newest (0).
    pub fn get(&self, i: usize) -> Option<(&[u8], &[u8])> {
        self.entries.get(i).map(|e| e.bytes.split_at(e.name_len))
    }

    pub fn set_max(&mut self, max: usize) {
        self.max = max;
        self.evict_to(max);
    }

    /// Adds `name: value`, evicting the oldest entries to make room; an entry larger than the
    /// whole table empties it and is not added (§4.4).
    pub fn insert(&mut self, name: &[u8], value: &[u8]) {
        let size = name.len() + value.len() + ENTRY_OVERHEAD;
        if size > self.max {
            self.evict_to(0);
            return;
        }
        self.evict_to(self.max - size);
        let mut bytes = Vec::with_capacity(name.len() + value.len());
        bytes.extend_from_slice(name);
        bytes.extend_from_slice(value);
        self.entries.push_front(Entry {
            bytes: bytes.into_boxed_slice(),
            name_len: name.len(),
        });
        self.size += size;
    }

    fn evict_to(&mut self, target: usize) {
        while self.size > target {
            let Some(e) = self.entries.pop_back() else { break };
            self.size -= e.bytes.len() + ENTRY_OVERHEAD;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_names_are_found_in_any_case() {
        for (name, _) in STATIC.iter() {
            let first = STATIC.iter().position(|(n, _)| n == name).unwrap() + 1;
            if name.starts_with(b":") {
                continue;
            }
            assert_eq!(
                static_name_index(name),
                Some(first as u8),
                "{}",
                String::from_utf8_lossy(name)
            );
            let upper = name.to_ascii_uppercase();
            assert_eq!(static_name_index_any_case(&upper), Some(first as u8));
            assert_eq!(static_name_index(&upper), None, "lower-case names only");
        }
        assert_eq!(static_name_index(b"x-request-id"), None);
        assert_eq!(static_name_index(b"dates"), None);
    }

    #[test]
    fn dynamic_table_evicts_the_oldest_and_drops_what_cannot_fit() {
        let mut t = DynamicTable::new(100);
        t.insert(b"a", b"1"); // 34
        t.insert(b"b", b"2"); // 34
        assert_eq!(t.get(0), Some((&b"b"[..], &b"2"[..])));
        assert_eq!(t.size(), 68);
        t.insert(b"c", b"3"); // evicts "a"
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(1), Some((&b"b"[..], &b"2"[..])));
        t.set_max(40);
        assert_eq!(t.len(), 1);
        t.insert(b"long-name", &[b'x'; 40]);
        assert!(t.is_empty());
        assert_eq!(t.size(), 0);
    }
}
