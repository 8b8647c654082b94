//! A Twilio Media Streams client, for the demo, the tests and the benchmarks: it streams audio
//! into a server exactly as Twilio does (signed upgrade, `connected`, `start` with signed identity,
//! 20 ms mu-law `media` frames per track, `dtmf`, `stop`), echoes `mark`s the way Twilio does once
//! the audio before them has "played", and reports what the server sent back.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::{SinkExt, StreamExt};
use rubato::{FftFixedIn, Resampler};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use winnerr_events::Track;

use crate::identity::StreamIdentity;
use crate::mulaw;
use crate::protocol::{
    DtmfDigit, DtmfTrack, MULAW_ENCODING, MarkLabel, MediaChunk, MediaFormat, ServerMessage,
    StartMeta, StopMeta, TwilioMessage,
};
use crate::signature;

/// Sample rate of Twilio phone audio.
pub const PHONE_RATE: u32 = 8000;
/// Samples in one 20 ms frame at 8 kHz.
pub const FRAME_SAMPLES: usize = 160;
const FRAME_MS: u64 = 20;

/// A client WebSocket to the server.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot read WAV {path}: {source}")]
    Wav { path: String, source: hound::Error },
    #[error("cannot resample audio: {0}")]
    Resample(String),
    #[error("bad server URL {0:?}")]
    Url(String),
    #[error("WebSocket failed: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
}

/// How fast frames are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// One frame per track every 20 ms, like a live call.
    RealTime,
    /// As fast as the socket takes them.
    Fast,
}

/// One simulated call.
#[derive(Debug, Clone)]
pub struct CallScript {
    pub account_sid: String,
    pub call_sid: String,
    pub stream_sid: String,
    pub identity: StreamIdentity,
    /// The caller's audio, 8 kHz.
    pub inbound: Vec<i16>,
    /// The agent's audio, 8 kHz; `None` streams the inbound track only.
    pub outbound: Option<Vec<i16>>,
    /// Keys pressed: (ms into the call, track, digit).
    pub dtmf: Vec<(u64, Track, char)>,
    pub pace: Pace,
    /// Send `stop` at the end; otherwise the socket is dropped (an abandoned stream).
    pub send_stop: bool,
    /// Custom parameters beside the signed identity: what else the webhook's TwiML gave the
    /// stream (a signed opt-in).
    pub parameters: BTreeMap<String, String>,
}

impl CallScript {
    /// A call with fresh Twilio-style ids (`CA…`, `MZ…`) for `identity`.
    pub fn new(identity: StreamIdentity, inbound: Vec<i16>) -> Self {
        let id = uuid_hex();
        Self {
            account_sid: format!("AC{}", "0".repeat(32)),
            call_sid: format!("CA{id}"),
            stream_sid: format!("MZ{id}"),
            identity,
            inbound,
            outbound: None,
            dtmf: Vec::new(),
            pace: Pace::Fast,
            send_stop: true,
            parameters: BTreeMap::new(),
        }
    }

    /// Length of the call's audio in 20 ms frames.
    pub fn frames(&self) -> usize {
        let longest = self
            .inbound
            .len()
            .max(self.outbound.as_ref().map_or(0, Vec::len));
        longest.div_ceil(FRAME_SAMPLES)
    }
}

fn uuid_hex() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!(
        "{:016x}{:016x}",
        nanos,
        NEXT.fetch_add(1, Ordering::Relaxed) ^ std::process::id() as u64
    )
}

/// What the server did during a call.
#[derive(Debug, Default, Clone)]
pub struct PlayReport {
    /// Media frames sent, all tracks.
    pub frames_sent: u64,
    /// Messages the server sent (media, mark, clear), in order.
    pub received: Vec<ServerMessage>,
    /// Marks echoed back to the server.
    pub marks_echoed: Vec<String>,
    /// The server's close frame, if it sent one.
    pub close: Option<(u16, String)>,
}

/// Connects to one server as Twilio would.
#[derive(Debug, Clone)]
pub struct Simulator {
    /// e.g. `ws://127.0.0.1:8080/twilio/stream`
    pub url: String,
    /// Signs the upgrade and the stream identity.
    pub auth_token: String,
}

