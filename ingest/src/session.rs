//! One Twilio stream's state between `start` and its end: per-track decoding and ordering,
//! sequence accounting and mark bookkeeping. No I/O: the connection loop feeds it messages and
//! forwards what it returns.

use std::collections::{BTreeMap, VecDeque};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use winnerr_events::{AudioFrame, CallEnded, EndReason, StreamStats, Track};

use crate::mulaw;
use crate::protocol::MediaChunk;

/// Largest audio payload accepted in one `media` message: one second of 8 kHz mu-law.
/// Twilio sends 160 bytes (20 ms).
pub const MAX_PAYLOAD_BYTES: usize = 8000;
/// The latest media timestamp a stream may carry: a day and an hour. Twilio ends calls at 24 hours;
/// a timestamp past that is bad input, and keeps every sum of timestamps and lengths far from
/// overflow downstream.
pub const MAX_MEDIA_TIMESTAMP_MS: u64 = 25 * 60 * 60 * 1000;

/// How many frames a track holds back while it waits for a missing earlier one, before it
/// gives up on it and passes the later audio on.
pub const REORDER_WINDOW: usize = 3;

/// Why a `media` message was skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    #[error("payload is not valid base64")]
    Base64,
    #[error("payload of about {0} bytes is over the {MAX_PAYLOAD_BYTES}-byte limit")]
    Oversized(usize),
    #[error("payload is empty")]
    Empty,
    #[error("media for stream {0:?}, not this one")]
    WrongStream(String),
    #[error("media timestamp {0} ms is past the {MAX_MEDIA_TIMESTAMP_MS} ms a call can last")]
    TimestampOutOfRange(u64),
}

impl MediaError {
    /// Short name for metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            MediaError::Base64 => "bad_base64",
            MediaError::Oversized(_) => "oversized_payload",
            MediaError::Empty => "empty_payload",
            MediaError::WrongStream(_) => "wrong_stream",
            MediaError::TimestampOutOfRange(_) => "timestamp_out_of_range",
        }
    }
}

/// What became of a `mark` echo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkEcho {
    /// It answers a mark this server sent.
    Matched,
    /// Nothing was sent under that name (or it was already echoed).
    Unexpected,
}

/// Puts one track's frames in timestamp order, holding back at most [`REORDER_WINDOW`] frames.
#[derive(Debug, Default)]
struct TrackOrder {
    /// Timestamp of the last frame passed on.
    last_released: Option<u64>,
    /// Where the next frame should start, from the last one's length.
    expected_next: Option<u64>,
    held: BTreeMap<u64, Vec<i16>>,
}

impl TrackOrder {
    /// Returns false (and keeps nothing) when the frame is older than audio already passed on.
    fn push(&mut self, timestamp_ms: u64, samples: Vec<i16>) -> bool {
        if self.last_released.is_some_and(|last| timestamp_ms <= last) {
            return false;
        }
        self.held.insert(timestamp_ms, samples);
        true
    }

    /// Passes on every frame that is next in line, and the oldest held frames beyond the window.
    fn release(&mut self, track: Track, sample_rate: u32, flush: bool, out: &mut Vec<AudioFrame>) {
        while let Some((&timestamp_ms, samples)) = self.held.first_key_value() {
            let frame_ms = samples.len() as u64 * 1000 / sample_rate as u64;
            // Twilio's timestamps jitter by a few ms; half a frame of slack still counts as next.
            let in_line = self
                .expected_next
                .is_none_or(|next| timestamp_ms <= next + frame_ms / 2);
            if !(in_line || flush || self.held.len() > REORDER_WINDOW) {
                break;
            }
            let (timestamp_ms, samples) = self.held.pop_first().expect("checked above");
            self.last_released = Some(timestamp_ms);
            self.expected_next = Some(timestamp_ms + frame_ms);
            out.push(AudioFrame {
                track,
                timestamp_ms,
                samples,
            });
        }
    }

    fn end_ms(&self) -> u64 {
        self.expected_next.unwrap_or(0)
    }
}

/// The state of one live stream.
#[derive(Debug)]
pub struct StreamSession {
    stream_sid: String,
    sample_rate: u32,
    last_sequence: Option<u64>,
    tracks: [TrackOrder; 2],
    stats: StreamStats,
    pending_marks: VecDeque<String>,
}

impl StreamSession {
    pub fn new(stream_sid: String, sample_rate: u32) -> Self {
        Self {
            stream_sid,
            sample_rate,
            last_sequence: None,
            tracks: Default::default(),
            stats: StreamStats::default(),
            pending_marks: VecDeque::new(),
        }
    }

    pub fn stream_sid(&self) -> &str {
        &self.stream_sid
    }

