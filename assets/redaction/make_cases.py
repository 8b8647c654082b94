#!/usr/bin/env python3
"""Writes cases.txt, the labelled redaction test set (issue 22): transcripts as the voice stage
could see them, with what must be redacted marked {kind:value} and everything else to be kept.

Run once: python3 make_cases.py > cases.txt (seeded, so the output is the same each time).
Each line: CLASS<TAB>TEXT. CLASS is the case's class (card, ssn, phone, email, bank, mixed, keep);
kinds are card, ssn, phone, email, bank. Numbers are made up; card numbers pass the Luhn check.
"""
import random

rng = random.Random(22)
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TENS = {2: "twenty", 3: "thirty", 4: "forty", 5: "fifty", 6: "sixty", 7: "seventy", 8: "eighty", 9: "ninety"}


def luhn_complete(prefix, length):
    digits = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
    for check in "0123456789":
        candidate = digits + check
        total = 0
        for i, c in enumerate(reversed(candidate)):
            d = int(c)
            if i % 2 == 1:
                d = d * 2 - 9 if d * 2 > 9 else d * 2
            total += d
        if total % 10 == 0:
            return candidate
    raise AssertionError


def groups(digits, sizes):
    out, at = [], 0
    for size in sizes:
        out.append(digits[at:at + size])
        at += size
    return out


def spoken_digit(d, oh):
    return "oh" if d == "0" and oh else WORDS[int(d)]


def spoken_group(group, oh=False, doubles=False):
    """A group of digits as a caller says it: 'four one one one', 'double five', 'oh'."""
    words, i = [], 0
    while i < len(group):
        d = group[i]
        run = 1
        while i + run < len(group) and group[i + run] == d and run < 3:
            run += 1
        if doubles and run == 3:
            words.append("triple " + spoken_digit(d, oh))
            i += 3
        elif doubles and run >= 2:
            words.append("double " + spoken_digit(d, oh))
            i += 2
        else:
            words.append(spoken_digit(d, oh and i > 0))
            i += 1
    return " ".join(words)


