//! CLIP's byte-level BPE tokenizer over the vocabulary easel ships
//! (`assets/bpe_simple_vocab_16e6.txt.gz`, the file OpenAI's CLIP and open_clip use).
//!
//! Invariants: output is always exactly [`MAX_LEN`] ids: `<|startoftext|>`, at most 75
//! prompt tokens (longer prompts are truncated), `<|endoftext|>`, then padding: by default
//! `<|endoftext|>` (Stable Diffusion 1.x's pad token), or the model's own (SD 2.x's `!`).
//! Text is whitespace-collapsed and lowercased first, as CLIP does (without ftfy's mojibake
//! repair).

use std::collections::HashMap;
use std::io::Read;

use anyhow::{Context, Result};

/// Sequence length of CLIP's text encoder.
pub const MAX_LEN: usize = 77;
/// `<|startoftext|>`.
pub const BOS: u32 = 49406;
/// `<|endoftext|>`, also the default padding id.
pub const EOS: u32 = 49407;

/// The longest word (in bytes) BPE merges; the rest of a longer word is dropped. Real words
/// are far shorter, and BPE's cost grows with the square of a word's length, so a prompt of
/// one 2 MiB "word" would otherwise hold the model for hours.
const MAX_WORD_BYTES: usize = 1024;

static VOCAB_GZ: &[u8] = include_bytes!("../assets/bpe_simple_vocab_16e6.txt.gz");

/// The tokenizer; build once with [`Tokenizer::new`] and share.
pub struct Tokenizer {
    encoder: HashMap<String, u32>,
    ranks: HashMap<(String, String), usize>,
    byte_encoder: [char; 256],
    pattern: regex::Regex,
    pad: u32,
}

fn bytes_to_unicode() -> [char; 256] {
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let mut table = ['\0'; 256];
    for (b, c) in bs.iter().zip(cs.iter()) {
        table[*b as usize] = char::from_u32(*c).unwrap_or('\0');
    }
    table
}

impl Tokenizer {
    /// Parses the shipped vocabulary.
    pub fn new() -> Result<Self> {
        let mut text = String::new();
        flate2::read::GzDecoder::new(VOCAB_GZ)
            .read_to_string(&mut text)
            .context("decompressing the CLIP vocabulary")?;
        let merges: Vec<(String, String)> = text
            .split('\n')
            .skip(1)
            .take(49152 - 256 - 2)
            .filter_map(|l| {
                let mut it = l.split(' ');
                Some((it.next()?.to_string(), it.next()?.to_string()))
            })
            .collect();
        // Byte order of bytes_to_unicode's construction, as CLIP's dict preserves it.
        let mut order: Vec<u32> = (b'!' as u32..=b'~' as u32)
            .chain(0xA1..=0xAC)
            .chain(0xAE..=0xFF)
            .collect();
        for b in 0..256u32 {
            if !order.contains(&b) {
                order.push(b);
            }
        }
        let byte_encoder = bytes_to_unicode();
        let mut vocab: Vec<String> = order
            .iter()
            .map(|b| byte_encoder[*b as usize].to_string())
            .collect();
        let with_end: Vec<String> = vocab.iter().map(|v| format!("{v}</w>")).collect();
        vocab.extend(with_end);
        for (a, b) in &merges {
            vocab.push(format!("{a}{b}"));
        }
        vocab.push("<|startoftext|>".into());
        vocab.push("<|endoftext|>".into());
        let encoder = vocab
            .into_iter()
            .enumerate()
            .map(|(i, v)| (v, i as u32))
            .collect();
        let ranks = merges
            .into_iter()
            .enumerate()
            .map(|(i, m)| (m, i))
            .collect();
        let pattern = regex::Regex::new(
            r"(?i)<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+",
        )?;
        Ok(Self {
            encoder,
            ranks,
            byte_encoder,
            pattern,
            pad: EOS,
        })
    }

