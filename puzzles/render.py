"""Render puzzle grids to images: numpy tokens in, PIL images / PNG files out (no display needed).

Tokens are in dataset token space (see the contract): Sudoku digit + 1, maze "# SGo" -> 1..5,
ARC canvas (30x30, or the dataset's smaller side) with PAD 0, EOS 1, colour c -> c + 2. `render(family, tokens, meta=...)`
decodes per family and draws one grid; `target` marks wrong cells, `given` (the puzzle input)
tells given Sudoku digits from filled ones and supplies the maze walls. Composition helpers
(`caption`, `hstack`, `vstack`, `frame`) build prediction sheets and refinement strips.

    from puzzles.render import render, save_png
    save_png(render("sudoku", tokens, meta={"box": [3, 3]}, target=labels), "board.png")
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from puzzles.arc import canvas_of
from puzzles.errors import PuzzleError, atomic_write
from puzzles.families import FAMILIES, grid_spec  # noqa: F401  (grid_spec re-exported for callers)

ARC_PALETTE = ("#000000", "#0074D9", "#FF4136", "#2ECC40", "#FFDC00",
               "#AAAAAA", "#F012BE", "#FF851B", "#7FDBFF", "#870C25")
WRONG = "#FF9A9A"        # background of a wrong Sudoku cell, outline of a wrong ARC/maze cell
WRONG_EDGE = "#E00000"
GIVEN_INK = "#000000"
FILLED_INK = "#1F5FD0"
GRID_LINE = "#555555"
MAZE_WALL, MAZE_OPEN = "#2B2B2B", "#FFFFFF"
MAZE_START, MAZE_GOAL = "#0074D9", "#FF851B"
MAZE_PATH = "#7FDBFF"     # path with no target to compare against
PATH_RIGHT, PATH_WRONG, PATH_MISSED = "#2ECC40", "#FF4136", "#F012BE"


# ----------------------------------------------------------------------------- decoding

def _arc_canvas(tokens: np.ndarray) -> np.ndarray:
    """An ARC token row as its square canvas (side from the row length: 30, or a smaller canvas)."""
    arr = np.asarray(tokens).reshape(-1)
    side = canvas_of(arr)
    return arr.reshape(side, side)


def arc_origin(tokens: np.ndarray) -> tuple[int, int]:
    """Top-left corner of the colour tokens' bounding box ((0, 0) if none): train rows are translated."""
    rows, cols = np.nonzero(_arc_canvas(tokens) >= 2)
    return (int(rows.min()), int(cols.min())) if rows.size else (0, 0)


