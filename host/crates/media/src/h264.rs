//! H.264 Baseline pictures made only of `I_PCM` macroblocks: raw samples, which every
//! decoder takes and which need no transform or entropy coder.

/// An RBSP being written, most significant bit first.
#[derive(Default)]
struct Bits {
    out: Vec<u8>,
    current: u8,
    filled: u8,
}

impl Bits {
    fn put(&mut self, count: u32, value: u32) {
        if count == 8 && self.filled == 0 {
            // A whole byte on a byte boundary: every raw sample of an I_PCM macroblock.
            self.out.push(value as u8);
            return;
        }
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

/// Baseline profile (with its constraint flags), level 3.0.
pub(crate) const PROFILE: u8 = 66;
/// The constraint flags of Baseline.
pub(crate) const CONSTRAINTS: u8 = 0xC0;
pub(crate) const LEVEL: u8 = 30;
/// `log2_max_frame_num_minus4` is 0: frame numbers wrap at 16.
const FRAME_NUMS: u32 = 16;
const I_PCM: u32 = 25;

fn macroblocks(side: u32) -> u32 {
    side.div_ceil(16)
}

/// The sequence and picture parameter sets (NAL units without a length prefix).
pub(crate) fn parameter_sets(width: u32, height: u32) -> (Vec<u8>, Vec<u8>) {
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
pub(crate) fn intra_frame(
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
