"""Reference end-of-turn probabilities of Smart Turn v3.2 for models/tests/turn.rs, computed once
with onnxruntime from the QDQ int8 ONNX file that `winnerr models fetch` converts (pipecat-ai
1.14.0), on features made by pipecat's own vendored Whisper feature code: for each committed
16 kHz clip, the whole clip and its first half, each followed by 200 ms of silence (the pause
after which the engine asks), zero-padded at the front to 8 s as pipecat does.

Two probabilities per case: `probability` from the file as shipped (onnxruntime quantizes every
activation to 8 bits with the file's calibrated scales), and `float_probability` from the same
graph with the activations' QuantizeLinear/DequantizeLinear pairs taken out: the same dequantized
weights, float activations, which is what the engine runs.
Output: smart_turn_reference.json.

usage: python smart_turn_reference.py PATH/TO/pipecat_ai-1.14.0-py3-none-any.whl PATH/TO/smart-turn-v3.2-cpu.onnx
       (needs numpy, onnx and onnxruntime; the feature module is read out of the wheel, not installed)
"""
import glob
import json
import os
import sys
import wave
import zipfile

import numpy as np
import onnx
import onnxruntime

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..", "..")
PAUSE = 3200  # 200 ms at 16 kHz
WINDOW = 8 * 16000


def float_activations(model):
    """The graph without activation quantization: each QuantizeLinear, and each DequantizeLinear
    of a computed value (not of a weight), is bypassed; weights stay dequantized from int8."""
    graph = model.graph
    weights = {i.name for i in graph.initializer}
    bypass = {}
    kept = []
    for node in graph.node:
        if node.op_type == "QuantizeLinear" or (
            node.op_type == "DequantizeLinear" and node.input[0] not in weights
        ):
            bypass[node.output[0]] = node.input[0]
        else:
            kept.append(node)

    def source(name):
        while name in bypass:
            name = bypass[name]
        return name

    for node in kept:
        for i, name in enumerate(node.input):
            node.input[i] = source(name)
    for output in graph.output:
        output.name = source(output.name)
    del graph.node[:]
    graph.node.extend(kept)
    return model.SerializeToString()


def main():
    # The module needs numpy only; importing it as part of pipecat would need all of pipecat.
    with zipfile.ZipFile(sys.argv[1]) as wheel:
        source = wheel.read("pipecat/audio/turn/smart_turn/_whisper_features.py")
    features_module = {}
    exec(compile(source, "_whisper_features.py", "exec"), features_module)
    compute_whisper_log_mel_features = features_module["compute_whisper_log_mel_features"]

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # the bypassed graph leaves unused scales: not worth a warning
    providers = ["CPUExecutionProvider"]
    session = onnxruntime.InferenceSession(sys.argv[2], options, providers=providers)
    unquantized = onnxruntime.InferenceSession(
        float_activations(onnx.load(sys.argv[2])), options, providers=providers
    )
    out = []
    for path in sorted(glob.glob(os.path.join(ROOT, "assets/audio/ps_*.wav"))):
        with wave.open(path) as w:
            assert w.getframerate() == 16000
            clip = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        clip = clip.astype(np.float32) / 32768.0
        for fraction in (1.0, 0.5):
            audio = np.concatenate([clip[: int(len(clip) * fraction)], np.zeros(PAUSE, np.float32)])
            audio = np.pad(audio[-WINDOW:], (max(0, WINDOW - len(audio)), 0))
            features = compute_whisper_log_mel_features(audio, do_normalize=True)
            inputs = {"input_features": features[None]}
            p = session.run(None, inputs)[0]
            p_float = unquantized.run(None, inputs)[0]
            out.append({
                "clip": os.path.relpath(path, ROOT),
                "fraction": fraction,
                "features_mean": round(float(features.mean()), 6),
                "probability": round(float(p[0][0]), 6),
                "float_probability": round(float(p_float[0][0]), 6),
            })
    with open(os.path.join(HERE, "smart_turn_reference.json"), "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
