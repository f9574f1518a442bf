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

/// An H.264 video in an MP4 file that browsers play inline: a colour field drifting across
/// `frames` frames of `width`×`height` (both even) at `fps`. Every macroblock is stored as
/// raw samples (`I_PCM`), which every H.264 decoder takes and which needs no transform or
/// entropy coder here; the file is larger than a compressed one, which a test fixture can
/// afford. The MP4 index comes before the samples, so a player needs only the head to start.
pub fn mp4(width: u32, height: u32, fps: u32, frames: u32, seed: u64) -> Vec<u8> {
    assert!(
        width > 0 && height > 0 && width.is_multiple_of(2) && height.is_multiple_of(2),
        "even, non-zero sides"
    );
    let (sps, pps) = h264::parameter_sets(width, height);
    let [r, g, b, ..] = seed.to_le_bytes();
    let samples: Vec<Vec<u8>> = (0..frames)
        .map(|f| {
            let pixel = |x: u32, y: u32| {
                let shift = (x + f * width / frames.max(1)) % width;
                [
                    r,
                    g.wrapping_add((y * 255 / height) as u8),
                    b.wrapping_add((shift * 255 / width) as u8),
                ]
            };
            let nal = h264::intra_frame(width, height, f, pixel);
            [(nal.len() as u32).to_be_bytes().as_slice(), &nal].concat()
        })
        .collect();
    mp4_file(width, height, fps, &sps, &pps, &samples)
}

/// Writing H.264 Baseline pictures made only of `I_PCM` macroblocks.
mod h264 {
    /// An RBSP being written, most significant bit first.
    #[derive(Default)]
    struct Bits {
        out: Vec<u8>,
        current: u8,
        filled: u8,
    }

    impl Bits {
        fn put(&mut self, count: u32, value: u32) {
            for i in (0..count).rev() {
                self.current = (self.current << 1) | ((value >> i) & 1) as u8;
                self.filled += 1;
                if self.filled == 8 {
                    self.out.push(self.current);
                    (self.current, self.filled) = (0, 0);
                }
            }
        }

        fn flag(&mut self, on: bool) {
            self.put(1, u32::from(on));
        }

        /// Unsigned Exp-Golomb, `ue(v)`.
        fn ue(&mut self, value: u32) {
            let coded = value + 1;
            let len = 32 - coded.leading_zeros();
            self.put(len - 1, 0);
            self.put(len, coded);
        }

        fn align(&mut self) {
            while self.filled != 0 {
                self.put(1, 0);
            }
        }

        /// The stop bit and alignment that end every RBSP.
        fn finish(mut self) -> Vec<u8> {
            self.put(1, 1);
            self.align();
            self.out
        }
    }

    /// A NAL unit (`nal_ref_idc` 3) of `kind`, with the emulation-prevention bytes that keep
    /// its payload from looking like a start code.
    fn nal(kind: u8, rbsp: &[u8]) -> Vec<u8> {
        let mut out = vec![0x60 | kind];
        let mut zeros = 0;
        for &byte in rbsp {
            if zeros >= 2 && byte <= 3 {
                out.push(3);
                zeros = 0;
            }
            out.push(byte);
            zeros = if byte == 0 { zeros + 1 } else { 0 };
        }
        out
    }

    /// Baseline profile, level 3.0.
    pub const PROFILE: u8 = 66;
    pub const CONSTRAINTS: u8 = 0xC0;
    pub const LEVEL: u8 = 30;
    /// `log2_max_frame_num_minus4` is 0: frame numbers wrap at 16.
    const FRAME_NUMS: u32 = 16;
    const I_PCM: u32 = 25;

    fn macroblocks(side: u32) -> u32 {
        side.div_ceil(16)
    }

    /// The sequence and picture parameter sets (NAL units without a length prefix).
    pub fn parameter_sets(width: u32, height: u32) -> (Vec<u8>, Vec<u8>) {
        let (across, down) = (macroblocks(width), macroblocks(height));
        let mut sps = Bits::default();
        sps.put(8, u32::from(PROFILE));
        sps.put(8, u32::from(CONSTRAINTS));
        sps.put(8, u32::from(LEVEL));
        sps.ue(0); // seq_parameter_set_id
        sps.ue(0); // log2_max_frame_num_minus4
        sps.ue(2); // pic_order_cnt_type: output order is decoding order
        sps.ue(1); // max_num_ref_frames
        sps.flag(false); // gaps_in_frame_num_value_allowed_flag
        sps.ue(across - 1);
        sps.ue(down - 1);
        sps.flag(true); // frame_mbs_only_flag
        sps.flag(true); // direct_8x8_inference_flag
        // Cropping counts in pairs of samples (4:2:0) off the right and bottom edges.
        let (right, bottom) = ((across * 16 - width) / 2, (down * 16 - height) / 2);
        sps.flag(right + bottom > 0);
        if right + bottom > 0 {
            for offset in [0, right, 0, bottom] {
                sps.ue(offset);
            }
        }
        sps.flag(false); // vui_parameters_present_flag

        let mut pps = Bits::default();
        pps.ue(0); // pic_parameter_set_id
        pps.ue(0); // seq_parameter_set_id
        pps.flag(false); // entropy_coding_mode_flag: CAVLC
        pps.flag(false); // bottom_field_pic_order_in_frame_present_flag
        pps.ue(0); // num_slice_groups_minus1
        pps.ue(0); // num_ref_idx_l0_default_active_minus1
        pps.ue(0); // num_ref_idx_l1_default_active_minus1
        pps.flag(false); // weighted_pred_flag
        pps.put(2, 0); // weighted_bipred_idc
        for _ in 0..3 {
            pps.ue(0); // pic_init_qp_minus26, pic_init_qs_minus26, chroma_qp_index_offset: se(0)
        }
        pps.flag(false); // deblocking_filter_control_present_flag
        pps.flag(false); // constrained_intra_pred_flag
        pps.flag(false); // redundant_pic_cnt_present_flag
        (nal(7, &sps.finish()), nal(8, &pps.finish()))
    }

