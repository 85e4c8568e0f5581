"""Top-down PNG previews of synthetic chunks: `python -m xscene_core.data.preview --seed S --out DIR`
writes one chunk (with lanes and boxes drawn over the voxels) and its 3x3 neighbourhood."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..ops.overview import bev_image
from ..types.layout import Layout
from ..types.occupancy import Occupancy

def draw_layout(img: Image.Image, layout: Layout, occ: Occupancy, scale: int, offset_px=(0, 0)) -> None:
    """Draw lanes (a dot at their end), lines and box footprints onto a bev_image of the occupancy
    scaled by `scale` (one voxel = `scale` pixels)."""
    g = occ.grid
    draw = ImageDraw.Draw(img)

    def px(p):
        u = (p[:, 0] - g.lower[0]) / g.voxel_size * scale + offset_px[0]
        v = (g.upper[1] - p[:, 1]) / g.voxel_size * scale + offset_px[1]
        return list(zip(u.tolist(), v.tolist()))

    for line in layout.lines:
        color = {"lane_divider": (230, 230, 230), "road_divider": (255, 210, 0), "road_edge": (90, 90, 90),
                 "stop_line": (255, 255, 255)}[line.kind]
        draw.line(px(line.points), fill=color, width=1)
    for lane in layout.lanes:
        pts = px(lane.points)
        draw.line(pts, fill=(120, 200, 255) if not lane.connector else (80, 150, 200), width=1)
        (x0, y0), (x1, y1) = pts[-2], pts[-1]
        draw.ellipse([x1 - 2, y1 - 2, x1 + 2, y1 + 2], fill=(120, 200, 255))
    for b in layout.boxes:
        c = b.corners_bev()
        draw.polygon(px(c), outline=(0, 0, 0))
        front = px(c[:2])
        draw.line(front, fill=(255, 255, 255), width=2)


def chunk_png(world, x: float, y: float, scale: int = 3, with_layout: bool = True) -> Image.Image:
    c = world.chunk(x, y)
    img = Image.fromarray(bev_image(c.occupancy)).resize((c.occupancy.grid.shape[0] * scale,) * 2, Image.NEAREST)
    if with_layout:
        draw_layout(img, c.layout, c.occupancy, scale)
    return img


def neighbourhood_png(world, x: float, y: float, scale: int = 1) -> Image.Image:
    """3 x 3 chunks around (x, y), stitched edge to edge (north up)."""
    size = world.grid.extent[0]
    n = world.grid.shape[0] * scale
    canvas = Image.new("RGB", (3 * n, 3 * n))
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            tile = chunk_png(world, x + di * size, y + dj * size, scale)
            canvas.paste(tile, ((di + 1) * n, (1 - dj) * n))
    return canvas


def main(argv: list[str] | None = None) -> None:
    from .world import Style, SyntheticWorld

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seed", type=int, default=0, help="world seed")
    ap.add_argument("--environment", default=None, help="find a chunk in this environment (default: the origin)")
    ap.add_argument("--x", type=float, default=None)
    ap.add_argument("--y", type=float, default=None)
    ap.add_argument("--out", type=Path, default=Path("out/preview"))
    args = ap.parse_args(argv)
    world = SyntheticWorld(args.seed)
    if args.x is not None and args.y is not None:
        x, y = args.x, args.y
    elif args.environment:
        x, y = world.find_location(args.environment, junction=True)
    else:
        x, y = 0.0, 0.0
    args.out.mkdir(parents=True, exist_ok=True)
    one = args.out / f"chunk_seed{args.seed}.png"
    chunk_png(world, x, y).save(one)
    nine = args.out / f"neighbourhood_seed{args.seed}.png"
    neighbourhood_png(world, x, y, scale=1).save(nine)
    print(f"{world.environment_at(x, y)} chunk at ({x:.1f}, {y:.1f}) -> {one}\n3x3 neighbourhood -> {nine}")


if __name__ == "__main__":
    main()