impl Simulator {
    pub fn new(url: impl Into<String>, auth_token: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            auth_token: auth_token.into(),
        }
    }

    /// Opens the stream WebSocket with a valid `X-Twilio-Signature`.
    pub async fn connect(&self) -> Result<Socket, SimError> {
        let mut request = self.url.as_str().into_client_request()?;
        let signature = signature::sign(&self.auth_token, &self.url, &[]);
        let value =
            HeaderValue::from_str(&signature).map_err(|_| SimError::Url(self.url.clone()))?;
        request.headers_mut().insert("X-Twilio-Signature", value);
        let (socket, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(socket)
    }

    /// The `start` message of `script`, with its identity signed.
    pub fn start_message(&self, script: &CallScript) -> String {
        let tracks = if script.outbound.is_some() {
            vec![Track::Inbound, Track::Outbound]
        } else {
            vec![Track::Inbound]
        };
        let start = TwilioMessage::Start {
            sequence_number: 1,
            stream_sid: script.stream_sid.clone(),
            start: StartMeta {
                account_sid: script.account_sid.clone(),
                stream_sid: script.stream_sid.clone(),
                call_sid: script.call_sid.clone(),
                tracks,
                custom_parameters: {
                    let mut params = script
                        .identity
                        .to_parameters(&self.auth_token, &script.call_sid);
                    params.extend(script.parameters.clone());
                    params
                },
                media_format: MediaFormat {
                    encoding: MULAW_ENCODING.into(),
                    sample_rate: PHONE_RATE,
                    channels: 1,
                },
            },
        };
        serde_json::to_string(&start).expect("start serializes")
    }

    /// Plays `script` to the end, calling `on_message` for each message the server sends.
    pub async fn play(
        &self,
        script: &CallScript,
        mut on_message: impl FnMut(&ServerMessage),
    ) -> Result<PlayReport, SimError> {
        let socket = self.connect().await?;
        let (mut sink, mut source) = socket.split();
        let mut report = PlayReport::default();
        let connected = TwilioMessage::Connected {
            protocol: "Call".into(),
            version: "1.0.0".into(),
        };
        sink.send(text(&connected)).await?;
        sink.send(Message::Text(self.start_message(script).into()))
            .await?;

        let mut frames = FrameWriter::new(script);
        let mut ticker = tokio::time::interval(Duration::from_millis(FRAME_MS));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut closed_early = false;
        while !frames.done() {
            tokio::select! {
                biased;
                message = source.next() => match message {
                    Some(Ok(message)) => {
                        if let Some(echo) = handle_server_message(message, &mut report, &mut on_message) {
                            sink.send(text(&frames.mark(echo.clone()))).await?;
                            report.marks_echoed.push(echo);
                        }
                        if report.close.is_some() {
                            closed_early = true;
                            break;
                        }
                    }
                    Some(Err(err)) => return Err(err.into()),
                    None => { closed_early = true; break; }
                },
                _ = tick(&mut ticker, script.pace) => {
                    for message in frames.next_frame() {
                        if let Err(err) = sink.send(Message::Text(message.into())).await {
                            // The server may have closed while a frame was on its way (a
                            // shutdown): its close frame, if it sent one, is still to be read.
                            read_close(&mut source, &mut report, &mut on_message).await;
                            if report.close.is_none() {
                                return Err(err.into());
                            }
                            closed_early = true;
                            break;
                        }
                    }
                    if closed_early {
                        break;
                    }
                }
            }
        }
        report.frames_sent = frames.media_sent;
        if closed_early {
            return Ok(report);
        }
        if !script.send_stop {
            // Drop the connection without a stop or a close frame, as a failed network would.
            drop(sink);
            drop(source);
            return Ok(report);
        }
        sink.send(text(&frames.stop())).await?;
        // Read until the server closes the stream.
        let drain = async {
            while let Some(message) = source.next().await {
                let Ok(message) = message else { break };
                if let Some(echo) = handle_server_message(message, &mut report, &mut on_message) {
                    // Too late to echo: the stream is stopping, as with Twilio after `stop`.
                    let _ = echo;
                }
                if report.close.is_some() {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(10), drain).await;
        Ok(report)
    }
}

/// Reads what the server still sent (for at most a second) until its close frame.
async fn read_close<S>(
    source: &mut S,
    report: &mut PlayReport,
    on_message: &mut impl FnMut(&ServerMessage),
) where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let read = async {
        while let Some(Ok(message)) = source.next().await {
            handle_server_message(message, report, on_message);
            if report.close.is_some() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), read).await;
}

async fn tick(ticker: &mut tokio::time::Interval, pace: Pace) {
    if pace == Pace::RealTime {
        ticker.tick().await;
    }
}

fn text(message: &TwilioMessage<'_>) -> Message {
    Message::Text(
        serde_json::to_string(message)
            .expect("messages serialize")
            .into(),
    )
}

/// Records one server message; returns the name of a mark to echo.
fn handle_server_message(
    message: Message,
    report: &mut PlayReport,
    on_message: &mut impl FnMut(&ServerMessage),
) -> Option<String> {
    match message {
        Message::Text(text) => {
            let Ok(parsed) = serde_json::from_str::<ServerMessage>(text.as_str()) else {
                return None;
            };
            on_message(&parsed);
            let echo = match &parsed {
                ServerMessage::Mark { mark, .. } => Some(mark.name.clone()),
                _ => None,
            };
            report.received.push(parsed);
            echo
        }
        Message::Close(frame) => {
            let (code, reason) = frame
                .map_or((1005, String::new()), |CloseFrame { code, reason }| {
                    (u16::from(code), reason.to_string())
                });
            report.close = Some((code, reason));
            None
        }
        _ => None,
    }
}

/// Turns a script into Twilio messages, numbering them as Twilio does.
struct FrameWriter<'a> {
    script: &'a CallScript,
    next_frame: usize,
    total_frames: usize,
    /// `start` was 1.
    sequence: u64,
    media_sent: u64,
    dtmf_sent: usize,
}

