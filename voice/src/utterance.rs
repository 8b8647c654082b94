//! One track's audio cut into utterances: 8 kHz frames resampled to 16 kHz, speech found by the
//! activity detector (its hangover is the end-of-utterance silence), a little audio from before
//! the onset kept so first syllables are not clipped, interim snapshots about once a second, and a
//! forced cut at a pause when an utterance grows too long. Each pause of an open utterance can be
//! reported ([`Segmented::Pause`]): to the turn model, whose "complete" ends the utterance at
//! once ([`Segmenter::end_turn`]), before the hangover would, and to start the final's decode
//! before the utterance has ended (a speculative final; [`Utterance::ended_in_pause`] says
//! whether it still holds).

use std::collections::VecDeque;

use winnerr_events::{ActivityState, AudioActivity, AudioFrame, Track, now_ms};

use crate::activity::{ActivityConfig, ActivityDetector};
use crate::resample::{ResampleError, Upsampler};
use crate::vad::SpeechDetector;

const MODEL_RATE: u64 = 16_000;

/// How a track is cut into utterances.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UtteranceConfig {
    /// Speech detection; its hangover is the end-of-utterance silence.
    pub activity: ActivityConfig,
    /// An interim hypothesis after each this much new speech.
    pub interim_every_ms: u64,
    /// Past this length, the utterance is cut at the next unvoiced frame...
    pub max_utterance_ms: u64,
    /// ...and this much later even without a pause.
    pub hard_cut_after_ms: u64,
    /// Audio kept from before the speech onset.
    pub pre_roll_ms: u64,
    /// Non-speech in an open utterance after which the pause is reported (for the turn model
    /// and speculative finals); `None`: pauses are not reported.
    pub pause_ms: Option<u64>,
}

impl Default for UtteranceConfig {
    fn default() -> Self {
        Self {
            activity: ActivityConfig::default(),
            interim_every_ms: 1_000,
            max_utterance_ms: 15_000,
            hard_cut_after_ms: 5_000,
            pre_roll_ms: 300,
            pause_ms: None,
        }
    }
}

/// A finished utterance, ready for its final transcript.
#[derive(Debug, Clone, PartialEq)]
pub struct Utterance {
    pub number: u32,
    pub audio: Vec<f32>,
    pub start_ms: u64,
    pub end_ms: u64,
    pub last_voiced_at_ms: u64,
    /// The reported pause it ended in (no speech since it was reported): the audio up to that
    /// report holds all of the utterance's speech.
    pub ended_in_pause: Option<u32>,
}

/// What a frame produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Segmented {
    Activity(AudioActivity),
    /// The utterance so far, for an interim hypothesis.
    Interim {
        number: u32,
        audio: Vec<f32>,
        start_ms: u64,
        end_ms: u64,
        last_voiced_at_ms: u64,
    },
    Final(Utterance),
    /// The open utterance has paused: is the turn over (answer with [`Segmenter::end_turn`]),
    /// and what is its text so far?
    Pause {
        number: u32,
        /// Which pause of the utterance (an answer about an earlier one is out of date).
        pause: u32,
        /// The utterance's 16 kHz audio so far, the pause included.
        audio: Vec<f32>,
    },
}

struct Open {
    number: u32,
    audio: Vec<f32>,
    start_ms: u64,
    last_voiced_ms: u64,
    last_voiced_wall_ms: u64,
    samples_at_last_interim: usize,
    /// Pauses so far, and whether the current one has been reported.
    pauses: u32,
    pause_reported: bool,
}

/// Cuts one track into utterances.
pub struct Segmenter {
    config: UtteranceConfig,
    detector: ActivityDetector,
    upsampler: Upsampler,
    pre_roll: VecDeque<f32>,
    open: Option<Open>,
    next_number: u32,
    chunk: Vec<f32>,
    /// Without a speech worker only activity is needed: no resampling, no audio kept.
    collect_audio: bool,
}

