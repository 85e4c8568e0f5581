"""The textual scene graph: exact round trip, tolerance of LLM drift, clear errors."""

import pytest

from xscene_core.data.world import SyntheticWorld
from xscene_core.scene_graph_text import emit, parse


@pytest.fixture(scope="module")
def graph():
    w = SyntheticWorld(11)
    return w.chunk(*w.find_location("downtown", junction=True)).graph


def test_round_trip(graph):
    assert graph.objects and graph.lanes and graph.relations
    assert parse(emit(graph)) == graph


def test_tolerates_format_drift(graph):
    text = emit(graph)
    drifted = (text.replace("  - ", "\t* ").replace(" deg;", "°;").replace("flow: ", "Flow = ")
               .replace("Scene graph:", "SCENE GRAPH").replace("; size", ", size"))
    assert parse(drifted) == graph


def test_names_the_bad_line():
    text = "Scene graph:\n- lanes:\n  - lane_0: points (0, 0) (1, 0); flow: forward\n- objects:\n  - car_0: car.parked; position: front\n"
    with pytest.raises(ValueError, match="line 5"):
        parse(text)
    with pytest.raises(ValueError, match="unknown node 'car_9'"):
        parse("Scene graph:\n- objects:\n  - car_0: car.parked; position: front; heading: 0 deg; "
              "location: (1.0, 2.0); size: (4.5, 1.9, 1.6)\n    - behind car_9\n")
    with pytest.raises(ValueError, match="unknown class"):
        parse("- objects:\n  - ufo_0: ufo.parked; position: front; heading: 0 deg; location: (1, 2); size: (1, 1, 1)\n")
