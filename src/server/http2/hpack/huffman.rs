//! The HPACK Huffman code (RFC 7541 §5.2, Appendix B). The code is canonical, so the bit
//! length of each symbol's code is all that needs writing down; the codes follow from them.

/// Length in bits of each symbol's code; index 256 is EOS.
const LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28,
    28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12,
    10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6,
    5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22,
    22, 23, 22, 23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22, 21, 20,
    22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28,
    27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28,
    27, 27, 27, 27, 27, 26, 30,
];

const EOS: u16 = 256;

/// Canonical decoding tables: for each code length, the first code and the end of its range,
/// both left-justified in 32 bits, and where its symbols start in `symbols`.
struct Canonical {
    first: [u64; 31],
    end: [u64; 31],
    offset: [u16; 31],
    symbols: [u16; 257],
}

const fn canonical() -> Canonical {
    let mut t = Canonical {
        first: [0; 31],
        end: [0; 31],
        offset: [0; 31],
        symbols: [0; 257],
    };
    let mut k = 0;
    let mut code: u64 = 0;
    let mut len = 1;
    while len <= 30 {
        t.offset[len] = k as u16;
        let mut count = 0u64;
        let mut sym = 0;
        while sym < 257 {
            if LENGTHS[sym] as usize == len {
                t.symbols[k] = sym as u16;
                k += 1;
                count += 1;
            }
            sym += 1;
        }
        t.first[len] = code << (32 - len);
        t.end[len] = (code + count) << (32 - len);
        code = (code + count) << 1;
        len += 1;
    }
    t
}

static CANONICAL: Canonical = canonical();

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HuffmanError {
    #[error("Huffman-coded string contains EOS")]
    Eos,
    #[error("Huffman-coded string has invalid padding")]
    Padding,
}

/// Appends the decoded bytes of `src` to `out`.
pub fn decode(src: &[u8], out: &mut Vec<u8>) -> Result<(), HuffmanError> {
    let t = &CANONICAL;
    out.reserve(src.len() * 8 / 5);
    let mut acc: u64 = 0;
    let mut bits: u32 = 0;
    let mut next = 0;
    loop {
        while bits <= 56 && next < src.len() {
            acc = (acc << 8) | u64::from(src[next]);
            bits += 8;
            next += 1;
        }
        if bits == 0 {
            return Ok(());
        }
        // The next 32 bits, or what is left padded with ones (the start of EOS).
        let window = if bits >= 32 {
            (acc >> (bits - 32)) & 0xffff_ffff
        } else {
            ((acc << (32 - bits)) | ((1u64 << (32 - bits)) - 1)) & 0xffff_ffff
        };
        let mut len = 5;
        while window >= t.end[len] {
            len += 1;
        }
        if len as u32 > bits {
            // Only padding may be left: fewer than 8 bits, all ones.
            let rest = acc & ((1u64 << bits) - 1);
            return if bits < 8 && rest == (1u64 << bits) - 1 {
                Ok(())
            } else {
                Err(HuffmanError::Padding)
            };
        }
        let sym = t.symbols[t.offset[len] as usize + ((window - t.first[len]) >> (32 - len)) as usize];
        if sym == EOS {
            return Err(HuffmanError::Eos);
        }
        out.push(sym as u8);
        bits -= len as u32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Appends the Huffman coding of `src` to `out`: the encoder sends plain strings, so only the
    /// tests encode (to check the decoder against every byte).
    fn encode(src: &[u8], out: &mut Vec<u8>) {
        let mut codes = [0u32; 257];
        for len in 1..=30 {
            let t = &CANONICAL;
            for i in t.offset[len] as usize..t.symbols.len() {
                let sym = t.symbols[i] as usize;
                if LENGTHS[sym] as usize != len {
                    break;
                }
                codes[sym] = ((t.first[len] >> (32 - len)) + (i - t.offset[len] as usize) as u64) as u32;
            }
        }
        let mut acc: u64 = 0;
        let mut bits = 0;
        for &b in src {
            let len = u32::from(LENGTHS[b as usize]);
            acc = (acc << len) | u64::from(codes[b as usize]);
            bits += len;
            while bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
        }
        if bits > 0 {
            out.push(((acc << (8 - bits)) | ((1 << (8 - bits)) - 1)) as u8);
        }
    }

    fn decoded(src: &[u8]) -> Result<Vec<u8>, HuffmanError> {
        let mut out = Vec::new();
        decode(src, &mut out).map(|()| out)
    }

    #[test]
    fn decodes_the_rfc_examples() {
        // RFC 7541 C.4.1 and C.4.2.
        let www = [0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff];
        assert_eq!(decoded(&www).unwrap(), b"www.example.com");
        assert_eq!(decoded(&[0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf]).unwrap(), b"no-cache");
    }

    #[test]
    fn every_byte_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        let mut coded = Vec::new();
        encode(&all, &mut coded);
        assert_eq!(decoded(&coded).unwrap(), all);
        for b in 0..=255u8 {
            let mut one = Vec::new();
            encode(&[b, b'a', b], &mut one);
            assert_eq!(decoded(&one).unwrap(), [b, b'a', b]);
        }
    }

    #[test]
    fn refuses_eos_and_bad_padding() {
        // EOS is 30 ones; a whole one in the string is an error.
        assert_eq!(decoded(&[0xff, 0xff, 0xff, 0xff]), Err(HuffmanError::Eos));
        // Eight bits of padding are too many.
        let mut coded = Vec::new();
        encode(b"a", &mut coded);
        coded.push(0xff);
        assert_eq!(decoded(&coded), Err(HuffmanError::Padding));
        // 'a' is 00011 (5 bits): padding with zeros instead of ones.
        assert_eq!(decoded(&[0b0001_1000]), Err(HuffmanError::Padding));
        assert_eq!(decoded(&[]).unwrap(), b"");
    }
}
