"""The normaliser's words: genre names and moods, negation cues, follow-up and year cues.

Lower case, accents stripped, apostrophes dropped ("dont"), as genre_agent.service.normalise
tokenises a message. A word not listed here is left over for the LLM (the hybrid), never
mapped to the nearest genre.
"""

from __future__ import annotations

# Phrases (token tuples) naming a genre directly or by mood. Several genres per phrase are
# all wanted ("romcom"). Tokens are lower case, accents stripped, apostrophes dropped.
GENRE_WORDS: dict[str, tuple[str, ...]] = {
    "Action": (
        "action",
        "action packed",
        "explosions",
        "shoot em up",
        "shootouts",
        "martial arts",
        "kung fu",
        "adrenaline",
        "fight scenes",
    ),
    "Adventure": (
        "adventure",
        "adventures",
        "adventurous",
        "swashbuckler",
        "swashbuckling",
        "quest",
        "treasure hunt",
    ),
    "Animation": (
        "animation",
        "animated",
        "cartoon",
        "cartoons",
        "anime",
        "stop motion",
        "claymation",
        "pixar",
    ),
    "Children": (
        "children",
        "childrens",
        "kids",
        "kid",
        "kiddie",
        "kid friendly",
        "family friendly",
        "for the family",
        "for the whole family",
        "family movie",
        "family movies",
        "family film",
        "family films",
        "family night",
        "little ones",
        "toddler",
        "toddlers",
    ),
    "Comedy": (
        "comedy",
        "comedies",
        "comedic",
        "funny",
        "funnier",
        "funniest",
        "hilarious",
        "humor",
        "humour",
        "humorous",
        "laugh",
        "laughs",
        "lol",
        "goofy",
        "silly",
        "witty",
        "feel good",
        "feelgood",
        "light hearted",
        "lighthearted",
        "slapstick",
        "spoof",
        "spoofs",
        "parody",
    ),
    "Crime": (
        "crime",
        "crimes",
        "gangster",
        "gangsters",
        "mafia",
        "mob",
        "mobster",
        "mobsters",
        "heist",
        "heists",
        "criminals",
        "organized crime",
    ),
    "Documentary": (
        "documentary",
        "documentaries",
        "doc",
        "docs",
        "docu",
        "nonfiction",
        "non fiction",
    ),
    "Drama": ("drama", "dramas", "dramatic", "tearjerker", "tear jerker", "weepy"),
    "Fantasy": (
        "fantasy",
        "fantasies",
        "magic",
        "magical",
        "wizard",
        "wizards",
        "dragons",
        "sword and sorcery",
        "fairy tale",
        "fairy tales",
    ),
    "Film-Noir": ("noir", "film noir", "noirs"),
    "Horror": (
        "horror",
        "horrors",
        "scary",
        "scarier",
        "scariest",
        "spooky",
        "creepy",
        "frightening",
        "terrifying",
        "slasher",
        "slashers",
        "gore",
        "gory",
        "zombie",
        "zombies",
        "scare me",
    ),
    "IMAX": ("imax",),
    "Musical": ("musical", "musicals", "song and dance", "sing along", "singalong"),
    "Mystery": ("mystery", "mysteries", "whodunit", "whodunnit", "who done it", "sleuth"),
    "Romance": ("romance", "romances", "romantic", "love story", "love stories"),
    "Sci-Fi": (
        "sci fi",
        "scifi",
        "science fiction",
        "space",
        "outer space",
        "futuristic",
        "cyberpunk",
        "dystopian",
        "dystopia",
        "time travel",
        "aliens",
    ),
    "Thriller": (
        "thriller",
        "thrillers",
        "suspense",
        "suspenseful",
        "tense",
        "edge of my seat",
        "edge of your seat",
        "nail biting",
        "nailbiter",
    ),
    "War": (
        "war",
        "wartime",
        "world war",
        "ww2",
        "wwii",
        "ww1",
        "wwi",
        "military",
        "soldiers",
        "battlefield",
    ),
    "Western": ("western", "westerns", "cowboy", "cowboys", "wild west", "gunslinger"),
}
MULTI: dict[str, tuple[str, ...]] = {
    "romcom": ("Comedy", "Romance"),
    "romcoms": ("Comedy", "Romance"),
    "rom com": ("Comedy", "Romance"),
    "rom coms": ("Comedy", "Romance"),
}
# Mood words whose wanted and unwanted readings differ: "violent" wanted is Action; "less
# violent" drops every genre that carries the violence.
VIOLENT = ("violent", "violence", "brutal", "bloody")
VIOLENT_GENRES = ("Action", "Horror", "War")
# Phrases that themselves mean "not this genre".
ANTI: dict[str, tuple[str, ...]] = {
    "for adults": ("Children",),
    "grown up": ("Children",),
    "grownup": ("Children",),
}