def crop_arc(tokens: np.ndarray, origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """ARC colours (0..9) of the largest rectangle of colour tokens whose corner is `origin`.

    With origin (0, 0) this is the evaluator's crop (reference 5.3): scan rows down, a row's
    width is its count of leading colour tokens capped by the rows above, keep the largest area.
    """
    r0, c0 = origin
    canvas = _arc_canvas(tokens)[r0:, c0:]
    best, best_hw, width = 0, (0, 0), canvas.shape[1]
    for row in range(canvas.shape[0]):
        colour = (canvas[row] >= 2) & (canvas[row] <= 11)
        lead = int(np.argmin(colour)) if not colour.all() else colour.size
        width = min(width, lead)
        if width == 0:
            break
        if (row + 1) * width > best:
            best, best_hw = (row + 1) * width, (row + 1, width)
    h, w = best_hw
    return (canvas[:h, :w] - 2).astype(np.int64)


def _square(tokens: np.ndarray, side: int) -> np.ndarray:
    arr = np.asarray(tokens).reshape(-1)
    if arr.size != side * side:
        raise PuzzleError(f"expected {side * side} tokens for a {side}x{side} grid, got {arr.size}")
    return arr.reshape(side, side).astype(np.int64)


# ----------------------------------------------------------------------------- drawing

@lru_cache(maxsize=16)
def font(size: int) -> ImageFont.ImageFont:
    """Pillow's built-in font at `size` px (scalable since Pillow 10.1; fixed bitmap before)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def _text(draw: ImageDraw.ImageDraw, box: tuple[float, float, float, float], text: str,
          fill: str, size: int) -> None:
    """Draw `text` centred in `box` (manual centring works for bitmap and FreeType fonts)."""
    f = font(size)
    l, t, r, b = draw.textbbox((0, 0), text, font=f)
    x = (box[0] + box[2] - (r - l)) / 2 - l
    y = (box[1] + box[3] - (b - t)) / 2 - t
    draw.text((x, y), text, fill=fill, font=f)


def default_cell(family: str, shape: tuple[int, int]) -> int:
    """Cell size in px so a grid is roughly 240 px on its long side (clamped)."""
    limits = {"sudoku": (16, 40), "maze": (4, 24), "arc": (6, 24)}[family]
    return int(np.clip(240 // max(1, *shape), *limits))


def render_sudoku(tokens: np.ndarray, *, box: tuple[int, int], target=None, given=None,
                  cell: int | None = None) -> Image.Image:
    """Digits on a board with thick r x c box lines; givens black, filled blue, wrong cells red."""
    r, c = box
    n = r * c
    grid = _square(tokens, n) - 1                       # 0 = blank, else digit
    given_mask = (_square(given, n) > 1) if given is not None else np.zeros_like(grid, bool)
    wrong = np.zeros_like(grid, bool)
    if target is not None:
        tgt = _square(target, n)
        wrong = (tgt != 0) & (tgt != grid + 1)
    cell = cell or default_cell("sudoku", (n, n))
    pad = 2
    img = Image.new("RGB", (n * cell + 2 * pad, n * cell + 2 * pad), "white")
    draw = ImageDraw.Draw(img)
    for i in range(n):
        for j in range(n):
            x0, y0 = pad + j * cell, pad + i * cell
            if wrong[i, j]:
                draw.rectangle([x0, y0, x0 + cell, y0 + cell], fill=WRONG)
            if grid[i, j] > 0:
                ink = GIVEN_INK if given_mask[i, j] else FILLED_INK
                label = str(grid[i, j])  # two-digit labels (boards of 10+) get a smaller font
                size = int(cell * (0.62 if len(label) == 1 else 0.45))
                _text(draw, (x0, y0, x0 + cell, y0 + cell), label, ink, size)
    for k in range(n + 1):  # thin lines between cells, thick ones on box edges
        horiz_w = 3 if k % r == 0 else 1
        vert_w = 3 if k % c == 0 else 1
        pos = pad + k * cell
        draw.line([(pad, pos), (pad + n * cell, pos)], fill="black", width=horiz_w)
        draw.line([(pos, pad), (pos, pad + n * cell)], fill="black", width=vert_w)
    return img


def render_maze(tokens: np.ndarray, *, size: int, target=None, given=None,
                cell: int | None = None) -> Image.Image:
    """Walls, start, goal and path. With a target: right path cells green, wrong red, missed outlined."""
    grid = _square(tokens, size)
    base = _square(given, size) if given is not None else grid
    cell = cell or default_cell("maze", (size, size))
    img = Image.new("RGB", (size * cell, size * cell), MAZE_OPEN)
    draw = ImageDraw.Draw(img)
    tgt = _square(target, size) if target is not None else None
    for i in range(size):
        for j in range(size):
            box = [j * cell, i * cell, (j + 1) * cell - 1, (i + 1) * cell - 1]
            colour = {1: MAZE_WALL, 3: MAZE_START, 4: MAZE_GOAL}.get(int(base[i, j]), MAZE_OPEN)
            on_path = grid[i, j] == 5
            if on_path:
                colour = MAZE_PATH if tgt is None else (PATH_RIGHT if tgt[i, j] == 5 else PATH_WRONG)
            draw.rectangle(box, fill=colour)
            if tgt is not None and tgt[i, j] == 5 and not on_path:
                draw.rectangle(box, outline=PATH_MISSED, width=max(1, cell // 5))
            elif tgt is not None and not on_path and tgt[i, j] not in (0, 5) and tgt[i, j] != grid[i, j]:
                draw.rectangle(box, outline=WRONG_EDGE, width=max(1, cell // 5))
    return img


def render_arc(tokens: np.ndarray, *, target=None, cell: int | None = None) -> Image.Image:
    """Palette cells with grid lines at the cropped size; wrong cells (or a wrong shape) outlined red."""
    # Crop where the target's grid starts (test rows: the top-left corner, as the evaluator does;
    # translated train rows: wherever the pair was placed).
    origin = arc_origin(target if target is not None else tokens)
    grid = crop_arc(tokens, origin)
    h, w = grid.shape
    if h == 0:  # the model emitted no colour at the top-left corner: nothing to crop
        img = Image.new("RGB", (60, 24), "white")
        _text(ImageDraw.Draw(img), (0, 0, 60, 24), "empty", WRONG_EDGE, 12)
        return img
    cell = cell or default_cell("arc", (h, w))
    img = Image.new("RGB", (w * cell + 1, h * cell + 1), GRID_LINE)
    draw = ImageDraw.Draw(img)
    for i in range(h):
        for j in range(w):
            draw.rectangle([j * cell + 1, i * cell + 1, (j + 1) * cell - 1, (i + 1) * cell - 1],
                           fill=ARC_PALETTE[grid[i, j]])
    if target is not None:
        tgt = crop_arc(target, origin)
        if tgt.shape != grid.shape:
            draw.rectangle([0, 0, img.width - 1, img.height - 1], outline=WRONG_EDGE, width=3)
        else:
            for i, j in zip(*np.nonzero(tgt != grid)):
                draw.rectangle([j * cell, i * cell, (j + 1) * cell, (i + 1) * cell],
                               outline=WRONG_EDGE, width=max(1, cell // 6))
    return img


def render(family: str, tokens: np.ndarray, *, meta: dict, target=None, given=None,
           cell: int | None = None) -> Image.Image:
    """Draw one grid of `family` ("sudoku" | "maze" | "arc"); `meta` supplies box/size."""
    spec = grid_spec({**meta, "family": family})
    if family == "sudoku":
        return render_sudoku(tokens, box=tuple(spec["box"]), target=target, given=given, cell=cell)
    if family == "maze":
        return render_maze(tokens, size=spec["size"], target=target, given=given, cell=cell)
    return render_arc(tokens, target=target, cell=cell)


def is_correct(pred: np.ndarray, label: np.ndarray) -> bool:
    """Exact match on the positions the label does not ignore (0 = ignore)."""
    mask = np.asarray(label) != 0
    return bool(np.all(np.asarray(pred)[mask] == np.asarray(label)[mask]))


# ----------------------------------------------------------------------------- composition

def caption(img: Image.Image, text: str, *, colour: str = "black", band: str | None = None,
            size: int = 13) -> Image.Image:
    """`img` with a line of text above it (on a coloured band if given)."""
    height = size + 8
    width = max(img.width, int(ImageDraw.Draw(img).textlength(text, font=font(size))) + 8)
    out = Image.new("RGB", (width, img.height + height), band or "white")
    if band:
        out.paste(Image.new("RGB", (width, img.height), "white"), (0, height))
    _text(ImageDraw.Draw(out), (0, 0, width, height), text, colour, size)
    out.paste(img, ((width - img.width) // 2, height))
    return out


def frame(img: Image.Image, colour: str, width: int = 4) -> Image.Image:
    """`img` inside a border of `colour`."""
    out = Image.new("RGB", (img.width + 2 * width, img.height + 2 * width), colour)
    out.paste(img, (width, width))
    return out


def hstack(images: list[Image.Image], gap: int = 10, bg: str = "white") -> Image.Image:
    """Images side by side, top-aligned."""
    out = Image.new("RGB", (sum(i.width for i in images) + gap * (len(images) - 1),
                            max(i.height for i in images)), bg)
    x = 0
    for im in images:
        out.paste(im, (x, 0))
        x += im.width + gap
    return out


def vstack(images: list[Image.Image], gap: int = 10, bg: str = "white") -> Image.Image:
    """Images one above the other, left-aligned."""
    out = Image.new("RGB", (max(i.width for i in images),
                            sum(i.height for i in images) + gap * (len(images) - 1)), bg)
    y = 0
    for im in images:
        out.paste(im, (0, y))
        y += im.height + gap
    return out


def save_png(img: Image.Image, path: str | os.PathLike) -> Path:
    """Write `img` as PNG atomically (temp file in the same directory, then rename)."""
    return atomic_write(path, lambda f: img.save(f, format="PNG"))
