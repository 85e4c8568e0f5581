"""The bench and quality commands run, print a table and write a flat JSON object with stable keys."""

import json

from xscene_core.eval import bench, quality


def test_bench_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    bench.main(["--json", str(out), "--repeats", "1", "--no-markdown"])
    data = json.loads(out.read_text())
    assert {"world_chunk_s", "describe_s", "layout_s", "render_s", "preview_s", "occupancy_s", "extend_s",
            "chunk_total_preview_s", "gaussians_s", "images_s", "chunk_total_s", "peak_rss_gb"} <= set(data)
    assert 0 < data["world_chunk_s"] < 60
    assert "| `world_chunk_s` |" in capsys.readouterr().out


def test_a_partial_bench_leaves_the_whole_pipelines_peak_memory_alone(tmp_path):
    out = tmp_path / "bench.json"
    bench.main(["--json", str(out), "--repeats", "1", "--no-markdown", "--only", "core"])
    data = json.loads(out.read_text())
    assert "world_chunk_s" in data and "peak_rss_gb" not in data and "images_s" not in data


def test_quality_writes_json(tmp_path):
    out = tmp_path / "quality.json"
    quality.main(["--json", str(out), "--worlds", "1", "--graphs", "10", "--layout-graphs", "4", "--vae-chunks", "1", "--control-chunks", "1", "--world-chunks", "1", "--no-markdown"])
    data = json.loads(out.read_text())
    assert data["world_overlap_agreement"] == 1.0
    assert data["graph_roundtrip"] == 1.0
    assert 0.9 <= data["description_attr_recall"] <= 1.0
    assert 0 <= data["layout_collisions"] <= 1 and 0 <= data["layout_relations"] <= 1
    assert 50 < data["vae_miou"] <= 100 and 50 < data["vae_iou"] <= 100
    assert 0 <= data["box_realised"] <= 1 and data["drivable_iou"] > data["drivable_iou_no_layout"]
    assert 0.8 < data["outpaint_overlap_agreement"] <= 1 and 0 <= data["outpaint_seam_drivable_iou"] <= 1
    assert 0.9 < data["edit_far_unchanged"] <= 1
    assert 15 < data["splat_psnr"] < 60
    assert 0 <= data["image_alignment_miou"] <= 1 and 0 < data["image_cross_view_consistency"] <= 1
    assert 0 < data["image_sharpness"] < 10


def test_partial_runs_replace_only_their_rows():
    from xscene_core.eval.report import Row, _merged, table

    old = table([Row("a", 1.0, ""), Row("b", 2.0, "")], "2026-01-01 10:00 UTC")
    merged = _merged(old, [Row("b", 3.0, "s"), Row("c", 4.0, "")], "2026-01-02 11:00 UTC")
    lines = merged.splitlines()[2:]
    assert [line.split("`")[1] for line in lines] == ["a", "b", "c"]
    assert lines[0].endswith("| 1  |  |  | 2026-01-01 10:00 UTC |")  # a row not re-measured keeps its time
    assert "| 3 s |" in lines[1] and lines[1].endswith("2026-01-02 11:00 UTC |")
    # a table from before the time column: its rows get the header's time
    four = "Measured 2025-12-31 09:30 UTC on x.\n\n| key | value | target | note |\n|---|---|---|---|\n| `a` | 1  |  |  |"
    assert _merged(four, [Row("c", 4.0, "")], "now").splitlines()[2].endswith("|  |  | by 2025-12-31 09:30 UTC |")


def test_overlap_agreement_detects_disagreement():
    # a different world in the second chunk must not agree: the metric can fail
    from xscene_core.data.world import SyntheticWorld

    a, b = SyntheticWorld(1), SyntheticWorld(2)
    x, y = a.find_location("downtown")

    class Mixed:
        grid = a.grid

        def __init__(self):
            self.calls = 0

        def chunk(self, x, y):
            self.calls += 1
            return (a if self.calls == 1 else b).chunk(x, y)

    assert quality.overlap_agreement(Mixed(), x, y, (40.0, 0.0)) < 0.95
