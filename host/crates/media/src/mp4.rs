//! The MP4 file: one H.264 video track, its index (`moov`) before its samples (`mdat`), so a
//! player needs only the head of the file to start.

use crate::h264;

/// An H.264 video in an MP4 file that browsers play inline: `frames` pictures of
/// `width`×`height` (both even) at `fps`, the RGB colour of sample `(x, y)` of picture `f`
/// being `pixel(f, x, y)`. Every macroblock is stored as raw samples (`I_PCM`), so the file
/// is about 1.5 bytes per pixel and frame: larger than a compressed one, which a fixture or a
/// demo can afford.
///
/// # Panics
/// When a side is zero or odd (4:2:0 video crops in pairs of samples).
pub fn mp4(
    width: u32,
    height: u32,
    fps: u32,
    frames: u32,
    pixel: impl Fn(u32, u32, u32) -> [u8; 3],
) -> Vec<u8> {
    assert!(
        width > 0 && height > 0 && width.is_multiple_of(2) && height.is_multiple_of(2),
        "even, non-zero sides"
    );
    let (sps, pps) = h264::parameter_sets(width, height);
    let samples: Vec<Vec<u8>> = (0..frames)
        .map(|f| {
            let nal = h264::intra_frame(width, height, f, |x, y| pixel(f, x, y));
            [(nal.len() as u32).to_be_bytes().as_slice(), &nal].concat()
        })
        .collect();
    mp4_file(width, height, fps, &sps, &pps, &samples)
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
            &[
                1,
                crate::h264::PROFILE,
                crate::h264::CONSTRAINTS,
                crate::h264::LEVEL,
                0xFF,
                0xE1,
            ],
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
    let data: usize = sizes.iter().map(|&size| size as usize).sum();
    // Written straight into the file, so the samples are held twice at most (a plugin's
    // memory is bounded).
    let mut file = Vec::with_capacity(head + data);
    file.extend_from_slice(&ftyp);
    file.extend_from_slice(&moov(head as u32));
    file.extend_from_slice(&((8 + data) as u32).to_be_bytes());
    file.extend_from_slice(b"mdat");
    for sample in samples {
        file.extend_from_slice(sample);
    }
    file
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let drift = |f: u32, x: u32, y: u32| [9, (x * 12) as u8, (y * 25 + f) as u8];
        let video = mp4(20, 10, 4, 3, drift);
        assert_eq!(video, mp4(20, 10, 4, 3, drift));
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
