//! Model evaluation on development data: word error rate on speech clips (as recorded and after
//! the phone path: 8 kHz, mu-law, and our streaming upsampler back to 16 kHz) and sentiment
//! accuracy on rated sentences. Shared by `winnerr models eval` and the benchmarks.

use std::path::{Path, PathBuf};

use anyhow::Context;
use winnerr_ingest::mulaw;
use winnerr_ingest::simulator::load_wav_8k;
use winnerr_models::sentiment::data::{RatedSentence, Split};
use winnerr_models::text::word_errors;
use winnerr_models::{DecodeOptions, SentimentLabel, SentimentModel, Whisper};
use winnerr_voice::resample::Upsampler;

/// One clip of a speech manifest (`id, file, seconds, ..., reference_transcript`).
#[derive(Debug, Clone)]
pub struct Clip {
    pub id: String,
    pub path: PathBuf,
    pub reference: String,
}

/// The development data folder (`../shared/data` beside the repository), or `$WINNERR_DEV_DATA`:
/// the rated sentences live there (developers and `models eval` only).
pub fn dev_data() -> PathBuf {
    std::env::var_os("WINNERR_DEV_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"))
}

/// The speech clips committed with the code (a copy of the development clips), for tests,
/// benchmarks and `models eval`.
pub fn speech_manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/audio/manifest.tsv")
}

/// A TSV file with a header: the header's names and each row's fields (blank lines skipped).
struct Tsv {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Tsv {
    fn read(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let split = |line: &str| line.split('\t').map(str::to_string).collect::<Vec<_>>();
        let header = split(lines.next().context("empty manifest")?);
        Ok(Self {
            header,
            rows: lines.map(split).collect(),
        })
    }

    /// The index of the column `name`.
    fn column(&self, name: &str) -> anyhow::Result<usize> {
        self.header
            .iter()
            .position(|h| h == name)
            .with_context(|| format!("no {name} column"))
    }

