"""The CPU path: a verl platform without an accelerator and a transformers rollout backend.

Nothing here changes verl's behaviour unless the CPU platform is selected explicitly with
``VERL_PLATFORM=cpu`` (verl's own override variable); auto-detection never picks it.
"""
