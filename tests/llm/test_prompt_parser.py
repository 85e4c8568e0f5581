"""The offline prompt reader: every attribute kind, synonyms, counts, relations, and robustness."""

from __future__ import annotations

import pytest

from xscene_core.llm.prompt_parser import (
    POSITION_SETS, ObjectSpec, PromptSpec, RelationSpec, RoadSpec, TargetRef, colour_word, parse_prompt,
    position_matches, read_group, read_road, state_word,
)
from xscene_core.types.scene import ENVIRONMENTS, TIMES_OF_DAY, WEATHERS


def only(spec: PromptSpec) -> ObjectSpec:
    assert len(spec.objects) == 1, spec.objects
    return spec.objects[0]


def by_class(spec: PromptSpec, cls: str) -> ObjectSpec:
    hits = [o for o in spec.objects if o.class_name == cls]
    assert len(hits) == 1, spec.objects
    return hits[0]


@pytest.mark.parametrize("text, expected", [
    ("at dawn", "dawn"), ("sunrise over the city", "dawn"), ("daybreak", "dawn"), ("a morning drive", "morning"),
    ("midday traffic", "noon"), ("lunchtime", "noon"), ("late afternoon", "afternoon"), ("in the evening", "dusk"),
    ("sunset", "dusk"), ("twilight", "dusk"), ("at night", "night"), ("nighttime", "night"), ("after dark", "night"),
    ("midnight", "night"),
])
def test_time_of_day_synonyms(text, expected):
    assert parse_prompt(text).time_of_day == expected


@pytest.mark.parametrize("text, expected", [
    ("rain", "rainy"), ("a rainy day", "rainy"), ("drizzle", "rainy"), ("a thunderstorm", "rainy"),
    ("snow", "snowy"), ("a blizzard", "snowy"), ("fog", "foggy"), ("mist", "foggy"), ("hazy", "foggy"),
    ("overcast", "overcast"), ("grey skies", "overcast"), ("cloudy", "cloudy"), ("partly cloudy", "cloudy"),
    ("sunny", "sunny"), ("clear skies", "sunny"),
])
def test_weather_synonyms(text, expected):
    assert parse_prompt(text).weather == expected


@pytest.mark.parametrize("text, expected", [
    ("downtown", "downtown"), ("the city centre", "downtown"), ("an urban street", "downtown"),
    ("the suburbs", "suburban"), ("suburban", "suburban"), ("a residential street", "residential"),
    ("a quiet neighbourhood", "residential"), ("neighborhood", "residential"), ("industrial", "industrial"),
    ("among warehouses", "industrial"), ("at the port", "industrial"), ("rural", "rural"),
    ("the countryside", "rural"), ("farmland", "rural"), ("a highway", "highway"), ("the motorway", "highway"),
    ("a freeway", "highway"),
])
def test_environment_synonyms(text, expected):
    assert parse_prompt(text).environment == expected


def test_vocabulary_covers_the_canonical_values():
    assert {parse_prompt(t).time_of_day for t in TIMES_OF_DAY} == set(TIMES_OF_DAY)
    assert {parse_prompt(w).weather for w in WEATHERS} == set(WEATHERS)
    assert {parse_prompt(e).environment for e in ENVIRONMENTS} == set(ENVIRONMENTS)


@pytest.mark.parametrize("text, road", [
    ("a wet road", RoadSpec(surface="wet")), ("an icy road", RoadSpec(surface="icy")),
    ("a snow-covered street", RoadSpec(surface="snowy")), ("dry asphalt", RoadSpec(surface="dry")),
    ("a crossroad", RoadSpec(kind="intersection")), ("a 4-way junction", RoadSpec(kind="intersection")),
    ("a T-junction", RoadSpec(kind="t_junction")), ("a straight road", RoadSpec(kind="straight")),
    ("a winding road", RoadSpec(kind="curved")), ("a four-lane road", RoadSpec(lanes=4)),
    ("a road with 3 lanes", RoadSpec(lanes=3)), ("a zebra crossing", RoadSpec(crosswalk=True)),
])
def test_road(text, road):
    assert parse_prompt(text).road == road


def test_a_named_junction_sets_the_road_kind_and_a_four_lane_highway_keeps_its_environment():
    assert parse_prompt("a car waiting at the intersection").road.kind == "intersection"
    spec = parse_prompt("a four-lane highway")
    assert (spec.environment, spec.road.lanes) == ("highway", 4)


