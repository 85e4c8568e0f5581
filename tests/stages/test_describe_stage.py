"""Describe stage: a prompt always yields a valid description and scene graph, offline by default."""

import pytest

from xscene_core.llm.client import LLMConfig
from xscene_core.scene_graph_text import emit, parse
from xscene_core.stages.describe import DescribeStage
from xscene_core.types import DescribedScene


@pytest.fixture(scope="module")
def stage():
    return DescribeStage(llm=None)


def test_prompt_to_description_and_graph(stage):
    scene = stage("a rainy night on a downtown crossroad with three parked cars", seed=3)
    assert isinstance(scene, DescribedScene) and stage.last_source == "offline"
    d = scene.description
    assert (d.time_of_day, d.weather, d.environment) == ("night", "rainy", "downtown")
    assert any("3" in thing and "car" in thing and "parked" in attr for thing, attr in d.foreground)
    assert parse(emit(scene.graph)) == scene.graph
    assert stage("a rainy night on a downtown crossroad with three parked cars", seed=3) == scene


def test_the_prompt_changes_the_scene(stage):
    a = stage("a sunny suburban street", seed=0)
    b = stage("a snowy industrial road at dawn with two trucks", seed=0)
    assert a.description.environment == "suburban" and b.description.environment == "industrial"
    assert sum(o.class_name == "truck" for o in b.graph.objects) >= 2


def test_bad_prompts_get_clear_errors(stage):
    with pytest.raises(ValueError, match="empty"):
        stage("   ")
    with pytest.raises(ValueError, match="text"):
        stage(42)


def test_unreachable_llm_falls_back_to_offline(stage):
    dead = LLMConfig(base_url="http://127.0.0.1:9/v1", model="none", api_key="x", timeout_s=0.5, max_retries=0)
    s = DescribeStage(bank=stage.bank, llm=dead)
    scene = s("a foggy rural road at noon")
    assert s.last_source == "offline" and scene.description.weather == "foggy"
