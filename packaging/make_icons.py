"""Draw the MedSR Viewer app icon: an SVG plus PNGs (16-256 px), a Windows .ico and a macOS .icns.

The icon is a head slice cut in two: the left half in coarse blocks (low resolution), the right half
smooth (super-resolved), split by an orange line. Both the SVG and the PNGs come from the same
geometry below, so they match. Run it after changing the drawing; the outputs are committed:

    .venv/bin/python packaging/make_icons.py            # writes resources/icons/
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
NAME = "medsr-viewer"
PNG_SIZES = (16, 24, 32, 48, 64, 128, 256)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)

# Geometry on a 256 x 256 canvas.
BACKGROUND = "#17324d"
FRAME = (8, 8, 248, 248)
CORNER = 48
CENTRE = (128.0, 132.0)
SKULL = (84.0, 98.0)  # outer radii (x, y) of the head
BRAIN = (68.0, 82.0)  # inner radii
VENTRICLE = (14.0, 26.0)  # dark centre
SKULL_COLOUR = "#e8edf2"
BRAIN_COLOUR = "#8fa3ba"
VENTRICLE_COLOUR = "#34506e"
ACCENT = "#ff9f1c"
BLOCK = 24  # side of one low-resolution block
SPLIT_X = 128


def _inside(x: float, y: float, radii: tuple[float, float]) -> bool:
    return ((x - CENTRE[0]) / radii[0]) ** 2 + ((y - CENTRE[1]) / radii[1]) ** 2 <= 1.0


def _tissue(x: float, y: float) -> str:
    """Colour of the smooth drawing at (x, y)."""
    if not _inside(x, y, SKULL):
        return BACKGROUND
    if _inside(x, y, VENTRICLE):
        return VENTRICLE_COLOUR
    if _inside(x, y, BRAIN):
        return BRAIN_COLOUR
    return SKULL_COLOUR


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def low_res_blocks() -> list[tuple[int, int, str]]:
    """(x, y, colour) of each block of the left half: the smooth drawing averaged over the block."""
    blocks = []
    n = 8  # samples per block side
    for y in range(FRAME[1], FRAME[3], BLOCK):
        for x in range(SPLIT_X - BLOCK, FRAME[0] - 1, -BLOCK):
            offsets = [(k + 0.5) * BLOCK / n for k in range(n)]
            samples = [_tissue(x + dx, y + dy) for dx in offsets for dy in offsets]
            if all(c == BACKGROUND for c in samples):
                continue
            mean = [round(sum(_rgb(c)[k] for c in samples) / len(samples)) for k in range(3)]
            blocks.append((x, y, "#{:02x}{:02x}{:02x}".format(*mean)))
    return blocks


def svg_text() -> str:
    cx, cy = CENTRE

    def half(radii: tuple[float, float], colour: str) -> str:
        rx, ry = radii
        return f'  <path d="M{cx:g},{cy - ry:g} A{rx:g},{ry:g} 0 0 1 {cx:g},{cy + ry:g} Z" fill="{colour}"/>'

    blocks = "\n".join(
        f'  <rect x="{x}" y="{y}" width="{BLOCK}" height="{BLOCK}" fill="{c}"/>'
        for x, y, c in low_res_blocks()
    )
    return f"""<svg xmlns="http://www.w3.org/2000/svg" width="256" height="256" viewBox="0 0 256 256">
  <title>MedSR Viewer</title>
  <rect x="{FRAME[0]}" y="{FRAME[1]}" width="{FRAME[2] - FRAME[0]}" height="{FRAME[3] - FRAME[1]}" \
rx="{CORNER}" fill="{BACKGROUND}"/>
{blocks}
{half(SKULL, SKULL_COLOUR)}
{half(BRAIN, BRAIN_COLOUR)}
{half(VENTRICLE, VENTRICLE_COLOUR)}
  <rect x="{SPLIT_X - 5}" y="22" width="10" height="212" rx="5" fill="{ACCENT}"/>
</svg>
"""


def render(size: int) -> Image.Image:
    """The icon as an RGBA image of ``size`` px, drawn at 4x (at least 1024 px) and downsampled."""
    ss = max(4 * size, 1024)
    k = ss / 256.0

    def box(x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
        return (x0 * k, y0 * k, x1 * k - 1, y1 * k - 1)

    def ellipse(radii: tuple[float, float]) -> tuple[float, float, float, float]:
        return box(CENTRE[0] - radii[0], CENTRE[1] - radii[1], CENTRE[0] + radii[0], CENTRE[1] + radii[1])

    frame_mask = Image.new("L", (ss, ss), 0)
    ImageDraw.Draw(frame_mask).rounded_rectangle(box(*FRAME), radius=CORNER * k, fill=255)

    art = Image.new("RGBA", (ss, ss), BACKGROUND)
    draw = ImageDraw.Draw(art)
    for x, y, colour in low_res_blocks():
        draw.rectangle(box(x, y, x + BLOCK, y + BLOCK), fill=colour)

    smooth = Image.new("RGBA", (ss, ss), (0, 0, 0, 0))
    sd = ImageDraw.Draw(smooth)
    sd.ellipse(ellipse(SKULL), fill=SKULL_COLOUR)
    sd.ellipse(ellipse(BRAIN), fill=BRAIN_COLOUR)
    sd.ellipse(ellipse(VENTRICLE), fill=VENTRICLE_COLOUR)
    right = Image.new("L", (ss, ss), 0)
    ImageDraw.Draw(right).rectangle(box(SPLIT_X, 0, 256, 256), fill=255)
    art.paste(smooth, (0, 0), Image.composite(smooth.getchannel("A"), right, right))
    ImageDraw.Draw(art).rounded_rectangle(box(SPLIT_X - 5, 22, SPLIT_X + 5, 234), radius=5 * k, fill=ACCENT)

    out = Image.new("RGBA", (ss, ss), (0, 0, 0, 0))
    out.paste(art, (0, 0), frame_mask)
    return out.resize((size, size), Image.Resampling.LANCZOS)


def write_icons(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / f"{NAME}.svg"]
    written[0].write_text(svg_text(), encoding="utf-8")
    for size in PNG_SIZES:
        path = folder / f"{NAME}-{size}.png"
        render(size).save(path, optimize=True)
        written.append(path)
    ico = folder / f"{NAME}.ico"
    render(256).save(ico, sizes=[(s, s) for s in ICO_SIZES])
    icns = folder / f"{NAME}.icns"
    render(1024).save(icns)
    return [*written, ico, icns]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "resources" / "icons")
    for path in write_icons(parser.parse_args().out):
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        print(f"wrote {shown} ({path.stat().st_size} B)")


if __name__ == "__main__":
    main()