    /// Field `column` of `row`.
    fn field(row: &[String], column: usize) -> anyhow::Result<&str> {
        row.get(column)
            .map(String::as_str)
            .with_context(|| format!("short line: {}", row.join("\t")))
    }
}

/// Reads a manifest TSV with a header; the file column is relative to the manifest.
pub fn read_manifest(path: &Path) -> anyhow::Result<Vec<Clip>> {
    let tsv = Tsv::read(path)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let (id, file, reference) = (
        tsv.column("id")?,
        tsv.column("file")?,
        tsv.column("reference_transcript")?,
    );
    tsv.rows
        .iter()
        .map(|row| {
            Ok(Clip {
                id: Tsv::field(row, id)?.to_string(),
                path: dir.join(Tsv::field(row, file)?),
                reference: Tsv::field(row, reference)?.to_string(),
            })
        })
        .collect()
}

/// A WAV file as 16 kHz samples, as recorded.
pub fn load_16k(path: &Path) -> anyhow::Result<Vec<f32>> {
    let mut reader =
        hound::WavReader::open(path).with_context(|| format!("reading {}", path.display()))?;
    let spec = reader.spec();
    anyhow::ensure!(
        spec.sample_rate == 16_000,
        "{} is {} Hz, not 16 kHz",
        path.display(),
        spec.sample_rate
    );
    let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
    let samples: Vec<i32> = reader.samples::<i32>().collect::<Result<_, _>>()?;
    let channels = usize::from(spec.channels.max(1));
    Ok(samples
        .chunks(channels)
        .map(|f| f.iter().map(|&s| s as f32 * scale).sum::<f32>() / channels as f32)
        .collect())
}

/// A WAV file as a phone delivers it to the model: 8 kHz, mu-law encoded and decoded, then
/// upsampled to 16 kHz by the voice stage's streaming resampler.
pub fn load_phone(path: &Path) -> anyhow::Result<Vec<f32>> {
    let phone: Vec<i16> = load_wav_8k(path)?
        .into_iter()
        .map(|s| mulaw::decode_sample(mulaw::encode_sample(s)))
        .collect();
    let mut upsampler = Upsampler::phone_to_model();
    let mut out = Vec::with_capacity(phone.len() * 2);
    for frame in phone.chunks(160) {
        upsampler.push(frame, &mut out)?;
    }
    upsampler.finish(&mut out)?;
    Ok(out)
}

/// One clip's result.
#[derive(Debug, Clone)]
pub struct ClipResult {
    pub id: String,
    pub reference: String,
    pub hypothesis: String,
    pub errors: usize,
    pub words: usize,
    pub seconds: f32,
    pub audio_s: f32,
}

/// Transcribes every clip; `phone` runs it through the phone path first.
pub fn transcribe_clips(
    whisper: &Whisper,
    clips: &[Clip],
    phone: bool,
    options: &DecodeOptions,
) -> anyhow::Result<Vec<ClipResult>> {
    clips
        .iter()
        .map(|clip| {
            let audio = if phone {
                load_phone(&clip.path)?
            } else {
                load_16k(&clip.path)?
            };
            let started = std::time::Instant::now();
            let transcript = whisper.transcribe(&audio, options)?;
            let seconds = started.elapsed().as_secs_f32();
            let (errors, words) = word_errors(&clip.reference, &transcript.text);
            Ok(ClipResult {
                id: clip.id.clone(),
                reference: clip.reference.clone(),
                hypothesis: transcript.text,
                errors,
                words,
                seconds,
                audio_s: transcript.audio_s,
            })
        })
        .collect()
}

/// Overall WER: all errors over all reference words.
pub fn overall_wer(results: &[ClipResult]) -> f64 {
    let errors: usize = results.iter().map(|r| r.errors).sum();
    let words: usize = results.iter().map(|r| r.words).sum();
    errors as f64 / words.max(1) as f64
}

/// Accuracy and confusion matrix (rows: truth, columns: prediction; negative, neutral, positive).
#[derive(Debug, Clone, Default)]
pub struct Accuracy {
    pub confusion: [[usize; 3]; 3],
}

impl Accuracy {
    pub fn add(&mut self, truth: SentimentLabel, predicted: SentimentLabel) {
        self.confusion[truth.index()][predicted.index()] += 1;
    }
    pub fn total(&self) -> usize {
        self.confusion.iter().flatten().sum()
    }
    pub fn accuracy(&self) -> f64 {
        let right: usize = (0..3).map(|i| self.confusion[i][i]).sum();
        right as f64 / self.total().max(1) as f64
    }
    pub fn render(&self) -> String {
        let mut out = String::from("            pred neg  pred neu  pred pos\n");
        for (i, label) in SentimentLabel::ALL.iter().enumerate() {
            let row = self.confusion[i];
            out.push_str(&format!(
                "  {:<9} {:>8}  {:>8}  {:>8}\n",
                label.as_str(),
                row[0],
                row[1],
                row[2]
            ));
        }
        out
    }
}

/// Sentiment accuracy of our model and of the VADER lexicon on the held-out split: all of it,
/// and its clear cases.
pub struct SentimentReport {
    pub ours_all: Accuracy,
    pub ours_clear: Accuracy,
    pub vader_all: Accuracy,
    pub vader_clear: Accuracy,
    /// Clear cases per source file (the source id's prefix): ours, VADER.
    pub clear_by_source: std::collections::BTreeMap<String, (Accuracy, Accuracy)>,
}

pub fn evaluate_sentiment(
    model: &SentimentModel,
    sentences: &[RatedSentence],
) -> anyhow::Result<SentimentReport> {
    let held_out: Vec<&RatedSentence> = sentences
        .iter()
        .filter(|s| s.split() == Split::HeldOut)
        .collect();
    let vader = vader_sentiment::SentimentIntensityAnalyzer::new();
    let mut report = SentimentReport {
        ours_all: Accuracy::default(),
        ours_clear: Accuracy::default(),
        vader_all: Accuracy::default(),
        vader_clear: Accuracy::default(),
        clear_by_source: Default::default(),
    };
    for batch in held_out.chunks(64) {
        let texts: Vec<&str> = batch.iter().map(|s| s.text.as_str()).collect();
        let predicted = model.classify(&texts)?;
        for (sentence, ours) in batch.iter().zip(predicted) {
            let lexicon = vader_label(vader.polarity_scores(&sentence.text)["compound"]);
            report.ours_all.add(sentence.label, ours.label);
            report.vader_all.add(sentence.label, lexicon);
            if let Some(clear) = sentence.clear_label() {
                report.ours_clear.add(clear, ours.label);
                report.vader_clear.add(clear, lexicon);
                let source = sentence
                    .source_id
                    .split(['_', ':'])
                    .next()
                    .unwrap_or("")
                    .to_string();
                let (o, v) = report.clear_by_source.entry(source).or_default();
                o.add(clear, ours.label);
                v.add(clear, lexicon);
            }
        }
    }
    Ok(report)
}

/// VADER's documented cut-offs on the compound score.
pub fn vader_label(compound: f64) -> SentimentLabel {
    if compound >= 0.05 {
        SentimentLabel::Positive
    } else if compound <= -0.05 {
        SentimentLabel::Negative
    } else {
        SentimentLabel::Neutral
    }
}

/// One utterance of the number test set (`assets/numbers/manifest.tsv`): its class (cards,
/// phones, addresses, prices, dates, codes) and the digit strings it holds.
#[derive(Debug, Clone)]
pub struct NumberClip {
    pub clip: Clip,
    pub class: String,
    pub digits: Vec<String>,
}

/// The committed number test set (`deploy/numbers-audio.py` made it).
pub fn numbers_manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/numbers/manifest.tsv")
}

