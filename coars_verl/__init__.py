"""CoARS for verl: co-evolving recommender and user agents trained with self-distilled RL.

Importing this package is cheap (no verl, no torch). verl components are registered by
``coars_verl.plugin``, which verl imports through the ``verl.plugins`` entry point.
"""

__version__ = "0.1.0"
