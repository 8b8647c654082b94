//! Background noise for tests and benchmarks of speech detection: pink noise (a car, a kitchen)
//! from a fixed seed, and mixing at a stated signal-to-noise ratio.

/// Pink noise (Paul Kellet's filter over white noise from a fixed-seed xorshift), `n` samples.
pub fn pink(n: usize, seed: u64) -> Vec<f64> {
    let mut state = seed | 1;
    let mut white = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    };
    let mut b = [0.0f64; 7];
    (0..n)
        .map(|_| {
            let w = white();
            b[0] = 0.99886 * b[0] + w * 0.0555179;
            b[1] = 0.99332 * b[1] + w * 0.0750759;
            b[2] = 0.96900 * b[2] + w * 0.1538520;
            b[3] = 0.86650 * b[3] + w * 0.3104856;
            b[4] = 0.55000 * b[4] + w * 0.5329522;
            b[5] = -0.7616 * b[5] - w * 0.0168980;
            let out = b.iter().sum::<f64>() + w * 0.5362;
            b[6] = w * 0.115926;
            out
        })
        .collect()
}

/// `speech` with `noise` added at `snr_db`: speech power measured over the `voiced` sample ranges
/// (where the speech is), noise power over the whole noise. `noise` is at least as long as
/// `speech`.
pub fn mix(
    speech: &[i16],
    voiced: &[std::ops::Range<usize>],
    noise: &[f64],
    snr_db: f64,
) -> Vec<i16> {
    let (sum, count) = voiced.iter().fold((0.0, 0usize), |(sum, count), range| {
        let part = &speech[range.clone()];
        let energy: f64 = part.iter().map(|&s| f64::from(s).powi(2)).sum();
        (sum + energy, count + part.len())
    });
    let speech_power = sum / count.max(1) as f64;
    let noise_power = noise.iter().map(|s| s * s).sum::<f64>() / noise.len().max(1) as f64;
    let gain =
        (speech_power / noise_power.max(f64::MIN_POSITIVE) / 10f64.powf(snr_db / 10.0)).sqrt();
    speech
        .iter()
        .zip(noise)
        .map(|(&s, &n)| (f64::from(s) + n * gain).clamp(-32768.0, 32767.0) as i16)
        .collect()
}

/// Where speech lies in a clip (samples at 8 kHz): from its first to its last 20 ms frame louder
/// than a tenth of its loudest frame's RMS.
pub fn speech_span(clip: &[i16]) -> std::ops::Range<usize> {
    let rms: Vec<f64> = clip
        .chunks(160)
        .map(|f| (f.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / f.len() as f64).sqrt())
        .collect();
    let loudest = rms.iter().copied().fold(0.0, f64::max);
    let first = rms.iter().position(|&r| r > loudest * 0.1).unwrap_or(0);
    let last = rms.iter().rposition(|&r| r > loudest * 0.1).unwrap_or(0);
    first * 160..((last + 1) * 160).min(clip.len())
}
