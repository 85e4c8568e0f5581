"""Memory-bank entries from data sources, and the command that builds the shipped bank:

    python -m xscene_core.llm.build_memory --out assets/memory_bank --worlds 80 [--nuscenes DATAROOT]

Synthetic entries come only from TRAIN world seeds (xscene_core.data.splits), one chunk per
environment in turn, so held-out worlds never leak into retrieval. nuScenes entries come from a
release's keyframe samples: the annotated boxes give the scene graph (no lanes: the map expansion is not
read), the scene's free-text description and log location give style and environment.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

from tqdm import tqdm

from .. import semantics
from ..data.splits import split_of, world_seeds
from ..data.world.describe import ENV_BACKGROUND, RELATIVE_PHRASE, ROAD_SURFACE, STATE_PHRASE, graph_of, plural
from ..scene_graph_text import emit
from ..types.occupancy import GridSpec
from ..types.scene import ENVIRONMENTS, TIMES_OF_DAY, WEATHERS, SceneDescription, SceneGraph
from .memory import MemoryBank, MemoryEntry

if TYPE_CHECKING:
    from ..data.nuscenes import NuScenesSource

CHUNKS_PER_WORLD = len(ENVIRONMENTS)  # one chunk per environment: every world adds each kind of place once
DEFAULT_WORLDS = 80  # 80 train worlds x 6 chunks = 480 entries, about 3 MB on disk

# nuScenes logs by location: all are city streets; Queenstown and Holland Village are mostly housing estates
NUSCENES_ENVIRONMENT = {
    "boston-seaport": "downtown", "singapore-onenorth": "downtown",
    "singapore-queenstown": "residential", "singapore-hollandvillage": "residential",
}
# nuScenes was recorded mostly in daylight and dry weather; used when a scene's description says nothing
NUSCENES_DEFAULT_STYLE = ("afternoon", "sunny")
# words of nuScenes scene descriptions ("Night, rain, peds crossing") -> our style vocabulary
_TIME_WORDS = {"night": "night", "dark": "night", "dusk": "dusk", "sunset": "dusk", "dawn": "dawn",
               "morning": "morning", "noon": "noon", "afternoon": "afternoon"}
_WEATHER_WORDS = {"rain": "rainy", "wet": "rainy", "fog": "foggy", "snow": "snowy", "overcast": "overcast",
                  "cloud": "cloudy", "sun": "sunny"}


# -- synthetic world ---------------------------------------------------------------------------------
def world_entries(seeds: Iterable[int], chunks_per_world: int = CHUNKS_PER_WORLD,
                  progress: bool = False) -> Iterator[MemoryEntry]:
    """Entries of synthetic chunks: chunk k of a world lies in ENVIRONMENTS[k % 6] (found with
    `find_location(env, start=k)`, as the dataset builder does), heading 0.

    seeds: world seeds, each of the train split (ValueError otherwise). An environment a world does
    not contain is skipped. progress: show a tqdm bar over chunks.
    """
    from ..data.world import SyntheticWorld

    seeds = [int(s) for s in seeds]
    if chunks_per_world <= 0:
        raise ValueError(f"chunks_per_world must be positive, got {chunks_per_world}")
    held_out = [s for s in seeds if split_of(s) != "train"]
    if held_out:
        raise ValueError(f"world seeds {held_out[:5]} are not train worlds; the memory bank is built only from "
                         "train worlds (xscene_core.data.splits.world_seeds('train')) so evaluation stays held out")
    jobs = [(s, k) for s in seeds for k in range(chunks_per_world)]
    world = None
    for seed, k in tqdm(jobs, desc="memory: world chunks", unit="chunk", disable=not progress):
        if world is None or world.seed != seed:
            world = SyntheticWorld(seed)  # one world at a time keeps memory flat
        env = ENVIRONMENTS[k % len(ENVIRONMENTS)]
        try:
            x, y = world.find_location(env, start=k)
        except ValueError:
            continue
        chunk = world.chunk(x, y)
        yield MemoryEntry(f"world{seed}_{env}_{k}", "synthetic", chunk.description, emit(chunk.graph))


# -- nuScenes ----------------------------------------------------------------------------------------
def _style_of(text: str) -> tuple[str, str]:
    low = text.lower()
    time_of_day = next((v for k, v in _TIME_WORDS.items() if k in low), NUSCENES_DEFAULT_STYLE[0])
    weather = next((v for k, v in _WEATHER_WORDS.items() if k in low), NUSCENES_DEFAULT_STYLE[1])
    assert time_of_day in TIMES_OF_DAY and weather in WEATHERS
    return time_of_day, weather


def describe_sample(graph: SceneGraph, scene_text: str, location: str) -> SceneDescription:
    """A description of a nuScenes sample from what is known: objects by class and state and where they
    mostly are (no colours), style from the scene's free text, environment and background from the
    log location."""
    time_of_day, weather = _style_of(scene_text)
    env = NUSCENES_ENVIRONMENT.get(location, "downtown")
    groups: dict[tuple[str, str], list] = {}
    for node in graph.objects:
        groups.setdefault((node.class_name, node.state), []).append(node)
    fg = []
    for (name, state), nodes in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        where = Counter(n.position for n in nodes).most_common(1)[0][0]
        fg.append((f"{len(nodes)} {plural(name, len(nodes))}", f"{STATE_PHRASE[state]}, mostly {RELATIVE_PHRASE[where]}"))
    counts = Counter(n.class_name for n in graph.objects)
    n_veh = sum(1 for n in graph.objects if n.label in semantics.VEHICLE_IDS)
    n_ped = counts.get("pedestrian", 0)
    scene_note = scene_text.strip().rstrip(".") or "a city street"
    road = f"{ROAD_SURFACE[weather]}, a city street ({scene_note})"
    layout = f"{len(graph.objects)} objects: " + ", ".join(f"{v} {plural(k, v)}" for k, v in counts.most_common())
    abstract = (f"A {weather} {time_of_day} in a {env} area ({location}): {scene_note}, with "
                f"{n_veh} vehicle{'s' if n_veh != 1 else ''} and {n_ped} pedestrian{'s' if n_ped != 1 else ''}.")
    return SceneDescription(time_of_day, weather, env, tuple(fg), (ENV_BACKGROUND[env],), road, layout, abstract)


def nuscenes_entries(source: "NuScenesSource", grid: GridSpec | None = None,
                     progress: bool = False) -> Iterator[MemoryEntry]:
    """One entry per keyframe sample of a nuScenes release: boxes inside the grid (default GridSpec,
    the Occ3D extent) -> scene graph (describe.graph_of); description from describe_sample."""
    grid = grid or GridSpec()
    nusc = source.nusc
    for token in tqdm(source.sample_tokens(), desc="memory: nuScenes samples", unit="sample", disable=not progress):
        sample = nusc.get("sample", token)
        scene = nusc.get("scene", sample["scene_token"])
        location = nusc.get("log", scene["log_token"])["location"]
        graph = graph_of(source.layout(token, within=grid), grid)
        yield MemoryEntry(f"nuscenes_{token}", "nuscenes", describe_sample(graph, scene.get("description", ""), location),
                          emit(graph))


# -- command -----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="bank folder (written; an existing bank is replaced)")
    ap.add_argument("--worlds", type=int, default=DEFAULT_WORLDS, help="number of train worlds (default: %(default)s)")
    ap.add_argument("--chunks-per-world", type=int, default=CHUNKS_PER_WORLD, help="chunks per world, one environment each in turn (default: %(default)s)")
    ap.add_argument("--start-seed", type=int, default=0, help="first seed searched for train worlds")
    ap.add_argument("--nuscenes", type=Path, default=None, help="a nuScenes dataroot whose samples are added")
    ap.add_argument("--nuscenes-version", default="v1.0-mini", help="nuScenes table folder (e.g. v1.0-trainval)")
    args = ap.parse_args(argv)
    if args.worlds < 0:
        ap.error(f"--worlds must be >= 0, got {args.worlds}")
    t0 = time.time()
    seeds = world_seeds("train", start=args.start_seed)
    bank = MemoryBank()
    if args.worlds:
        bank.add(world_entries([next(seeds) for _ in range(args.worlds)], args.chunks_per_world, progress=True))
    if args.nuscenes is not None:
        from ..data.nuscenes import NuScenesSource

        bank.add(nuscenes_entries(NuScenesSource(args.nuscenes, args.nuscenes_version), progress=True))
    bank.save(args.out)
    size = sum(p.stat().st_size for p in args.out.iterdir() if p.is_file())
    print(f"wrote {len(bank)} entries {bank.sources()} to {args.out} ({size / 1e6:.1f} MB) "
          f"in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
