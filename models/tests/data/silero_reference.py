"""Reference speech probabilities of Silero VAD v5 for models/tests/vad.rs, computed once with
onnxruntime from the ONNX file that `winnerr models fetch` converts (livekit-plugins-silero 1.8.9):
per 32 ms chunk of two committed clips, one at 8 kHz and one at 16 kHz, with the state and the
context carried from chunk to chunk as Silero's own wrapper does. Output: silero_reference.json.

usage: python silero_reference.py PATH/TO/silero_vad.onnx   (needs numpy and onnxruntime)
"""
import json
import os
import sys
import wave

import numpy as np
import onnxruntime

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..", "..")
CLIPS = ["assets/numbers/cards_001.wav", "assets/audio/ps_goforward.wav"]


def read(path):
    with wave.open(os.path.join(ROOT, path)) as w:
        rate = w.getframerate()
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    return rate, samples.astype(np.float32) / 32768.0


def main():
    session = onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
    out = []
    for clip in CLIPS:
        rate, audio = read(clip)
        chunk = 512 if rate == 16000 else 256
        context_size = chunk // 8
        state = np.zeros((2, 1, 128), dtype=np.float32)
        context = np.zeros((1, context_size), dtype=np.float32)
        probabilities = []
        for start in range(0, len(audio) - chunk + 1, chunk):
            x = np.concatenate([context, audio[None, start:start + chunk]], axis=1)
            prob, state = session.run(None, {"input": x, "state": state,
                                             "sr": np.array(rate, dtype=np.int64)})
            context = x[:, -context_size:]
            probabilities.append(round(float(prob[0][0]), 6))
        out.append({"clip": clip, "rate": rate, "probabilities": probabilities})
    with open(os.path.join(HERE, "silero_reference.json"), "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
