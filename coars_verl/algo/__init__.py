"""CoARS advantage math (pure torch, no verl): per-role GRPO and self-distilled token credit.

Modules: ``advantage`` (per-role GRPO, the self-distillation combinations, what the teacher can
change), ``role_batch`` (the trainer's per-sample steps), ``role_metrics``. Their settings:
:class:`coars_verl.distill.config.SelfDistillConfig`.
"""