    /// Accounts for a message's `sequenceNumber`; returns how many numbers were skipped.
    pub fn on_sequence(&mut self, sequence: u64) -> u64 {
        let Some(last) = self.last_sequence else {
            self.last_sequence = Some(sequence);
            return 0;
        };
        if sequence > last {
            let missing = sequence - last - 1;
            self.stats.missing += missing;
            self.last_sequence = Some(sequence);
            missing
        } else {
            // A late message fills a gap counted before.
            self.stats.missing = self.stats.missing.saturating_sub(1);
            0
        }
    }

    /// Decodes one `media` message and appends the frames now due, in order, to `out`.
    pub fn on_media(
        &mut self,
        stream_sid: &str,
        media: &MediaChunk<'_>,
        out: &mut Vec<AudioFrame>,
    ) -> Result<MediaOutcome, MediaError> {
        let result = self.decode(stream_sid, media);
        let samples = match result {
            Ok(samples) => samples,
            Err(err) => {
                self.stats.bad_frames += 1;
                return Err(err);
            }
        };
        let order = &mut self.tracks[media.track.index()];
        if !order.push(media.timestamp, samples) {
            self.stats.late += 1;
            return Ok(MediaOutcome::Late);
        }
        self.stats.frames[media.track.index()] += 1;
        order.release(media.track, self.sample_rate, false, out);
        Ok(MediaOutcome::Accepted)
    }

    fn decode(&self, stream_sid: &str, media: &MediaChunk<'_>) -> Result<Vec<i16>, MediaError> {
        if stream_sid != self.stream_sid {
            return Err(MediaError::WrongStream(
                stream_sid.chars().take(64).collect(),
            ));
        }
        if media.timestamp > MAX_MEDIA_TIMESTAMP_MS {
            return Err(MediaError::TimestampOutOfRange(media.timestamp));
        }
        let payload = media.payload.as_bytes();
        let approx_len = payload.len() / 4 * 3;
        if approx_len > MAX_PAYLOAD_BYTES {
            return Err(MediaError::Oversized(approx_len));
        }
        let mut bytes = [0u8; MAX_PAYLOAD_BYTES + 3];
        let len = STANDARD
            .decode_slice(payload, &mut bytes)
            .map_err(|_| MediaError::Base64)?;
        if len == 0 {
            return Err(MediaError::Empty);
        }
        let mut samples = Vec::with_capacity(len);
        mulaw::decode_into(&bytes[..len], &mut samples);
        Ok(samples)
    }

    /// Counts a decoded frame that the voice stage had no room for.
    pub fn note_dropped(&mut self) {
        self.stats.dropped += 1;
    }

    /// Remembers a mark sent to Twilio, to match its echo.
    pub fn mark_sent(&mut self, name: String) {
        self.pending_marks.push_back(name);
    }

    /// Matches a `mark` echo from Twilio against the marks sent.
    pub fn mark_echoed(&mut self, name: &str) -> MarkEcho {
        match self
            .pending_marks
            .iter()
            .position(|pending| pending == name)
        {
            Some(index) => {
                self.pending_marks.remove(index);
                MarkEcho::Matched
            }
            None => MarkEcho::Unexpected,
        }
    }

    /// Marks sent and not yet echoed, oldest first.
    pub fn pending_marks(&self) -> impl Iterator<Item = &str> {
        self.pending_marks.iter().map(String::as_str)
    }

    /// Ends the stream: appends every frame still held to `out` and says how the stream went.
    pub fn finish(&mut self, reason: EndReason, out: &mut Vec<AudioFrame>) -> CallEnded {
        for track in Track::ALL {
            self.tracks[track.index()].release(track, self.sample_rate, true, out);
        }
        CallEnded {
            reason,
            duration_ms: self
                .tracks
                .iter()
                .map(TrackOrder::end_ms)
                .max()
                .unwrap_or(0),
            stats: self.stats.clone(),
        }
    }
}