impl Segmenter {
    /// A segmenter on the energy detector that keeps audio for transcription.
    pub fn new(track: Track, config: UtteranceConfig) -> Self {
        Self::with_audio(track, config, &SpeechDetector::Energy, true)
    }

    /// `collect_audio: false` reports speech activity only (no speech worker to feed).
    pub fn with_audio(
        track: Track,
        config: UtteranceConfig,
        speech: &SpeechDetector,
        collect_audio: bool,
    ) -> Self {
        Self {
            config,
            detector: ActivityDetector::with_detector(track, config.activity, speech),
            upsampler: Upsampler::phone_to_model(),
            pre_roll: VecDeque::new(),
            open: None,
            next_number: 1,
            chunk: Vec::with_capacity(640),
            collect_audio,
        }
    }

    /// Takes the track's next 8 kHz frame.
    pub fn push(
        &mut self,
        frame: &AudioFrame,
        sample_rate: u32,
    ) -> Result<Vec<Segmented>, ResampleError> {
        let mut out = Vec::new();
        if !self.collect_audio {
            out.extend(
                self.detector
                    .push(frame, sample_rate)
                    .map(Segmented::Activity),
            );
            return Ok(out);
        }
        self.chunk.clear();
        if sample_rate as u64 == MODEL_RATE {
            self.chunk
                .extend(frame.samples.iter().map(|&s| f32::from(s) / 32768.0));
        } else {
            self.upsampler.push(&frame.samples, &mut self.chunk)?;
        }
        let frame_ms = frame.samples.len() as u64 * 1000 / u64::from(sample_rate.max(1));
        let frame_end = frame.timestamp_ms + frame_ms;
        let change = self.detector.push(frame, sample_rate);
        let voiced = self.detector.last_frame_voiced();
        match &mut self.open {
            Some(open) => {
                open.audio.extend_from_slice(&self.chunk);
                if voiced {
                    open.last_voiced_ms = frame_end;
                    open.last_voiced_wall_ms = now_ms();
                    if open.pause_reported {
                        // The speaker went on: the offered pause is over, its answer moot.
                        open.pauses += 1;
                        open.pause_reported = false;
                    }
                }
            }
            None => {
                self.pre_roll.extend(self.chunk.iter().copied());
                let keep = (self.config.pre_roll_ms * MODEL_RATE / 1000) as usize;
                let excess = self.pre_roll.len().saturating_sub(keep);
                self.pre_roll.drain(..excess);
            }
        }
        if let Some(change) = change {
            match change.state {
                ActivityState::Speaking => {
                    let audio: Vec<f32> = self.pre_roll.drain(..).collect();
                    let held_ms = audio.len() as u64 * 1000 / MODEL_RATE;
                    self.open_utterance(frame_end.saturating_sub(held_ms), audio, frame_end);
                }
                ActivityState::Silent => out.extend(self.close().map(Segmented::Final)),
            }
            out.push(Segmented::Activity(change));
            return Ok(out);
        }
        let Some(open) = &mut self.open else {
            return Ok(out);
        };
        let length_ms = open.audio.len() as u64 * 1000 / MODEL_RATE;
        let too_long = length_ms >= self.config.max_utterance_ms
            && (!voiced
                || length_ms >= self.config.max_utterance_ms + self.config.hard_cut_after_ms);
        if too_long {
            // Cut here and go on with a new utterance: the speaker has not stopped.
            out.extend(self.close().map(Segmented::Final));
            self.open_utterance(frame_end, Vec::new(), frame_end);
            return Ok(out);
        }
        let paused = self.config.pause_ms.is_some_and(|pause_ms| {
            !voiced && frame_end.saturating_sub(open.last_voiced_ms) >= pause_ms
        });
        if paused && !open.pause_reported {
            open.pause_reported = true;
            out.push(Segmented::Pause {
                number: open.number,
                pause: open.pauses,
                audio: open.audio.clone(),
            });
        } else if (open.audio.len() - open.samples_at_last_interim) as u64 * 1000 / MODEL_RATE
            >= self.config.interim_every_ms
        {
            open.samples_at_last_interim = open.audio.len();
            out.push(Segmented::Interim {
                number: open.number,
                audio: open.audio.clone(),
                start_ms: open.start_ms,
                end_ms: frame_end,
                last_voiced_at_ms: open.last_voiced_wall_ms,
            });
        }
        Ok(out)
    }