    fn bpe(&self, token: &str) -> Vec<String> {
        let chars: Vec<char> = token.chars().collect();
        let mut word: Vec<String> = chars.iter().map(|c| c.to_string()).collect();
        if let Some(last) = word.last_mut() {
            last.push_str("</w>");
        }
        loop {
            let best = word
                .windows(2)
                .enumerate()
                .filter_map(|(i, w)| {
                    self.ranks
                        .get(&(w[0].clone(), w[1].clone()))
                        .map(|r| (*r, i))
                })
                .min();
            let Some((_, i)) = best else { break };
            let (a, b) = (word[i].clone(), word[i + 1].clone());
            let mut merged = Vec::with_capacity(word.len());
            let mut i = 0;
            while i < word.len() {
                if i + 1 < word.len() && word[i] == a && word[i + 1] == b {
                    merged.push(format!("{a}{b}"));
                    i += 2;
                } else {
                    merged.push(word[i].clone());
                    i += 1;
                }
            }
            word = merged;
            if word.len() == 1 {
                break;
            }
        }
        word
    }

    /// BPE ids of `text`, without BOS/EOS and without truncation.
    pub fn encode_raw(&self, text: &str) -> Vec<u32> {
        self.encode_first(text, usize::MAX)
    }

    /// The first `limit` BPE ids of `text`. Words past them are never merged, so a long
    /// prompt costs no more than its first `limit` tokens; a word longer than
    /// [`MAX_WORD_BYTES`] is cut there (BPE is quadratic in a word's length).
    fn encode_first(&self, text: &str, limit: usize) -> Vec<u32> {
        let cleaned = text
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase();
        let mut ids = Vec::new();
        for m in self.pattern.find_iter(&cleaned) {
            if ids.len() >= limit {
                break;
            }
            let mapped: String = m
                .as_str()
                .bytes()
                .take(MAX_WORD_BYTES)
                .map(|b| self.byte_encoder[b as usize])
                .collect();
            for piece in self.bpe(&mapped) {
                if let Some(id) = self.encoder.get(&piece) {
                    ids.push(*id);
                }
            }
        }
        ids.truncate(limit);
        ids
    }

    /// Exactly [`MAX_LEN`] ids: BOS, the (truncated) prompt, EOS, padding.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = vec![BOS];
        ids.extend(self.encode_first(text, MAX_LEN - 2));
        ids.push(EOS);
        ids.resize(MAX_LEN, self.pad);
        ids
    }

    /// Pads with `token` (a vocabulary entry, such as SD 2.x's `!`) instead of EOS.
    pub fn set_pad(&mut self, token: &str) -> Result<()> {
        self.pad = *self
            .encoder
            .get(token)
            .with_context(|| format!("pad token {token:?} is not in the vocabulary"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_with_eos_or_the_models_own_token() {
        let mut tokenizer = Tokenizer::new().unwrap();
        let ids = tokenizer.encode("a cat");
        assert_eq!(ids.len(), MAX_LEN);
        assert_eq!(ids[0], BOS);
        let end = ids.iter().position(|&id| id == EOS).unwrap();
        assert!(ids[end..].iter().all(|&id| id == EOS));
        // SD 2.x: "!" (id 0) after the one EOS.
        tokenizer.set_pad("!").unwrap();
        let padded = tokenizer.encode("a cat");
        assert_eq!(padded[..=end], ids[..=end]);
        assert!(padded[end + 1..].iter().all(|&id| id == 0));
        assert!(tokenizer.set_pad("not-a-token").is_err());
    }

    #[test]
    fn a_huge_prompt_costs_only_its_first_tokens() {
        let tokenizer = Tokenizer::new().unwrap();
        let words = "a watercolor of a lighthouse at dawn, ".repeat(40_000);
        let started = std::time::Instant::now();
        let ids = tokenizer.encode(&words);
        // The same 75 tokens as a prompt just long enough to be truncated.
        assert_eq!(ids, tokenizer.encode(&words[..2_000]));
        // One 2 MiB word: cut at MAX_WORD_BYTES instead of merged whole.
        let word = "x".repeat(2 << 20);
        assert_eq!(
            tokenizer.encode(&word),
            tokenizer.encode(&word[..MAX_WORD_BYTES])
        );
        assert!(
            started.elapsed().as_secs() < 30,
            "took {:?}",
            started.elapsed()
        );
    }
}
