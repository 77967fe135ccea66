"""Names shared by data preparation, the agent loop, the reward manager and the evaluation.

Kept free of heavy imports so that data_prep can use them without importing verl or torch.
"""

AGENT_LOOP_NAME = "coars_dialogue"
"""Registered name of the CoARS agent loop; data_prep writes it into the ``agent_name`` column."""

REWARD_MANAGER_NAME = "coars_interaction"
ADV_ESTIMATOR_NAME = "coars_grpo"
TRAINER_MODE_NAME = "coars_sync"
ROLLOUT_BACKEND_NAME = "hf"
PLATFORM_NAME = "cpu"

ROLE_USER = "user"
ROLE_RECOMMENDER = "recommender"
ROLES = (ROLE_USER, ROLE_RECOMMENDER)
"""Output order of one dialogue: the user agent first, the recommender last (verl reads the final output)."""
ROLE_SINGLE = "single"
"""The one role of a single-turn verl task's samples (``coars_sync`` with verl's own agent loops)."""


def check_role(role: str) -> None:
    """ValueError unless ``role`` is one of the dialogue's :data:`ROLES`."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {ROLES}")

DATA_SOURCE_PREFIX = "coars/"
ABILITY = "recommendation"

# Keys of the ``extra_info`` column written by data_prep and read by the dialogue.
EI_USER_ID = "user_id"
EI_HISTORY_TITLES = "history_titles"
EI_HISTORY_ITEM_IDS = "history_item_ids"
EI_CANDIDATE_TITLES = "candidate_titles"
EI_CANDIDATE_ITEM_IDS = "candidate_item_ids"
EI_TARGET_TITLE = "target_title"
EI_TARGET_ITEM_ID = "target_item_id"
EI_SPLIT = "split"
EI_INDEX = "index"

# keys of an agent-loop output's extra_fields (written by the agent loop, read by the reward
# manager and the trainer mode)
EXTRA_ROLE = "coars_role"
EXTRA_SUMMARY = "coars_dialogue"
EXTRA_ACTED = "coars_acted"
EXTRA_CORE_SECONDS = "coars_dialogue_s"
"""Seconds this dialogue spent in the pure dialogue core (prompts, parsing, state, summary)."""
EXTRA_PROMPT_MESSAGES = "coars_prompt_messages"
"""The chat messages of the role's prompt (its system prompt and task), for the teacher pass."""

# keys of the reward manager's ``reward_extra_info`` holding each role's reward (written by
# rewards/interaction.py; the trainer mode trains each sample on its own role's)
REC_REWARD_KEY = "rec/reward"
USER_REWARD_KEY = "user/reward"
