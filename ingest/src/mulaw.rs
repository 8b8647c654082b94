//! G.711 mu-law, the encoding of Twilio's 8 kHz phone audio. Decoding is one table lookup per
//! sample; encoding (for the simulator and for audio sent back to Twilio) is arithmetic.

const BIAS: i32 = 0x84;
const CLIP: i32 = 32635;

const fn decode_one(byte: u8) -> i16 {
    let u = !byte;
    let exponent = ((u >> 4) & 0x07) as i32;
    let mantissa = (u & 0x0F) as i32;
    let magnitude = (((mantissa << 3) + BIAS) << exponent) - BIAS;
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

const fn build_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = decode_one(i as u8);
        i += 1;
    }
    table
}

/// Linear value of every mu-law byte.
static DECODE: [i16; 256] = build_table();

/// Decodes one mu-law byte to 16-bit linear PCM.
#[inline]
pub fn decode_sample(byte: u8) -> i16 {
    DECODE[byte as usize]
}

/// Decodes mu-law bytes to 16-bit linear PCM, appending to `out`.
pub fn decode_into(bytes: &[u8], out: &mut Vec<i16>) {
    out.extend(bytes.iter().map(|&b| DECODE[b as usize]));
}

/// Encodes one 16-bit linear sample to mu-law.
pub fn encode_sample(sample: i16) -> u8 {
    let mut x = sample as i32;
    let sign = if x < 0 {
        x = -x;
        0x80
    } else {
        0
    };
    x = x.min(CLIP) + BIAS;
    // x is in [0x84, 0x7FFF]: its top bit sits at position 7..=14, which gives the segment.
    let exponent = (31 - (x as u32).leading_zeros() as i32 - 7).clamp(0, 7);
    let mantissa = (x >> (exponent + 3)) & 0x0F;
    !((sign | (exponent << 4) | mantissa) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(decode_sample(0xFF), 0);
        assert_eq!(decode_sample(0x7F), 0);
        assert_eq!(decode_sample(0x00), -32124);
        assert_eq!(decode_sample(0x80), 32124);
        assert_eq!(encode_sample(0), 0xFF);
        assert_eq!(encode_sample(i16::MAX), 0x80);
        assert_eq!(encode_sample(i16::MIN), 0x00);
    }

    #[test]
    fn every_code_survives_a_round_trip() {
        for byte in 0..=255u8 {
            let back = encode_sample(decode_sample(byte));
            // 0x7F and 0xFF are both zero; every other code is its own.
            assert_eq!(decode_sample(back), decode_sample(byte), "code {byte:#x}");
        }
    }

    #[test]
    fn encoding_error_stays_within_the_segment_step() {
        for sample in (-32000i32..32000).step_by(7) {
            let back = decode_sample(encode_sample(sample as i16)) as i32;
            let step = ((sample.abs() + BIAS) >> 4).max(8);
            assert!((back - sample).abs() <= step, "{sample} -> {back}");
        }
    }
}
