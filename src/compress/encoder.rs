//! Streaming encoders: each body chunk is fed in as it arrives and whatever compressed output is
//! ready goes out; nothing waits for the whole body.

use super::{Coding, Levels};
use bytes::Bytes;
use std::io::{self, Write};

enum Inner {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
    Done,
}

pub struct Encoder {
    inner: Inner,
    /// Input written since the last flush: a flush would produce output.
    dirty: bool,
}

/// Brotli window (2^18 = 256 KiB): the default 4 MiB window costs that much memory per stream.
const BROTLI_LGWIN: u32 = 18;
/// zstd window (2^20 = 1 MiB), for the same reason.
const ZSTD_WINDOW_LOG: u32 = 20;

impl Encoder {
    pub fn new(coding: Coding, levels: &Levels) -> io::Result<Encoder> {
        let inner = match coding {
            Coding::Gzip => Inner::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(levels.gzip),
            )),
            Coding::Brotli => Inner::Brotli(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                16 * 1024,
                levels.brotli,
                BROTLI_LGWIN,
            ))),
            Coding::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(Vec::new(), levels.zstd)?;
                e.window_log(ZSTD_WINDOW_LOG)?;
                Inner::Zstd(e)
            }
        };
        Ok(Encoder { inner, dirty: false })
    }

    pub fn is_done(&self) -> bool {
        matches!(self.inner, Inner::Done)
    }

    /// Compresses `data`; returns the output that is ready (often none yet).
    pub fn write(&mut self, data: &[u8]) -> io::Result<Bytes> {
        if data.is_empty() {
            return Ok(Bytes::new());
        }
        self.dirty = true;
        match &mut self.inner {
            Inner::Gzip(e) => e.write_all(data)?,
            Inner::Brotli(e) => e.write_all(data)?,
            Inner::Zstd(e) => e.write_all(data)?,
            Inner::Done => return Err(io::Error::other("encoder already finished")),
        }
        Ok(self.take())
    }

    /// Pushes out everything written so far (a sync flush), so a client sees data the origin has
    /// sent even while the origin pauses. Empty when nothing was written since the last flush.
    pub fn flush(&mut self) -> io::Result<Bytes> {
        if !self.dirty {
            return Ok(Bytes::new());
        }
        self.dirty = false;
        match &mut self.inner {
            Inner::Gzip(e) => e.flush()?,
            Inner::Brotli(e) => e.flush()?,
            Inner::Zstd(e) => e.flush()?,
            Inner::Done => {}
        }
        Ok(self.take())
    }

    /// Ends the stream; returns the last output (trailer, checksum).
    pub fn finish(&mut self) -> io::Result<Bytes> {
        let out = match std::mem::replace(&mut self.inner, Inner::Done) {
            Inner::Gzip(e) => e.finish()?,
            Inner::Brotli(e) => e.into_inner(),
            Inner::Zstd(e) => e.finish()?,
            Inner::Done => Vec::new(),
        };
        Ok(Bytes::from(out))
    }

    fn take(&mut self) -> Bytes {
        let buf = match &mut self.inner {
            Inner::Gzip(e) => e.get_mut(),
            Inner::Brotli(e) => e.get_mut(),
            Inner::Zstd(e) => e.get_mut(),
            Inner::Done => return Bytes::new(),
        };
        if buf.is_empty() {
            Bytes::new()
        } else {
            Bytes::from(std::mem::take(buf))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn round_trip(coding: Coding) {
        let levels = Levels::default();
        let mut enc = Encoder::new(coding, &levels).unwrap();
        let input: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        let mut out = Vec::new();
        for chunk in input.chunks(7000) {
            out.extend_from_slice(&enc.write(chunk).unwrap());
        }
        out.extend_from_slice(&enc.flush().unwrap());
        out.extend_from_slice(&enc.finish().unwrap());
        assert!(enc.is_done());
        assert!(out.len() < input.len() / 4, "{coding:?} compressed to {}", out.len());
        let mut decoded = Vec::new();
        match coding {
            Coding::Gzip => {
                flate2::read::GzDecoder::new(&out[..])
                    .read_to_end(&mut decoded)
                    .unwrap();
            }
            Coding::Brotli => {
                brotli::Decompressor::new(&out[..], 4096)
                    .read_to_end(&mut decoded)
                    .unwrap();
            }
            Coding::Zstd => {
                decoded = zstd::stream::decode_all(&out[..]).unwrap();
            }
        }
        assert_eq!(decoded, input);
    }

    #[test]
    fn every_coding_round_trips() {
        for c in [Coding::Gzip, Coding::Brotli, Coding::Zstd] {
            round_trip(c);
        }
    }

    #[test]
    fn flush_makes_written_data_decodable() {
        let mut enc = Encoder::new(Coding::Gzip, &Levels::default()).unwrap();
        let mut out = enc.write(b"hello ").unwrap().to_vec();
        out.extend_from_slice(&enc.flush().unwrap());
        // A sync flush ends on a byte boundary: the prefix decodes to all the input so far.
        let mut d = flate2::write::GzDecoder::new(Vec::new());
        d.write_all(&out).unwrap();
        d.flush().unwrap();
        assert_eq!(d.get_ref().as_slice(), b"hello ");
        assert!(enc.flush().unwrap().is_empty(), "nothing new to flush");
    }
}