    /// The end of the track's audio: speech in progress ends and its utterance is final.
    pub fn stop(&mut self) -> Vec<Segmented> {
        let mut out = Vec::new();
        if !self.collect_audio {
            out.extend(self.detector.stop().map(Segmented::Activity));
            return out;
        }
        if let Some(open) = &mut self.open {
            let _ = self.upsampler.finish(&mut open.audio);
        }
        let change = self.detector.stop();
        out.extend(self.close().map(Segmented::Final));
        out.extend(change.map(Segmented::Activity));
        out
    }

    /// The turn model's answer "complete" to pause `pause` of utterance `number`: if the
    /// speaker has not gone on since, speech ends and the utterance is final now.
    pub fn end_turn(&mut self, number: u32, pause: u32) -> Vec<Segmented> {
        let current = self
            .open
            .as_ref()
            .is_some_and(|o| o.number == number && o.pauses == pause && o.pause_reported);
        if !current {
            return Vec::new();
        }
        let change = self.detector.stop();
        let mut out: Vec<Segmented> = self.close().map(Segmented::Final).into_iter().collect();
        out.extend(change.map(Segmented::Activity));
        out
    }

    fn open_utterance(&mut self, start_ms: u64, audio: Vec<f32>, voiced_ms: u64) {
        let number = self.next_number;
        self.next_number += 1;
        self.open = Some(Open {
            number,
            samples_at_last_interim: audio.len(),
            audio,
            start_ms,
            last_voiced_ms: voiced_ms,
            last_voiced_wall_ms: now_ms(),
            pauses: 0,
            pause_reported: false,
        });
    }

    fn close(&mut self) -> Option<Utterance> {
        let open = self.open.take()?;
        Some(Utterance {
            number: open.number,
            end_ms: open.last_voiced_ms,
            audio: open.audio,
            start_ms: open.start_ms,
            last_voiced_at_ms: open.last_voiced_wall_ms,
            ended_in_pause: open.pause_reported.then_some(open.pauses),
        })
    }
}

/// The words of an utterance's hypotheses that no longer change: a word is committed once two
/// consecutive hypotheses agree on it and on everything before it; committed words stay.
#[derive(Debug, Default)]
pub struct StablePrefix {
    previous: Vec<String>,
    committed: Vec<String>,
    /// What the last update showed, so a hypothesis that changes nothing is not sent again.
    last: (String, String),
}

