"""The LLM path against a scripted server speaking the OpenAI chat-completions protocol on loopback:
valid answers, repair rounds, retries, timeouts and refusals, and what the server is sent."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from xscene_core.llm.client import LLMClient, LLMConfig, LLMError, extract_json
from xscene_core.llm.llm_describer import describe_with_llm, memory_entry_with_llm
from xscene_core.llm.memory import MemoryBank, MemoryEntry
from xscene_core.llm.prompts import (
    MEMORY_SYSTEM_PROMPT, NOVEL_SYSTEM_PROMPT, format_reference, novel_prompt, trim_graph, view_summaries,
)
from xscene_core.llm.schema import SchemaError, answer_json, check_answer
from xscene_core.scene_graph_text import emit, parse
from xscene_core.types.cameras import CAMERA_NAMES
from xscene_core.types.scene import SceneDescription

MODEL = "scripted-model"
# the example graph of the prompt's format reference: a valid graph by construction
_REF = format_reference().split("SCENE GRAPH SYNTAX")[1]
GRAPH = parse(_REF[_REF.index("Scene graph:"):_REF.index("Rules:")])
DESCRIPTION = SceneDescription(
    "night", "rainy", "downtown", (("2 cars", "one parked at the left curb, one driving ahead"),
                                   ("1 pedestrian", "crossing at the crosswalk ahead")),
    (("buildings", "tall facades lining both sides of the street"),), "wet, reflective asphalt, a straight road",
    "2 lanes, 0 intersections, 1 crosswalk, 3 objects: 2 cars, 1 pedestrian",
    "A rainy night on a downtown street with a pedestrian crossing ahead.")
VALID = json.dumps(answer_json(DESCRIPTION, GRAPH))


@dataclass
class Reply:
    """One scripted answer: HTTP status, message content, seconds to wait before answering."""

    content: str = VALID
    status: int = 200
    delay: float = 0.0


class ScriptedServer:
    """An OpenAI-compatible /v1/chat/completions endpoint answering from a script, recording requests."""

    def __init__(self, replies: list[Reply]) -> None:
        self.replies = list(replies)
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
                reply = outer.replies.pop(0) if outer.replies else Reply(status=500, content="script exhausted")
                time.sleep(reply.delay)
                if reply.status == 200:
                    payload = {"id": f"chatcmpl-{len(outer.requests)}", "object": "chat.completion", "created": 0,
                               "model": body["model"], "choices": [{"index": 0, "finish_reason": "stop",
                               "message": {"role": "assistant", "content": reply.content}}],
                               "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
                else:
                    payload = {"error": {"message": reply.content, "type": "server_error", "code": None}}
                data = json.dumps(payload).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve(monkeypatch):
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(key, raising=False)  # loopback must not go through a proxy
    servers = []

    def start(*replies: Reply) -> ScriptedServer:
        servers.append(ScriptedServer(list(replies)))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def config_for(server: ScriptedServer, **kw) -> LLMConfig:
    return LLMConfig(server.base_url, MODEL, **{"api_key": "test-key", "timeout_s": 5.0, "max_retries": 1,
                                                 "backoff_s": 0.01, **kw})


def _entry(entry_id: str, env: str, time_of_day: str, text: str) -> MemoryEntry:
    d = SceneDescription(time_of_day, "sunny", env, (("3 cars", "parked at the curb"),), (), "dry asphalt", "",
                         f"A sunny {time_of_day} in a {env} area: {text}.")
    return MemoryEntry(entry_id, "synthetic", d, emit(GRAPH))


@pytest.fixture(scope="module")
def bank() -> MemoryBank:
    return MemoryBank([
        _entry("mem_downtown", "downtown", "night", "a busy street between tall office buildings"),
        _entry("mem_rural", "rural", "morning", "a narrow country road between open fields"),
        _entry("mem_highway", "highway", "noon", "a multi-lane motorway with trucks"),
    ])


# -- the novel-description path ------------------------------------------------------------------------
def test_valid_answer_and_what_the_server_receives(serve, bank):
    server = serve(Reply())
    desc, graph = describe_with_llm("a rainy night on a downtown street", bank, config_for(server), k=2)
    assert desc == DESCRIPTION and graph == GRAPH
    (req,) = server.requests
    assert req["path"] == "/v1/chat/completions" and req["model"] == MODEL and req["auth"] == "Bearer test-key"
    system, user = req["messages"]
    assert system == {"role": "system", "content": NOVEL_SYSTEM_PROMPT}
    assert user["role"] == "user" and "User request: a rainy night on a downtown street" in user["content"]
    # the top-2 retrieved memories are the in-context examples, best first, in the answer format
    ranked = [e.entry_id for e, _ in bank.search("a rainy night on a downtown street", 3)]
    assert ranked[0] == "mem_downtown"
    text = user["content"]
    assert text.count("Example ") == 2 and text.index(ranked[0]) < text.index("Example 2") < text.index(ranked[1])
    assert ranked[2] not in text
    assert '"Scene graph": "Scene graph:\\n' in user["content"]


def test_invalid_json_then_repaired(serve, bank):
    server = serve(Reply("Sure! Here is the scene: {\"Time of the day\": \"night\","), Reply())
    desc, graph = describe_with_llm("a downtown street at night", bank, config_for(server))
    assert desc == DESCRIPTION and graph == GRAPH
    first, second = server.requests
    assert len(second["messages"]) == 4
    assert second["messages"][:2] == first["messages"]
    assert second["messages"][2] == {"role": "assistant", "content": "Sure! Here is the scene: {\"Time of the day\": \"night\","}
    assert second["messages"][3]["role"] == "user" and "not valid JSON" in second["messages"][3]["content"]


def test_schema_violation_twice_is_an_llm_error(serve, bank):
    bad = dict(answer_json(DESCRIPTION, GRAPH), Weather="drizzly")
    server = serve(Reply(json.dumps(bad)), Reply(json.dumps(bad)))
    with pytest.raises(LLMError, match=r"invalid answer twice.*Weather.*must be one of.*drizzly"):
        describe_with_llm("a downtown street at night", bank, config_for(server))
    assert len(server.requests) == 2
    assert "drizzly" in server.requests[1]["messages"][3]["content"]  # the error was sent back


def test_server_error_is_retried(serve, bank):
    server = serve(Reply("overloaded", status=500), Reply())
    desc, _ = describe_with_llm("a downtown street at night", bank, config_for(server))
    assert desc == DESCRIPTION and len(server.requests) == 2
    assert server.requests[0]["messages"] == server.requests[1]["messages"]


def test_slow_answer_times_out_after_retries(serve, bank):
    server = serve(Reply(delay=4.0), Reply(delay=4.0))
    t0 = time.monotonic()
    with pytest.raises(LLMError, match=r"failed after 2 attempts: no answer within the timeout of 0.3 s"):
        describe_with_llm("a downtown street at night", bank, config_for(server, timeout_s=0.3, max_retries=1))
    assert time.monotonic() - t0 < 3.0  # gave up long before either answer came
    assert len(server.requests) == 2


def test_client_errors_are_not_retried(serve):
    server = serve(Reply("invalid api key", status=401))
    with pytest.raises(LLMError, match="HTTP 401: invalid api key"):
        LLMClient(config_for(server, max_retries=3)).complete_json("s", "u", check_answer)
    assert len(server.requests) == 1


def test_unreachable_endpoint_is_a_clear_error(serve):
    server = serve()
    url = server.base_url
    server.close()  # nothing listens on the port now
    cfg = LLMConfig(url, MODEL, timeout_s=2.0, max_retries=1, backoff_s=0.01)
    with pytest.raises(LLMError, match=r"127\.0\.0\.1.*failed after 2 attempts: cannot connect"):
        LLMClient(cfg).complete_json("s", "u", check_answer)


def test_json_mode_sends_response_format(serve):
    server = serve(Reply())
    scene = LLMClient(config_for(server, json_mode=True)).complete_json("s", "u", check_answer)
    assert scene.graph == GRAPH and server.requests[0]["response_format"] == {"type": "json_object"}


# -- memory construction ---------------------------------------------------------------------------------
def test_memory_entry_from_views(serve):
    server = serve(Reply())
    views = view_summaries(GRAPH)
    assert len(views) == 6 and "crossing pedestrian" in views[CAMERA_NAMES.index("CAM_FRONT")]
    entry = memory_entry_with_llm("views_0", "synthetic", views, config_for(server), notes="Night, rain")
    assert entry.description == DESCRIPTION and entry.graph() == GRAPH
    system, user = server.requests[0]["messages"]
    assert system["content"] == MEMORY_SYSTEM_PROMPT
    assert all(name in user["content"] for name in CAMERA_NAMES) and "Night, rain" in user["content"]
    with pytest.raises(ValueError, match="needs 6 view texts"):
        memory_entry_with_llm("x", "synthetic", views[:5], config_for(server))


# -- pieces ----------------------------------------------------------------------------------------------
def test_extract_json_tolerates_fences_and_prose():
    obj = {"a": [1, 2]}
    assert extract_json(json.dumps(obj)) == obj
    assert extract_json("```json\n" + json.dumps(obj) + "\n```") == obj
    assert extract_json("Here you go:\n" + json.dumps(obj) + "\nHope this helps.") == obj
    for text in ("", "no json here", "{'single': 'quotes'}"):
        with pytest.raises(ValueError, match="empty|not valid JSON"):
            extract_json(text)


def test_check_answer_lists_every_problem_and_tolerates_drift():
    good = answer_json(DESCRIPTION, GRAPH)
    drift = {k.upper(): v for k, v in good.items()}  # key case drifts
    drift["TIME OF THE DAY"] = " Night "
    drift["SCENE GRAPH"] = good["Scene graph"].splitlines()  # a list of lines
    assert check_answer(drift).description == DESCRIPTION
    bad = dict(good, **{"Surrounding environment": "mars", "Foreground objects": "cars"})
    del bad["Road condition"]
    bad["Scene graph"] = good["Scene graph"].replace("car.parked", "car.flying")
    with pytest.raises(SchemaError) as err:
        check_answer(bad)
    msg = str(err.value)
    assert '"Road condition"' in msg and "mars" in msg and '"Foreground objects" must be a list' in msg
    assert "does not parse: line" in msg and "flying" in msg
    with pytest.raises(SchemaError, match="one JSON object"):
        check_answer([good])


def test_config_from_env():
    assert LLMConfig.from_env({}) is None
    cfg = LLMConfig.from_env({"XSCENE_LLM_BASE_URL": "http://127.0.0.1:9/v1", "XSCENE_LLM_MODEL": "m",
                              "XSCENE_LLM_TIMEOUT_S": "12.5", "XSCENE_LLM_MAX_RETRIES": "4"})
    assert (cfg.base_url, cfg.model, cfg.timeout_s, cfg.max_retries) == ("http://127.0.0.1:9/v1", "m", 12.5, 4)
    assert cfg.api_key  # a placeholder: local servers need none, the openai client needs one
    with pytest.raises(ValueError, match="XSCENE_LLM_MODEL"):
        LLMConfig.from_env({"XSCENE_LLM_BASE_URL": "http://127.0.0.1:9/v1"})
    with pytest.raises(ValueError, match="XSCENE_LLM_MAX_RETRIES must be an integer"):
        LLMConfig.from_env({"XSCENE_LLM_BASE_URL": "http://x/v1", "XSCENE_LLM_MODEL": "m", "XSCENE_LLM_MAX_RETRIES": "a"})
    with pytest.raises(ValueError, match="http"):
        LLMConfig("127.0.0.1:8000", "m")


def test_examples_are_trimmed_to_valid_graphs(bank):
    graph = trim_graph(GRAPH, 1)
    assert [o.node_id for o in graph.objects] == ["pedestrian_0"]  # the nearest to the ego
    assert parse(emit(graph)) == graph
    assert all("car_0" not in (r.subject, r.object) for r in graph.relations)
    assert "Example 1" in novel_prompt("x", bank.entries[:1]).user
    with pytest.raises(ValueError):
        novel_prompt("  ", [])
