"""Train on arc: `python -m train.arc --model hrm|trm|trm-mlp|transformer [--preset quick|paper] [key=value ...]`.

Builds the dataset first when it is missing. See train/cli.py and `--help`.
"""
from .cli import entry

if __name__ == "__main__":
    entry("arc")