impl<'a> FrameWriter<'a> {
    fn new(script: &'a CallScript) -> Self {
        let mut dtmf = script.dtmf.clone();
        dtmf.sort_by_key(|(at, _, _)| *at);
        Self {
            script,
            next_frame: 0,
            total_frames: script.frames(),
            sequence: 1,
            media_sent: 0,
            dtmf_sent: 0,
        }
    }

    fn done(&self) -> bool {
        self.next_frame >= self.total_frames
    }

    fn next_sequence(&mut self) -> u64 {
        self.sequence += 1;
        self.sequence
    }

    /// The messages of the next 20 ms: DTMF due by then, and one media frame per track.
    fn next_frame(&mut self) -> Vec<String> {
        let index = self.next_frame;
        self.next_frame += 1;
        let timestamp = index as u64 * FRAME_MS;
        let mut messages = Vec::with_capacity(3);
        let mut due: Vec<(u64, Track, char)> = self
            .script
            .dtmf
            .iter()
            .copied()
            .filter(|(at, _, _)| *at <= timestamp)
            .collect();
        due.sort_by_key(|(at, _, _)| *at);
        for (_, track, digit) in due.into_iter().skip(self.dtmf_sent) {
            self.dtmf_sent += 1;
            let message = TwilioMessage::Dtmf {
                sequence_number: self.next_sequence(),
                stream_sid: self.script.stream_sid.clone(),
                dtmf: DtmfDigit {
                    track: match track {
                        Track::Inbound => DtmfTrack::InboundTrack,
                        Track::Outbound => DtmfTrack::OutboundTrack,
                    },
                    digit: digit.to_string(),
                },
            };
            messages.push(serde_json::to_string(&message).expect("serializes"));
        }
        let tracks = [
            (Track::Inbound, Some(&self.script.inbound)),
            (Track::Outbound, self.script.outbound.as_ref()),
        ];
        for (track, audio) in tracks {
            let Some(audio) = audio else { continue };
            let payload = encode_frame(audio, index);
            let message = TwilioMessage::Media {
                sequence_number: self.next_sequence(),
                stream_sid: self.script.stream_sid.as_str().into(),
                media: MediaChunk {
                    track,
                    chunk: index as u64 + 1,
                    timestamp,
                    payload: payload.into(),
                },
            };
            messages.push(serde_json::to_string(&message).expect("serializes"));
            self.media_sent += 1;
        }
        messages
    }

    fn mark(&mut self, name: String) -> TwilioMessage<'static> {
        TwilioMessage::Mark {
            sequence_number: self.next_sequence(),
            stream_sid: self.script.stream_sid.clone(),
            mark: MarkLabel { name },
        }
    }

    fn stop(&mut self) -> TwilioMessage<'static> {
        TwilioMessage::Stop {
            sequence_number: self.next_sequence(),
            stream_sid: self.script.stream_sid.clone(),
            stop: StopMeta {
                account_sid: self.script.account_sid.clone(),
                call_sid: self.script.call_sid.clone(),
            },
        }
    }
}

/// Base64 mu-law of frame `index` of `audio`, padded with silence past its end.
pub fn encode_frame(audio: &[i16], index: usize) -> String {
    let start = (index * FRAME_SAMPLES).min(audio.len());
    let end = (start + FRAME_SAMPLES).min(audio.len());
    let mut bytes = [0xFFu8; FRAME_SAMPLES];
    for (byte, &sample) in bytes.iter_mut().zip(&audio[start..end]) {
        *byte = mulaw::encode_sample(sample);
    }
    STANDARD.encode(bytes)
}

