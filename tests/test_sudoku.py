"""Sudoku solver, generator, augmentation, readers and solve CLI. Run: python -m pytest -q tests/test_sudoku.py"""
from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from puzzles import sudoku
from puzzles.build_options import BUNDLED, MAGICTOUR
from puzzles.errors import PuzzleError

ROOT = Path(__file__).resolve().parents[1]
BOXES = [(2, 2), (2, 3), (3, 2), (3, 3), (4, 4)]


def pattern_grid(box: tuple[int, int]) -> np.ndarray:
    """A valid full grid built by a formula (independent of the solver)."""
    r, c = box
    n = r * c
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    return ((c * (i % r) + i // r + j) % n + 1).astype(np.uint8)


def random_full_grid(box: tuple[int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return sudoku.augment(pattern_grid(box), sudoku.random_augmentation(rng, box))


def all_4x4_grids() -> list[np.ndarray]:
    """Every valid 4x4 grid by brute force (there are 288)."""
    rows = np.array(list(itertools.permutations(range(1, 5))))  # (24, 4)
    idx = np.stack(np.meshgrid(*[np.arange(24)] * 4, indexing="ij"), -1).reshape(-1, 4)
    g = rows[idx]  # every grid with valid rows, (24**4, 4, 4)
    boxes = g.reshape(-1, 2, 2, 2, 2).swapaxes(2, 3).reshape(-1, 4, 4)
    ok = np.all(np.sort(g, axis=1) == np.arange(1, 5)[:, None], axis=(1, 2))
    ok &= np.all(np.sort(boxes, axis=2) == np.arange(1, 5), axis=(1, 2))
    return list(g[ok])


@pytest.mark.parametrize("box", BOXES)
def test_pattern_grid_is_valid_and_check_rejects_breaks(box):
    g = pattern_grid(box)
    assert sudoku.check(g, box)
    swapped = g.copy()
    swapped[0, [0, 1]] = swapped[0, [1, 0]]  # breaks two columns
    assert not sudoku.check(swapped, box)
    blank = g.copy()
    blank[1, 1] = 0
    assert not sudoku.check(blank, box)
    puzzle = np.zeros_like(g)
    puzzle[0, 0] = g[0, 0] % (box[0] * box[1]) + 1  # a clue the board disagrees with
    assert not sudoku.check(g, box, puzzle)
    puzzle[0, 0] = g[0, 0]
    assert sudoku.check(g, box, puzzle)


@pytest.mark.parametrize("box", BOXES)
def test_solver_fills_clues_consistently(box):
    n = box[0] * box[1]
    rng = np.random.default_rng(1)
    full = random_full_grid(box, seed=2)
    puzzle = np.where(rng.random((n, n)) < 0.45, full, 0).astype(np.uint8)
    solved = sudoku.solve(puzzle, box)
    assert solved is not None and solved.shape == (n, n)
    assert sudoku.check(solved, box, puzzle)


def test_count_solutions_matches_brute_force_on_4x4():
    grids = all_4x4_grids()
    assert len(grids) == 288
    stack = np.stack(grids)
    rng = np.random.default_rng(0)
    for _ in range(60):
        full = grids[rng.integers(len(grids))]
        puzzle = np.where(rng.random((4, 4)) < rng.uniform(0.1, 0.6), full, 0)
        if rng.random() < 0.3:  # sometimes an extra clue that may make it unsolvable
            puzzle[rng.integers(4), rng.integers(4)] = rng.integers(1, 5)
        truth = int(np.all((puzzle == 0) | (stack == puzzle), axis=(1, 2)).sum())
        assert sudoku.count_solutions(puzzle, (2, 2), limit=1000) == truth
        assert sudoku.count_solutions(puzzle, (2, 2)) == min(truth, 2)
        assert (sudoku.solve(puzzle, (2, 2)) is None) == (truth == 0)


def test_count_solutions_zero_one_two_on_9x9():
    puzzles, solutions = sudoku.generate(3, (3, 3), seed=5)
    p, s = puzzles[0], solutions[0]
    assert sudoku.count_solutions(p) == 1
    # generated puzzles are minimal: removing any clue gives several solutions
    i, j = np.argwhere(p)[0]
    q = p.copy()
    q[i, j] = 0
    assert sudoku.count_solutions(q) == 2
    assert sudoku.count_solutions(np.zeros((9, 9), int), limit=7) == 7
    # a wrong digit in a blank that clashes with no clue: no solution (the unique one differs there)
    for i, j in np.argwhere(p == 0):
        row, col = p[i], p[:, j]
        box = p[i // 3 * 3:i // 3 * 3 + 3, j // 3 * 3:j // 3 * 3 + 3]
        free = [d for d in range(1, 10) if d != s[i, j] and d not in row and d not in col and d not in box]
        if free:
            q = p.copy()
            q[i, j] = free[0]
            assert sudoku.count_solutions(q) == 0 and sudoku.solve(q) is None
            break
    else:
        pytest.fail("no blank cell with a non-clashing wrong digit")
    clash = p.copy()
    clash[0, :2] = [1, 1]
    assert sudoku.count_solutions(clash) == 0


def test_rate_counts_guesses():
    full = random_full_grid((3, 3), seed=3)
    easy = full.copy()
    easy[0, 0] = 0
    assert sudoku.rate(easy) == 0
    puzzles, _ = sudoku.generate(5, (3, 3), min_rating=3, seed=1)
    assert all(sudoku.rate(p) >= 3 for p in puzzles)
    assert sudoku.rate(puzzles[0]) == sudoku.rate(puzzles[0].copy())  # deterministic


@pytest.mark.parametrize("box,count,clues", [((2, 2), 20, None), ((2, 3), 40, (10, 14)), ((3, 3), 6, (24, 30))])
def test_generate_unique_in_clue_range_distinct_deterministic(box, count, clues):
    n = box[0] * box[1]
    puzzles, solutions = sudoku.generate(count, box, clues=clues, seed=7)
    assert puzzles.dtype == np.uint8 and solutions.dtype == np.uint8
    assert puzzles.shape == solutions.shape == (count, n, n)
    assert len({p.tobytes() for p in puzzles}) == count
    for p, s in zip(puzzles, solutions):
        assert sudoku.check(s, box, p)
        assert sudoku.count_solutions(p, box) == 1
        if clues is not None:
            assert clues[0] <= np.count_nonzero(p) <= clues[1]
    again, _ = sudoku.generate(count, box, clues=clues, seed=7)
    other, _ = sudoku.generate(count, box, clues=clues, seed=8)
    assert np.array_equal(puzzles, again) and not np.array_equal(puzzles, other)


def test_generate_gives_up_on_impossible_constraints():
    with pytest.raises(ValueError, match="fewer than 4 clues"):  # refused at once, not after every try
        sudoku.generate(2, (2, 2), clues=(0, 2), max_attempts=20)
    with pytest.raises(ValueError, match="gave up"):
        sudoku.generate(2, (2, 2), min_rating=1000, max_attempts=20)  # no 4x4 needs 1000 branch points


@pytest.mark.parametrize("box", BOXES)
def test_augmentation_round_trips_and_preserves_validity(box):
    rng = np.random.default_rng(11)
    n = box[0] * box[1]
    full = random_full_grid(box, seed=4)
    puzzle = np.where(rng.random((n, n)) < 0.5, full, 0).astype(np.uint8)
    batch = np.stack([puzzle, full])
    transposed = 0
    for _ in range(12):
        aug = sudoku.random_augmentation(rng, box)
        transposed += aug.transpose
        out = sudoku.augment(batch, aug)
        assert out.shape == batch.shape and out.dtype == batch.dtype
        assert np.array_equal(sudoku.invert_augmentation(out, aug), batch)
        assert sudoku.check(out[1], box, out[0])
        assert np.count_nonzero(out[0]) == np.count_nonzero(puzzle)
        same = sudoku.augmentation_from_array(sudoku.augmentation_to_array(aug), box)
        assert np.array_equal(sudoku.augment(batch, same), out) and same.transpose == aug.transpose
    if box[0] != box[1]:
        assert transposed == 0
    else:
        assert 0 < transposed < 12


def test_augmented_generated_puzzle_keeps_unique_solution():
    rng = np.random.default_rng(3)
    for box in [(2, 3), (3, 3)]:
        puzzles, solutions = sudoku.generate(3, box, seed=2)
        for p, s in zip(puzzles, solutions):
            aug = sudoku.random_augmentation(rng, box)
            ap, asol = sudoku.augment(p, aug), sudoku.augment(s, aug)
            assert sudoku.count_solutions(ap, box) == 1
            assert np.array_equal(sudoku.solve(ap, box), asol)


def test_augmentation_array_rejects_bad_input():
    with pytest.raises(ValueError):
        sudoku.augmentation_from_array(np.zeros(5), (3, 3))
    arr = sudoku.augmentation_to_array(sudoku.random_augmentation(np.random.default_rng(0), (3, 3)))
    arr[1] = arr[2]  # digit map no longer a permutation
    with pytest.raises(ValueError, match="digit_map"):
        sudoku.augmentation_from_array(arr, (3, 3))


def test_encode_decode():
    g = random_full_grid((2, 3), seed=0)
    g[0, 0] = 0
    tokens = sudoku.encode(np.stack([g, g]))
    assert tokens.shape == (2, 36) and tokens.dtype == np.uint8
    assert tokens[0, 0] == 1 and tokens[0, 1] == g[0, 1] + 1 and tokens.max() <= 7
    assert np.array_equal(sudoku.decode(tokens, 6)[1], g)
    with pytest.raises(ValueError):
        sudoku.decode(np.zeros(36, np.uint8), 6)  # PAD is not a sudoku token


def test_read_text_comments_blanks_trailing_text(tmp_path):
    a, b = random_full_grid((3, 3), 0), random_full_grid((3, 3), 1)
    a[0, :3] = 0
    text_a = sudoku.to_text(a)
    text_b = "".join(str(v) for v in b.ravel())
    path = tmp_path / "p.txt"
    path.write_text(f"# a comment\n\n{text_a} // from somewhere\n  {text_b.replace('5', '0')}\t3.2\n")
    items = sudoku.read_text(path)
    assert [line for line, _ in items] == [3, 4]
    assert np.array_equal(items[0][1], a)
    assert np.array_equal(items[1][1], np.where(b == 5, 0, b))


def test_read_text_16x16_letters(tmp_path):
    g = random_full_grid((4, 4), 0)
    path = tmp_path / "p16.txt"
    path.write_text(sudoku.to_text(g).lower() + "\n")
    assert np.array_equal(sudoku.read_text(path, (4, 4))[0][1], g)


@pytest.mark.parametrize("line,message", [("1" * 80, "expected 81 cells"), ("1" * 82, "expected 81 cells"),
                                          ("x" + "1" * 80, "invalid character 'x'")])
def test_read_text_bad_lines(tmp_path, line, message):
    path = tmp_path / "bad.txt"
    path.write_text("# header\n" + "." * 81 + "\n" + line + "\n")
    with pytest.raises(PuzzleError, match=message) as err:
        sudoku.read_text(path)
    assert f"{path}:3" in str(err.value)


def test_read_csv_fixture_and_bad_row(reference_dir, tmp_path):
    q, a, ratings = sudoku.read_csv(reference_dir / "datasets" / "inputs" / "sudoku" / "test.csv")
    assert q.shape == a.shape == (5, 9, 9) and ratings.shape == (5,)
    for question, answer in zip(q, a):
        assert sudoku.check(answer, (3, 3), question)
    bad = tmp_path / "bad.csv"
    rows = (reference_dir / "datasets" / "inputs" / "sudoku" / "test.csv").read_text().splitlines()
    bad.write_text("\n".join(rows[:3] + [rows[3].replace(".", "?", 1)]) + "\n")
    with pytest.raises(PuzzleError, match="invalid character") as err:
        sudoku.read_csv(bad)
    assert f"{bad}:4" in str(err.value)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "puzzles.sudoku", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def test_cli_solves_and_reports(tmp_path):
    puzzles, solutions = sudoku.generate(2, (2, 3), seed=3)
    unsolvable = np.zeros((6, 6), np.uint8)
    unsolvable[0, :2] = [1, 1]
    path = tmp_path / "six.txt"
    path.write_text("\n".join([sudoku.to_text(puzzles[0]), sudoku.to_text(unsolvable), "." * 36,
                               sudoku.to_text(puzzles[1])]) + "\n")
    proc = run_cli("solve", str(path), "--box", "2x3")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines == ["".join(map(str, solutions[0].ravel())), "unsolvable", "multiple",
                     "".join(map(str, solutions[1].ravel()))]
    assert proc.stderr.startswith("4 puzzles, ") and "puzzles/s" in proc.stderr


def test_cli_bad_input_is_one_error_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("." * 81 + "\n" + "." * 70 + "\n")
    proc = run_cli("solve", str(path))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(f"error: {path}:2:")
    assert "Traceback" not in proc.stderr
    missing = run_cli("solve", str(tmp_path / "nope.txt"))
    assert missing.returncode == 2 and missing.stderr.startswith("error: cannot read")


def _solve_file(path: Path) -> int:
    items = sudoku.read_text(path)
    assert items
    for line, grid in items:
        solution = sudoku.solve(grid)
        assert solution is not None and sudoku.check(solution, (3, 3), grid), f"{path.name}:{line}"
        assert sudoku.count_solutions(grid) == 1, f"{path.name}:{line}"
    return len(items)


def test_acceptance_top95():
    assert _solve_file(BUNDLED / "sudoku" / "top95.txt") == 95


@pytest.mark.slow
def test_acceptance_magictour_top1465():
    assert _solve_file(MAGICTOUR) == 1465