def spoken_pairs(group):
    """'5678' as 'fifty six seventy eight' where the pairs allow."""
    words = []
    for pair in groups(group, [2] * (len(group) // 2)):
        if pair[0] in "23456789":
            words.append(TENS[int(pair[0])] + ("" if pair[1] == "0" else " " + WORDS[int(pair[1])]))
        else:
            words.append(spoken_group(pair, oh=True))
    return " ".join(words)


def say(digits, sizes, style):
    parts = groups(digits, sizes)
    if style == "words":
        return ", ".join(spoken_group(p) for p in parts)
    if style == "oh":
        return ", ".join(spoken_group(p, oh=True) for p in parts)
    if style == "doubles":
        return ", ".join(spoken_group(p, oh=True, doubles=True) for p in parts)
    if style == "mixed":
        return ", ".join(p if i % 2 == 0 else spoken_group(p) for i, p in enumerate(parts))
    if style == "space":
        return " ".join(parts)
    if style == "comma":
        return ", ".join(parts)
    if style == "dash":
        return "-".join(parts)
    if style == "dot":
        return ".".join(parts)
    if style == "solid":
        return digits
    raise ValueError(style)


cases = []


def case(cls, text):
    cases.append((cls, text))


# Cards: Visa, Mastercard, Amex, Discover; written and spoken; with and without a card word.
card_leads = [
    "my card number is {}",
    "sure, it's {}",
    "the visa is {} and it expires in May",
    "okay the number on the card is {}",
    "{} is the card",
    "you can put the deposit on {}",
    "let me read it, {}, expiration oh four twenty seven",
    "it's a mastercard, {}",
    "debit card {} please",
    "the amex number is {}",
    "I'll pay the application fee with {}",
    "alright, {}",
]
card_kinds = [("4", 16, [4, 4, 4, 4]), ("5", 16, [4, 4, 4, 4]), ("37", 15, [4, 6, 5]),
              ("6011", 16, [4, 4, 4, 4]), ("4", 13, [4, 4, 5]), ("4", 19, [4, 4, 4, 4, 3])]
card_styles = ["space", "comma", "dash", "solid", "words", "oh", "doubles", "mixed"]
for i in range(72):
    prefix, length, sizes = card_kinds[i % len(card_kinds)]
    number = luhn_complete(prefix, length)
    if i % 9 == 0:
        number = number[:4] + "1111" + number[8:]  # repeats, so doubles and triples occur
        number = luhn_complete(number[:length - 1], length)
    style = card_styles[i % len(card_styles)]
    lead = card_leads[i % len(card_leads)]
    case("card", lead.format("{card:" + say(number, sizes, style) + "}"))

# Social security numbers.
ssn_leads = [
    "my social is {}",
    "social security number {}",
    "the SSN is {}",
    "it's {}, that's my social",
    "for the credit check my social security number is {}",
    "okay, {} is my social",
    "you need my social? {}",
    "SSN {} for the application",
]
ssn_styles = ["dash", "space", "solid", "words", "oh", "doubles", "comma", "mixed"]
for i in range(56):
    number = "".join(rng.choice("0123456789") for _ in range(9))
    if number[0] in "09":
        number = "5" + number[1:]
    if i % 7 == 0:
        number = number[:3] + "00" + number[5:]
    style = ssn_styles[i % len(ssn_styles)]
    lead = ssn_leads[i % len(ssn_leads)]
    if style == "dash" and i % 2 == 1:
        lead = "write down {} please"  # the shape alone says what it is
    case("ssn", lead.format("{ssn:" + say(number, [3, 2, 4], style) + "}"))
for i in range(6):
    last4 = "".join(rng.choice("0123456789") for _ in range(4))
    text = [f"the last four of my social are {{ssn:{last4}}}",
            f"last four of the social, {{ssn:{spoken_group(last4)}}}"][i % 2]
    case("ssn", text)

# Phone numbers.
phone_leads = [
    "you can reach me at {}",
    "call me back on {}",
    "my cell is {}",
    "the number is {}",
    "text me at {} after five",
    "my wife's phone is {}",
    "{} is the best number",
    "try the office line, {}",
]
for i in range(56):
    area = rng.choice("23456789") + "".join(rng.choice("0123456789") for _ in range(2))
    exchange = rng.choice("23456789") + "".join(rng.choice("0123456789") for _ in range(2))
    line = "".join(rng.choice("0123456789") for _ in range(4))
    digits = area + exchange + line
    form = i % 10
    if form == 0:
        shown = f"({area}) {exchange}-{line}"
    elif form == 1:
        shown = f"{area}-{exchange}-{line}"
    elif form == 2:
        shown = f"{area}.{exchange}.{line}"
    elif form == 3:
        shown = f"+1 {area} {exchange} {line}"
    elif form == 4:
        shown = f"1-{area}-{exchange}-{line}"
    elif form == 5:
        shown = say(digits, [3, 3, 4], "oh")
    elif form == 6:
        shown = say(digits, [3, 3, 4], "doubles")
    elif form == 7:
        shown = spoken_group(area, oh=True) + ", " + spoken_group(exchange, oh=True) + ", " + spoken_pairs(line)
    elif form == 8:
        shown = digits
    else:
        shown = f"{area} {exchange} {line}"
    lead = phone_leads[i % len(phone_leads)]
    case("phone", lead.format("{phone:" + shown + "}"))
for i in range(6):
    exchange = rng.choice("23456789") + "".join(rng.choice("0123456789") for _ in range(2))
    line = "".join(rng.choice("0123456789") for _ in range(4))
    case("phone", ["call me at {phone:%s-%s}", "my cell is {phone:%s %s}", "text me on {phone:%s-%s}"][i % 3]
         % (exchange, line))

# Email addresses, written and spoken.
first = ["dana", "mike", "priya", "j", "tom", "lisa", "carlos", "amy", "kevin", "rachel", "sam", "nina"]
last = ["reyes", "smith", "patel", "obrien", "nguyen", "garcia", "chen", "walker", "kim", "lopez"]
domains = [("gmail", "com"), ("yahoo", "com"), ("outlook", "com"), ("icloud", "com"), ("comcast", "net"),
           ("hotmail", "com"), ("winnerrealty", "com"), ("school", "edu"), ("proton", "me")]
email_leads = ["my email is {}", "send it to {}", "you can email {}", "it's {}", "the address is {} thanks",
               "copy my husband, {}"]
for i in range(48):
    f, l = first[i % len(first)], last[(i * 3) % len(last)]
    dom, tld = domains[i % len(domains)]
    form = i % 6
    if form == 0:
        shown = f"{f}.{l}@{dom}.{tld}"
    elif form == 1:
        shown = f"{f}{l}{rng.randint(1, 99)}@{dom}.{tld}"
    elif form == 2:
        shown = f"{f} dot {l} at {dom} dot {tld}"
    elif form == 3:
        shown = f"{f} underscore {l} at {dom} dot {tld}"
    elif form == 4:
        shown = " ".join(f[:4]) + f" at {dom} dot {tld}"
    else:
        shown = f"{f}{l} at {dom} dot {tld}"
    case("email", email_leads[i % len(email_leads)].format("{email:" + shown + "}"))

# Bank account and routing numbers (only with a word for them: alone they are just digits).
bank_leads = ["the routing number is {}", "account number {}", "my checking account is {}",
              "wire it to account {}", "routing {} and that's Chase", "the account number for escrow is {}"]
for i in range(30):
    lead = bank_leads[i % len(bank_leads)]
    length = 9 if "routing" in lead else rng.choice([8, 10, 12])
    number = "".join(rng.choice("0123456789") for _ in range(length))
    if "routing" in lead:
        number = "0" + number[1:]
    style = ["solid", "words", "space", "oh"][i % 4]
    sizes = [3, 3, 3] if length == 9 else [4] * (length // 4) + ([length % 4] if length % 4 else [])
    case("bank", lead.format("{bank:" + say(number, sizes, style) + "}"))

# Two kinds in one utterance.
for i in range(22):
    number = luhn_complete("4", 16)
    area, exchange, line = "415", rng.choice("23456789") + "55", "".join(rng.choice("0123456789") for _ in range(4))
    f, l = first[i % len(first)], last[i % len(last)]
    templates = [
        "card is {card:%s} and my phone is {phone:%s-%s-%s}" % (say(number, [4, 4, 4, 4], "space"), area, exchange, line),
        "email {email:%s.%s@gmail.com} or call {phone:(%s) %s-%s}" % (f, l, area, exchange, line),
        "the deposit of 5,000 goes on {card:%s}" % say(number, [4, 4, 4, 4], "comma"),
        "we offered 450,000 and my number is {phone:%s %s %s}" % (area, exchange, line),
        "my social is {ssn:%s} and the house is at 1420 Maple Street" % say("52" + "".join(rng.choice("0123456789") for _ in range(7)), [3, 2, 4], "dash"),
        "reach me at {email:%s at yahoo dot com} about the 3 bedroom on Elm" % f,
    ]
    case("mixed", templates[i % len(templates)])

# What must be kept: prices, addresses, dates, sizes, ids, rates, counts.
keep = [
    "we can go up to $450,000 for the house on Maple",
    "they're asking four hundred fifty thousand",
    "the listing price is 1.2 million",
    "I live at 1234 Maple Street",
    "the house at 4821 North Elm Avenue",
    "it's 2250 Oak Ridge Drive, unit 12",
    "the zip code is 90210",
    "zip is nine four one one oh",
    "we want to close by March 3rd, 2025",
    "the inspection is on 12/05/2024",
    "the offer expires 2024-12-05 at noon",
    "we moved on the fifth of June",
    "can we meet at 3:30 tomorrow",
    "one or two bedrooms is fine",
    "two and a half baths at least",
    "about 2,400 square feet",
    "listing 4821934 looked nice",
    "MLS number 23019847",
    "it was built in 1998",
    "my credit score is 720",
    "my credit score is seven hundred twenty",
    "the HOA is 350 a month",
    "the lot is 0.25 acres",
    "offers between 350 and 400 thousand",
    "it's right off the 405",
    "room for 3 or 4 cars",
    "we saw 12 houses last weekend",
    "the rate is 6.5 percent",
    "we close on the 15th",
    "the mortgage would be 2,500 a month",
    "a 30 year fixed at 6.25",
    "twenty percent down",
    "I'll call you at the office",
    "email me at work, I'm at home now",
    "meet me at Starbucks on 5th and Main",
    "the kids are 4, 7 and 11",
    "it has 3 beds 2 baths 1,850 square feet",
    "we offered 500, 510, then 525 thousand",
    "the property tax was 8,432 dollars last year",
    "unit 4B at 1200 Ocean Boulevard",
    "suite 300, 1 Market Plaza",
    "I need about 90 days to close",
    "the earnest money is 10,000",
    "my budget is between 600 and 650",
    "the appraisal came in at 615,000",
    "the seller credit is 5,000",
    "that's 1 2 3 bedrooms, whatever works",
    "one, two, three, we counted three offers",
    "it's on the 2nd floor, apartment 2",
    "the open house is Sunday from 1 to 4",
    "the school is 10 minutes away",
    "the commute is 45 minutes",
    "flight 1423 lands at 6",
    "my daughter was born in 2015",
    "the price dropped by 25,000",
    "we want 4 bedrooms and 3 baths under 800,000",
    "the garage fits 2 cars",
    "the last one sold for 1,150,000 in 2023",
    "my score went from 680 to 710",
    "the office is at 100 Main Street, suite 210",
    "interest went from 7.1 to 6.8 percent",
    "we're on lot 17 of phase 2",
    "the dog is 3 years old",
    "it's zero down with the VA loan",
    "oh, I see, five bedrooms is a lot",
    "one of the two houses had a pool",
    "the hoa fee doubled to 700",
    "he wants double the deposit, 20,000",
    "triple the space we have now",
    "the card table stays with the house",
    "my business card has my office on it",
    "it's 15 minutes from the 101",
    "the 2019 remodel added 400 square feet",
    "account for about 3 weeks of escrow",
    "the 6 month lease is 2,800",
    "we have 2 kids and 1 on the way",
    "call me in 20 minutes",
    "the routing of the tour starts at 9",
    "I'll text you at 7",
    "number 42 on the list was my favorite",
    "the social room on floor 3 is nice",
    "house 1 was 540,000, house 2 was 565,000",
    "the gmail dot com address bounced, use the other",
    "at 5 we leave",
    "the walk score is 92",
]
for text in keep:
    case("keep", text)

# Written by hand, after the rules, in forms the templates above do not make: what a caller or
# the decoder could plausibly produce instead.
hand = [
    ("card", "it's {card:four two four two four two four two four two four two four two four two}"),
    ("card", "number is {card:4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1}"),
    ("card", "the card is {card:4111 1111 1111 1111}, exp 09/27, cvv {card:123}"),
    ("card", "security code on the back is {card:847}"),
    ("card", "{card:5500-0000-0000-0004} is my master card"),
    ("card", "uh, card, yeah, {card:4012 8888 8888 1881}"),
    ("card", "the American Express is {card:3782 822463 10005}"),
    ("ssn", "social's {ssn:123 45 6789}"),
    ("ssn", "social security is {ssn:one two three four five six seven eight nine}"),
    ("ssn", "my SSN, uh, {ssn:523116789}"),
    ("ssn", "it's {ssn:078-05-1120}, that's it"),
    ("phone", "call me at {phone:555 0100}"),
    ("phone", "my number is {phone:five five five, one two one two}"),
    ("phone", "my number is {phone:1 800 555 0199}"),
    ("phone", "{phone:(555)010-0199}, extension 204"),
    ("phone", "{phone:555-010-0199} extension 204"),
    ("phone", "home phone {phone:212 555 0142} and work is {phone:212 555 0177}"),
    ("phone", "the number's {phone:nine one seven, five five five, oh one two three}"),
    ("email", "{email:dana.reyes at gmail.com}"),
    ("email", "my email is dana, {email:d-a-n-a at gmail dot com}"),
    ("email", "email {email:mike_obrien@comcast.net} please"),
    ("email", "it's {email:priya p a t e l at outlook dot com}"),
    ("bank", "routing {bank:021000021}, account {bank:000123456789}"),
    ("bank", "account number is {bank:four four five eight, two one nine three, three two}"),
    ("keep", "we'd pay 4,250 a month for a place with 3 bedrooms"),
    ("keep", "my credit score is 742 and my income is 185,000"),
    ("keep", "the card reader at the door takes 4 digit codes"),
    ("keep", "I'd call it a 10 out of 10"),
    ("keep", "phone me about the 1,250,000 listing"),
    ("keep", "text me the 2 listings on 5th street"),
    ("keep", "the social hall holds 120 people"),
    ("keep", "the account manager said 2 weeks"),
    ("keep", "the account has been open since 2019"),
    ("keep", "I'll be at zillow dot com later tonight"),
    ("keep", "look at redfin dot com for the photos"),
    ("keep", "listing 4821934, call me"),
    ("keep", "the 2 bed at 415 Pine"),
    ("keep", "my card is in my wallet, I'll call back at 3"),
    ("keep", "they countered at 612,500"),
    ("keep", "HOA 375, taxes 9,100, insurance 1,800"),
    ("keep", "we looked in 2019, 2020 and 2021"),
    ("keep", "the date was 1-2-2024"),
    ("keep", "my social worker said 2 or 3 months"),
    ("keep", "the phone bill was 85 dollars"),
    ("keep", "we paid 1,200 on the visa application fee"),
    ("keep", "my checking account has about 40,000 in it"),
]
for cls, text in hand:
    case(cls, text)

# Held out: written after the hand-written cases above had changed the rules, and not used to
# change them since; their figures are reported apart.
held_out = [
    ("card", "ok so it's {card:4532 0151 1283 0366} expiring twelve twenty six"),
    ("card", "the last card I used was {card:6011 0009 9013 9424}"),
    ("card", "card number {card:five one oh five, one oh five one, oh five one oh, five one oh oh}"),
    ("card", "put it on my discover, {card:6011000990139424}"),
    ("card", "{card:4000 0566 5566 5556}, that's the debit one"),
    ("ssn", "social is {ssn:six six five, two one, four four three two}"),
    ("ssn", "for the lender, SSN {ssn:219-09-9999}"),
    ("ssn", "{ssn:457 55 5462} is my social security number"),
    ("ssn", "my social security number is {ssn:457555462}"),
    ("phone", "best number is {phone:(646) 555-3890}"),
    ("phone", "you can text {phone:three one two, five five five, double oh four seven}"),
    ("phone", "my husband's cell {phone:773.555.0190}"),
    ("phone", "reach me on {phone:+1-415-555-0133}"),
    ("phone", "the number is {phone:eight one eight, five five five, twelve thirty four}"),
    ("phone", "leave a message at {phone:310 555 0111}"),
    ("email", "it's {email:kevin.walker@icloud.com}"),
    ("email", "write to {email:sam dot lopez at hotmail dot com}"),
    ("email", "{email:rachel underscore kim at yahoo dot com} is my personal one"),
    ("email", "my work email is {email:amy at winnerrealty dot com}"),
    ("bank", "the routing number, {bank:zero two six zero zero nine five nine three}"),
    ("bank", "wire to checking account {bank:9876543210}"),
    ("keep", "the house on 1822 Birch is 3 bedrooms"),
    ("keep", "we're looking at 425 to 450"),
    ("keep", "call me after 5 on Tuesday the 14th"),
    ("keep", "the social security office is on 3rd street"),
    ("keep", "my card has a 5,000 limit"),
    ("keep", "we have 2 accounts, one at each bank"),
    ("keep", "she is 34 and he is 36"),
    ("keep", "they built 120 homes in phase 1 and 85 in phase 2"),
    ("keep", "the price per square foot is about 310"),
    ("keep", "we want to move by 2026"),
    ("keep", "look me up at facebook dot com"),
    ("keep", "the seller will pay 3 percent of closing costs"),
    ("keep", "the sqft is 1,975 and the lot is 6,500"),
    ("keep", "my number one priority is schools"),
]
for cls, text in held_out:
    case("held-" + cls, text)

for cls, text in cases:
    print(f"{cls}\t{text}")
