"""The recipes (Hydra configs) shipped with the package, so that a pip-installed user composes them too.

    python -m verl.trainer.main_ppo --config-path "$(python -m coars_verl.recipes)" --config-name cpu_learning_tiny ...
    python -m verl.trainer.main_ppo --config-path pkg://coars_verl.recipes --config-name coars_movielens ...
    # verl's own config on CPU, with one of our bases:
    python -m verl.trainer.main_ppo 'hydra.searchpath=[pkg://coars_verl.recipes]' +base=cpu ...
"""

from pathlib import Path

RECIPES_DIR = Path(__file__).resolve().parent
