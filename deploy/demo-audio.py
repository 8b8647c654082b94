"""Generates the demo call's two tracks (assets/audio/demo_agent.wav, demo_customer.wav) with the
espeak-ng speech synthesizer (Debian package espeak-ng): 8 kHz 16-bit mono, the same length, each
silent while the other speaks. Run once; the output is committed. Synthetic voices, no license
restrictions on the text (written for this project).

usage: python3 deploy/demo-audio.py
"""
import audioop
import os
import subprocess
import tempfile
import wave

RATE = 8000
GAP_S = 0.7
# (speaker, voice, words): a real-estate call with urgency, a price objection and warmth.
DIALOGUE = [
    ("agent", "en-us+m3", "Hi, this is Sam from Winnerr Realty. Thanks for calling about the house on Maple Street."),
    ("customer", "en-us+f3", "Hi Sam. Yes, we love the photos. Is it still available?"),
    ("agent", "en-us+m3", "It is. It has three bedrooms, a big garden, and a new kitchen."),
    ("customer", "en-us+f3", "That sounds wonderful. We are pre-approved and our lease ends next month."),
    ("agent", "en-us+m3", "Great. Would you like to see it this weekend?"),
    ("customer", "en-us+f3", "Honestly, the price is too expensive for us. I am really disappointed."),
    ("agent", "en-us+m3", "I understand. The seller is open to offers, so let us talk on Saturday."),
    ("customer", "en-us+f3", "Okay, thank you so much. See you on Saturday."),
]


def synthesize(voice, text):
    with tempfile.NamedTemporaryFile(suffix=".wav") as out:
        subprocess.run(["espeak-ng", "-v", voice, "-s", "160", "-w", out.name, text], check=True)
        with wave.open(out.name) as w:
            frames = w.readframes(w.getnframes())
            converted, _ = audioop.ratecv(frames, w.getsampwidth(), w.getnchannels(), w.getframerate(), RATE, None)
            return converted


def main():
    tracks = {"agent": bytearray(), "customer": bytearray()}
    gap = b"\0\0" * int(GAP_S * RATE)
    for speaker, voice, text in DIALOGUE:
        audio = synthesize(voice, text)
        for name, track in tracks.items():
            track.extend(audio if name == speaker else b"\0" * len(audio))
            track.extend(gap)
    root = os.path.join(os.path.dirname(__file__), "..", "assets", "audio")
    for name, track in tracks.items():
        with wave.open(os.path.join(root, f"demo_{name}.wav"), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes(bytes(track))
        print(f"demo_{name}.wav: {len(track) / 2 / RATE:.1f} s")


if __name__ == "__main__":
    main()
