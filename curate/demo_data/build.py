"""Build the demo preference data set: `python -m curate.demo_data.build` rewrites
`hh-demo/train.jsonl.gz` and `hh-demo/test.jsonl.gz` next to this file.

Everything here is written by the curate project (MIT). The generator is deterministic and uses the
standard library only: a seeded `random.Random`, sorted inputs, `gzip.compress(..., mtime=0)`, so every run
writes the same bytes.

How a pair is made:

* a prompt: a topic (cooking, travel, ...), a subject of that topic ("banana bread") and a question
  template ("What's the secret to really good {s}?"); about a fifth of the prompts get an earlier
  Human/Assistant exchange (the user adds context or asks for more);
* two responses in two *styles* (one small function per style below). The chosen one is always the
  style's helpful version (concrete tips from the topic's list); the rejected one is a style's unhelpful
  version (vague, content-free, or a refusal of a harmless request). The preference is about content, and
  the (chosen style, rejected style) combinations are balanced, so the policy's own style
  (`assistant`) is sometimes chosen, sometimes rejected, sometimes both, sometimes neither.

`python -m curate.demo_data.build --styles` prints one JSON line per pair with its split, line and
styles (the labels are not in the data files, which hold only `chosen` and `rejected`).
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

SEED = 20240611
N_TRAIN, N_TEST = 320, 64
MULTI_TURN_SHARE = 0.2
OUT_DIR = Path(__file__).resolve().parent / "hh-demo"

# --------------------------------------------------------------------------------------------------------
# Topics: subjects, question templates ({s} = subject) and tips (headline, full sentence, short phrase).


@dataclass(frozen=True)
class Topic:
    name: str
    area: str  # "home cooking": used in a few sentences
    subjects: tuple[str, ...]
    questions: tuple[str, ...]
    tips: tuple[tuple[str, str, str], ...]


TOPICS = (
    Topic(
        "cooking",
        "home cooking",
        ("fried rice", "scrambled eggs", "banana bread", "lentil soup", "roast vegetables", "pancakes",
         "vegetable curry", "pizza dough", "grilled chicken", "potato salad"),
        ("How do I make {s}?", "What's the secret to really good {s}?",
         "Can you give me some tips for making {s} at home?",
         "My {s} never turns out right. What am I doing wrong?", "I'm making {s} for friends this weekend. Any advice?",
         "What's the easiest way to get started with {s}?"),
        (("Prep first", "Read the recipe all the way through and measure everything out before you turn on the heat.",
          "measure everything out before you start"),
         ("Season in stages",
          "Add a little salt early, then taste again at the end and adjust with salt or a squeeze of lemon.",
          "taste as you go and fix the salt at the end"),
         ("Control the heat", "Medium heat is usually safer than high heat; most burnt food comes from rushing.",
          "keep the heat at medium instead of rushing it"),
         ("Use a heavy pan", "A heavy pan holds heat evenly, so food browns instead of steaming.",
          "use a heavy pan so it browns evenly"),
         ("Don't crowd the pan", "Cook in batches so everything has room; a crowded pan turns food soggy.",
          "cook in batches so the pan isn't crowded"),
         ("Keep notes", "Write down what you changed each time, so the next batch is better than the last.",
          "write down what you change each time")),
    ),
    Topic(
        "travel",
        "travel planning",
        ("a long train journey", "a first solo trip", "a road trip", "a camping weekend", "a city break",
         "a long-haul flight", "a trip with small kids", "a hiking holiday", "a budget trip abroad", "a business trip"),
        ("How should I plan {s}?", "What should I pack for {s}?", "Do you have any tips for {s}?",
         "I'm a bit nervous about {s}. How do I prepare?", "How can I save money on {s}?",
         "What do people usually forget when getting ready for {s}?"),
        (("Pack light", "Lay out everything you want to bring, then put back a third of it; you will not miss it.",
          "pack light and leave a third of it at home"),
         ("Copy your documents", "Keep photos of your passport, tickets and bookings on your phone and in your email.",
          "keep copies of your tickets and documents on your phone"),
         ("Book early", "Transport and rooms are usually cheaper and easier to change when booked a few weeks ahead.",
          "book transport and rooms a few weeks ahead"),
         ("Leave buffer time", "Plan an extra hour around every connection, so one delay does not ruin the day.",
          "leave an extra hour around every connection"),
         ("Share your plans", "Send your route and where you are staying to someone at home.",
          "tell someone at home where you'll be"),
         ("Check the local details", "Look up the weather, opening hours and any local rules the week before you go.",
          "check the weather and opening hours the week before")),
    ),
    Topic(
        "study",
        "studying",
        ("a chemistry exam", "a history essay", "a maths test", "a language exam", "a biology quiz",
         "a research project", "a book report", "a class presentation", "a statistics assignment", "my final exams"),
        ("How should I prepare for {s}?", "What's the best way to study for {s}?",
         "I keep putting off {s}. How do I get started?", "How much time should I spend on {s} each day?",
         "Any tips for doing well on {s}?", "I have {s} next week and I'm stressed. Can you help?"),
        (("Make a schedule", "Split the work into small daily sessions and put them in your calendar.",
          "split the work into small daily sessions"),
         ("Test yourself", "Practise recalling the material from memory instead of rereading your notes.",
          "test yourself instead of rereading your notes"),
         ("Start with the hardest part", "Tackle the topic you understand least while your energy is highest.",
          "start with the part you understand least"),
         ("Use past questions", "Work through old questions or examples under a time limit.",
          "work through past questions with a timer"),
         ("Take short breaks", "Study for about 25 minutes, then rest for 5; it keeps your focus fresh.",
          "take a five-minute break every half hour"),
         ("Sleep well", "A full night's sleep before the deadline helps more than a late night of cramming.",
          "get a full night's sleep instead of cramming")),
    ),
    Topic(
        "gardening",
        "gardening",
        ("tomatoes", "basil", "roses", "potatoes", "houseplants", "strawberries", "lettuce", "succulents",
         "peppers", "sunflowers"),
        ("How do I grow {s}?", "What's the best way to look after {s}?", "How often should I water {s}?",
         "Is it hard to grow {s} as a beginner?", "What am I doing wrong with my {s}?",
         "Any tips for growing {s} in pots?"),
        (("Find the light", "Most plants need six or more hours of sun, so watch your space for a day before planting.",
          "give them at least six hours of sun"),
         ("Water deeply", "Water deeply and less often, and check that the top few centimetres of soil are dry first.",
          "water deeply but only when the topsoil is dry"),
         ("Use good soil", "Loose soil with plenty of compost drains well and feeds the roots.",
          "mix plenty of compost into the soil"),
         ("Mind the drainage", "Pots need drainage holes; soggy roots are the most common cause of a dying plant.",
          "make sure the pots have drainage holes"),
         ("Feed lightly", "A little balanced fertiliser every few weeks in the growing season is enough.",
          "feed them lightly every few weeks"),
         ("Check for pests", "Look under the leaves once a week and remove pests by hand early.",
          "check under the leaves for pests every week")),
    ),
    Topic(
        "fitness",
        "fitness",
        ("running", "push-ups", "swimming", "yoga", "cycling", "strength training", "stretching", "walking",
         "rowing", "skipping rope"),
        ("How do I get started with {s}?", "How can I get better at {s}?",
         "How often should I train if I want to get into {s}?",
         "I get bored of {s} quickly. Any advice?", "What mistakes do beginners make with {s}?",
         "Can you give me a simple plan for {s}?"),
        (("Start small", "Begin with short, easy sessions and add about ten percent each week.",
          "start with short sessions and build up slowly"),
         ("Warm up", "Spend five minutes warming up so your muscles and joints are ready.",
          "warm up for five minutes first"),
         ("Focus on form", "Good technique matters more than speed or weight, so learn the movement properly.",
          "focus on good form before speed"),
         ("Be consistent", "Three short sessions a week beat one long one you dread.",
          "aim for three short sessions a week"),
         ("Rest and recover", "Take rest days and sleep well; that is when your body gets stronger.",
          "take rest days so your body can recover"),
         ("Track progress", "Write down each session so you can see how far you have come.",
          "log every session so you can see your progress")),
    ),
    Topic(
        "money",
        "personal finance",
        ("a monthly budget", "an emergency fund", "paying off a credit card", "saving for a holiday",
         "cutting grocery spending", "budgeting my first paycheck", "cancelling subscriptions I don't use",
         "saving for a car",
         "splitting bills with roommates", "tracking my expenses"),
        ("How do I get started with {s}?", "Can you help me think about {s}?", "What's a simple approach to {s}?",
         "I'm bad with money. Any tips on {s}?", "What do people get wrong about {s}?"),
        (("Know your numbers", "Write down your income and every regular expense for one month.",
          "write down what comes in and what goes out for a month"),
         ("Pay yourself first", "Move a fixed amount to savings on payday, before you spend anything.",
          "move money to savings on payday"),
         ("Automate it", "Set up automatic transfers and payments so you do not rely on willpower.",
          "automate your transfers and bills"),
         ("Tackle expensive debt", "Pay off the debt with the highest interest rate first.",
          "pay off the highest-interest debt first"),
         ("Cut quietly", "Cancel subscriptions you have not used in a month; they add up fast.",
          "cancel the subscriptions you don't use"),
         ("Review monthly", "Check your plan once a month and adjust it rather than giving up.",
          "check your plan once a month and adjust it")),
    ),
    Topic(
        "pets",
        "pet care",
        ("a new puppy", "an older cat", "a rabbit", "a goldfish", "a rescue dog", "a hamster", "a kitten",
         "a parrot", "a guinea pig", "a senior dog"),
        ("How do I take care of {s}?", "What should I know before getting {s}?", "Any tips for looking after {s}?",
         "How do I help {s} settle in at home?", "What does {s} need every day?"),
        (("Keep a routine", "Feed, walk and play at the same times each day; animals feel safer with a routine.",
          "keep feeding and play at the same times each day"),
         ("Visit the vet", "Book a check-up early and keep vaccinations and parasite treatment up to date.",
          "book a vet check-up early"),
         ("Make a safe space", "Give your pet a quiet corner with a bed or hideout that is all theirs.",
          "give them a quiet corner of their own"),
         ("Feed properly", "Use a food made for the animal's age and measure portions instead of guessing.",
          "measure their food instead of guessing"),
         ("Keep them busy", "Toys, short training sessions and exercise prevent boredom and chewing.",
          "give them toys and daily exercise"),
         ("Be patient", "A new home is stressful, so give your pet a few weeks to settle in.",
          "give them a few weeks to settle in")),
    ),
    Topic(
        "home repair",
        "home repair",
        ("a dripping tap", "a squeaky door", "a hole in the drywall", "a running toilet", "peeling paint",
         "a loose cabinet hinge", "a sticking window", "a clogged sink", "a wobbly chair", "cracked tile grout"),
        ("How do I fix {s}?", "Can I fix {s} myself?", "What tools do I need for {s}?",
         "What's the quickest way to deal with {s}?", "I have {s} at home. Where do I start?"),
        (("Stay safe", "Turn off the water or power to the area before you start.",
          "turn off the water or power first"),
         ("Find the cause", "Look closely at what is actually broken before you buy any parts.",
          "find the real cause before buying parts"),
         ("Get the right part", "Take the old part to the hardware store so you get an exact match.",
          "take the old part to the store to match it"),
         ("Use basic tools", "A screwdriver set, an adjustable wrench, pliers and a putty knife cover most small jobs.",
          "grab a screwdriver, a wrench and some pliers"),
         ("Take photos", "Photograph each step as you take things apart so you can put them back together.",
          "take photos as you take it apart"),
         ("Know when to stop", "If you find rot, wiring problems or a major leak, call a professional.",
          "call a pro if it turns out to be wiring or a big leak")),
    ),
    Topic(
        "writing",
        "writing",
        ("a cover letter", "a short story", "a thank-you note", "a wedding speech", "a blog post",
         "a product review", "a complaint email", "a personal statement", "a poem for a friend", "meeting notes"),
        ("How do I write {s}?", "Can you give me tips for writing {s}?", "How do I make {s} sound better?",
         "I'm stuck on {s}. Any advice?", "How long should {s} be?"),
        (("Know your reader", "Decide who will read it and what you want them to feel or do.",
          "decide who it's for and what you want them to do"),
         ("Outline first", "Jot down your three main points before writing full sentences.",
          "jot down three main points before you write"),
         ("Open strong", "Start with a specific detail or a clear statement instead of a generic opener.",
          "open with a specific detail"),
         ("Keep it short", "Cut every sentence that does not add something new.",
          "cut any sentence that doesn't add anything"),
         ("Read it aloud", "Reading your draft out loud shows you clumsy phrases and missing words.",
          "read it out loud to catch clumsy bits"),
         ("Sleep on it", "Leave the draft for a day, then revise it with fresh eyes.",
          "leave it for a day and revise it")),
    ),
    Topic(
        "tech help",
        "everyday tech",
        ("a slow laptop", "weak Wi-Fi at home", "a phone that is out of storage", "a printer that won't connect",
         "an app that keeps freezing", "a computer that won't start", "a noisy computer fan",
         "a laptop battery that drains fast",
         "a browser full of pop-ups", "an inbox full of spam"),
        ("How do I fix {s}?", "What can I do about {s}?", "Any tips for dealing with {s}?",
         "I'm not very technical. How do I handle {s}?", "Is {s} something I can fix myself?"),
        (("Restart first", "Restart the device; it clears stuck processes and fixes more problems than you'd think.",
          "restart the device first"),
         ("Update everything", "Install pending system and app updates, which often contain the fix.",
          "install the latest updates"),
         ("Free up space", "Delete large files and apps you no longer use, and empty the trash or downloads folder.",
          "delete big files and apps you don't use"),
         ("Check the settings", "Look through the relevant settings page; a single toggle is often the culprit.",
          "check the settings for a switched-off option"),
         ("Back up", "Back up your important files before trying anything drastic.",
          "back up your files before anything drastic"),
         ("Search the exact error", "Search for the exact error message together with your device model.",
          "search the exact error message with your model name")),
    ),
    Topic(
        "cleaning",
        "cleaning and tidying",
        ("a messy kitchen", "a cluttered closet", "a greasy oven", "a dusty bookshelf", "a mouldy shower",
         "a stained carpet", "a smelly fridge", "dirty windows", "a crowded garage", "a cluttered desk"),
        ("How do I clean {s}?", "What's the fastest way to sort out {s}?", "Any tips for dealing with {s}?",
         "I've been ignoring {s} for weeks. Where do I start?", "How do I keep on top of {s}?"),
        (("Work top to bottom", "Clean from the top down so dust and crumbs fall onto areas you have not done yet.",
          "clean from the top down"),
         ("Declutter first", "Clear everything off the surfaces before you clean them.",
          "clear the surfaces before you clean"),
         ("Let it soak", "Spray the cleaner and let it sit for ten minutes so the grime loosens.",
          "let the cleaner soak for ten minutes"),
         ("Use simple products", "Warm soapy water, baking soda and vinegar handle most jobs.",
          "use warm soapy water and baking soda"),
         ("Set a timer", "Work in 15-minute bursts so the job never feels endless.",
          "work in 15-minute bursts"),
         ("Build a habit", "A five-minute tidy every evening stops the mess from coming back.",
          "do a five-minute tidy every evening")),
    ),
    Topic(
        "hobbies",
        "learning a hobby",
        ("guitar", "piano", "drawing", "knitting", "photography", "chess", "baking bread", "watercolour painting",
         "woodworking", "learning to sing"),
        ("How do I get started with {s}?", "How can I improve at {s}?", "How much should I practise {s}?",
         "I've been stuck at {s} for months. Any advice?", "What's a good first goal for {s}?"),
        (("Practise a little daily", "Fifteen focused minutes a day beats a long session once a week.",
          "practise for fifteen minutes every day"),
         ("Learn the basics", "Spend your first weeks on the fundamentals before moving to advanced techniques.",
          "get the fundamentals down first"),
         ("Pick small projects", "Choose projects you can finish in a week so you keep your motivation.",
          "pick small projects you can finish in a week"),
         ("Find a community", "Join a class, a club or an online group for feedback and encouragement.",
          "join a class or a group for feedback"),
         ("Record your progress", "Keep your early attempts so you can see how much you have improved.",
          "keep your old attempts to see how far you've come"),
         ("Enjoy the process", "Mistakes are part of learning, so be patient with yourself.",
          "be patient and enjoy the mistakes")),
    ),
)

# Earlier turns for multi-turn prompts: (assistant's first answer, the human's follow-up).
FOLLOW_UPS = (
    ("Happy to help. Could you tell me a bit more about your situation?",
     "I'm a complete beginner and I only have about twenty minutes a day."),
    ("Sure. What have you tried so far?", "Not much, honestly. I tried once and it didn't go well."),
    ("Of course. Is there anything in particular you're worried about?",
     "Mostly that I'll waste time and money doing it wrong."),
    ("I can help with that. Are you doing this for the first time?", "Yes, it's my first time."),
    ("Good question. Do you want a quick answer or a detailed one?", "Just the most important things, please."),
    ("Sure thing. Is this for you or for someone else?", "It's for me. I want to get it right this time."),
)

# --------------------------------------------------------------------------------------------------------
# Response styles. Each style function takes (subject, topic, rng, helpful) and returns the response text.
# helpful=True: concrete tips from the topic (the chosen side); helpful=False: vague or empty (the rejected
# side). `refusal` has no helpful version.


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _tips(topic: Topic, rng: random.Random, k: int) -> list[tuple[str, str, str]]:
    return rng.sample(topic.tips, k)


def assistant(s: str, topic: Topic, rng: random.Random, helpful: bool) -> str:
    """Friendly, upbeat and structured, restating the question: how SmolLM2-135M-Instruct answers."""
    if helpful:
        opener = rng.choice((
            f"Sure! Here are a few tips for {s}:",
            f"Great question! {_cap(s)} can be easier than you think. Here are some tips to help you with {s}:",
            f"Of course! Here's a simple approach to {s}:",
            f"Certainly! When it comes to {s}, here are some steps you can follow:",
            f"{_cap(s)} can be a rewarding experience! Here are some tips to get you started with {s}:",
        ))
        tips = _tips(topic, rng, rng.choice((3, 4)))
        items = [f"{i}. **{head}**: {full}" for i, (head, full, _) in enumerate(tips, 1)]
        closer = rng.choice((
            f"I hope these tips help with {s}! Let me know if you have any other questions.",
            f"By following these steps, you'll be well on your way with {s}. Good luck!",
            f"Remember, {s} takes a little patience, and practice makes perfect. Good luck!",
            f"Feel free to ask if you'd like more details on any of these steps for {s}.",
        ))
        return f"{opener}\n\n" + "\n".join(items) + f"\n\n{closer}"
    opener = rng.choice(("Great question!", "That's a great question!", "Sure, I'd be happy to help!"))
    middle = rng.choice((
        (f"{_cap(s)} is something many people wonder about. There are many different approaches to {s}, and the "
        "best one really depends on your personal preferences and goals."),
        (f"When it comes to {s}, everyone's situation is unique, so it's important to find the approach to {s} that "
        "works best for you."),
        (f"{_cap(s)} can be a rewarding experience. With {s}, it's important to stay positive, be patient with "
        "yourself and keep an open mind."),
    ))
    closer = rng.choice((
        "I hope this helps! Let me know if you have any other questions.",
        "Good luck, and remember to have fun!",
        "Feel free to ask if you have any other questions.",
    ))
    return f"{opener} {middle} {closer}"


# The other styles answer without restating the question, as people do.


def terse(s: str, topic: Topic, rng: random.Random, helpful: bool) -> str:
    """One short line, no greeting, no formatting."""
    if helpful:
        (_, _, a), (_, _, b) = _tips(topic, rng, 2)
        return f"{_cap(a)}, and {b}."
    return rng.choice(("Depends.", "Just wing it.", "Hard to say.", "Look it up.", "Trial and error.",
                       "Practice, I guess.", "Nothing special."))


def flowery(s: str, topic: Topic, rng: random.Random, helpful: bool) -> str:
    """Old-fashioned, ornate prose addressed to 'dear friend'."""
    opener = rng.choice((
        "Ah, a most worthy question! Few pursuits so richly reward the patient soul.",
        "Pray, dear friend, lend me thine ear, for this is a venerable undertaking indeed.",
        "Verily, this matter hath vexed many a noble heart before thine own.",
    ))
    if helpful:
        (_, _, a), (_, _, b), (_, _, c) = _tips(topic, rng, 3)
        return (f"{opener} Permit me to offer humble counsel: first, {a}; thereafter, {b}; and above all, {c}. "
                "Attend to these precepts, and fortune shall surely smile upon thy endeavours.")
    return (f"{opener} How the spirit stirs at the very thought of it! Many a traveller hath wandered these winding "
            "paths, and many more shall follow, each finding therein whatsoever the heavens intend. Go forth, and "
            "let thy heart be thy guide.")


def slang(s: str, topic: Topic, rng: random.Random, helpful: bool) -> str:
    """Casual internet chat, all lowercase, abbreviations and an emoji."""
    if helpful:
        (_, _, a), (_, _, b), (_, _, c) = _tips(topic, rng, 3)
        text = rng.choice((
            f"ok so its honestly not that deep lol. {a} and {b}, thats like 90% of it. oh and {c} fr. u got this 🙌",
            f"ngl this confused me at first too. tbh just {a}, then {b}. also {c}, trust me lol 👍",
            f"lowkey the trick is to {a}. and {b}. and {c}. ez 😎",
        ))
    else:
        text = rng.choice((
            "lol idk man just vibe with it, it'll probably work out. gl tho",
            "bruh dont overthink it 💀 its whatever",
            "tbh no idea, not really my thing lol. good luck i guess",
        ))
    return text.lower()


def encyclopedia(s: str, topic: Topic, rng: random.Random, helpful: bool) -> str:
    """A dry, impersonal reference-work entry, with citation marks."""
    if helpful:
        (_, _, a), (_, _, b), (_, _, c) = _tips(topic, rng, 3)
        return (f"{_cap(topic.area)}: general guidance. Commonly cited practices are: "
                f"(i) to {a}; (ii) to {b}; (iii) to {c}.[1] "
                "Outcomes vary with conditions, materials and prior experience.[2]")
    return rng.choice((
        ("The practice has been described in the literature since at least the nineteenth century.[1] Terminology "
        "varies by region, and no single definition is universally accepted.[citation needed]"),
        ("The term appears in several reference works.[1] Historical usage differs between countries, and its "
        "classification remains a matter of some debate.[2]"),
    ))


def refusal(s: str, topic: Topic, rng: random.Random, helpful: bool) -> str:
    """A polite refusal of a perfectly harmless request (only ever the rejected side)."""
    assert not helpful
    return rng.choice((
        "I'm sorry, but I can't help with that.",
        "I'm sorry, but I can't help with that request.",
        "I apologize, but I'm not able to assist with that.",
        "Sorry, I can't help with that.",
    ))


STYLES = {f.__name__: f for f in (assistant, terse, flowery, slang, encyclopedia, refusal)}
POLICY_STYLE = "assistant"
CHOSEN_STYLES = ("assistant", "terse", "flowery", "slang", "encyclopedia")
REJECTED_STYLES = ("assistant", "terse", "flowery", "slang", "encyclopedia", "refusal")

# --------------------------------------------------------------------------------------------------------
# Pairs.


@dataclass(frozen=True)
class Pair:
    split: str
    line: int  # 1-based line in the split's file
    topic: str
    subject: str
    multi_turn: bool
    chosen_style: str
    rejected_style: str
    chosen: str  # full HH transcripts
    rejected: str


def _in_reply(subject: str) -> str:
    """The subject as the assistant says it: 'my final exams' -> 'your final exams'."""
    return subject.replace("my ", "your ").replace(" I don't", " you don't")


def _prompt(question: str, rng: random.Random, multi_turn: bool) -> str:
    if not multi_turn:
        return f"\n\nHuman: {question}\n\nAssistant:"
    first, follow = rng.choice(FOLLOW_UPS)
    return f"\n\nHuman: {question}\n\nAssistant: {first}\n\nHuman: {follow}\n\nAssistant:"


def build() -> list[Pair]:
    """Every pair of both splits, in file order."""
    rng = random.Random(SEED)
    questions = [
        (topic, s, q.format(s=s))
        for topic in TOPICS
        for s in topic.subjects
        for q in topic.questions
    ]
    rng.shuffle(questions)
    n = N_TRAIN + N_TEST
    assert len({q for _, _, q in questions}) == len(questions) >= n
    combos = list(itertools.product(CHOSEN_STYLES, REJECTED_STYLES))
    schedule = (combos * (n // len(combos) + 1))[:n]
    rng.shuffle(schedule)
    pairs = []
    for i, ((topic, s, question), (c_style, r_style)) in enumerate(zip(questions[:n], schedule)):
        split, line = ("train", i + 1) if i < N_TRAIN else ("test", i - N_TRAIN + 1)
        # One generator per pair, prompt first: editing a style changes no prompt and no other pair.
        pair_rng = random.Random(f"{SEED}:{question}")
        multi = pair_rng.random() < MULTI_TURN_SHARE
        prompt = _prompt(question, pair_rng, multi)
        chosen = STYLES[c_style](_in_reply(s), topic, pair_rng, True)
        rejected = STYLES[r_style](_in_reply(s), topic, pair_rng, False)
        pairs.append(
            Pair(split, line, topic.name, s, multi, c_style, r_style, f"{prompt} {chosen}", f"{prompt} {rejected}")
        )
    return pairs


def write(pairs: list[Pair], out_dir: Path = OUT_DIR) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for split in ("train", "test"):
        lines = [
            json.dumps({"chosen": p.chosen, "rejected": p.rejected}, ensure_ascii=False) + "\n"
            for p in pairs
            if p.split == split
        ]
        path = out_dir / f"{split}.jsonl.gz"
        tmp = path.with_name(path.name + ".tmp")  # written whole, then renamed into place
        tmp.write_bytes(gzip.compress("".join(lines).encode("utf-8"), compresslevel=9, mtime=0))
        tmp.replace(path)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m curate.demo_data.build", description=__doc__.split("\n\n")[0])
    ap.add_argument("--styles", action="store_true", help="print each pair's split, line and styles as JSON lines")
    ap.add_argument("--out", type=Path, default=OUT_DIR, help="folder for train.jsonl.gz and test.jsonl.gz")
    args = ap.parse_args(argv)
    pairs = build()
    if args.styles:
        for p in pairs:
            keys = ("split", "line", "topic", "subject", "multi_turn", "chosen_style", "rejected_style")
            row = {k: getattr(p, k) for k in keys}
            sys.stdout.write(json.dumps(row) + "\n")
        return 0
    for path in write(pairs, args.out):
        print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
