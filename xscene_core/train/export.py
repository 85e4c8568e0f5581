"""A shippable copy of a save_pretrained folder (a run's best/ or final/): float16 weights (half the bytes;
from_pretrained loads them back into the model's float32) and config.json with the given keys set.

    python -m xscene_core.train.export runs/lat/diff/best checkpoints/image_diffusion \\
        --set vae_path=checkpoints/image_autoencoder --set guidance_scale=1.5 --set geometry_decoder=true

A --set value is read as JSON where it parses (numbers, true / false, lists), as a string otherwise.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..models.pretrained import CONFIG_NAME, WEIGHTS_NAME, write_pretrained


def export_half(src: Path, dst: Path, settings: dict | None = None) -> int:
    """Write dst/model.safetensors (src's floating-point tensors as float16, others as they are) and
    dst/config.json (src's, updated with `settings`); returns the number of parameters. The weights are
    written beside and renamed, so a crash leaves no half file; dst may be src."""
    from safetensors.torch import load_file

    src, dst = Path(src), Path(dst)
    if not (src / CONFIG_NAME).exists() or not (src / WEIGHTS_NAME).exists():
        raise ValueError(f"{src}: not a save_pretrained folder (needs {CONFIG_NAME} and {WEIGHTS_NAME})")
    weights = load_file(str(src / WEIGHTS_NAME))
    config = json.loads((src / CONFIG_NAME).read_text())
    unknown = sorted(set(settings or {}) - set(config))
    if unknown:  # a typo would otherwise be written and silently ignored by the constructor's caller
        raise ValueError(f"{src / CONFIG_NAME} has no key {', '.join(unknown)}")
    config.update(settings or {})
    write_pretrained(dst, {k: (v.half() if v.is_floating_point() else v) for k, v in weights.items()}, config)
    return sum(v.numel() for v in weights.values())


def parse_setting(text: str) -> tuple[str, object]:
    """"key=value" -> (key, the value as JSON, or the string when it is not JSON)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path, help="a save_pretrained folder (config.json + model.safetensors)")
    ap.add_argument("dst", type=Path)
    ap.add_argument("--set", type=parse_setting, action="append", default=[], metavar="KEY=VALUE",
                    help="set a config key (repeatable)")
    args = ap.parse_args(argv)
    n = export_half(args.src, args.dst, dict(args.set))
    size = (args.dst / WEIGHTS_NAME).stat().st_size / 1e6
    print(f"{args.dst}: {n:,} parameters in float16, {size:.1f} MB")


if __name__ == "__main__":
    main()
