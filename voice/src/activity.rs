//! Speech activity per track, from the speech detector's verdict on each frame (see
//! [`crate::vad`]), with an onset (speech must last this long to count) and a hangover (silence
//! must last this long to end it), so that short clicks do not start speech and short pauses do
//! not end it.

use winnerr_events::{ActivityState, AudioActivity, AudioFrame, Track};

use crate::vad::{Gate, SpeechDetector};

/// When a track counts as speaking.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ActivityConfig {
    /// With the energy detector, frames louder than this (RMS, dB below full scale) are voiced.
    pub threshold_dbfs: f32,
    /// Voiced audio needed to start speech.
    pub onset_ms: u64,
    /// Silence needed to end speech.
    pub hangover_ms: u64,
}

impl Default for ActivityConfig {
    fn default() -> Self {
        Self {
            threshold_dbfs: -40.0,
            onset_ms: 60,
            hangover_ms: 600,
        }
    }
}

/// RMS level of 16-bit samples in dB below full scale (-120 for silence).
pub fn level_dbfs(samples: &[i16]) -> f32 {
    if samples.is_empty() {
        return -120.0;
    }
    let energy: f64 = samples.iter().map(|&s| (s as f64) * (s as f64)).sum();
    let mean_square = energy / samples.len() as f64 / (32768.0 * 32768.0);
    (10.0 * mean_square.max(1e-12).log10()) as f32
}

/// Tracks whether one track is speaking.
pub struct ActivityDetector {
    track: Track,
    config: ActivityConfig,
    gate: Gate,
    speaking: bool,
    /// Start of the current run of voiced frames (while silent) or of the speech (while speaking).
    run_start: Option<u64>,
    voiced_ms: u64,
    /// End of the last voiced frame.
    last_voiced_end: u64,
    /// Whether the last frame pushed was voiced.
    last_frame_voiced: bool,
}

impl ActivityDetector {
    /// A detector on frame energy.
    pub fn new(track: Track, config: ActivityConfig) -> Self {
        Self::with_detector(track, config, &SpeechDetector::Energy)
    }

    /// A detector that judges frames with `detector`.
    pub fn with_detector(track: Track, config: ActivityConfig, detector: &SpeechDetector) -> Self {
        Self {
            track,
            config,
            gate: Gate::new(detector, config.threshold_dbfs),
            speaking: false,
            run_start: None,
            voiced_ms: 0,
            last_voiced_end: 0,
            last_frame_voiced: false,
        }
    }

    /// Takes the next frame of the track (at `sample_rate`); returns a change of state.
    pub fn push(&mut self, frame: &AudioFrame, sample_rate: u32) -> Option<AudioActivity> {
        let frame_ms = frame.samples.len() as u64 * 1000 / sample_rate.max(1) as u64;
        let frame_end = frame.timestamp_ms + frame_ms;
        let voiced = self.gate.voiced(&frame.samples, sample_rate, self.speaking);
        self.last_frame_voiced = voiced;
        if voiced {
            self.last_voiced_end = frame_end;
        }
        if !self.speaking {
            if !voiced {
                self.run_start = None;
                self.voiced_ms = 0;
                return None;
            }
            let start = *self.run_start.get_or_insert(frame.timestamp_ms);
            self.voiced_ms += frame_ms;
            if self.voiced_ms < self.config.onset_ms {
                return None;
            }
            self.speaking = true;
            return Some(self.change(ActivityState::Speaking, start, None));
        }
        if frame_end.saturating_sub(self.last_voiced_end) >= self.config.hangover_ms {
            return self.stop();
        }
        None
    }

    /// Whether the detector judged the last frame pushed speech.
    pub fn last_frame_voiced(&self) -> bool {
        self.last_frame_voiced
    }

    /// Whether the track is in speech now.
    pub fn speaking(&self) -> bool {
        self.speaking
    }

    /// Ends speech in progress (at the end of the audio); returns the change if there was one.
    pub fn stop(&mut self) -> Option<AudioActivity> {
        if !self.speaking {
            return None;
        }
        let start = self.run_start.take().unwrap_or(0);
        self.speaking = false;
        self.voiced_ms = 0;
        let spoken = self.last_voiced_end.saturating_sub(start);
        Some(self.change(ActivityState::Silent, self.last_voiced_end, Some(spoken)))
    }

    fn change(&self, state: ActivityState, at_ms: u64, spoken_ms: Option<u64>) -> AudioActivity {
        AudioActivity {
            track: self.track,
            state,
            at_ms,
            spoken_ms,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// 20 ms of a square wave at `amplitude` (0 for silence), the `index`th frame of the track.
    pub(crate) fn frame(index: u64, amplitude: i16) -> AudioFrame {
        let samples = (0..160)
            .map(|i| if i % 2 == 0 { amplitude } else { -amplitude })
            .collect();
        AudioFrame {
            track: Track::Inbound,
            timestamp_ms: index * 20,
            samples,
        }
    }

    #[test]
    fn levels() {
        assert!((level_dbfs(&[32767, -32767]) - 0.0).abs() < 0.01);
        assert!((level_dbfs(&[3277, -3277]) + 20.0).abs() < 0.1);
        assert_eq!(level_dbfs(&[0; 160]), -120.0);
    }

    #[test]
    fn speech_starts_after_the_onset_and_ends_after_the_hangover() {
        let mut detector = ActivityDetector::new(Track::Inbound, ActivityConfig::default());
        let mut changes = Vec::new();
        // 1 s silence, a 40 ms click, 0.5 s silence, 1 s speech with a 200 ms pause, then silence.
        let mut levels = vec![0i16; 50];
        levels.extend([8000; 2]);
        levels.extend([0; 25]);
        levels.extend([8000; 25]);
        levels.extend([0; 10]);
        levels.extend([8000; 25]);
        levels.extend([0; 60]);
        for (i, &amp) in levels.iter().enumerate() {
            changes.extend(detector.push(&frame(i as u64, amp), 8000));
        }
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert_eq!(changes[0].state, ActivityState::Speaking);
        assert_eq!(changes[0].at_ms, 77 * 20);
        assert_eq!(changes[1].state, ActivityState::Silent);
        assert_eq!(changes[1].at_ms, 137 * 20);
        assert_eq!(changes[1].spoken_ms, Some(60 * 20));
    }

    #[test]
    fn stop_ends_speech_in_progress_only() {
        let mut detector = ActivityDetector::new(Track::Outbound, ActivityConfig::default());
        assert_eq!(detector.stop(), None);
        for i in 0..10 {
            detector.push(&frame(i, 8000), 8000);
        }
        let end = detector.stop().unwrap();
        assert_eq!(
            (end.state, end.at_ms, end.spoken_ms),
            (ActivityState::Silent, 200, Some(200))
        );
    }
}
