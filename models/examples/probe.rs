use winnerr_models::whisper::Window;
use winnerr_models::{DecodeOptions, ModelDir, Whisper};
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = ModelDir::from_env();
    let whisper = Whisper::load(
        &dir.whisper("tiny.en"),
        &dir.mel_filters(),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let mut reader = hound::WavReader::open(&args[1]).unwrap();
    let audio: Vec<f32> = reader
        .samples::<i16>()
        .map(|s| s.unwrap() as f32 / 32768.0)
        .collect();
    for (name, window) in [
        ("30", Window::Full30),
        (
            "10",
            Window::Padded {
                min_s: 10.0,
                margin_s: 1.0,
            },
        ),
    ] {
        for pad in [true, false] {
            for ts in [true, false] {
                let o = DecodeOptions {
                    window,
                    mel_over_padding: pad,
                    timestamps: ts,
                    ..DecodeOptions::default()
                };
                let t = whisper.transcribe(&audio, &o).unwrap();
                println!(
                    "win {name} pad {pad} ts {ts}: {:?} loop {} lp {:.2} {:.0}+{:.0} ms",
                    t.text,
                    t.loop_cut,
                    t.avg_logprob,
                    t.encode_s * 1e3,
                    t.decode_s * 1e3
                );
            }
        }
    }
}