    /// Picture `index` as one intra slice: an IDR picture first, then reference I pictures.
    /// `pixel(x, y)` is the RGB colour of a sample inside the picture.
    pub fn intra_frame(
        width: u32,
        height: u32,
        index: u32,
        pixel: impl Fn(u32, u32) -> [u8; 3],
    ) -> Vec<u8> {
        let idr = index == 0;
        let mut slice = Bits::default();
        slice.ue(0); // first_mb_in_slice
        slice.ue(7); // slice_type: I, as every slice of the picture
        slice.ue(0); // pic_parameter_set_id
        slice.put(4, index % FRAME_NUMS); // frame_num
        if idr {
            slice.ue(0); // idr_pic_id
            slice.flag(false); // no_output_of_prior_pics_flag
            slice.flag(false); // long_term_reference_flag
        } else {
            slice.flag(false); // adaptive_ref_pic_marking_mode_flag: sliding window
        }
        slice.ue(0); // slice_qp_delta: se(0)
        // BT.601 studio range, so no sample is 0 (which early decoders refuse in I_PCM).
        let ycbcr = |x: u32, y: u32| {
            let [r, g, b] = pixel(x.min(width - 1), y.min(height - 1)).map(i32::from);
            [
                16 + (66 * r + 129 * g + 25 * b + 128) / 256,
                128 + (-38 * r - 74 * g + 112 * b + 128) / 256,
                128 + (112 * r - 94 * g - 18 * b + 128) / 256,
            ]
            .map(|v| v as u32)
        };
        for my in 0..macroblocks(height) {
            for mx in 0..macroblocks(width) {
                slice.ue(I_PCM);
                slice.align(); // pcm_alignment_zero_bit
                let (x0, y0) = (mx * 16, my * 16);
                for y in 0..16 {
                    for x in 0..16 {
                        slice.put(8, ycbcr(x0 + x, y0 + y)[0]);
                    }
                }
                for plane in [1, 2] {
                    for y in 0..8 {
                        for x in 0..8 {
                            slice.put(8, ycbcr(x0 + 2 * x, y0 + 2 * y)[plane]);
                        }
                    }
                }
            }
        }
        nal(if idr { 5 } else { 1 }, &slice.finish())
    }
}

/// An ISO BMFF box: its size, its type, then `parts`.
fn mp4_box(kind: &[u8; 4], parts: &[&[u8]]) -> Vec<u8> {
    let size = 8 + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(size as u32).to_be_bytes());
    out.extend_from_slice(kind);
    for part in parts {
        out.extend_from_slice(part);
    }
    out
}

/// A box with a version (0) and `flags`.
fn mp4_full_box(kind: &[u8; 4], flags: u32, parts: &[&[u8]]) -> Vec<u8> {
    let head = flags.to_be_bytes();
    mp4_box(kind, &[&[&head[..], &parts.concat()].concat()])
}

