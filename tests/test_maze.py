"""Maze generation, shortest paths, path checking, augmentation and the CSV reader.
Run: python -m pytest -q tests/test_maze.py"""
from __future__ import annotations

import numpy as np
import pytest

from puzzles import maze
from puzzles.errors import PuzzleError


@pytest.fixture(scope="module")
def mazes() -> tuple[np.ndarray, np.ndarray]:
    return maze.generate(12, size=30, seed=3)


def grid(rows: list[str]) -> np.ndarray:
    return maze.encode("".join(rows))


def test_generated_mazes_have_a_checked_shortest_path(mazes):
    inputs, labels = mazes
    assert inputs.shape == labels.shape == (12, 30, 30) and inputs.dtype == labels.dtype == np.uint8
    assert len({x.tobytes() for x in inputs}) == 12
    for x, y in zip(inputs, labels):
        assert set(np.unique(x)) <= {maze.WALL, maze.OPEN, maze.START, maze.GOAL}
        assert (x == maze.START).sum() == 1 and (x == maze.GOAL).sum() == 1
        length = maze.shortest_path_length(x)
        assert length is not None and (y == maze.PATH).sum() == length - 1
        assert np.array_equal(y, maze.solve(x))
        assert maze.check_path(x, y)
    walls = (inputs == maze.WALL).mean()
    assert 0.2 < walls < 0.7  # a maze, not an empty room or a solid block


def test_generate_is_deterministic_and_seeded():
    a = maze.generate(3, size=15, seed=1)
    b = maze.generate(3, size=15, seed=1)
    c = maze.generate(3, size=15, seed=2)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_min_path_filter():
    inputs, labels = maze.generate(8, size=30, min_path=110, seed=0)
    for x, y in zip(inputs, labels):
        assert maze.shortest_path_length(x) > 110
        assert maze.check_path(x, y)
    with pytest.raises(ValueError, match="gave up"):
        maze.generate(1, size=6, min_path=100, max_attempts=5)


def test_mazes_have_loops():
    # knocked-out walls make several routes: more open-cell adjacencies than a tree would have
    x, _ = maze.generate(1, size=30, seed=4)
    walk = x[0] != maze.WALL
    edges = (walk[1:] & walk[:-1]).sum() + (walk[:, 1:] & walk[:, :-1]).sum()
    assert edges > walk.sum() - 1


def test_check_path_rejects_corruptions():
    x = grid(["S  ",
              "   ",
              "G  "])
    assert maze.shortest_path_length(x) == 2
    good = grid(["S  ", "o  ", "G  "])
    detour = grid(["So ", " o ", "Go "])  # a connected simple path, but 4 steps instead of 2
    branch = grid(["S  ", "oo ", "G  "])  # right cells plus one extra `o`
    assert maze.check_path(x, good)
    assert not maze.check_path(x, detour)
    assert not maze.check_path(x, branch)
    assert not maze.check_path(x, grid(["S  ", "   ", "G  "]))  # no path at all


def test_check_path_rejects_walls_and_breaks(mazes):
    inputs, labels = mazes
    x, y = inputs[0], labels[0]
    broken = y.copy()
    broken[tuple(np.argwhere(y == maze.PATH)[len(np.argwhere(y == maze.PATH)) // 2])] = maze.OPEN
    assert not maze.check_path(x, broken)
    through_wall = grid(["S#G",
                         "   ",
                         "###"])
    assert maze.shortest_path_length(through_wall) == 4
    assert not maze.check_path(through_wall, grid(["SoG", "   ", "###"]))
    assert maze.check_path(through_wall, grid(["S#G", "ooo", "###"]))
    moved = y.copy()
    moved[x == maze.START] = maze.OPEN  # labels may not move S
    assert not maze.check_path(x, moved)


def test_unreachable_goal():
    x = grid(["S#", "#G"])
    assert maze.shortest_path_length(x) is None
    assert not maze.check_path(x, x)
    with pytest.raises(ValueError, match="no path"):
        maze.solve(x)


def test_augmented_paths_stay_shortest(mazes):
    inputs, labels = mazes
    for t in range(8):
        ax, ay = maze.augment(inputs[:4], t), maze.augment(labels[:4], t)
        assert np.array_equal(maze.invert_augmentation(ax, t), inputs[:4])
        assert np.array_equal(maze.invert_augmentation(ay, t), labels[:4])
        for x, y, ox in zip(ax, ay, inputs):
            assert maze.check_path(x, y)
            assert maze.shortest_path_length(x) == maze.shortest_path_length(ox)


def test_encode_decode_round_trip(mazes):
    inputs, labels = mazes
    text = maze.decode(labels[0])
    assert len(text) == 900 and set(text) <= set(maze.CHARS)
    assert np.array_equal(maze.encode(text), labels[0])
    with pytest.raises(ValueError, match="invalid maze character"):
        maze.encode("S#xG")


def test_read_csv_and_bad_rows(mazes, tmp_path):
    inputs, labels = mazes
    lines = ["source,question,answer,rating"]
    lines += [f"gen,{maze.decode(x)},{maze.decode(y)},{maze.shortest_path_length(x)}" for x, y in zip(inputs, labels)]
    path = tmp_path / "maze.csv"
    path.write_text("\n".join(lines) + "\n")
    x, y = maze.read_csv(path)
    assert np.array_equal(x, inputs) and np.array_equal(y, labels)

    for bad_row, message in [(lines[2].replace("#", "x", 1), "invalid maze character"),
                             (f"gen,{'#' * 899},{'#' * 900},1", "square number"),
                             (f"gen,{'#' * 16},{'#' * 16},1", "4x4 maze in a file of 30x30")]:
        bad = tmp_path / "bad.csv"
        bad.write_text("\n".join(lines[:2] + [bad_row]) + "\n")
        with pytest.raises(PuzzleError, match=message) as err:
            maze.read_csv(bad)
        assert f"{bad}:3" in str(err.value)
    with pytest.raises(PuzzleError, match="header"):
        bad.write_text("a,b\n")
        maze.read_csv(bad)
