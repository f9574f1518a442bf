//! Small, dependency-light encoders for the offline provider's deterministic outputs.

/// A PNG of `width`×`height` whose colours and bands follow `seed`.
pub fn png(width: u32, height: u32, seed: u64) -> Vec<u8> {
    let [r0, g0, b0, r1, g1, b1, bands, tilt] = seed.to_le_bytes();
    let bands = u32::from(bands % 12) + 2;
    let mut pixels = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        for x in 0..width {
            let t = (x as f32 / width.max(1) as f32
                + y as f32 / height.max(1) as f32 * (tilt as f32 / 255.0))
                / 2.0;
            let stripe =
                ((x * bands / width.max(1)) + (y * bands / height.max(1))).is_multiple_of(2);
            let mix = |a: u8, b: u8| {
                let v = a as f32 * (1.0 - t) + b as f32 * t;
                if stripe { v as u8 } else { (v * 0.8) as u8 }
            };
            pixels.extend_from_slice(&[mix(r0, r1), mix(g0, g1), mix(b0, b1)]);
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header().expect("PNG header for a valid size");
    writer
        .write_image_data(&pixels)
        .expect("PNG data of the declared size");
    writer.finish().expect("PNG trailer");
    out
}

/// A 16 kHz mono 16-bit WAV: one tone per word of `text`, pitched by the word.
pub fn wav(text: &str, seed: u64) -> Vec<u8> {
    const RATE: u32 = 16_000;
    let mut samples: Vec<i16> = Vec::new();
    let words: Vec<&str> = text.split_whitespace().collect();
    let words = if words.is_empty() { vec!["·"] } else { words };
    for (i, word) in words.iter().take(200).enumerate() {
        let pitch = 180.0 + ((fnv1a(word.as_bytes()) ^ seed).wrapping_add(i as u64) % 400) as f32;
        let len = RATE as usize * (80 + 40 * word.chars().count().min(10)) / 1000;
        for n in 0..len {
            let envelope = (n as f32 / len as f32 * std::f32::consts::PI).sin();
            let value = (2.0 * std::f32::consts::PI * pitch * n as f32 / RATE as f32).sin()
                * envelope
                * 12_000.0;
            samples.push(value as i16);
        }
        samples.extend(std::iter::repeat_n(0, RATE as usize / 20));
    }
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&RATE.to_le_bytes());
    out.extend_from_slice(&(RATE * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for sample in samples {
        out.extend_from_slice(&sample.to_le_bytes());
    }
    out
}

/// An uncompressed RGB AVI (playable by ffmpeg, VLC and browsers' players that take AVI):
/// a colour field drifting across `frames` frames.
pub fn avi(width: u32, height: u32, fps: u32, frames: u32, seed: u64) -> Vec<u8> {
    let row = (width * 3).div_ceil(4) * 4; // DIB rows are 4-byte aligned
    let frame_len = row * height;
    let chunk = |id: &[u8; 4], body: &[u8]| {
        let mut c = Vec::with_capacity(8 + body.len() + 1);
        c.extend_from_slice(id);
        c.extend_from_slice(&(body.len() as u32).to_le_bytes());
        c.extend_from_slice(body);
        if body.len() % 2 == 1 {
            c.push(0);
        }
        c
    };
    let list = |kind: &[u8; 4], body: &[u8]| {
        let mut inner = kind.to_vec();
        inner.extend_from_slice(body);
        chunk(b"LIST", &inner)
    };
    let u32s = |values: &[u32]| {
        values
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>()
    };

    let avih = u32s(&[
        1_000_000 / fps,
        frame_len * fps,
        0,
        0x10,
        frames,
        0,
        1,
        frame_len,
        width,
        height,
        0,
        0,
        0,
        0,
    ]);
    let mut strh = b"vids".to_vec();
    strh.extend_from_slice(&[0; 4]); // handler: uncompressed
    strh.extend_from_slice(&u32s(&[0, 0, 0, 1, fps, 0, frames, frame_len, u32::MAX, 0]));
    strh.extend_from_slice(&[0; 8]); // frame rectangle
    let mut strf = u32s(&[40, width]);
    strf.extend_from_slice(&(height as i32).to_le_bytes());
    strf.extend_from_slice(&1u16.to_le_bytes());
    strf.extend_from_slice(&24u16.to_le_bytes());
    strf.extend_from_slice(&u32s(&[0, frame_len, 0, 0, 0, 0]));
    let strl = list(
        b"strl",
        &[chunk(b"strh", &strh), chunk(b"strf", &strf)].concat(),
    );
    let hdrl = list(b"hdrl", &[chunk(b"avih", &avih), strl].concat());

    let [r, g, b, ..] = seed.to_le_bytes();
    let mut movi = Vec::new();
    let mut index = Vec::new();
    for f in 0..frames {
        let mut frame = vec![0u8; frame_len as usize];
        for y in 0..height {
            for x in 0..width {
                let shift = (x + f * width / frames.max(1)) % width.max(1);
                let o = (y * row + x * 3) as usize;
                frame[o] = b.wrapping_add((shift * 255 / width.max(1)) as u8);
                frame[o + 1] = g.wrapping_add((y * 255 / height.max(1)) as u8);
                frame[o + 2] = r;
            }
        }
        index.extend_from_slice(b"00db");
        index.extend_from_slice(&u32s(&[0x10, 4 + movi.len() as u32, frame_len]));
        movi.extend_from_slice(&chunk(b"00db", &frame));
    }
    let body = [
        b"AVI ".to_vec(),
        hdrl,
        list(b"movi", &movi),
        chunk(b"idx1", &index),
    ]
    .concat();
    chunk(b"RIFF", &body)
}

/// FNV-1a, for deterministic seeds from prompts.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_has_the_asked_size_and_is_deterministic() {
        let a = png(33, 17, 7);
        let decoder = png::Decoder::new(std::io::Cursor::new(&a));
        let reader = decoder.read_info().unwrap();
        assert_eq!((reader.info().width, reader.info().height), (33, 17));
        assert_eq!(a, png(33, 17, 7));
        assert_ne!(a, png(33, 17, 8));
    }

    #[test]
    fn wav_header_matches_its_data() {
        let w = wav("hello there", 1);
        assert_eq!(&w[..4], b"RIFF");
        assert_eq!(&w[8..16], b"WAVEfmt ");
        let data_len = u32::from_le_bytes(w[40..44].try_into().unwrap()) as usize;
        assert_eq!(w.len(), 44 + data_len);
        assert_eq!(
            u32::from_le_bytes(w[4..8].try_into().unwrap()) as usize,
            w.len() - 8
        );
    }

    #[test]
    fn avi_riff_sizes_are_consistent() {
        let v = avi(16, 8, 4, 3, 9);
        assert_eq!(&v[..4], b"RIFF");
        assert_eq!(&v[8..12], b"AVI ");
        assert_eq!(
            u32::from_le_bytes(v[4..8].try_into().unwrap()) as usize,
            v.len() - 8
        );
        assert!(v.windows(4).any(|w| w == b"idx1"));
    }
}