@pytest.mark.parametrize("noun, cls", [
    ("car", "car"), ("sedan", "car"), ("SUV", "car"), ("taxi", "car"), ("truck", "truck"), ("lorry", "truck"),
    ("delivery van", "truck"), ("pickup truck", "truck"), ("bus", "bus"), ("coach", "bus"), ("trailer", "trailer"),
    ("construction vehicle", "construction_vehicle"), ("excavator", "construction_vehicle"),
    ("crane", "construction_vehicle"), ("motorcycle", "motorcycle"), ("motorbike", "motorcycle"),
    ("scooter", "motorcycle"), ("bicycle", "bicycle"), ("bike", "bicycle"), ("cyclist", "bicycle"),
    ("pedestrian", "pedestrian"), ("person", "pedestrian"), ("walker", "pedestrian"), ("traffic cone", "traffic_cone"),
    ("cone", "traffic_cone"), ("barrier", "barrier"), ("barricade", "barrier"),
])
def test_every_object_class_by_its_synonyms(noun, cls):
    o = only(parse_prompt(f"a {noun} on the street"))
    assert (o.class_name, o.count) == (cls, (1, 1))


@pytest.mark.parametrize("text, count, stated", [
    ("a car", (1, 1), True), ("one car", (1, 1), True), ("two cars", (2, 2), True), ("7 cars", (7, 7), True),
    ("twelve cars", (12, 12), True), ("a couple of cars", (2, 2), True), ("a few cars", (2, 4), True),
    ("several cars", (3, 6), True), ("many cars", (6, 12), True), ("lots of cars", (6, 12), True),
    ("a dozen cars", (12, 12), True), ("cars", (2, 5), False), ("the car", (1, 1), False), ("no cars", (0, 0), True),
    ("without any cars", (0, 0), True), ("a crowd of people", (8, 15), True),
])
def test_counts(text, count, stated):
    o = only(parse_prompt(text))
    assert (o.count, o.count_stated) == (count, stated)


def test_colours_attach_to_their_own_noun():
    spec = parse_prompt("a red car, a navy blue bus and a grey lorry under a purple sky")
    assert by_class(spec, "car").colour == "red"
    assert by_class(spec, "bus").colour == "dark blue"
    assert by_class(spec, "truck").colour == "gray"


@pytest.mark.parametrize("text, cls, state", [
    ("a parked car", "car", "parked"), ("a car parked at the curb", "car", "parked"),
    ("a moving truck", "truck", "moving"), ("a bus driving ahead", "bus", "moving"),
    ("a stopped car", "car", "stopped"), ("a taxi waiting at the light", "car", "stopped"),
    ("a pedestrian waiting", "pedestrian", "standing"), ("a man walking", "pedestrian", "walking"),
    ("a woman standing", "pedestrian", "standing"), ("kids crossing the road", "pedestrian", "crossing"),
    ("cones placed on the road", "traffic_cone", "static"), ("an oncoming bus", "bus", "moving"),
    ("a cyclist", "bicycle", None), ("a car", "car", None),
])
def test_states_by_kind_of_object(text, cls, state):
    o = by_class(parse_prompt(text), cls)
    assert o.state == state


@pytest.mark.parametrize("text, position", [
    ("a car ahead", "front"), ("a car in front of us", "front"), ("a car behind us", "back"),
    ("a car behind", "back"), ("a car on the left", "left"), ("a car to our right", "right"),
    ("a car ahead on the left", "front-left"), ("a car ahead on the right", "front-right"),
    ("a car behind on the left", "back-left"), ("a car behind us on the right", "back-right"),
    ("a bus right behind the ego vehicle", "back"), ("a car to the right of the ego vehicle", "right"),
    ("On the left, a parked car", "left"), ("To our left, two motorcycles", "left"),
])
def test_positions(text, position):
    assert parse_prompt(text).objects[0].position == position


def test_relations_to_objects_areas_and_lanes():
    spec = parse_prompt("two red cars parked behind the bus, a cyclist left of the truck, a pedestrian near the "
                        "crosswalk and a van in the left lane")
    cars = [o for o in spec.objects if o.class_name == "car"]
    assert cars[0].relations == (RelationSpec("behind", TargetRef("object", "bus")),)
    assert by_class(spec, "bicycle").relations == (RelationSpec("left of", TargetRef("object", "truck")),)
    assert by_class(spec, "pedestrian").relations == (RelationSpec("near", TargetRef("area", "crosswalk")),)
    assert cars[1].relations == (RelationSpec("on top of", TargetRef("lane", "left")),)
    # targets the prompt does not list are implied objects
    assert by_class(spec, "bus").implicit and by_class(spec, "truck").implicit
    assert spec.road.crosswalk


