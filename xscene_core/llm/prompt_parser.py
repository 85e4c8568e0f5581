"""Words -> typed scene request: the offline reader of prompts (and of the descriptions we write).

`parse_prompt(text) -> PromptSpec` reads, without any model:
- style: time of day, weather, environment (with synonyms: "evening" -> dusk, "drizzle" -> rainy,
  "motorway" -> highway, ...);
- road: surface (wet, icy, snowy, dry), kind (4-way intersection, T-junction, straight, curved),
  number of lanes, whether a crosswalk is named;
- objects: every Occ3D object class by its synonyms, each with a count (digits, number words, vague
  quantities as ranges), colour, state, ego-relative position and relations to other objects, areas
  (crosswalk, intersection), lanes ("in the left lane") or the ego vehicle.

`read_group(thing, attribute)` reads one foreground entry of a SceneDescription ("2 red cars",
"parked at the curb, ahead on the left, behind the bus") with the same vocabulary; the evaluation
metric and the edit intents use it. Unknown words are skipped, never an error: an empty prompt gives a
spec whose fields are all unset (None / empty), which the composer fills from retrieved memories.

How it reads: the text is lower-cased and split into words; a phrase lexicon is matched longest-first
("in front of" before "in front"); relation targets are resolved first ("behind the bus" consumes
"the bus"), then each remaining object noun claims the modifiers just before it ("two red parked
cars"), then states, positions and relations after a noun attach to it until the next noun (a
position or relation that opens a clause before any noun goes to that clause's first noun).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable

from .. import semantics
from ..types.scene import ENVIRONMENTS, POSITIONS, RELATIONS, TIMES_OF_DAY, WEATHERS

# ----------------------------------------------------------------------------------------------------
# Vocabulary (canonical values)

SURFACES = ("wet", "icy", "snowy", "dry")
ROAD_KINDS = ("intersection", "t_junction", "straight", "curved")
LANE_REFS = ("ego", "left", "right", "oncoming", "middle")
AREA_KINDS = ("crosswalk", "intersection")
COLOURS = ("white", "black", "silver", "gray", "red", "blue", "dark blue", "green", "yellow", "beige", "orange",
           "brown", "purple", "pink", "gold")

# Which states a class can take; the first is its default when the prompt names none.
VEHICLES = ("car", "truck", "bus", "trailer", "construction_vehicle", "motorcycle", "bicycle")
FAMILY = {**{c: "vehicle" for c in VEHICLES}, "pedestrian": "person", "traffic_cone": "static", "barrier": "static"}
FAMILY_STATES = {"vehicle": ("moving", "stopped", "parked"), "person": ("walking", "standing", "crossing"),
                 "static": ("static",)}
DEFAULT_STATE = {c: FAMILY_STATES[f][0] for c, f in FAMILY.items()}
DEFAULT_STATE["construction_vehicle"] = "parked"  # machines stand at work zones (as in the synthetic world)

# Ego-relative positions: a plain side word ("on the left") covers the three sectors on that side;
# a compound one ("ahead on the left") is one sector. The composer places inside the set and the
# metric accepts any sector of it.
POSITION_SETS: dict[str, frozenset[str]] = {p: frozenset({p}) for p in POSITIONS}
POSITION_SETS.update({
    "front": frozenset({"front-left", "front", "front-right"}), "back": frozenset({"back-left", "back", "back-right"}),
    "left": frozenset({"front-left", "left", "back-left"}), "right": frozenset({"front-right", "right", "back-right"}),
})

VAGUE_PLURAL = (2, 5)  # "cars" with no number


# ----------------------------------------------------------------------------------------------------
# Typed output

@dataclass(frozen=True)
class TargetRef:
    """What a relation points at. kind: "object" (name = class name, colour optional), "area" (name =
    crosswalk | intersection), "lane" (name = one of LANE_REFS) or "ego"; pronoun: True for "it"/"them"
    (resolved to the previous object by the parser, so name is a class)."""

    kind: str
    name: str
    colour: str | None = None


@dataclass(frozen=True)
class RelationSpec:
    """`<the object> predicate target`, predicate one of types.scene.RELATIONS."""

    predicate: str
    target: TargetRef

    def __post_init__(self) -> None:
        if self.predicate not in RELATIONS:
            raise ValueError(f"RelationSpec: unknown predicate {self.predicate!r}")


@dataclass(frozen=True)
class ObjectSpec:
    """One object group the prompt asks for.

    class_name: semantics class name; count: (lo, hi) inclusive, (0, 0) for "no pedestrians";
    count_stated: the prompt gave a number or a quantity word (else the count came from the noun's
    number: singular 1, plural VAGUE_PLURAL); colour / state / position: canonical words or None
    (position is a key of POSITION_SETS); relations: to other objects, areas, lanes;
    determiner: "", "a", "the" or "all" (for edits: "remove all cars"); plural: the noun was plural;
    ordinal: "", "nearest" or "farthest"; implicit: only named as a relation target ("behind a bus").
    """

    class_name: str
    count: tuple[int, int] = (1, 1)
    count_stated: bool = False
    colour: str | None = None
    state: str | None = None
    position: str | None = None
    relations: tuple[RelationSpec, ...] = ()
    determiner: str = ""
    plural: bool = False
    ordinal: str = ""
    implicit: bool = False

    def __post_init__(self) -> None:
        if self.class_name not in FAMILY:
            raise ValueError(f"ObjectSpec: {self.class_name!r} is not an object class")
        lo, hi = self.count
        if not 0 <= lo <= hi:
            raise ValueError(f"ObjectSpec {self.class_name}: bad count range {self.count}")
        if self.state is not None and self.state not in FAMILY_STATES[FAMILY[self.class_name]]:
            raise ValueError(f"ObjectSpec {self.class_name}: state {self.state!r} does not apply")


@dataclass(frozen=True)
class RoadSpec:
    """surface: one of SURFACES; kind: one of ROAD_KINDS; lanes: lanes of the ego's road (both
    directions); crosswalk: a crosswalk is named. None / False when the prompt does not say."""

    surface: str | None = None
    kind: str | None = None
    lanes: int | None = None
    crosswalk: bool = False


@dataclass(frozen=True)
class PromptSpec:
    """What a prompt asks for; None / empty = not stated (the composer fills it).

    empty: "no traffic", "empty street": no objects besides the ones asked for; unparsed: words the
    parser did not use (for a UI to show what was ignored)."""

    text: str = ""
    time_of_day: str | None = None
    weather: str | None = None
    environment: str | None = None
    road: RoadSpec = field(default_factory=RoadSpec)
    objects: tuple[ObjectSpec, ...] = ()
    empty: bool = False
    unparsed: tuple[str, ...] = ()


@dataclass(frozen=True)
class GroupFacts:
    """One foreground entry of a description as read back: class, count, colours, state, position
    (a POSITIONS sector or a side key of POSITION_SETS), relations. None where the text says nothing."""

    class_name: str | None
    count: int | None
    colours: tuple[str, ...]
    state: str | None
    position: str | None
    relations: tuple[RelationSpec, ...]


# ----------------------------------------------------------------------------------------------------
# Lexicon: phrase (tuple of words) -> entry

@dataclass(frozen=True)
class _Entry:
    kind: str
    value: object = None
    extra: object = None


_LEX: dict[tuple[str, ...], _Entry] = {}


def _add(kind: str, phrases: Iterable[str], value: object = None, extra: object = None) -> None:
    for p in phrases:
        _LEX[tuple(_words(p))] = _Entry(kind, value, extra)


def _words(text: str) -> list[str]:
    text = text.lower().replace("’", "'").replace("'s", "")
    text = re.sub(r"[-/_]", " ", text)
    return re.findall(r"[a-z]+|\d+|[,.;:!?]", text)


_TIME_WORDS = {
    "dawn": ["dawn", "at dawn", "sunrise", "at sunrise", "daybreak", "at daybreak", "first light", "early morning"],
    "morning": ["morning", "in the morning", "mornings", "morning rush hour"],
    "noon": ["noon", "at noon", "midday", "at midday", "lunchtime", "middle of the day", "high noon", "noontime"],
    "afternoon": ["afternoon", "in the afternoon", "late afternoon", "early afternoon"],
    "dusk": ["dusk", "at dusk", "evening", "in the evening", "sunset", "at sunset", "twilight", "at twilight",
             "golden hour", "nightfall", "late evening"],
    "night": ["night", "at night", "nighttime", "night time", "midnight", "at midnight", "after dark", "tonight",
              "in the dark", "late at night", "nocturnal", "overnight"],
}
_WEATHER_WORDS = {
    "sunny": ["sunny", "sun", "sunshine", "clear", "clear sky", "clear skies", "bright", "fair weather", "cloudless"],
    "cloudy": ["cloudy", "clouds", "partly cloudy", "cloud"],
    "overcast": ["overcast", "grey sky", "gray sky", "grey skies", "gray skies", "dull", "leaden sky"],
    "rainy": ["rain", "rainy", "raining", "rains", "drizzle", "drizzling", "drizzly", "showers", "shower", "downpour",
              "pouring", "storm", "stormy", "thunderstorm", "rainstorm", "wet weather", "rainfall"],
    "foggy": ["fog", "foggy", "mist", "misty", "haze", "hazy", "smog", "smoggy", "fogbound"],
    "snowy": ["snow", "snowy", "snowing", "snowfall", "blizzard", "snowstorm", "sleet", "flurries", "wintry"],
}
_ENV_WORDS = {
    "downtown": ["downtown", "city centre", "city center", "city", "urban", "inner city", "business district",
                 "financial district", "cbd", "metropolitan", "city street", "city streets", "midtown"],
    "suburban": ["suburban", "suburb", "suburbs", "suburbia", "outskirts", "outer suburbs"],
    "residential": ["residential", "neighbourhood", "neighborhood", "residential area", "housing estate",
                    "residential street", "quiet neighbourhood", "quiet neighborhood", "housing area"],
    "industrial": ["industrial", "industrial area", "industrial park", "industrial estate", "warehouse",
                   "warehouses", "port", "harbour", "harbor", "docks", "dockyard", "factory", "factories",
                   "logistics", "freight yard"],
    "rural": ["rural", "countryside", "country road", "country lane", "farmland", "farm", "farms", "fields",
              "village", "open country", "the country", "farmlands"],
    "highway": ["highway", "highways", "motorway", "freeway", "expressway", "interstate", "autobahn",
                "dual carriageway", "turnpike"],
}
_SURFACE_WORDS = {
    "wet": ["wet", "wet road", "wet roads", "wet asphalt", "damp", "puddles", "puddle", "slick", "rain soaked",
            "waterlogged", "soaked"],
    "icy": ["icy", "ice", "iced", "frozen", "black ice", "frosty", "icy road", "ice covered", "glazed"],
    "snowy": ["snow covered", "snowy road", "snowy roads", "snowy street", "snowy streets", "snowy asphalt",
              "covered in snow", "slush", "slushy", "snow dusted", "snowbound"],
    "dry": ["dry", "dry road", "dry asphalt", "dry roads"],
}
_ROAD_KIND_WORDS = {
    "straight": ["straight road", "straight street", "straight stretch", "straight section", "long straight",
                 "straight"],
    "curved": ["curved road", "curve", "curves", "bend", "bends", "winding road", "winding", "curving road",
               "curvy road", "curving", "curved street", "curved", "bend in the road", "sweeping bend"],
}
_AREA_WORDS = {
    ("crosswalk", None): ["crosswalk", "crosswalks", "zebra crossing", "zebra crossings", "zebra", "crossing area",
                          "pedestrian crossings"],
    ("intersection", "intersection"): [
        "intersection", "intersections", "crossroad", "crossroads", "junction", "junctions", "four way intersection",
        "4 way intersection", "four way junction", "4 way junction", "four way stop", "4 way stop", "four way",
        "crossing roads", "cross street"],
    ("intersection", "t_junction"): [
        "t junction", "t junctions", "t intersection", "three way intersection", "3 way intersection",
        "three way junction", "3 way junction", "tee junction", "side street joining", "t shaped intersection"],
}
# Object nouns: (class, plural, intrinsic state or None, intrinsic count or None ("a crowd"))
_CLASS_WORDS: dict[str, list[tuple[str, bool, str | None, tuple[int, int] | None]]] = {
    "car": [(w, p, None, None) for w, p in [
        ("car", False), ("cars", True), ("sedan", False), ("sedans", True), ("suv", False), ("suvs", True),
        ("taxi", False), ("taxis", True), ("taxies", True), ("cab", False), ("cabs", True), ("hatchback", False),
        ("hatchbacks", True), ("van", False), ("vans", True), ("minivan", False), ("minivans", True),
        ("jeep", False), ("jeeps", True), ("automobile", False), ("automobiles", True), ("coupe", False),
        ("coupes", True), ("vehicle", False), ("vehicles", True), ("police car", False), ("police cars", True),
        ("sports car", False), ("sports cars", True), ("station wagon", False), ("wagon", False)]],
    "truck": [(w, p, None, None) for w, p in [
        ("truck", False), ("trucks", True), ("lorry", False), ("lorries", True), ("pickup", False),
        ("pickups", True), ("pick up", False), ("pick ups", True), ("pickup truck", False), ("pickup trucks", True),
        ("delivery van", False), ("delivery vans", True), ("box truck", False), ("box trucks", True),
        ("semi", False), ("semis", True), ("tanker", False), ("tankers", True), ("dump truck", False),
        ("dump trucks", True), ("delivery truck", False), ("delivery trucks", True), ("fire truck", False),
        ("fire trucks", True), ("garbage truck", False), ("garbage trucks", True), ("cement mixer", False)]],
    "bus": [(w, p, None, None) for w, p in [
        ("bus", False), ("buses", True), ("busses", True), ("coach", False), ("coaches", True), ("minibus", False),
        ("minibuses", True), ("school bus", False), ("school buses", True), ("city bus", False),
        ("city buses", True), ("double decker", False), ("double deckers", True), ("articulated bus", False)]],
    "trailer": [(w, p, None, None) for w, p in [
        ("trailer", False), ("trailers", True), ("semi trailer", False), ("semi trailers", True),
        ("caravan", False), ("caravans", True), ("tractor trailer", False), ("tractor trailers", True)]],
    "construction_vehicle": [(w, p, None, None) for w, p in [
        ("construction vehicle", False), ("construction vehicles", True), ("excavator", False),
        ("excavators", True), ("crane", False), ("cranes", True), ("bulldozer", False), ("bulldozers", True),
        ("digger", False), ("diggers", True), ("backhoe", False), ("backhoes", True), ("road roller", False),
        ("road rollers", True), ("construction machine", False), ("construction machines", True),
        ("construction truck", False), ("construction trucks", True)]],
    "motorcycle": [(w, p, None, None) for w, p in [
        ("motorcycle", False), ("motorcycles", True), ("motorbike", False), ("motorbikes", True),
        ("motor bike", False), ("motor bikes", True), ("scooter", False), ("scooters", True), ("moped", False),
        ("mopeds", True), ("motorcyclist", False), ("motorcyclists", True), ("biker", False), ("bikers", True),
        ("motor cycle", False), ("motor cycles", True)]],
    # riders and walkers need no state of their own: moving bicycles and walking people are the defaults
    "bicycle": [(w, p, None, None) for w, p in [
        ("bicycle", False), ("bicycles", True), ("bike", False), ("bikes", True), ("cyclist", False),
        ("cyclists", True), ("bicyclist", False), ("bicyclists", True), ("bike rider", False),
        ("bike riders", True), ("push bike", False)]],
    "pedestrian": [(w, p, None, None) for w, p in [
        ("pedestrian", False), ("pedestrians", True), ("person", False), ("persons", True), ("people", True),
        ("walker", False), ("walkers", True), ("man", False), ("men", True), ("woman", False), ("women", True),
        ("child", False), ("children", True), ("kid", False), ("kids", True), ("jogger", False), ("joggers", True),
        ("passer by", False), ("passers by", True), ("passersby", True), ("someone", False), ("somebody", False),
        ("commuter", False), ("commuters", True), ("shopper", False), ("shoppers", True), ("student", False),
        ("students", True), ("tourist", False), ("tourists", True)]]
    + [("crowd", True, None, (8, 15)), ("crowds", True, None, (8, 15)), ("couple", True, None, (2, 2))],
    "traffic_cone": [(w, p, None, None) for w, p in [
        ("traffic cone", False), ("traffic cones", True), ("cone", False), ("cones", True), ("pylon", False),
        ("pylons", True), ("safety cone", False), ("safety cones", True), ("road cone", False), ("road cones", True)]],
    "barrier": [(w, p, None, None) for w, p in [
        ("barrier", False), ("barriers", True), ("barricade", False), ("barricades", True),
        ("jersey barrier", False), ("jersey barriers", True), ("road barrier", False), ("road barriers", True),
        ("roadblock", False), ("roadblocks", True), ("road block", False), ("road blocks", True),
        ("crash barrier", False), ("crash barriers", True), ("concrete barrier", False),
        ("concrete barriers", True)]],
}
_COLOUR_WORDS = {
    "white": ["white"], "black": ["black"], "silver": ["silver", "silvery"],
    "gray": ["gray", "grey", "dark gray", "dark grey", "light gray", "light grey"],
    "red": ["red", "dark red", "maroon", "burgundy", "crimson"],
    "blue": ["blue", "light blue", "sky blue", "bright blue"], "dark blue": ["dark blue", "navy", "navy blue"],
    "green": ["green", "dark green", "light green"], "yellow": ["yellow"], "beige": ["beige", "cream", "tan"],
    "orange": ["orange"], "brown": ["brown"], "purple": ["purple", "violet"], "pink": ["pink"],
    "gold": ["gold", "golden"],
}
_NUMBERS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
            "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
            "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30}
_QUANTITIES = {
    (1, 1): ["a", "an", "single", "a single", "one single", "lone", "a lone", "solitary"],
    (2, 2): ["a couple of", "couple of", "a pair of", "pair of", "both"],
    (2, 4): ["a few", "few"],
    (3, 6): ["several", "quite a few", "a handful of", "handful of"],
    (2, 5): ["some", "multiple", "various", "a number of", "a group of", "group of", "a bunch of", "bunch of"],
    (6, 12): ["many", "lots of", "a lot of", "plenty of", "loads of", "numerous", "heaps of", "tons of",
              "full of", "a line of", "line of", "a row of", "row of", "a queue of", "queue of", "rows of",
              "a convoy of", "convoy of", "a fleet of", "a stream of", "a string of", "a column of"],
    (12, 12): ["a dozen", "dozen"],
    (12, 20): ["dozens of"],
    (8, 15): ["a crowd of", "crowd of", "crowds of", "a throng of"],
}
# State words -> state per family (absent family: the word says nothing about that kind of object).
_V, _P, _S = "vehicle", "person", "static"
_STATE_WORDS: list[tuple[list[str], dict[str, str]]] = [
    (["parked", "parking", "at the curb", "at the kerb", "by the curb", "by the kerb", "along the curb",
      "along the kerb", "curbside", "kerbside", "parked up", "on the curb", "on the kerb", "double parked"],
     {_V: "parked"}),
    (["moving", "driving", "travelling", "traveling", "cruising", "passing", "overtaking", "speeding", "heading",
      "riding", "in motion", "turning", "turning left", "turning right", "merging", "accelerating",
      "approaching", "coming", "going", "pulling out", "driving by", "rolling", "on the move", "drives",
      "moves", "ride", "rides", "drive"], {_V: "moving", _P: "walking"}),
    (["stopped", "waiting", "idling", "idle", "halted", "queuing", "queueing", "queued", "stuck in traffic",
      "at a standstill", "stationary", "standing", "stopping", "braking", "at a red light", "waits", "wait",
      "stuck", "stopped at a red light", "in line", "queue", "queues", "stalled", "broken down", "halting",
      "waiting for the bus", "waiting for a bus", "waiting for the tram", "at the bus stop", "at a bus stop",
      "waiting for the light", "waiting for the lights", "waiting for a taxi"],
     {_V: "stopped", _P: "standing", _S: "static"}),
    (["walking", "strolling", "jogging", "running", "wandering", "hurrying", "walk", "walks", "stroll",
      "strolls", "on foot"], {_P: "walking"}),
    (["crossing", "crossing the street", "crossing the road", "crosses", "cross", "jaywalking"],
     {_P: "crossing", _V: "moving"}),
    (["placed", "set up", "lined up", "arranged", "static", "positioned", "blocking", "closing"], {_S: "static"}),
    (["oncoming", "on coming"], {_V: "moving"}),
]
_POSITION_WORDS = {
    "front": ["ahead", "up ahead", "in front", "straight ahead", "ahead of us", "ahead of me", "further ahead",
              "in the distance", "just ahead", "directly ahead", "right ahead", "front"],
    "back": ["in the rear", "at the back", "to the rear", "from behind", "behind us", "in the back", "rear"],
    "left": [f"on the left {w}" for w in ("sidewalk", "pavement", "kerb", "curb", "verge", "shoulder", "bank")]
    + ["on the left", "to the left", "on our left", "on my left", "to our left", "to my left",
             "on the left side", "on the left hand side", "left side", "left hand side", "on the left of us",
             "left of us", "at the left", "along the left", "down the left"],
    "right": [f"on the right {w}" for w in ("sidewalk", "pavement", "kerb", "curb", "verge", "shoulder", "bank")]
    + ["on the right", "to the right", "on our right", "on my right", "to our right", "to my right",
              "on the right side", "on the right hand side", "right side", "right hand side", "on the right of us",
              "right of us", "at the right", "along the right", "down the right"],
    "front-left": ["ahead on the left", "ahead to the left", "front left", "left front", "in front on the left",
                   "ahead left", "on the left ahead", "to the left ahead", "on the front left"],
    "front-right": ["ahead on the right", "ahead to the right", "front right", "right front",
                    "in front on the right", "ahead right", "on the right ahead", "to the right ahead",
                    "on the front right"],
    "back-left": ["behind on the left", "behind to the left", "rear left", "left rear", "back left",
                  "on the left behind", "to the left behind", "behind us on the left"],
    "back-right": ["behind on the right", "behind to the right", "rear right", "right rear", "back right",
                   "on the right behind", "to the right behind", "behind us on the right"],
}
# Relation prepositions: predicate, or None for "at / on / in" that only mean "near" an area.
_REL_WORDS = {
    "behind": ["behind", "following", "right behind", "just behind", "directly behind", "at the back of",
               "in the rear of", "trailing", "after"],
    "front of": ["in front of", "ahead of", "just ahead of", "right in front of", "just in front of",
                 "directly in front of", "leading", "leads", "before", "preceding", "precedes"],
    "left of": ["left of", "to the left of", "on the left of", "on the left side of", "just left of"],
    "right of": ["right of", "to the right of", "on the right of", "on the right side of", "just right of"],
    "near": ["near", "next to", "beside", "close to", "near to", "by", "alongside", "around", "besides",
             "right next to", "nearby", "adjacent to", "by the side of", "close by", "against", "leaning against",
             "side by side with"],
    None: ["at", "on", "in", "into", "onto", "to", "across", "over", "through", "inside", "within"],
}
# a relation word with no target left is a position relative to the ego ("behind", "on the left side of the road")
_BARE_POSITION = {"behind": "back", "right behind": "back", "just behind": "back", "directly behind": "back",
                  "in front of": "front", "ahead of": "front", "left of": "left", "to the left of": "left",
                  "on the left of": "left", "on the left side of": "left", "right of": "right",
                  "to the right of": "right", "on the right of": "right", "on the right side of": "right"}
# passive relations: "a bus followed by a car" = the car is behind the bus
_REVERSED_REL = {"behind": ["followed by", "trailed by", "tailed by", "chased by"],
                 "front of": ["led by", "preceded by"]}
_EGO_WORDS = ["us", "me", "ego", "ego vehicle", "ego car", "our car", "my car", "our vehicle", "my vehicle",
              "the camera", "camera car", "ourselves"]
_LANE_REF_WORDS = {
    "left": ["left"], "right": ["right"], "middle": ["middle", "centre", "center", "central"],
    "oncoming": ["oncoming", "opposite", "opposing", "other", "on coming"],
    "ego": ["ego", "our", "my", "same", "own", "current"],
}
_EMPTY_WORDS = ["empty", "deserted", "no traffic", "nothing", "nobody", "no one", "nothing on the road",
                "nobody around", "no one around", "nothing around", "no other traffic", "no other vehicles",
                "without traffic",
                "traffic free", "without any traffic", "no cars or people", "completely empty", "abandoned",
                "no other cars", "nothing else", "devoid of traffic"]
_NEG_WORDS = ["no", "without", "without any", "zero", "not a single", "free of", "no more"]
_BOUNDARY = [",", ";", ".", "!", "?", ":", "while", "whilst", "but", "where", "plus", "also", "then"]
_AND = ["and", "as well as"]
_WITH = ["with", "along with", "together with", "alongside of"]
_DET = ["the", "this", "that", "these", "those", "its", "his", "her", "their"]
_ALL = ["all", "all the", "all of the", "every", "each", "all of", "everything", "any"]
_ORDINAL = {"nearest": ["nearest", "closest", "near most", "first"],
            "farthest": ["farthest", "furthest", "far most", "last"]}
_PRONOUN = ["it", "them"]
_LANE_NOUN = ["lane", "lanes"]


def _build_lexicon() -> None:
    for value, ws in _TIME_WORDS.items():
        _add("time", ws, value)
    for value, ws in _WEATHER_WORDS.items():
        _add("weather", ws, value)
    for value, ws in _ENV_WORDS.items():
        _add("env", ws, value)
    for value, ws in _SURFACE_WORDS.items():
        _add("surface", ws, value)
    for value, ws in _ROAD_KIND_WORDS.items():
        _add("roadkind", ws, value)
    for (kind, road), ws in _AREA_WORDS.items():
        _add("area", ws, kind, road)
    for cls, forms in _CLASS_WORDS.items():
        for w, plural, state, count in forms:
            _add("class", [w], cls, (plural, state, count))
    for value, ws in _COLOUR_WORDS.items():
        _add("colour", ws, value)
    for w, n in _NUMBERS.items():
        _add("count", [w], (n, n))
    for rng, ws in _QUANTITIES.items():
        _add("count", ws, rng, "quantity")
    for ws, states in _STATE_WORDS:
        _add("state", ws, states, "oncoming" if ws[0] == "oncoming" else None)
    for value, ws in _POSITION_WORDS.items():
        _add("position", ws, value)
    for pred, ws in _REL_WORDS.items():
        for w in ws:
            _add("rel", [w], pred, _BARE_POSITION.get(w))
    for pred, ws in _REVERSED_REL.items():
        _add("revrel", ws, pred)
    for ref, words in _LANE_REF_WORDS.items():  # "in the left lane", "on our lane", "into the oncoming lane"
        for w in words:
            for prep in ("in", "on", "into", "onto", "to", "along", "down", "using", "blocking", "closing", "occupying",
                         "in the", "on the", "into the", "onto the", "to the", "along the", "down the", "using the",
                         "blocking the", "closing the", "occupying the", ""):
                for noun in ("lane", "lanes"):
                    phrase = f"{prep} {w} {noun}".strip()
                    if phrase.split()[0] in ("lane",):
                        continue
                    _add("lanerel" if prep else "lane", [phrase], ref)
    _add("lane", ["ego lane", "same lane"], "ego")
    _add("ego", _EGO_WORDS, "ego")
    _add("ego", ["the ego vehicle", "the ego car", "the ego"], "ego")
    _add("empty", _EMPTY_WORDS, True)
    _add("neg", _NEG_WORDS, (0, 0))
    _add("boundary", _BOUNDARY)
    _add("and", _AND)
    _add("with", _WITH)
    _add("det", _DET)
    _add("all", _ALL)
    for value, ws in _ORDINAL.items():
        _add("ordinal", ws, value)
    _add("pronoun", _PRONOUN)
    _add("lanenoun", _LANE_NOUN)
    # Phrases that a shorter entry would misread.
    _add("area", ["pedestrian crossing", "pedestrian crossings"], "crosswalk")
    _add("filler", ["is", "are", "was", "were", "be", "being", "there", "there is", "there are", "of", "other",
                    "another", "more", "big", "large", "small", "little", "long", "huge", "tiny", "old", "new",
                    "mostly", "just", "quite"])


_build_lexicon()

# The vocabulary covers exactly the canonical values the rest of xscene uses.
assert set(_TIME_WORDS) == set(TIMES_OF_DAY) and set(_WEATHER_WORDS) == set(WEATHERS)
assert set(_ENV_WORDS) == set(ENVIRONMENTS) and set(_COLOUR_WORDS) == set(COLOURS)
assert set(FAMILY) == {semantics.NAMES[i] for i in semantics.OBJECT_IDS} == set(_CLASS_WORDS)
assert {s for states in FAMILY_STATES.values() for s in states} <= set(semantics.STATES)
_BY_FIRST: dict[str, list[tuple[tuple[str, ...], _Entry]]] = {}
for _p, _e in _LEX.items():
    _BY_FIRST.setdefault(_p[0], []).append((_p, _e))
for _lst in _BY_FIRST.values():
    _lst.sort(key=lambda pe: -len(pe[0]))

_STOPWORDS = {"a", "an", "the", "of", "with", "and", "in", "on", "at", "to", "is", "are", "scene", "road", "street",
              "streets", "roads", "area", "day", "time", "some", "it", "its", "that", "there", "which", "who", "for",
              "from", "as", "by", "under", "during", "into", "very", "please", "show", "generate", "create", "make",
              "me", "us", "our", "my", "view", "image", "picture", "drive", "driving"}


@dataclass
class _Match:
    start: int  # first word index
    end: int  # one past the last word index
    kind: str  # lexicon kind ("count" for digits too), "word" for unknown words
    value: object
    extra: object
    text: str
    used: bool = False


def _scan(words: list[str]) -> list[_Match]:
    """Longest-first lexicon matching over the word list."""
    out: list[_Match] = []
    i = 0
    while i < len(words):
        w = words[i]
        hit = None
        for phrase, entry in _BY_FIRST.get(w, ()):
            if tuple(words[i:i + len(phrase)]) == phrase:
                hit = (phrase, entry)
                break
        if hit:
            phrase, entry = hit
            out.append(_Match(i, i + len(phrase), entry.kind, entry.value, entry.extra, " ".join(phrase)))
            i += len(phrase)
        elif w.isdigit():
            n = int(w)
            out.append(_Match(i, i + 1, "count", (n, n), None, w))
            i += 1
        else:
            out.append(_Match(i, i + 1, "word", w, None, w))
            i += 1
    _fix_pedestrian_crossing(out)
    return out


def _fix_pedestrian_crossing(ms: list[_Match]) -> None:
    """"a pedestrian crossing the street" is a person crossing, "near the pedestrian crossing" an area."""
    for k, m in enumerate(ms):
        if m.kind == "area" and m.text.startswith("pedestrian crossing"):
            nxt = ms[k + 1] if k + 1 < len(ms) else None
            prev = ms[k - 1] if k > 0 else None
            follows_verb = nxt is not None and (nxt.kind in ("det", "ego", "position", "area", "rel", "lanerel")
                                                or nxt.text in ("road", "street", "a", "an"))
            counted = prev is not None and prev.kind == "count" and prev.value != (1, 1)
            if follows_verb or counted:
                plural = m.text.endswith("crossings")
                ms[k] = _Match(m.start, m.start + 1, "class", "pedestrian", (plural, None, None), "pedestrian")
                ms.insert(k + 1, _Match(m.start + 1, m.end, "state", dict(_STATE_WORDS[4][1]), None, "crossing"))


# ----------------------------------------------------------------------------------------------------
# Objects


@dataclass
class _Obj:
    class_name: str
    plural: bool
    intrinsic_state: str | None
    count: tuple[int, int] | None = None
    count_stated: bool = False
    colour: str | None = None
    state_words: list[dict] = field(default_factory=list)
    position: str | None = None
    relations: list[RelationSpec] = field(default_factory=list)
    determiner: str = ""
    ordinal: str = ""
    implicit: bool = False
    lane: str | None = None  # "oncoming" from the adjective

    def state(self) -> str | None:
        fam = FAMILY[self.class_name]
        for states in self.state_words:
            if fam in states:
                return states[fam]
        return self.intrinsic_state if self.intrinsic_state in FAMILY_STATES[fam] else None

    def spec(self) -> ObjectSpec:
        if self.count is not None:
            count = self.count
        elif self.determiner == "all" or self.plural:
            count = VAGUE_PLURAL
        else:
            count = (1, 1)
        rels = list(self.relations)
        if self.lane and not any(r.predicate == "on top of" for r in rels):
            rels.append(RelationSpec("on top of", TargetRef("lane", self.lane)))
        return ObjectSpec(self.class_name, count, self.count_stated, self.colour, self.state(), self.position,
                          tuple(rels), self.determiner, self.plural, self.ordinal, self.implicit)


_PREMOD = {"count", "colour", "state", "neg", "det", "all", "ordinal", "filler", "word"}


def _claim_premodifiers(ms: list[_Match], k: int, obj: _Obj) -> int:
    """Walk back from the noun at ms[k] over its modifiers ("the two red parked ..."), marking them used;
    returns the index of the first one (k when there is none)."""
    unknown = 0
    j = k - 1
    while j >= 0:
        m = ms[j]
        if m.used or m.kind not in _PREMOD:
            break
        if m.kind == "word":
            unknown += 1
            if unknown > 2 or m.text in _STOPWORDS:
                break
        elif m.kind == "state" and not _adjectival(m.text):
            break
        elif m.kind == "filler" and m.text in ("is", "are", "was", "were", "be", "being", "there", "there is", "there are"):
            break
        if m.kind == "count" and obj.count is None:
            obj.count, obj.count_stated = m.value, True
            if m.text in ("a", "an") and obj.plural:
                obj.count, obj.count_stated = None, False  # "a parked cars" never meant one
        elif m.kind == "neg":
            obj.count, obj.count_stated = (0, 0), True
        elif m.kind == "colour" and obj.colour is None:
            obj.colour = m.value
        elif m.kind == "state":
            obj.state_words.insert(0, m.value)
            if m.extra == "oncoming":
                obj.lane = "oncoming"
        elif m.kind == "det":
            obj.determiner = obj.determiner or "the"
        elif m.kind == "all":
            obj.determiner = "all"
        elif m.kind == "ordinal":
            obj.ordinal = m.value
        m.used = True
        j -= 1
    if obj.determiner == "" and obj.count == (1, 1) and j + 1 < k and ms[j + 1].text in ("a", "an"):
        obj.determiner = "a"
    return j + 1


def _elided_sibling(ms: list[_Match], start: int, obj: _Obj) -> tuple[int, _Obj] | None:
    """ "a red and a blue car": the noun phrase before "and" lost its noun; it is another object of the
    same class (its index in ms, its builder), or None."""
    a = start - 1
    if a < 1 or ms[a].kind != "and" or ms[a].text != "and" or ms[a - 1].kind != "colour" or ms[a - 1].used:
        return None
    b = a - 1
    sib = _Obj(obj.class_name, obj.plural, obj.intrinsic_state, colour=ms[b].value)
    ms[b].used = True
    if b >= 1 and ms[b - 1].kind == "count" and not ms[b - 1].used:
        sib.count, sib.count_stated = ms[b - 1].value, True
        sib.determiner = "a" if ms[b - 1].text in ("a", "an") else ""
        ms[b - 1].used = True
    elif obj.count is not None and not obj.plural:
        sib.count, sib.count_stated = obj.count, obj.count_stated
    return b, sib


def _adjectival(text: str) -> bool:
    # states that can stand before a noun ("parked cars", "oncoming truck"); verbs like "driving" can too
    return len(text.split()) == 1


def _read_target(ms: list[_Match], k: int) -> tuple[TargetRef | None, int, _Obj | None]:
    """The target of a relation word at ms[k]: (target, index after it, the target's object builder when it
    is a newly named object). Skips determiners, counts, colours and state adjectives on the way. A
    generic preposition with an indefinite area ("on a T-junction", "at an intersection") sets the scene
    rather than relating an object, so it gives no target."""
    colour, count, j = None, None, k + 1
    states: list[dict] = []
    indefinite = False
    while j < len(ms) and ms[j].kind in ("det", "count", "colour", "state", "filler", "all", "ordinal") and j - k <= 5:
        if ms[j].kind == "colour":
            colour = ms[j].value
        elif ms[j].kind == "count":
            count = ms[j].value
            indefinite = indefinite or ms[j].text in ("a", "an")
        elif ms[j].kind == "state":
            if ms[j].text == "crossing" and (j + 1 >= len(ms) or ms[j + 1].kind != "class"):
                break  # "at the crossing": the crossing is the area, handled below
            states.append(ms[j].value)
        j += 1
    if j >= len(ms):
        return None, k + 1, None
    m = ms[j]
    if m.kind == "state" and m.text == "crossing":
        m = _Match(m.start, m.end, "area", "crosswalk", None, m.text)
    if m.kind == "class":
        plural, state, icount = m.extra
        obj = _Obj(m.value, plural, state, count=count if count is not None else icount,
                   count_stated=count is not None, colour=colour, state_words=states, implicit=True)
        return TargetRef("object", m.value, colour), j + 1, obj
    if m.kind == "area":
        if indefinite and ms[k].value is None:
            return None, k + 1, None
        return TargetRef("area", m.value), j + 1, None
    if m.kind == "lane":
        return TargetRef("lane", m.value), j + 1, None
    if m.kind == "ego":
        return TargetRef("ego", "ego"), j + 1, None
    if m.kind == "pronoun":
        # "a bus with two cars behind it": the latest noun before the relation is its subject; the
        # pronoun is the one before that with the same number ("it" singular, "them" plural)
        plural = m.text == "them"
        nouns = [x for x in ms[:k] if x.kind == "class"]
        for x in reversed(nouns[:-1]):
            if x.extra[0] == plural:
                return TargetRef("object", x.value), j + 1, None
    return None, k + 1, None


_EGO_POSITION = {"behind": "back", "front of": "front", "left of": "left", "right of": "right"}


def _relation_of(pred: str | None, target: TargetRef) -> tuple[str, object] | None:
    """What a relation word + target means for its object: ("relation", RelationSpec), ("position", p)
    for the ego ("behind us" = back), or None when the pair means nothing we model."""
    if target.kind == "ego":
        return ("position", _EGO_POSITION[pred]) if pred in _EGO_POSITION else None
    if pred is None:  # "at / on / in / to": only areas and lanes make sense
        if target.kind == "area":
            return "relation", RelationSpec("near", target)
        if target.kind == "lane":
            return "relation", RelationSpec("on top of", target)
        return None
    if target.kind == "lane" and pred != "on top of":
        return None
    return "relation", RelationSpec(pred, target)


def _objects(ms: list[_Match]) -> list[_Obj]:
    """Object groups of a scanned text (see the module docstring for the reading order)."""
    # 1. relation targets, so that "behind the bus" does not start a new object
    targets: dict[int, tuple[TargetRef, _Obj | None]] = {}
    for k, m in enumerate(ms):
        if m.kind in ("rel", "revrel") and not m.used:
            target, nxt, tobj = _read_target(ms, k)
            if target is not None:
                for j in range(k + 1, nxt):
                    ms[j].used = True
                targets[k] = (target, tobj)
    # 2. object nouns claim the words before them
    nouns: dict[int, _Obj] = {}
    for k, m in enumerate(ms):
        if m.kind == "class" and not m.used:
            plural, state, icount = m.extra
            obj = _Obj(m.value, plural, state, count=icount, count_stated=False)
            start = _claim_premodifiers(ms, k, obj)
            m.used = True
            nouns[k] = obj
            sibling = _elided_sibling(ms, start, obj)  # "a red and a blue car": two cars
            if sibling is not None:
                nouns[sibling[0]] = sibling[1]
    nouns = dict(sorted(nouns.items()))
    explicit = list(nouns.values())

    # 3. forward pass: states, positions and relations after a noun attach to it (and to the nouns
    # joined to it by a bare "and": "a bus and a truck waiting" both wait); the ones that open a clause
    # before any noun wait for that clause's first noun (or fall back to the previous object)
    objects: list[_Obj] = []
    current: _Obj | None = None
    chain: list[_Obj] = []
    chain_modified = False
    between: list[_Match] = []
    clause_has_object = False
    pending: list[tuple[str, object]] = []

    def attach(obj: _Obj, what: str, value) -> None:
        if what == "state":
            obj.state_words.append(value)
        elif what == "position":
            obj.position = obj.position or value
        elif what == "relation" and value not in obj.relations:
            obj.relations.append(value)

    def note(what: str, value) -> None:
        nonlocal chain_modified
        if current is None or not clause_has_object:
            pending.append((what, value))
        else:
            for obj in chain:
                attach(obj, what, value)
            chain_modified = True

    def flush() -> None:
        if pending and current is not None:
            for what, value in pending:
                attach(current, what, value)
            pending.clear()

    for k, m in enumerate(ms):
        if k in nouns:
            new = nouns[k]
            joined = (current is not None and not chain_modified and any(b.kind == "and" for b in between)
                      and all(b.used or b.kind == "and" for b in between))
            chain = chain + [new] if joined else [new]
            chain_modified = False
            between = []
            current = new
            objects.append(current)
            clause_has_object = True
            for what, value in pending:
                attach(current, what, value)
            pending.clear()
            continue
        between.append(m)
        if m.kind == "boundary":
            flush()
            clause_has_object = False
            chain_modified = True  # a comma ends the coordination ("a bus, and a car waiting")
        elif k in targets:
            target, tobj = targets[k]
            if tobj is not None:
                # a target the prompt also names is that object; else it is implied ("behind a bus")
                same = next((o for o in explicit + objects if o.class_name == tobj.class_name
                             and (tobj.colour is None or o.colour == tobj.colour)), None)
                if same is None:
                    objects.append(tobj)
            if m.kind == "revrel":  # "a bus followed by a car": the car is behind the bus
                if current is not None and target.kind == "object":
                    subject = next((o for o in explicit + objects if o is not current and o.class_name == target.name
                                    and (target.colour is None or o.colour == target.colour)), None)
                    if subject is not None:
                        attach(subject, "relation", RelationSpec(m.value, TargetRef("object", current.class_name,
                                                                                    current.colour)))
                continue
            meaning = _relation_of(m.value, target)
            if meaning:
                note(*meaning)
        elif m.used:
            continue
        elif m.kind == "rel" and m.extra:  # a bare "behind" = behind the ego
            note("position", m.extra)
        elif m.kind == "state":
            if current is not None:
                note("state", m.value) if clause_has_object else attach(current, "state", m.value)
                if m.extra == "oncoming":
                    current.lane = "oncoming"
        elif m.kind == "position":
            note("position", m.value)
        elif m.kind == "lanerel":
            note("relation", RelationSpec("on top of", TargetRef("lane", m.value)))
    flush()
    return objects


# ----------------------------------------------------------------------------------------------------
# Public readers


def parse_prompt(text: str) -> PromptSpec:
    """Read a prompt into a PromptSpec (see the module docstring). Never raises on unknown words."""
    if not isinstance(text, str):
        raise TypeError(f"parse_prompt expects a string, got {type(text).__name__}")
    words = _words(text)
    ms = _scan(words)
    first = lambda kind: next((m.value for m in ms if m.kind == kind), None)  # noqa: E731
    objs = _objects(ms)

    # road: surface, kind (explicit kind words first, else a named junction), lanes, crosswalk
    areas = [m for m in ms if m.kind == "area"]
    kind = first("roadkind")
    junction = [m.extra for m in areas if m.value == "intersection"]
    if "t_junction" in junction:
        kind = "t_junction"
    elif kind is None and junction:
        kind = "intersection"
    lanes = None
    for k, m in enumerate(ms[:-1]):
        if m.kind != "count" or m.value[0] != m.value[1] or m.value[0] <= 0:
            continue
        j = k + 1  # "four lanes", "two snow-covered lanes", "3 narrow lanes"
        while j < len(ms) and j - k <= 3 and ms[j].kind in ("surface", "word", "filler"):
            j += 1
        if j < len(ms) and ms[j].kind == "lanenoun":
            lanes = m.value[0]
            break
    crosswalk = any(m.value == "crosswalk" for m in areas) or any(
        r.target == TargetRef("area", "crosswalk") for o in objs for r in o.relations)
    road = RoadSpec(first("surface"), kind, lanes, crosswalk)

    specs = tuple(o.spec() for o in objs)
    unparsed = tuple(m.text for m in ms if m.kind == "word" and m.text not in _STOPWORDS)
    return PromptSpec(text, first("time"), first("weather"), first("env"), road, specs,
                      bool(first("empty")), unparsed)


def read_group(thing: str, attribute: str) -> GroupFacts:
    """Read one foreground entry ("2 red cars", "parked at the curb, ahead on the left, behind the bus").

    The thing gives count, colours and class (the last object noun); the attribute gives the state (the
    first state word that applies to the class), relations and the position (relations are read first,
    so "behind the bus" is not a position)."""
    tm = _scan(_words(thing))
    cls = next((m.value for m in reversed(tm) if m.kind == "class"), None)
    count = next((m.value[0] for m in tm if m.kind == "count" and m.value[0] == m.value[1]), None)
    colours = tuple(dict.fromkeys(m.value for m in tm if m.kind == "colour"))
    am = _scan(_words(attribute))
    state = None
    if cls is not None:
        fam = FAMILY[cls]
        state = next((m.value[fam] for m in am if m.kind == "state" and fam in m.value), None)
    relations: list[RelationSpec] = []
    position = None
    k = 0
    while k < len(am):
        m = am[k]
        if m.kind == "rel":
            target, nxt, _ = _read_target(am, k)
            if target is not None:
                meaning = _relation_of(m.value, target)
                if meaning and meaning[0] == "position":
                    position = position or meaning[1]
                elif meaning:
                    relations.append(meaning[1])
                k = nxt
                continue
            if m.extra:
                position = position or m.extra
        elif m.kind == "lanerel":
            relations.append(RelationSpec("on top of", TargetRef("lane", m.value)))
        elif m.kind == "position":
            position = position or m.value
        k += 1
    return GroupFacts(cls, count, colours, state, position, tuple(relations))


def read_road(text: str) -> RoadSpec:
    """The road facts of a text (used on a description's road condition)."""
    return parse_prompt(text).road


def position_matches(stated: str, sector: str) -> bool:
    """Whether an object in ego sector `sector` (one of POSITIONS) satisfies a stated position."""
    return sector in POSITION_SETS.get(stated, frozenset())


def colour_word(text: str) -> str | None:
    """The colour a short text names ("blue", "navy blue", "a bright red") or None; any other word
    than a colour, a determiner or a filler makes it None."""
    ms = [m for m in _scan(_words(text)) if m.kind not in ("det", "filler") and m.text not in ("a", "an")]
    return ms[0].value if len(ms) == 1 and ms[0].kind == "colour" else None


def state_word(text: str, class_name: str) -> str | None:
    """The state of `class_name` a short text names ("parked", "drive", "waiting") or None."""
    fam = FAMILY[class_name]
    ms = [m for m in _scan(_words(text)) if m.kind not in ("det", "filler")]
    if len(ms) == 1 and ms[0].kind == "state" and fam in ms[0].value:
        return ms[0].value[fam]
    return None