fn be32(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

fn be16(values: &[u16]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

/// One video track of `samples` (length-prefixed NAL units), all in one chunk after the index.
fn mp4_file(
    width: u32,
    height: u32,
    fps: u32,
    sps: &[u8],
    pps: &[u8],
    samples: &[Vec<u8>],
) -> Vec<u8> {
    let frames = samples.len() as u32;
    let millis = frames * 1000 / fps;
    let matrix = be32(&[0x1_0000, 0, 0, 0, 0x1_0000, 0, 0, 0, 0x4000_0000]);
    let ftyp = mp4_box(b"ftyp", &[b"isom", &be32(&[0x200]), b"isomiso2avc1mp41"]);
    let avcc = mp4_box(
        b"avcC",
        &[
            &[1, h264::PROFILE, h264::CONSTRAINTS, h264::LEVEL, 0xFF, 0xE1],
            &be16(&[sps.len() as u16]),
            sps,
            &[1],
            &be16(&[pps.len() as u16]),
            pps,
        ],
    );
    let avc1 = mp4_box(
        b"avc1",
        &[
            &[0; 6],
            &be16(&[1]), // data_reference_index
            &[0; 16],
            &be16(&[width as u16, height as u16]),
            &be32(&[0x48_0000, 0x48_0000, 0]), // 72 dpi
            &be16(&[1]),                       // frame_count
            &[0; 32],                          // compressorname
            &be16(&[0x18, 0xFFFF]),
            &avcc,
        ],
    );
    let sizes: Vec<u32> = samples.iter().map(|s| s.len() as u32).collect();
    let moov = |data_offset: u32| {
        let stbl = mp4_box(
            b"stbl",
            &[
                &mp4_full_box(b"stsd", 0, &[&be32(&[1]), &avc1]),
                &mp4_full_box(b"stts", 0, &[&be32(&[1, frames, 1])]),
                &mp4_full_box(b"stsc", 0, &[&be32(&[1, 1, frames, 1])]),
                &mp4_full_box(b"stsz", 0, &[&be32(&[0, frames]), &be32(&sizes)]),
                &mp4_full_box(b"stco", 0, &[&be32(&[1, data_offset])]),
            ],
        );
        let url = mp4_full_box(b"url ", 1, &[]);
        let minf = mp4_box(
            b"minf",
            &[
                &mp4_full_box(b"vmhd", 1, &[&[0; 8]]),
                &mp4_box(b"dinf", &[&mp4_full_box(b"dref", 0, &[&be32(&[1]), &url])]),
                &stbl,
            ],
        );
        let mdia = mp4_box(
            b"mdia",
            &[
                // Time in frames; language "und".
                &mp4_full_box(
                    b"mdhd",
                    0,
                    &[&be32(&[0, 0, fps, frames]), &be16(&[0x55C4, 0])],
                ),
                &mp4_full_box(b"hdlr", 0, &[&be32(&[0]), b"vide", &[0; 12], b"video\0"]),
                &minf,
            ],
        );
        let tkhd = mp4_full_box(
            b"tkhd",
            3, // enabled, in the movie
            &[
                &be32(&[0, 0, 1, 0, millis, 0, 0]),
                &[0; 8], // layer, alternate group, volume, reserved
                &matrix,
                &be32(&[width << 16, height << 16]),
            ],
        );
        let mvhd = mp4_full_box(
            b"mvhd",
            0,
            &[
                &be32(&[0, 0, 1000, millis, 0x1_0000]),
                &be16(&[0x100]),
                &[0; 10],
                &matrix,
                &[0; 24],
                &be32(&[2]), // next_track_ID
            ],
        );
        mp4_box(b"moov", &[&mvhd, &mp4_box(b"trak", &[&tkhd, &mdia])])
    };
    let head = ftyp.len() + moov(0).len() + 8;
    [
        ftyp,
        moov(head as u32),
        mp4_box(b"mdat", &[&samples.concat()]),
    ]
    .concat()
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

    /// `(type, payload)` of each box in `bytes`, which must hold whole boxes only.
    fn boxes(bytes: &[u8]) -> Vec<(&[u8], &[u8])> {
        let mut found = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let size = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            assert!(size >= 8 && at + size <= bytes.len(), "box at {at} fits");
            found.push((&bytes[at + 4..at + 8], &bytes[at + 8..at + size]));
            at += size;
        }
        found
    }

    #[test]
    fn mp4_indexes_one_h264_sample_per_frame() {
        let video = mp4(20, 10, 4, 3, 9);
        assert_eq!(video, mp4(20, 10, 4, 3, 9));
        let top = boxes(&video);
        let kinds: Vec<&[u8]> = top.iter().map(|(kind, _)| *kind).collect();
        assert_eq!(kinds, [&b"ftyp"[..], b"moov", b"mdat"]);
        let trak = boxes(top[1].1)[1].1;
        let mdia = boxes(trak)[1].1;
        let stbl = boxes(boxes(mdia)[2].1)[2].1;
        let tables = boxes(stbl);
        let stsz = tables[3].1;
        assert_eq!(u32::from_be_bytes(stsz[8..12].try_into().unwrap()), 3);
        let sizes: Vec<usize> = stsz[12..]
            .chunks(4)
            .map(|s| u32::from_be_bytes(s.try_into().unwrap()) as usize)
            .collect();
        let offset = u32::from_be_bytes(tables[4].1[8..12].try_into().unwrap()) as usize;
        let mdat = top[2].1;
        assert_eq!(
            offset,
            video.len() - mdat.len(),
            "the chunk starts the mdat payload"
        );
        assert_eq!(sizes.iter().sum::<usize>(), mdat.len());
        // Each sample is one length-prefixed NAL unit: an IDR picture, then non-IDR ones.
        let mut at = 0;
        for (i, size) in sizes.iter().enumerate() {
            let length = u32::from_be_bytes(mdat[at..at + 4].try_into().unwrap()) as usize;
            assert_eq!(length + 4, *size);
            assert_eq!(mdat[at + 4] & 0x1F, if i == 0 { 5 } else { 1 });
            at += size;
        }
        // Two 16x16 macroblocks of raw 4:2:0 samples, at least, in each picture.
        assert!(sizes.iter().all(|s| *s > 2 * 384));
    }
}