/// What became of a decodable `media` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaOutcome {
    Accepted,
    /// Older than audio already passed on: dropped.
    Late,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn chunk(track: Track, timestamp: u64, byte: u8) -> MediaChunk<'static> {
        MediaChunk {
            track,
            chunk: 0,
            timestamp,
            payload: Cow::Owned(STANDARD.encode([byte; 160])),
        }
    }

    fn push(session: &mut StreamSession, track: Track, ts: u64) -> Vec<u64> {
        let mut out = Vec::new();
        session
            .on_media("MZ1", &chunk(track, ts, 0xFF), &mut out)
            .unwrap();
        out.iter().map(|f| f.timestamp_ms).collect()
    }

    #[test]
    fn decodes_payloads_to_linear_pcm() {
        let mut session = StreamSession::new("MZ1".into(), 8000);
        let mut out = Vec::new();
        session
            .on_media("MZ1", &chunk(Track::Inbound, 0, 0x80), &mut out)
            .unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].samples, vec![32124; 160]);
        assert_eq!(out[0].track, Track::Inbound);
    }

    #[test]
    fn frames_in_order_pass_at_once_and_a_swapped_pair_is_reordered() {
        let mut session = StreamSession::new("MZ1".into(), 8000);
        assert_eq!(push(&mut session, Track::Inbound, 0), vec![0]);
        assert_eq!(push(&mut session, Track::Inbound, 20), vec![20]);
        // 40 is late: 60 waits for it.
        assert_eq!(push(&mut session, Track::Inbound, 60), Vec::<u64>::new());
        assert_eq!(push(&mut session, Track::Inbound, 40), vec![40, 60]);
        // Tracks are independent.
        assert_eq!(push(&mut session, Track::Outbound, 500), vec![500]);
    }

    #[test]
    fn a_lost_frame_is_given_up_after_the_window_and_a_late_one_dropped() {
        let mut session = StreamSession::new("MZ1".into(), 8000);
        push(&mut session, Track::Inbound, 0);
        for ts in [40, 60, 80] {
            assert!(push(&mut session, Track::Inbound, ts).is_empty());
        }
        assert_eq!(
            push(&mut session, Track::Inbound, 100),
            vec![40, 60, 80, 100]
        );
        let mut out = Vec::new();
        assert_eq!(
            session.on_media("MZ1", &chunk(Track::Inbound, 20, 0xFF), &mut out),
            Ok(MediaOutcome::Late)
        );
        let ended = session.finish(EndReason::Completed, &mut out);
        assert_eq!(ended.stats.late, 1);
        assert_eq!(ended.stats.frames, [5, 0]);
        assert_eq!(ended.duration_ms, 120);
    }

    #[test]
    fn finish_flushes_held_frames() {
        let mut session = StreamSession::new("MZ1".into(), 8000);
        push(&mut session, Track::Inbound, 0);
        push(&mut session, Track::Inbound, 60);
        let mut out = Vec::new();
        session.finish(EndReason::Abandoned, &mut out);
        assert_eq!(
            out.iter().map(|f| f.timestamp_ms).collect::<Vec<_>>(),
            vec![60]
        );
    }

    #[test]
    fn sequence_gaps_are_counted() {
        let mut session = StreamSession::new("MZ1".into(), 8000);
        assert_eq!(session.on_sequence(1), 0);
        assert_eq!(session.on_sequence(2), 0);
        assert_eq!(session.on_sequence(5), 2);
        assert_eq!(session.on_sequence(4), 0);
        let ended = session.finish(EndReason::Completed, &mut Vec::new());
        assert_eq!(ended.stats.missing, 1);
    }

    #[test]
    fn bad_payloads_are_refused_and_counted() {
        let mut session = StreamSession::new("MZ1".into(), 8000);
        let mut out = Vec::new();
        let mut bad = chunk(Track::Inbound, 0, 0);
        bad.payload = Cow::Borrowed("@@not base64@@");
        assert_eq!(
            session.on_media("MZ1", &bad, &mut out),
            Err(MediaError::Base64)
        );
        bad.payload = Cow::Owned(STANDARD.encode(vec![0u8; MAX_PAYLOAD_BYTES + 100]));
        assert!(matches!(
            session.on_media("MZ1", &bad, &mut out),
            Err(MediaError::Oversized(_))
        ));
        bad.payload = Cow::Borrowed("");
        assert_eq!(
            session.on_media("MZ1", &bad, &mut out),
            Err(MediaError::Empty)
        );
        assert!(matches!(
            session.on_media("MZ2", &chunk(Track::Inbound, 0, 0), &mut out),
            Err(MediaError::WrongStream(_))
        ));
        assert!(out.is_empty());
        assert_eq!(
            session
                .finish(EndReason::Completed, &mut out)
                .stats
                .bad_frames,
            4
        );
    }

    #[test]
    fn mark_echoes_match_what_was_sent() {
        let mut session = StreamSession::new("MZ1".into(), 8000);
        session.mark_sent("a".into());
        session.mark_sent("b".into());
        assert_eq!(session.mark_echoed("b"), MarkEcho::Matched);
        assert_eq!(session.mark_echoed("b"), MarkEcho::Unexpected);
        assert_eq!(session.mark_echoed("zzz"), MarkEcho::Unexpected);
        assert_eq!(session.pending_marks().collect::<Vec<_>>(), vec!["a"]);
    }
}
