"""Registers the CPU platform and the ``hf`` rollout backend in verl's registries."""

from __future__ import annotations

from coars_verl.constants import ROLLOUT_BACKEND_NAME

HF_ADAPTER_PATH = "coars_verl.cpu.hf_rollout.HFServerAdapter"


def _load_hf_replica():
    from coars_verl.cpu.hf_rollout import HFReplica

    return HFReplica


def register_cpu_components() -> None:
    from verl.workers.rollout import base as rollout_base
    from verl.workers.rollout.replica import RolloutReplicaRegistry

    import coars_verl.cpu.platform  # noqa: F401  (registers platform "cpu" at import)
    from coars_verl.cpu.activate import apply_cpu_runtime_settings
    from coars_verl.cpu.platform import cpu_platform_requested

    RolloutReplicaRegistry.register(ROLLOUT_BACKEND_NAME, _load_hf_replica)
    rollout_base._ROLLOUT_REGISTRY[(ROLLOUT_BACKEND_NAME, "async")] = HF_ADAPTER_PATH
    if cpu_platform_requested():
        apply_cpu_runtime_settings()