NEG = [
    "anything but",
    "anything except",
    "anything other than",
    "except",
    "excluding",
    "exclude",
    "other than",
    "apart from",
    "without",
    "not",
    "no",
    "never",
    "nothing",
    "none",
    "non",
    "dont want",
    "do not want",
    "dont like",
    "do not like",
    "dont need",
    "hate",
    "hates",
    "cant stand",
    "cannot stand",
    "avoid",
    "skip",
    "less",
    "fewer",
    "instead of",
    "rather than",
    "sick of",
    "tired of",
    "no more",
    "minus",
    "nor",
    "neither",
    "isnt",
    "arent",
    "lay off",
    "spare me",
    "too much",
    "enough with",
]
# Words that may sit between a negation and the genre it negates ("not in the mood for a
# scary one", "no more of those romantic ones").
BRIDGE = set(
    """a an the any anything more too so very really overly particularly of that those these
    is are be it its thats movies movie films film flick flicks stuff things thing please
    genre genres kind kinds type types sort sorts in mood for into want wanna need something
    i im me my we us feel feeling at all today tonight right now sure if possible even
    slightly remotely bit little one ones super that's heavy on with much about pure straight
    up over""".split()
)
CHAIN = {"or", "and", "nor", ",", "/"}
# Words that open a new wish after a comma: negation does not carry over them.
OPENERS = {"something", "want", "wanna", "need", "with", "i", "im", "give", "show", "maybe"}

STOP = set(
    """a an the and or but nor of to in on at for with from by as is are was were be been am
    it its this that these those there here i im ive id me my mine we us our you your he she
    they them their some any something anything somethin stuff thing things one ones movie
    movies film films flick flicks cinema watch watching watched see seen show shows showing
    give get got find recommend recommendation recommendations suggest suggestion
    suggestions pick picks want wanna wanted need looking look please pls plz thanks thank
    maybe perhaps just only also too very really quite pretty kind kinda sort sorta like
    would could should can will do does did dont doesnt am is tonight today tomorrow evening
    night weekend now mood feel feeling feelin good great nice best better fine ok okay yes
    yeah hey hi hello so then again still even if what which who how any some all more most
    less much many other another else similar same new different made released set from era
    year years old time times about something sth lets let us got gotta have has had having
    go going gonna put on up down out into over under again time please would love liked
    loved enjoyed enjoy enjoys fan big huge bit little lot lots whole type types genre genres
    style vibe vibes feel kind sorts sort type preferably ideally prefer preferred rather
    ok alright must should shall may might way tbh honestly actually definitely def sure
    surprise me im i'm u ur ya yo guys friend friends wife husband girlfriend boyfriend
    partner date family kids son daughter tonite rn atm lately thats whats though
    although hmm hmmm ugh um uh oh ah well btw weve youve theyre looks meant mean loves
    seems think guess""".split()
)

ORD = {
    "first": 1,
    "1st": 1,
    "second": 2,
    "2nd": 2,
    "third": 3,
    "3rd": 3,
    "fourth": 4,
    "4th": 4,
    "fifth": 5,
    "5th": 5,
    "sixth": 6,
    "6th": 6,
    "seventh": 7,
    "7th": 7,
    "eighth": 8,
    "8th": 8,
    "ninth": 9,
    "9th": 9,
    "tenth": 10,
    "10th": 10,
}
PICK_NOUNS = {"one", "pick", "suggestion", "movie", "film", "title", "option", "choice"}
PICK_NEG = {
    "not",
    "no",
    "drop",
    "remove",
    "skip",
    "seen",
    "watched",
    "hate",
    "without",
    "except",
    "lose",
    "ditch",
    "scrap",
    "nope",
    "nah",
    "dislike",
    "boring",
    "meh",
}
PICK_POS = {
    "like",
    "more",
    "similar",
    "loved",
    "liked",
    "love",
    "enjoyed",
    "great",
    "good",
    "perfect",
    "closer",
    "along",
}

TITLE_CUES = [
    "like",
    "likes",
    "similar to",
    "such as",
    "as good as",
    "in the style of",
    "in the vein of",
    "along the lines of",
    "reminds me of",
    "remind me of",
    "loved",
    "love",
    "liked",
    "enjoyed",
    "a fan of",
    "fan of",
    "kind of like",
    "kinda like",
    "sort of like",
    "a bit like",
    "same vibe as",
    "the same vibe as",
    "comparable to",
    "akin to",
    "a la",
    "ala",
    "in the spirit of",
    "adore",
    "adored",
    "more like",
    "something like",
    "stuff like",
]
POST_CUES = {"style", "vibes", "vibe", "type", "esque", "ish", "like"}
LOWER_OK = {"of", "the", "a", "an", "and", "in", "on", "to", "for", "at", "with", ":"}
VERB_LIKE = {"id", "would", "i", "we", "wed", "you", "they", "dont", "do", "really"}

WORD_DECADES = {
    "twenties": 1920,
    "thirties": 1930,
    "forties": 1940,
    "fifties": 1950,
    "sixties": 1960,
    "seventies": 1970,
    "eighties": 1980,
    "nineties": 1990,
    "noughties": 2000,
    "aughts": 2000,
}
NUM_WORDS = {"two": 2, "three": 3, "four": 4, "five": 5, "ten": 10, "twenty": 20, "few": 3}
RESET = [
    "start over",
    "new search",
    "forget that",
    "forget everything",
    "scratch that",
    "never mind",
    "nevermind",
    "something completely different",
    "start again",
    "different search",
    "clean slate",
    "reset",
]
REPEAT = [
    "show them again",
    "show those again",
    "show me those again",
    "show me them again",
    "again please",
    "repeat those",
    "the same ones again",
]
OLDER = {"older", "earlier", "oldies"}
MADE = {"made", "released", "filmed", "produced", "shot", "that", "came", "out"}
FLIP = {"min_ex": "max_in", "max_ex": "min_in", "min_in": "max_ex", "max_in": "min_ex"}
YEAR_NEG = {"not", "isnt", "arent", "nothing", "never", "except", "no", "without"}
NEWER = {"newer", "later", "fresher"}
