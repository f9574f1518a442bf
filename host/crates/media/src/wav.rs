//! The WAV file: one mono channel of 16-bit PCM.

/// Mono 16-bit PCM `samples` at `sample_rate` as a WAV file.
pub fn wav_mono16(sample_rate: u32, samples: &[i16]) -> Vec<u8> {
    let data_len = samples.len() as u32 * 2;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&sample_rate.to_le_bytes());
    out.extend_from_slice(&(sample_rate * 2).to_le_bytes()); // bytes per second
    out.extend_from_slice(&2u16.to_le_bytes()); // block align
    out.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for sample in samples {
        out.extend_from_slice(&sample.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_matches_the_data() {
        let wav = wav_mono16(8_000, &[0, 1, -1, i16::MAX, i16::MIN]);
        assert_eq!(&wav[..4], b"RIFF");
        assert_eq!(&wav[8..16], b"WAVEfmt ");
        let u32_at = |at: usize| u32::from_le_bytes(wav[at..at + 4].try_into().unwrap());
        assert_eq!(u32_at(4) as usize, wav.len() - 8);
        assert_eq!((u32_at(24), u32_at(28)), (8_000, 16_000));
        assert_eq!(u32_at(40), 10);
        assert_eq!(wav.len(), 44 + 10);
        assert_eq!(&wav[44 + 6..44 + 8], &i16::MAX.to_le_bytes());
    }
}
