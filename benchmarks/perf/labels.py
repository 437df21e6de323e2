"""Label verbalizations for the decoding benchmark: TACRED's 42 relations and
the 80 FewRel (Wikidata) relations, written as a template would verbalize them."""

TACRED = [
    "no relation", "alternate names", "city of headquarters", "country of headquarters",
    "state or province of headquarters", "dissolved", "founded", "founded by", "member of", "members",
    "number of employees members", "parents", "political religious affiliation", "shareholders",
    "subsidiaries", "top members employees", "website", "age", "alternate names of person", "cause of death",
    "charges", "children", "cities of residence", "city of birth", "city of death", "countries of residence",
    "country of birth", "country of death", "date of birth", "date of death", "employee of", "origin",
    "other family", "parents of person", "religion", "schools attended", "siblings", "spouse",
    "state or province of birth", "state or province of death", "states or provinces of residence", "title",
]

FEWREL = [
    "place served by transport hub", "mountain range", "religion", "participating team",
    "contains administrative territorial entity", "head of government", "country of citizenship",
    "original network", "heritage designation", "performer", "participant of", "position held", "has part",
    "location of formation", "located on terrain feature", "architect", "country of origin", "publisher",
    "director", "father", "developer", "military branch", "mouth of the watercourse", "nominated for",
    "movement", "successful candidate", "followed by", "manufacturer", "instance of", "after a work by",
    "member of political party", "licensed to broadcast to", "headquarters location", "sibling", "instrument",
    "country", "occupation", "residence", "work location", "subsidiary", "participant", "operator",
    "characters", "occupant", "genre", "operating system", "owned by", "platform", "tributary", "winner",
    "said to be the same as", "composer", "league", "record label", "distributor", "screenwriter",
    "sports season of league or competition", "taxon rank", "location", "field of work",
    "language of work or name", "applies to jurisdiction", "notable work",
    "located in the administrative territorial entity", "crosses", "original language of film or TV show",
    "competition class", "part of", "sport", "constellation", "position played on team", "located in or next to body of water",
    "voice type", "follows", "spouse", "military rank", "mother", "member of", "child", "main subject",
]

assert len(TACRED) == 42 and len(set(TACRED)) == 42
assert len(FEWREL) == 80 and len(set(FEWREL)) == 80

NAMES = ["Bill Gates", "Marie Curie", "Barack Obama", "Ada Lovelace", "Nelson Mandela", "Angela Merkel",
         "Alan Turing", "Frida Kahlo", "Steve Jobs", "Serena Williams", "Albert Einstein", "Greta Thunberg"]
PLACES = ["Seattle", "Warsaw", "Honolulu", "London", "Mvezo", "Hamburg", "Maida Vale", "Coyoacan",
          "San Francisco", "Saginaw", "Ulm", "Stockholm"]
ORGS = ["Microsoft", "the Sorbonne", "the Senate", "the Royal Society", "the ANC", "the CDU", "Bletchley Park",
        "the Communist Party", "Apple", "the WTA", "Princeton", "Fridays for Future"]
PATTERNS = ["{n} was born in {p} and later joined {o}.", "{o}, founded by {n}, is based in {p}.",
            "In {p}, {n} spoke to members of {o} about the future.", "{n} worked for {o} for many years."]


def sentences(n: int) -> list[str]:
    out = []
    for i in range(n):
        pat = PATTERNS[i % len(PATTERNS)]
        out.append(pat.format(n=NAMES[i % len(NAMES)], p=PLACES[(i * 5) % len(PLACES)], o=ORGS[(i * 7) % len(ORGS)]))
    return out