/// Reads the number test set: the speech manifest's columns plus `class` and `digits` (the
/// digit strings, space-separated).
pub fn read_number_manifest(path: &Path) -> anyhow::Result<Vec<NumberClip>> {
    let clips = read_manifest(path)?;
    let tsv = Tsv::read(path)?;
    let (class, digits) = (tsv.column("class")?, tsv.column("digits")?);
    clips
        .into_iter()
        .zip(&tsv.rows)
        .map(|(clip, row)| {
            Ok(NumberClip {
                class: Tsv::field(row, class)?.to_string(),
                digits: Tsv::field(row, digits)?
                    .split_whitespace()
                    .map(str::to_string)
                    .collect(),
                clip,
            })
        })
        .collect()
}

/// The digit runs of a transcript: digits joined across the separators people and Whisper write
/// inside numbers (spaces, `-`, `,`, `.`, `:`, `$`, `/`); a word ends a run. "4111 1111" is one
/// run, "June 23, 2027" one run "232027", "for 111" the run "111".
pub fn digit_runs(text: &str) -> Vec<String> {
    let mut runs = Vec::new();
    let mut run = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            run.push(c);
        } else if !(c.is_whitespace() || "-,.:$/".contains(c) || run.is_empty()) {
            runs.push(std::mem::take(&mut run));
        }
    }
    if !run.is_empty() {
        runs.push(run);
    }
    runs
}

/// How many of `digits` the transcript holds whole: every digit, in order, inside one run.
pub fn digit_strings_whole(text: &str, digits: &[String]) -> usize {
    let runs = digit_runs(text);
    digits
        .iter()
        .filter(|d| runs.iter().any(|r| r.contains(d.as_str())))
        .count()
}

/// One utterance of the keyterm test set (`assets/keyterms/manifest.tsv`) with the keyterms it
/// holds (none for the sentences that must stay free of them).
#[derive(Debug, Clone)]
pub struct KeytermClip {
    pub clip: Clip,
    pub keyterms: Vec<String>,
}

/// The committed keyterm test set (`deploy/keyterms-audio.py` made it).
pub fn keyterms_manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/keyterms/manifest.tsv")
}

/// Where the keyterm test set's terms come from, as the engine gets them: what the CRM knows of a
/// call (its lead's name, the streets of the homes the lead viewed) and the organization's list.
#[derive(Debug, Clone, Default)]
pub struct KeytermSources {
    pub call: Vec<String>,
    pub org: Vec<String>,
}

/// Reads the keyterm test set: the speech manifest's columns plus `keyterms` (`|`-separated),
/// and the terms' sources beside it (`keyterms.tsv`: source `call` or `org`, term).
pub fn read_keyterm_set(path: &Path) -> anyhow::Result<(Vec<KeytermClip>, KeytermSources)> {
    let clips = read_manifest(path)?;
    let tsv = Tsv::read(path)?;
    let keyterms = tsv.column("keyterms")?;
    let clips = clips
        .into_iter()
        .zip(&tsv.rows)
        .map(|(clip, row)| {
            Ok(KeytermClip {
                keyterms: Tsv::field(row, keyterms)?
                    .split('|')
                    .filter(|t| !t.is_empty())
                    .map(str::to_string)
                    .collect(),
                clip,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let sources = Tsv::read(&path.with_file_name("keyterms.tsv"))?;
    let (source, term) = (sources.column("source")?, sources.column("term")?);
    let mut out = KeytermSources::default();
    for row in &sources.rows {
        let term = Tsv::field(row, term)?.to_string();
        match Tsv::field(row, source)? {
            "call" => out.call.push(term),
            "org" => out.org.push(term),
            other => anyhow::bail!("keyterm source {other:?} is neither call nor org"),
        }
    }
    Ok((clips, out))
}
