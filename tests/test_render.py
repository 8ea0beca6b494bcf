"""Pixel facts of rendered grids: python -m pytest -q tests/test_render.py"""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageColor

from puzzles.errors import PuzzleError
from puzzles.render import (ARC_PALETTE, FILLED_INK, GIVEN_INK, MAZE_PATH, PATH_MISSED, PATH_RIGHT,
                            PATH_WRONG, WRONG, arc_origin, crop_arc, grid_spec, render, save_png)
from train.report import HALT_FRAME, prediction_sheet, refinement_strip


def rgb(hex_colour: str) -> tuple[int, int, int]:
    return ImageColor.getrgb(hex_colour)


def arc_canvas(grid: np.ndarray, offset=(0, 0)) -> np.ndarray:
    """Encode an ARC grid as the reference does: colour + 2, EOS below and right, PAD elsewhere."""
    canvas = np.zeros((30, 30), np.int32)
    r, c = offset
    h, w = grid.shape
    canvas[r:r + h, c:c + w] = grid + 2
    if r + h < 30:
        canvas[r + h, c:c + w] = 1
    if c + w < 30:
        canvas[r:r + h, c + w] = 1
    return canvas.ravel()


# ----------------------------------------------------------------------------- ARC

def test_arc_cells_have_palette_colours_and_true_size():
    grid = np.arange(12).reshape(3, 4) % 10
    cell = 10
    img = render("arc", arc_canvas(grid), meta={}, cell=cell)
    assert img.size == (4 * cell + 1, 3 * cell + 1)  # cropped at EOS, not the 30x30 canvas
    for i in range(3):
        for j in range(4):
            centre = (j * cell + cell // 2, i * cell + cell // 2)
            assert img.getpixel(centre) == rgb(ARC_PALETTE[grid[i, j]]), (i, j)


def test_arc_crop_matches_reference_test_outputs(reference_dir):
    ds = reference_dir / "datasets" / "arc-tiny-aug-2"
    labels = np.load(ds / "test" / "all__labels.npy")
    task = json.loads((ds / "test_puzzles.json").read_text())["25ff71a9"]
    # rows 0 and 1 are the untransformed task's two test outputs
    for row, pair in zip(range(2), task["test"]):
        np.testing.assert_array_equal(crop_arc(labels[row]), np.array(pair["output"]))


def test_arc_translated_grid_is_found_and_wrong_cell_outlined():
    grid = np.array([[1, 2], [3, 4]])
    tokens = arc_canvas(grid, offset=(5, 7))
    assert arc_origin(tokens) == (5, 7)
    np.testing.assert_array_equal(crop_arc(tokens, arc_origin(tokens)), grid)
    pred = arc_canvas(np.array([[1, 2], [3, 9]]))
    target = arc_canvas(grid)
    cell = 20
    img = render("arc", pred, meta={}, target=target, cell=cell)
    wrong_edge = img.getpixel((cell + 1, cell + 1))          # corner of the wrong cell (1, 1)
    right_edge = img.getpixel((1, 1))                         # corner of the right cell (0, 0)
    assert wrong_edge == rgb("#E00000") and right_edge == rgb(ARC_PALETTE[1])
    assert img.getpixel((cell + cell // 2, cell + cell // 2)) == rgb(ARC_PALETTE[9])


# ----------------------------------------------------------------------------- Sudoku

def sudoku_fixture(reference_dir):
    d = reference_dir / "datasets" / "sudoku-tiny-aug-2" / "test"
    return np.load(d / "all__inputs.npy")[0], np.load(d / "all__labels.npy")[0]


def test_sudoku_wrong_cell_marked_right_cell_not(reference_dir):
    inp, label = sudoku_fixture(reference_dir)
    blanks = np.nonzero(inp == 1)[0]
    bad, good = blanks[0], blanks[1]
    pred = label.copy()
    pred[bad] = 2 + (label[bad] - 1) % 9   # another digit
    cell, pad = 30, 2
    img = render("sudoku", pred, meta={"box": [3, 3]}, target=label, given=inp, cell=cell)

    def background(index):  # a pixel inside the cell, away from the digit and the lines
        i, j = divmod(int(index), 9)
        return img.getpixel((pad + j * cell + 4, pad + i * cell + 4))
    assert background(bad) == rgb(WRONG)
    assert background(good) == (255, 255, 255)


def inks(img: Image.Image, index: int, cell: int, n: int, pad: int = 2) -> set:
    i, j = divmod(index, n)
    crop = img.crop((pad + j * cell + 3, pad + i * cell + 3, pad + (j + 1) * cell - 2, pad + (i + 1) * cell - 2))
    return {tuple(p) for p in np.array(crop).reshape(-1, 3)}


def test_sudoku_givens_black_filled_blue(reference_dir):
    inp, label = sudoku_fixture(reference_dir)
    img = render("sudoku", label, meta={"box": [3, 3]}, given=inp, cell=30)
    given, filled = int(np.nonzero(inp > 1)[0][0]), int(np.nonzero(inp == 1)[0][0])
    assert rgb(GIVEN_INK) in inks(img, given, 30, 9) and rgb(FILLED_INK) not in inks(img, given, 30, 9)
    assert rgb(FILLED_INK) in inks(img, filled, 30, 9) and rgb(GIVEN_INK) not in inks(img, filled, 30, 9)


@pytest.mark.parametrize("box", [(2, 3), (3, 2), (2, 2)])
def test_sudoku_thick_lines_follow_box_shape(box):
    r, c = box
    n, cell, pad = r * c, 20, 2
    img = render("sudoku", np.ones(n * n, np.int32), meta={"box": list(box)}, cell=cell)
    x_mid, y_mid = pad + cell // 2, pad + cell // 2

    def dark_run(coords):
        return sum(1 for p in coords if img.getpixel(p)[0] < 100)
    for k in range(1, n):
        pos = pad + k * cell
        horizontal = dark_run([(x_mid, y) for y in range(pos - 3, pos + 4)])
        vertical = dark_run([(x, y_mid) for x in range(pos - 3, pos + 4)])
        assert horizontal == (3 if k % r == 0 else 1), ("row line", k)
        assert vertical == (3 if k % c == 0 else 1), ("column line", k)


def test_sudoku_wrong_token_count_is_a_puzzle_error():
    with pytest.raises(PuzzleError, match="expected 81 tokens"):
        render("sudoku", np.ones(80, np.int32), meta={"box": [3, 3]})


# ----------------------------------------------------------------------------- maze

def maze_fixture(n=8):
    maze = np.full((n, n), 2)
    maze[0, :] = maze[-1, :] = maze[:, 0] = maze[:, -1] = 1
    maze[3, 1:6] = 1
    maze[1, 1], maze[6, 6] = 3, 4
    label = maze.copy()
    label[1, 2:7] = 5
    label[2:6, 6] = 5
    return maze.ravel(), label.ravel()


def test_maze_path_pixels_lie_on_open_cells():
    maze, label = maze_fixture()
    cell = 10
    img = np.array(render("maze", label, meta={"size": 8}, cell=cell))
    ys, xs = np.nonzero(np.all(img == rgb(MAZE_PATH), axis=-1))
    assert len(ys) > 0
    cells = {(y // cell, x // cell) for y, x in zip(ys, xs)}
    grid = maze.reshape(8, 8)
    assert all(grid[i, j] == 2 for i, j in cells)
    assert cells == {tuple(ix) for ix in np.argwhere(label.reshape(8, 8) == 5)}


def test_maze_prediction_colours_right_wrong_and_missed():
    maze, label = maze_fixture()
    pred = maze.copy().reshape(8, 8)
    pred[1, 2:6] = 5          # right, but stops early
    pred[2, 5] = 5            # wrong detour
    cell = 10
    img = render("maze", pred.ravel(), meta={"size": 8}, target=label, given=maze, cell=cell)

    def at(i, j, dx=cell // 2, dy=cell // 2):
        return img.getpixel((j * cell + dx, i * cell + dy))
    assert at(1, 2) == rgb(PATH_RIGHT)
    assert at(2, 5) == rgb(PATH_WRONG)
    assert at(3, 6, dx=0, dy=0) == rgb(PATH_MISSED)      # missed path cell: outlined
    assert at(3, 6) == (255, 255, 255)                    # ... with an open centre


# ----------------------------------------------------------------------------- misc

def test_grid_spec_infers_family_of_reference_datasets(reference_dir):
    ds = reference_dir / "datasets"
    arc = json.loads((ds / "arc-tiny-aug-2" / "train" / "dataset.json").read_text())
    sud = json.loads((ds / "sudoku-tiny-aug-2" / "train" / "dataset.json").read_text())
    assert grid_spec(arc) == {"family": "arc", "canvas": 30}  # inferred from seq_len 900
    assert grid_spec(sud) == {"family": "sudoku", "box": [3, 3], "size": 9}
    assert grid_spec({"family": "maze", "size": 30}) == {"family": "maze", "size": 30}
    with pytest.raises(PuzzleError, match="unknown puzzle family"):
        render("chess", np.ones(64), meta={})


def test_save_png_is_atomic_and_round_trips(tmp_path):
    img = render("arc", arc_canvas(np.eye(3, dtype=int)), meta={})
    path = save_png(img, tmp_path / "a.png")
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]
    assert np.array_equal(np.array(Image.open(path).convert("RGB")), np.array(img))


def test_sheet_and_strip_mark_verdict_and_halting_step(reference_dir):
    inp, label = sudoku_fixture(reference_dir)
    spec = {"family": "sudoku", "box": [3, 3], "size": 9}
    wrong = label.copy()
    wrong[np.nonzero(inp == 1)[0][0]] = 1
    right_sheet, wrong_sheet = prediction_sheet(spec, inp, label, label), prediction_sheet(spec, inp, label, wrong)
    assert right_sheet.getpixel((1, 1)) == rgb("#2ECC40") and wrong_sheet.getpixel((1, 1)) == rgb("#E00000")
    k = 5
    for halt in (1, 3, 5):
        strip = np.array(refinement_strip(spec, inp, label, np.stack([wrong] * (k - 1) + [label]),
                                          np.linspace(0, 1, k), halt))
        cols = np.nonzero(np.all(strip == rgb(HALT_FRAME), axis=-1).any(axis=0))[0]
        tile_w = (strip.shape[1] + 6) // k            # k equal tiles with 6 px gaps
        assert set(cols // tile_w) == {halt - 1}, halt