impl StablePrefix {
    /// Takes the next hypothesis; returns (text to show, its stable prefix), or `None` when that
    /// is what the last one showed.
    pub fn update(&mut self, hypothesis: &str) -> Option<(String, String)> {
        let words: Vec<String> = hypothesis.split_whitespace().map(str::to_string).collect();
        let agreed = self
            .previous
            .iter()
            .zip(&words)
            .take_while(|(a, b)| a == b)
            .count();
        if agreed > self.committed.len() && words.starts_with(&self.committed) {
            self.committed = words[..agreed].to_vec();
        }
        let tail = words.get(self.committed.len()..).unwrap_or(&[]);
        let stable = self.committed.join(" ");
        let shown = if tail.is_empty() {
            stable.clone()
        } else if stable.is_empty() {
            tail.join(" ")
        } else {
            format!("{stable} {}", tail.join(" "))
        };
        self.previous = words;
        if self.last == (shown.clone(), stable.clone()) {
            return None;
        }
        self.last = (shown.clone(), stable.clone());
        Some((shown, stable))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activity::tests::frame;

    /// The finished utterances among the outputs.
    fn finals(out: &[Segmented]) -> Vec<&Utterance> {
        out.iter()
            .filter_map(|o| match o {
                Segmented::Final(u) => Some(u),
                _ => None,
            })
            .collect()
    }

    /// What came out, without the audio (too long to print).
    fn kinds(out: &[Segmented]) -> String {
        let kind = |o: &Segmented| match o {
            Segmented::Activity(a) => format!("{:?}@{}", a.state, a.at_ms),
            Segmented::Interim { number, end_ms, .. } => format!("interim#{number}@{end_ms}"),
            Segmented::Final(u) => format!("final#{}@{}-{}", u.number, u.start_ms, u.end_ms),
            Segmented::Pause { number, pause, .. } => format!("pause#{number}.{pause}"),
        };
        out.iter().map(kind).collect::<Vec<_>>().join(", ")
    }

    fn run(segmenter: &mut Segmenter, levels: &[i16]) -> Vec<Segmented> {
        let mut out = Vec::new();
        for (i, &a) in levels.iter().enumerate() {
            out.extend(segmenter.push(&frame(i as u64, a), 8000).unwrap());
        }
        out
    }

    #[test]
    fn an_utterance_has_interims_each_second_and_a_final_after_the_silence() {
        let mut s = Segmenter::new(Track::Inbound, UtteranceConfig::default());
        let mut levels = vec![0i16; 25]; // 0.5 s silence
        levels.extend([8000; 125]); // 2.5 s speech
        levels.extend([0; 40]); // 0.8 s silence
        let out = run(&mut s, &levels);
        let interims = out
            .iter()
            .filter(|o| matches!(o, Segmented::Interim { .. }))
            .count();
        assert_eq!(
            interims,
            3,
            "one a second of the 3.1 s (with the ending silence): {}",
            kinds(&out)
        );
        let finals = finals(&out);
        assert_eq!(finals.len(), 1);
        let u = finals[0];
        assert_eq!(u.number, 1);
        assert_eq!(u.end_ms, 150 * 20, "ends with the last voiced frame");
        // Pre-roll: 300 ms before the onset frame's end.
        assert!(
            u.start_ms <= 25 * 20 && u.start_ms >= 25 * 20 - 320,
            "{}",
            u.start_ms
        );
        let seconds = u.audio.len() as f64 / 16_000.0;
        assert!(seconds > 2.8 && seconds < 3.6, "{seconds}");
    }

    #[test]
    fn a_long_utterance_is_cut_at_a_pause_and_stop_flushes_the_rest() {
        let config = UtteranceConfig {
            max_utterance_ms: 2_000,
            ..UtteranceConfig::default()
        };
        let mut s = Segmenter::new(Track::Inbound, config);
        let mut levels = vec![8000i16; 110]; // 2.2 s
        levels.extend([0; 5]); // a 100 ms pause: not the end of speech, but a place to cut
        levels.extend([8000; 30]);
        let mut out = run(&mut s, &levels);
        out.extend(s.stop());
        let finals = finals(&out);
        assert_eq!(finals.len(), 2, "{}", kinds(&out));
        assert_eq!((finals[0].number, finals[1].number), (1, 2));
        assert!(finals[1].start_ms >= finals[0].end_ms);
        assert!(
            matches!(out.last(), Some(Segmented::Activity(a)) if a.state == ActivityState::Silent)
        );
    }

    fn pauses(out: &[Segmented]) -> Vec<(u32, u32)> {
        out.iter()
            .filter_map(|o| match o {
                Segmented::Pause { number, pause, .. } => Some((*number, *pause)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_pause_is_offered_once_and_complete_ends_the_utterance_before_the_hangover() {
        let config = UtteranceConfig {
            pause_ms: Some(200),
            ..UtteranceConfig::default()
        };
        let mut s = Segmenter::new(Track::Inbound, config);
        let mut levels = vec![0i16; 10];
        levels.extend([8000; 50]); // 1 s speech
        levels.extend([0; 12]); // 240 ms: the pause is offered at 200 ms, once
        let out = run(&mut s, &levels);
        assert_eq!(pauses(&out), vec![(1, 0)], "{}", kinds(&out));
        assert!(
            finals(&out).is_empty(),
            "the hangover (600 ms) has not passed"
        );
        let Some(Segmented::Pause { audio, .. }) =
            out.iter().find(|o| matches!(o, Segmented::Pause { .. }))
        else {
            unreachable!()
        };
        assert!(
            audio.len() >= 16_000,
            "the utterance so far: {}",
            audio.len()
        );
        // An answer about another utterance or pause changes nothing.
        assert!(s.end_turn(2, 0).is_empty());
        assert!(s.end_turn(1, 1).is_empty());
        let ended = s.end_turn(1, 0);
        assert_eq!(finals(&ended)[0].ended_in_pause, Some(0));
        let ended = kinds(&ended);
        assert!(
            ended.starts_with("final#1@") && ended.ends_with("-1200, Silent@1200"),
            "the utterance ends where its speech did: {ended}"
        );
        // Nothing is left to end: the hangover does not end it a second time.
        let mut later = Vec::new();
        for i in 72..120 {
            later.extend(s.push(&frame(i, 0), 8000).unwrap());
        }
        assert!(later.is_empty(), "{}", kinds(&later));
    }

    #[test]
    fn speech_after_a_pause_makes_its_answer_moot_and_the_next_pause_is_offered() {
        let config = UtteranceConfig {
            pause_ms: Some(200),
            ..UtteranceConfig::default()
        };
        let mut s = Segmenter::new(Track::Inbound, config);
        let mut levels = vec![8000i16; 50];
        levels.extend([0; 15]); // 300 ms: offered
        levels.extend([8000; 25]); // the speaker goes on
        levels.extend([0; 12]); // offered again
        let out = run(&mut s, &levels);
        assert_eq!(pauses(&out), vec![(1, 0), (1, 1)], "{}", kinds(&out));
        assert!(s.end_turn(1, 0).is_empty(), "the first pause is over");
        let ended = s.end_turn(1, 1);
        assert_eq!(
            finals(&ended)
                .iter()
                .map(|u| u.ended_in_pause)
                .collect::<Vec<_>>(),
            vec![Some(1)],
            "the final holds the speech up to the second pause's report"
        );
        // Without pauses reported none is offered and the hangover ends the utterance.
        let mut s = Segmenter::new(Track::Inbound, UtteranceConfig::default());
        let mut out = run(&mut s, &levels);
        out.extend(s.stop());
        assert!(pauses(&out).is_empty());
        assert_eq!(finals(&out)[0].ended_in_pause, None);
    }

    #[test]
    fn silence_makes_no_utterance() {
        let mut s = Segmenter::new(Track::Inbound, UtteranceConfig::default());
        let mut out = run(&mut s, &[0; 200]);
        out.extend(s.stop());
        assert!(out.is_empty(), "{}", kinds(&out));
    }

    #[test]
    fn committed_words_do_not_flicker() {
        let mut p = StablePrefix::default();
        let shown = |a: &str, b: &str| Some((a.to_string(), b.to_string()));
        assert_eq!(p.update("I want"), shown("I want", ""));
        assert_eq!(p.update("I want to see"), shown("I want to see", "I want"));
        // A later hypothesis that changes a committed word does not uncommit it.
        assert_eq!(
            p.update("I went to see the house"),
            shown("I want to see the house", "I want")
        );
        // Nothing new to show: nothing sent.
        assert_eq!(p.update("I want to see the house"), None);
        assert_eq!(
            p.update("I want to see the house today"),
            shown("I want to see the house today", "I want to see the house")
        );
    }
}
