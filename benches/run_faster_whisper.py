"""Times faster-whisper on WAV files, greedy, for benches/asr.rs (which computes the WER).

usage: faster_whisper.py MODEL_DIR COMPUTE_TYPE THREADS RUNS FILE...
Prints one JSON line per file: {"file", "ms" (median of RUNS after one warm-up), "text"}.
"""
import json
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
from faster_whisper import WhisperModel  # noqa: E402


def main():
    model_dir, compute_type, threads, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    model = WhisperModel(model_dir, device="cpu", compute_type=compute_type, cpu_threads=threads)

    def transcribe(path):
        segments, _ = model.transcribe(
            path,
            language="en",
            beam_size=1,
            best_of=1,
            temperature=0.0,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,
        )
        return " ".join(s.text.strip() for s in segments)

    for path in sys.argv[5:]:
        text = transcribe(path)
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            transcribe(path)
            times.append((time.perf_counter() - started) * 1000.0)
        print(json.dumps({"file": path, "ms": statistics.median(times), "text": text}), flush=True)


if __name__ == "__main__":
    main()
