"""Evaluation of CoARS models (coars_verl/eval/README.md, "What is measured"): the tool, the metrics, the baselines.

* ``python -m coars_verl.eval``: dialogue Hit@1, ValidRatio, mean turns, Hit@1 at turn 1, and
  user-simulation precision / recall / F1 (micro and per-user macro) of a model folder or verl
  checkpoint, with greedy decoding on vLLM (GPU) or transformers (CPU); batched, resumable,
  results as JSON plus markdown (:mod:`coars_verl.eval.cli`, :mod:`coars_verl.eval.evaluate`);
* ``python -m coars_verl.eval.baselines``: random (exact expectation and a seeded run) and
  popularity on the same samples (:mod:`coars_verl.eval.baselines`);
* ``python -m coars_verl.eval.table results/*.json``: one markdown comparison table;
* :mod:`coars_verl.eval.metrics`: the metric definitions, pure functions.

Importing this package imports neither torch nor verl.
"""
