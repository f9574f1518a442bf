//! The offline provider's deterministic outputs: pictures, tones and a drifting colour field,
//! written as PNG (the `png` crate), WAV and MP4 ([`easel_media`]).

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
        let pitch = 180.0
            + ((easel_media::fnv1a(word.as_bytes()) ^ seed).wrapping_add(i as u64) % 400) as f32;
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
    easel_media::wav_mono16(RATE, &samples)
}

/// An H.264 video in an MP4 file ([`easel_media::mp4`]): a colour field from `seed` drifting
/// across `frames` frames of `width`×`height` (both even) at `fps`.
pub fn mp4(width: u32, height: u32, fps: u32, frames: u32, seed: u64) -> Vec<u8> {
    let [r, g, b, ..] = seed.to_le_bytes();
    easel_media::mp4(width, height, fps, frames, |f, x, y| {
        let shift = (x + f * width / frames.max(1)) % width;
        [
            r,
            g.wrapping_add((y * 255 / height) as u8),
            b.wrapping_add((shift * 255 / width) as u8),
        ]
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
    fn speech_and_video_follow_their_input() {
        let (one, two) = (wav("hello", 1), wav("hello there", 1));
        assert_eq!(one, wav("hello", 1));
        assert!(two.len() > one.len(), "a tone per word");
        assert_ne!(wav("hello", 2), one);
        let video = mp4(32, 18, 8, 4, 5);
        assert_eq!(video, mp4(32, 18, 8, 4, 5));
        assert_ne!(video, mp4(32, 18, 8, 4, 6));
    }
}
