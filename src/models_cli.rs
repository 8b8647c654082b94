//! `winnerr models …`: fetch the weights, transcribe a file, evaluate, train the sentiment head.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use winnerr_models::fetch::{self, ModelDir, Which};
use winnerr_models::sentiment::{data, train};
use winnerr_models::{DecodeOptions, SentimentModel, Whisper};

use crate::evaluate::{self, dev_data};

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// Download, verify and convert the model weights into the model folder
    /// ($WINNERR_MODELS_DIR, default ~/.cache/winnerr/models).
    Fetch {
        /// Also fetch Whisper base (multilingual, ~3x slower than tiny.en).
        #[arg(long)]
        base: bool,
    },
    /// Transcribe a WAV file and print the transcript as JSON.
    Transcribe {
        file: PathBuf,
        /// tiny.en or base
        #[arg(long, default_value = "tiny.en")]
        model: String,
        /// Send the audio through the phone path first (8 kHz mu-law, then back to 16 kHz).
        #[arg(long)]
        phone: bool,
        /// Decode as stock Whisper does (30 s window, no cache), for comparison.
        #[arg(long)]
        reference: bool,
    },
    /// Word error rate per clip and overall; sentiment accuracy and confusion matrices.
    Eval {
        #[arg(long, default_value = "tiny.en")]
        model: String,
        /// Speech manifest (default: the development clips).
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Folder of rated-sentence TSV files (default: the development data).
        #[arg(long)]
        sentiment: Option<PathBuf>,
        /// Fine-tuned sentiment file to evaluate (default: the committed one).
        #[arg(long, default_value = winnerr_models::sentiment::HEAD_FILE)]
        head: PathBuf,
        /// Evaluate sentiment only.
        #[arg(long)]
        sentiment_only: bool,
    },
    /// Train the sentiment head on the rated sentences and write it (the committed file).
    TrainSentiment {
        #[arg(long)]
        data: Option<PathBuf>,
        #[arg(long, default_value = winnerr_models::sentiment::HEAD_FILE)]
        out: PathBuf,
        /// Passes over the training sentences (default: as the committed file was trained).
        #[arg(long)]
        epochs: Option<usize>,
        /// Learning rate of the fine-tuned layers.
        #[arg(long)]
        layer_learning_rate: Option<f64>,
        /// How many of MiniLM's last layers to fine-tune (1–6).
        #[arg(long)]
        tuned_layers: Option<usize>,
        /// Weigh classes by inverse frequency.
        #[arg(long)]
        class_weighted: bool,
    },
}

pub fn run(command: ModelsCommand) -> anyhow::Result<()> {
    let dir = ModelDir::from_env();
    let device = winnerr_models::device();
    match command {
        ModelsCommand::Fetch { base } => {
            let which = if base {
                Which::WithBase
            } else {
                Which::Default
            };
            for line in fetch::fetch(&dir, which)? {
                println!("{line}");
            }
        }
        ModelsCommand::Transcribe {
            file,
            model,
            phone,
            reference,
        } => {
            let whisper = Whisper::load(&dir.whisper(&model), &dir.mel_filters(), &device)?;
            let audio = if phone {
                evaluate::load_phone(&file)?
            } else {
                evaluate::load_16k(&file)?
            };
            let options = if reference {
                DecodeOptions::reference()
            } else {
                DecodeOptions::default()
            };
            let transcript = whisper.transcribe(&audio, &options)?;
            println!("{}", serde_json::to_string_pretty(&transcript)?);
        }
        ModelsCommand::Eval {
            model,
            manifest,
            sentiment,
            head,
            sentiment_only,
        } => {
            if !sentiment_only {
                eval_speech(&dir, &device, &model, manifest)?;
            }
            let sentiment_dir = sentiment.unwrap_or_else(|| dev_data().join("sentiment"));
            let sentences = data::load_dir(&sentiment_dir)?;
            let model = SentimentModel::load(&dir.minilm(), &head, &device)?;
            let report = evaluate::evaluate_sentiment(&model, &sentences)?;
            println!(
                "\nSentiment on the held-out split of {} ({} sentences)",
                sentiment_dir.display(),
                report.ours_all.total()
            );
            println!(
                "  clear cases ({}): ours {:.3}, VADER {:.3}",
                report.ours_clear.total(),
                report.ours_clear.accuracy(),
                report.vader_clear.accuracy()
            );
            println!(
                "  all held-out:      ours {:.3}, VADER {:.3}",
                report.ours_all.accuracy(),
                report.vader_all.accuracy()
            );
            for (source, (ours, vader)) in &report.clear_by_source {
                println!(
                    "  clear, {source:<22} ({:>4}): ours {:.3}, VADER {:.3}",
                    ours.total(),
                    ours.accuracy(),
                    vader.accuracy()
                );
            }
            println!("\n  ours, clear cases:\n{}", report.ours_clear.render());
            println!("  ours, all held-out:\n{}", report.ours_all.render());
            println!("  VADER, clear cases:\n{}", report.vader_clear.render());
        }
        ModelsCommand::TrainSentiment {
            data: data_dir,
            out,
            epochs,
            layer_learning_rate,
            tuned_layers,
            class_weighted,
        } => {
            let data_dir = data_dir.unwrap_or_else(|| dev_data().join("sentiment"));
            let sentences = data::load_dir(&data_dir)
                .with_context(|| format!("reading {}", data_dir.display()))?;
            let mut options = train::TrainOptions::default();
            options.epochs = epochs.unwrap_or(options.epochs);
            options.layer_learning_rate =
                layer_learning_rate.unwrap_or(options.layer_learning_rate);
            options.tuned_layers = tuned_layers.unwrap_or(options.tuned_layers);
            options.class_weighted |= class_weighted;
            let trained = train::train(&dir.minilm(), &sentences, &options, &out)?;
            println!(
                "trained on {trained} sentences with {options:?}; wrote {}",
                out.display()
            );
        }
    }
    Ok(())
}

/// Word error rate per clip and overall, at 16 kHz and through the phone path.
fn eval_speech(
    dir: &ModelDir,
    device: &winnerr_models::Device,
    model: &str,
    manifest: Option<PathBuf>,
) -> anyhow::Result<()> {
    let whisper = Whisper::load(&dir.whisper(model), &dir.mel_filters(), device)?;
    let manifest = manifest.unwrap_or_else(evaluate::speech_manifest);
    let clips = evaluate::read_manifest(&manifest)?;
    println!(
        "Whisper {model} on {} ({} clips); WER after text::normalize",
        manifest.display(),
        clips.len()
    );
    for (label, phone) in [
        ("16 kHz as recorded", false),
        ("8 kHz mu-law (phone path)", true),
    ] {
        let results =
            evaluate::transcribe_clips(&whisper, &clips, phone, &DecodeOptions::default())?;
        println!("\n{label}:");
        for r in &results {
            println!(
                "  {:<24} WER {:>5.1}%  {:>4.0} ms  ref: {:<45} hyp: {}",
                r.id,
                100.0 * r.errors as f64 / r.words.max(1) as f64,
                r.seconds * 1000.0,
                r.reference,
                r.hypothesis
            );
        }
        println!(
            "  overall WER {:.1}%",
            100.0 * evaluate::overall_wer(&results)
        );
    }
    Ok(())
}
