"""Train on maze: `python -m train.maze --model hrm|trm|trm-mlp|transformer [--preset quick|paper] [key=value ...]`.

Builds the dataset first when it is missing. See train/cli.py and `--help`.
"""
from .cli import entry

if __name__ == "__main__":
    entry("maze")