def test_a_target_named_twice_is_one_object_and_pronouns_point_back():
    spec = parse_prompt("a bus ahead and a car behind the bus")
    assert [o.class_name for o in spec.objects] == ["bus", "car"]
    spec = parse_prompt("a bus with two cars behind it")
    assert by_class(spec, "car").relations == (RelationSpec("behind", TargetRef("object", "bus")),)
    assert not by_class(spec, "bus").relations


@pytest.mark.parametrize("text, lane", [
    ("a car in our lane", "ego"), ("a truck in the right lane", "right"), ("a bus on the left lane", "left"),
    ("a car in the oncoming lane", "oncoming"), ("a truck in the middle lane", "middle"),
    ("cones blocking the right lane", "right"), ("an oncoming truck", "oncoming"),
])
def test_lane_references(text, lane):
    assert RelationSpec("on top of", TargetRef("lane", lane)) in parse_prompt(text).objects[0].relations


def test_coordinated_nouns_share_what_follows_them():
    spec = parse_prompt("a bus and a truck waiting at the junction")
    assert [o.state for o in spec.objects] == ["stopped", "stopped"]
    spec = parse_prompt("a red car parked on the left and a truck ahead")
    assert (by_class(spec, "car").position, by_class(spec, "truck").position) == ("left", "front")


def test_a_scene_setting_junction_is_not_an_objects_relation():
    o = only(parse_prompt("a cyclist behind us on a T-junction at sunrise"))
    assert o.relations == () and o.position == "back"


def test_pedestrian_crossing_noun_or_verb():
    spec = parse_prompt("a pedestrian crossing the street")
    assert only(spec).state == "crossing"
    spec = parse_prompt("a car stopped at the pedestrian crossing")
    assert only(spec).relations == (RelationSpec("near", TargetRef("area", "crosswalk")),)


def test_empty_and_negation():
    assert parse_prompt("an empty highway").empty
    assert parse_prompt("a street with no traffic").empty
    spec = parse_prompt("a residential street with no pedestrians and two parked cars")
    assert by_class(spec, "pedestrian").count == (0, 0) and by_class(spec, "car").count == (2, 2)


def test_unknown_words_are_ignored_and_an_empty_prompt_gives_defaults():
    spec = parse_prompt("a flibbertigibbet roundabout with a car")
    assert only(spec).class_name == "car"
    assert "flibbertigibbet" in spec.unparsed and "roundabout" in spec.unparsed
    empty = parse_prompt("")
    assert empty == PromptSpec("", road=RoadSpec())
    assert parse_prompt("!!! ,,, ...") .objects == ()
    with pytest.raises(TypeError):
        parse_prompt(None)  # type: ignore[arg-type]


def test_edit_determiners_and_ordinals():
    assert only(parse_prompt("all pedestrians")).determiner == "all"
    o = only(parse_prompt("the nearest parked car"))
    assert (o.determiner, o.ordinal, o.state) == ("the", "nearest", "parked")
    assert only(parse_prompt("a car")).determiner == "a"


def test_read_group_reads_description_entries():
    g = read_group("2 red cars", "parked at the curb, ahead on the left, behind the white bus")
    assert (g.class_name, g.count, g.colours, g.state, g.position) == ("car", 2, ("red",), "parked", "front-left")
    assert g.relations == (RelationSpec("behind", TargetRef("object", "bus", "white")),)
    g = read_group("13 white and black cars", "driving along the road, mostly ahead")
    assert (g.count, g.colours, g.state, g.position) == (13, ("white", "black"), "moving", "front")
    g = read_group("3 pedestrians", "crossing the road, behind, in the left lane")
    assert (g.state, g.position) == ("crossing", "back")
    assert g.relations == (RelationSpec("on top of", TargetRef("lane", "left")),)


def test_read_road_and_small_readers():
    road = read_road("wet, reflective asphalt, a four-way intersection ahead with 4 lanes, 2 crosswalks")
    assert road == RoadSpec("wet", "intersection", 4, True)
    assert read_road("snow-covered asphalt, a T-junction behind with 2 lanes").kind == "t_junction"
    assert colour_word("navy blue") == "dark blue" and colour_word("car") is None
    assert state_word("drive", "car") == "moving" and state_word("parked", "pedestrian") is None


def test_positions_sets():
    assert position_matches("left", "front-left") and not position_matches("front-left", "left")
    assert POSITION_SETS["front"] == {"front-left", "front", "front-right"}
