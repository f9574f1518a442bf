//! The demo's pictures and tones, and its PNG writer (stored deflate, no dependencies); WAV
//! and MP4 are written by [`easel_media`], as the host's offline provider writes them.

/// A small deterministic generator (splitmix64).
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A byte.
    pub fn byte(&mut self) -> u8 {
        (self.next_u64() >> 56) as u8
    }
}

/// The look of a picture: palette and pattern, all from one seed.
#[derive(Clone, Copy, Debug)]
pub struct Look {
    a: [u8; 3],
    b: [u8; 3],
    c: [u8; 3],
    pattern: u8,
    freq: u32,
}

impl Look {
    /// A look from a seed; `pattern` 0 gradient, 1 stripes, 2 checker.
    pub fn new(seed: u64, pattern: u8) -> Self {
        let mut rng = Rng::new(seed);
        let mut color = || [rng.byte(), rng.byte(), rng.byte()];
        let (a, b, c) = (color(), color(), color());
        Look { a, b, c, pattern, freq: 4 + (seed % 12) as u32 }
    }

    /// Colour of pixel `(x, y)` of a `w`×`h` picture at animation phase `t` (0..1).
    pub fn pixel(&self, x: u32, y: u32, w: u32, h: u32, t: f32) -> [u8; 3] {
        let fx = x as f32 / w.max(1) as f32;
        let fy = y as f32 / h.max(1) as f32;
        let mix = |p: [u8; 3], q: [u8; 3], k: f32| -> [u8; 3] {
            let k = k.clamp(0.0, 1.0);
            [0, 1, 2].map(|i| (p[i] as f32 * (1.0 - k) + q[i] as f32 * k) as u8)
        };
        let base = mix(self.a, self.b, (fx + fy) * 0.5);
        let shift = (t * w as f32) as u32;
        let cell = (w / self.freq).max(1);
        let on = match self.pattern {
            1 => ((x + shift) / cell).is_multiple_of(2),
            2 => (((x + shift) / cell) + (y / cell)).is_multiple_of(2),
            _ => {
                // A soft disc that travels with t.
                let cx = (0.25 + 0.5 * t) * w as f32;
                let cy = 0.5 * h as f32;
                let r = 0.25 * w.min(h) as f32;
                let (dx, dy) = (x as f32 - cx, y as f32 - cy);
                dx * dx + dy * dy < r * r
            }
        };
        if on { mix(base, self.c, 0.7) } else { base }
    }

    /// A tightly packed RGB picture.
    pub fn render(&self, w: u32, h: u32, t: f32) -> Vec<u8> {
        let mut out = Vec::with_capacity(w as usize * h as usize * 3);
        for y in 0..h {
            for x in 0..w {
                out.extend_from_slice(&self.pixel(x, y, w, h, t));
            }
        }
        out
    }
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// Adler-32, fed piece by piece.
struct Adler32(u32, u32);

impl Adler32 {
    fn new() -> Self {
        Adler32(1, 0)
    }

    fn update(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(5552) {
            for &x in chunk {
                self.0 += x as u32;
                self.1 += self.0;
            }
            self.0 %= 65521;
            self.1 %= 65521;
        }
    }

    fn value(&self) -> u32 {
        (self.1 << 16) | self.0
    }
}

/// Length of a zlib stream of stored deflate blocks holding `len` bytes.
fn zlib_stored_len(len: usize) -> usize {
    2 + len.div_ceil(65535).max(1) * 5 + len + 4
}

/// Appends a zlib stream of stored (uncompressed) deflate blocks holding the `len` bytes
/// `data` yields, so a large picture is not held twice more on its way into the file.
fn zlib_stored_into(out: &mut Vec<u8>, len: usize, data: &mut impl Iterator<Item = u8>) {
    out.extend_from_slice(&[0x78, 0x01]);
    let mut adler = Adler32::new();
    let mut left = len;
    loop {
        let block = left.min(65535);
        left -= block;
        out.push(u8::from(left == 0));
        out.extend_from_slice(&(block as u16).to_le_bytes());
        out.extend_from_slice(&(!(block as u16)).to_le_bytes());
        let start = out.len();
        out.extend(data.by_ref().take(block));
        adler.update(&out[start..]);
        if left == 0 {
            break;
        }
    }
    out.extend_from_slice(&adler.value().to_be_bytes());
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// Encodes a packed RGB picture as PNG.
pub fn png_rgb(w: u32, h: u32, rgb: &[u8]) -> Vec<u8> {
    let row = w as usize * 3;
    // Each row is its filter byte (none) and its pixels.
    let raw_len = (row + 1) * h as usize;
    let idat_len = zlib_stored_len(raw_len);
    let mut out = Vec::with_capacity(idat_len + 128);
    out.extend_from_slice(b"\x89PNG\r\n\x1a\n");
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, deflate, adaptive, no interlace
    png_chunk(&mut out, b"IHDR", &ihdr);
    png_chunk(&mut out, b"tEXt", b"Software\0easel demo provider");
    // IDAT is written in place rather than through `png_chunk`, which would copy it.
    out.extend_from_slice(&(idat_len as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(b"IDAT");
    let mut raw =
        rgb.chunks(row.max(1)).take(h as usize).flat_map(|line| std::iter::once(0).chain(line.iter().copied()));
    zlib_stored_into(&mut out, raw_len, &mut raw);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// A tone per letter or digit of `text`, a short rest per space or punctuation mark.
/// `base_hz` sets the voice, `speed` the pace.
pub fn speak(text: &str, sample_rate: u32, base_hz: f32, speed: f32, max_seconds: f32) -> Vec<i16> {
    let tone = (0.09 * sample_rate as f32 / speed) as usize;
    let rest = (0.05 * sample_rate as f32 / speed) as usize;
    let limit = (max_seconds * sample_rate as f32) as usize;
    let fade = (sample_rate as usize / 200).max(1);
    let mut out = Vec::new();
    for c in text.chars() {
        if out.len() >= limit {
            break;
        }
        if c.is_alphanumeric() {
            let step = (c.to_lowercase().next().unwrap_or(c) as u32 % 24) as f32;
            let hz = base_hz * 2f32.powf(step / 24.0);
            for i in 0..tone {
                let env = (i.min(tone - 1 - i).min(fade) as f32) / fade as f32;
                let phase = 2.0 * std::f32::consts::PI * hz * i as f32 / sample_rate as f32;
                let v = (phase.sin() * 0.8 + (2.0 * phase).sin() * 0.2) * env * 0.5;
                out.push((v * i16::MAX as f32) as i16);
            }
        } else {
            out.extend(std::iter::repeat_n(0i16, rest));
        }
    }
    if out.is_empty() {
        out.extend(std::iter::repeat_n(0i16, rest.max(1)));
    }
    out.truncate(limit.max(1));
    out
}
