"""Where the teacher's privileged context goes: the student's prompt messages plus context h.

The teacher scores exactly the student's response tokens after a prompt that differs from the
student's only by ``h`` (docs/method.md, "Self-distilled credit assignment"). Both prompts are rendered from chat messages by the
same function, so with an empty context the two token sequences are identical.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

CONTEXT_POSITIONS = ("system", "user")
Messages = Sequence[Mapping[str, str]]


def with_teacher_context(messages: Messages, context: str, position: str = "system") -> list[dict[str, str]]:
    """A copy of ``messages`` carrying ``context``.

    ``position="system"`` appends it to the system message (or adds one in front when there is
    none); ``"user"`` puts it before the first user message's text. An empty context changes nothing.
    """
    if position not in CONTEXT_POSITIONS:
        raise ValueError(f"teacher context position {position!r}: expected one of {CONTEXT_POSITIONS}")
    out = [dict(m) for m in messages]
    if not context:
        return out
    target_role = "system" if position == "system" else "user"
    for message in out:
        if message.get("role") == target_role:
            if position == "system":
                message["content"] = f"{message['content']}\n\n{context}"
            else:
                message["content"] = f"{context}\n\n{message['content']}"
            return out
    if position == "system":
        return [{"role": "system", "content": context}, *out]
    raise ValueError("teacher context position 'user': the prompt has no user message")


def teacher_prompt_ids(
    render: Callable[[list[dict[str, str]]], list[int]],
    messages: Messages,
    context: str,
    position: str = "system",
) -> list[int]:
    """Token ids of the teacher's prompt; ``render`` turns chat messages into the generation prompt."""
    return list(render(with_teacher_context(messages, context, position)))