/// Reads a WAV file (any rate, any channel count, integer or float samples) as 8 kHz mono.
pub fn load_wav_8k(path: &Path) -> Result<Vec<i16>, SimError> {
    let file = std::fs::File::open(path).map_err(|err| SimError::Wav {
        path: path.display().to_string(),
        source: err.into(),
    })?;
    decode_wav_8k(std::io::BufReader::new(file), &path.display().to_string())
}

/// Decodes WAV bytes (any rate, any channel count, integer or float samples) as 8 kHz mono;
/// `name` only labels errors.
pub fn decode_wav_8k(source: impl std::io::Read, name: &str) -> Result<Vec<i16>, SimError> {
    let wav_error = |source| SimError::Wav {
        path: name.to_owned(),
        source,
    };
    let mut reader = hound::WavReader::new(source).map_err(wav_error)?;
    let spec = reader.spec();
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader
            .samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(wav_error)?,
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            reader
                .samples::<i32>()
                .map(|s| s.map(|s| s as f32 * scale))
                .collect::<Result<_, _>>()
                .map_err(wav_error)?
        }
    };
    let channels = spec.channels.max(1) as usize;
    let mono: Vec<f32> = interleaved
        .chunks(channels)
        .map(|frame| frame.iter().sum::<f32>() / channels as f32)
        .collect();
    let resampled = resample(&mono, spec.sample_rate, PHONE_RATE)?;
    Ok(resampled
        .iter()
        .map(|&s| (s.clamp(-1.0, 1.0) * 32767.0) as i16)
        .collect())
}

/// Resamples a whole clip, compensating for the resampler's delay so the output lines up.
fn resample(input: &[f32], from: u32, to: u32) -> Result<Vec<f32>, SimError> {
    if from == to || input.is_empty() {
        return Ok(input.to_vec());
    }
    let error = |e: &dyn std::fmt::Display| SimError::Resample(e.to_string());
    let mut resampler =
        FftFixedIn::<f32>::new(from as usize, to as usize, 1024, 2, 1).map_err(|e| error(&e))?;
    let delay = resampler.output_delay();
    let wanted = (input.len() as u64 * to as u64 / from as u64) as usize;
    let mut output = Vec::with_capacity(wanted + delay + 1024);
    let mut position = 0;
    while input.len() - position >= resampler.input_frames_next() {
        let take = resampler.input_frames_next();
        let block = resampler
            .process(&[&input[position..position + take]], None)
            .map_err(|e| error(&e))?;
        output.extend_from_slice(&block[0]);
        position += take;
    }
    if position < input.len() {
        let block = resampler
            .process_partial(Some(&[&input[position..]]), None)
            .map_err(|e| error(&e))?;
        output.extend_from_slice(&block[0]);
    }
    while output.len() < wanted + delay {
        let block = resampler
            .process_partial::<&[f32]>(None, None)
            .map_err(|e| error(&e))?;
        if block[0].is_empty() {
            break;
        }
        output.extend_from_slice(&block[0]);
    }
    let end = (delay + wanted).min(output.len());
    Ok(output[delay.min(end)..end].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resampling_keeps_length_and_a_tone_frequency() {
        let rate = 16000.0;
        let tone: Vec<f32> = (0..16000)
            .map(|i| (2.0 * std::f32::consts::PI * 440.0 * i as f32 / rate).sin() * 0.5)
            .collect();
        let out = resample(&tone, 16000, 8000).unwrap();
        assert_eq!(out.len(), 8000);
        // Count rising zero crossings in the steady middle: 440 Hz over 0.5 s is 220.
        let middle = &out[2000..6000];
        let crossings = middle
            .windows(2)
            .filter(|w| w[0] < 0.0 && w[1] >= 0.0)
            .count();
        assert!((218..=222).contains(&crossings), "{crossings}");
    }

    #[test]
    fn a_clip_of_whole_resampler_blocks_resamples_too() {
        // 2048 samples: exactly two input blocks, nothing left for the partial one.
        let out = resample(&vec![0.25f32; 2048], 16000, 8000).unwrap();
        assert_eq!(out.len(), 1024);
    }

    #[test]
    fn frames_are_padded_with_silence() {
        let audio = vec![1000i16; 200];
        let second = STANDARD.decode(encode_frame(&audio, 1)).unwrap();
        assert_eq!(second.len(), FRAME_SAMPLES);
        assert_eq!(second[39], mulaw::encode_sample(1000));
        assert_eq!(second[40], 0xFF);
    }
}
