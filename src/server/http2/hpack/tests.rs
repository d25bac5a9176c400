use super::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn fields(d: &mut Decoder, block: &[u8]) -> Result<Vec<(String, String)>, HpackError> {
    let mut got = Vec::new();
    d.decode(block, |n, v| {
        got.push((
            String::from_utf8_lossy(n).into_owned(),
            String::from_utf8_lossy(v).into_owned(),
        ))
    })?;
    Ok(got)
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
}

/// RFC 7541 C.3 (plain strings) and C.4 (the same requests Huffman-coded): three requests on
/// one connection, sharing the dynamic table.
#[test]
fn decodes_the_rfc_request_sequences() {
    for blocks in [
        [
            "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
            "8286 84be 5808 6e6f 2d63 6163 6865",
            "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
        ],
        [
            "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
            "8286 84be 5886 a8eb 1064 9cbf",
            "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
        ],
    ] {
        let mut d = Decoder::default();
        let base = [
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
        ];
        assert_eq!(fields(&mut d, &hex(blocks[0])).unwrap(), pairs(&base));
        assert_eq!(d.table.size(), 57);
        let mut second = base.to_vec();
        second.push(("cache-control", "no-cache"));
        assert_eq!(fields(&mut d, &hex(blocks[1])).unwrap(), pairs(&second));
        assert_eq!(d.table.size(), 110);
        let third = [
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/index.html"),
            (":authority", "www.example.com"),
            ("custom-key", "custom-value"),
        ];
        assert_eq!(fields(&mut d, &hex(blocks[2])).unwrap(), pairs(&third));
        assert_eq!(d.table.size(), 164);
        assert_eq!(d.table.get(0), Some((&b"custom-key"[..], &b"custom-value"[..])));
    }
}

#[test]
fn encoded_responses_decode_to_what_was_encoded() {
    let mut block = Vec::new();
    encode_status(&mut block, 200);
    encode_status(&mut block, 503);
    encode_field_any_case(&mut block, b"Content-Type", b"text/html");
    encode_field(&mut block, b"x-request-id", b"abc", true);
    encode_field(&mut block, b"x-long", &[b'v'; 300], false);
    let long = "v".repeat(300);
    let mut d = Decoder::default();
    assert_eq!(
        fields(&mut d, &block).unwrap(),
        pairs(&[
            (":status", "200"),
            (":status", "503"),
            ("content-type", "text/html"),
            ("x-request-id", "abc"),
            ("x-long", &long)
        ])
    );
    assert_eq!(d.table.len(), 0, "nothing the encoder sends is indexed");
    // The static fast path: `:status 200` is one byte, a static name one byte plus the value.
    assert_eq!(&block[..1], &[0x88]);
    assert_eq!(&block[6..8], &[0x0f, 0x10], "content-type is static entry 31");
    assert_eq!(block[18] & 0xf0, 0x10, "sensitive fields are never indexed");
}

#[test]
fn refuses_malformed_blocks() {
    let mut d = Decoder::default();
    assert_eq!(fields(&mut d, &[0x80]), Err(HpackError::Index(0)));
    assert_eq!(
        fields(&mut d, &[0xbe]),
        Err(HpackError::Index(62)),
        "the dynamic table is empty"
    );
    assert_eq!(fields(&mut d, &[0x82, 0x20]), Err(HpackError::LateTableSizeUpdate));
    assert_eq!(fields(&mut d, &[0x3f, 0xe2, 0x1f]), Err(HpackError::TableSize(4097)));
    assert_eq!(fields(&mut d, &[0x40, 0x05, b'a']), Err(HpackError::Truncated));
    assert_eq!(
        fields(&mut d, &[0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]),
        Err(HpackError::Integer)
    );
    assert_eq!(
        fields(&mut d, &[0x40, 0x81, 0xff, 0x00]),
        Err(HpackError::Huffman(huffman::HuffmanError::Padding))
    );
}

#[test]
fn a_size_update_shrinks_the_table() {
    let mut d = Decoder::default();
    fields(&mut d, &hex("8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d")).unwrap();
    assert_eq!(d.table.len(), 1);
    // Size 0 then back to 4096, then an index into the (now empty) table.
    assert_eq!(
        fields(&mut d, &[0x20, 0x3f, 0xe1, 0x1f, 0x82]).unwrap(),
        pairs(&[(":method", "GET")])
    );
    assert_eq!(d.table.len(), 0);
    assert_eq!(fields(&mut d, &[0xbe]), Err(HpackError::Index(62)));
}
