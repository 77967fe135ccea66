"""Advantages for CoARS: per-role GRPO and self-distilled token-level credit (docs/method.md: "How one training step works", step 3, and "Self-distilled credit assignment").

Pure torch: no verl import, no hidden state. All functions are plain math on tensors; the trainer
glue (fetching teacher log-probs, roles, steps) lives elsewhere.

Shapes: ``B`` = samples (one per dialogue and role), ``R`` = response length (padded).

Flow per batch::

    adv, _ = role_group_outcome_advantage(scores, response_mask, list(zip(uids, roles)))
    delta  = token_delta(teacher_log_probs, student_log_probs, response_mask, has_context)
    adv_t = apply_self_distill(cfg, adv, delta, response_mask, step)
    clip_hit = clip_hit_mask(cfg, adv_t, delta, response_mask)      # for the metrics only
"""

from __future__ import annotations

from typing import Hashable, Sequence

import torch

from coars_verl.distill.config import MODE_ADDITIVE, MODE_OFF, MODE_RLSD, MODES, SelfDistillConfig


# ------------------------------------------------------------------------- outcome advantage
def role_group_outcome_advantage(
    scores: torch.Tensor,
    response_mask: torch.Tensor,
    group_ids: Sequence[Hashable],
    norm_by_std: bool = True,
    epsilon: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GRPO outcome advantage over arbitrary groups, e.g. ``(prompt uid, role)`` (docs/method.md, step 3).

    For sample i in group g: ``A_i = (s_i - mean_g) / (std_g + epsilon)`` (``std`` unbiased, as
    ``torch.std``), or ``s_i - mean_g`` when ``norm_by_std`` is False (Dr.GRPO). Bit-for-bit the
    same arithmetic as verl's ``compute_grpo_outcome_advantage`` with ``index`` = the group ids,
    including verl's rule for a group of ONE sample: mean 0 and std 1, i.e. ``A = s / (1 + eps)``
    (not 0).

    Args:
        scores: ``(B,)`` float, one scalar reward per sample (int/bool are cast to float32).
        response_mask: ``(B, R)`` 0/1 (float, int or bool), 1 on trainable response tokens.
        group_ids: length ``B``; samples with equal (hashable) ids form one group.
        norm_by_std: divide by the group std.
        epsilon: added to the std.

    Returns:
        ``(advantages, returns)``: two equal ``(B, R)`` tensors (separate storage), the scalar
        advantage broadcast over the response and multiplied by ``response_mask``. No gradient.
    """
    if scores.dim() != 1:
        raise ValueError(f"scores must be 1-D (B,), got shape {tuple(scores.shape)}")
    bsz = scores.shape[0]
    if response_mask.dim() != 2 or response_mask.shape[0] != bsz:
        raise ValueError(f"response_mask must be (B={bsz}, R), got shape {tuple(response_mask.shape)}")
    if len(group_ids) != bsz:
        raise ValueError(f"group_ids has {len(group_ids)} entries for {bsz} scores")
    with torch.no_grad():
        s = scores.detach().clone()
        if not s.is_floating_point():
            s = s.float()
        members: dict[Hashable, list[int]] = {}
        for i, gid in enumerate(group_ids):
            members.setdefault(gid, []).append(i)
        adv = torch.empty_like(s)
        for idx in members.values():
            if len(idx) == 1:  # verl: a lone sample keeps its score (mean 0, std 1)
                mean, std = torch.tensor(0.0, device=s.device), torch.tensor(1.0, device=s.device)
            else:
                group = s[idx]
                mean, std = torch.mean(group), torch.std(group)
            if norm_by_std:
                adv[idx] = (s[idx] - mean) / (std + epsilon)
            else:
                adv[idx] = s[idx] - mean
        adv = adv.unsqueeze(-1) * response_mask
    return adv, adv.clone()


# ------------------------------------------------------------------- self-distilled credit
def token_delta(
    teacher_log_probs: torch.Tensor,
    student_log_probs: torch.Tensor,
    response_mask: torch.Tensor,
    has_context: torch.Tensor,
) -> torch.Tensor:
    """``delta_t = stopgrad(log p(y_t | s + h, y_<t) - log p(y_t | s, y_<t))`` (docs/method.md, "Self-distilled credit assignment", step 3).

    Args:
        teacher_log_probs: ``(B, R)`` float, log-probs of the sampled tokens under the teacher
            context ``s + h``.
        student_log_probs: ``(B, R)`` float, log-probs of the same tokens under ``s``.
        response_mask: ``(B, R)`` 0/1 (float, int or bool).
        has_context: ``(B,)`` bool, whether the sample had a teacher context h.

    Returns:
        ``(B, R)`` float (promoted dtype of the log-probs), detached; exactly 0 where the mask is 0
        or the sample has no context (whatever the inputs hold there, even inf/nan).
    """
    if teacher_log_probs.shape != student_log_probs.shape or teacher_log_probs.shape != response_mask.shape:
        raise ValueError(
            f"shape mismatch: teacher {tuple(teacher_log_probs.shape)}, student "
            f"{tuple(student_log_probs.shape)}, mask {tuple(response_mask.shape)}"
        )
    if has_context.shape != response_mask.shape[:1]:
        raise ValueError(f"has_context must be (B={response_mask.shape[0]},), got {tuple(has_context.shape)}")
    valid = response_mask.bool() & has_context.bool().unsqueeze(-1)
    diff = teacher_log_probs.detach() - student_log_probs.detach()
    return torch.where(valid, diff, torch.zeros_like(diff))


def _check_same_shape(adv: torch.Tensor, delta: torch.Tensor, response_mask: torch.Tensor) -> None:
    if adv.shape != delta.shape or adv.shape != response_mask.shape or adv.dim() != 2:
        raise ValueError(
            f"adv, delta and response_mask must all be (B, R); got {tuple(adv.shape)}, "
            f"{tuple(delta.shape)}, {tuple(response_mask.shape)}"
        )


def rlsd_weight(adv: torch.Tensor, delta: torch.Tensor, response_mask: torch.Tensor, eps_w: float) -> torch.Tensor:
    """rlsd's per-token weight ``w_t = clip(exp(sign(A) * delta_t), 1 - eps_w, 1 + eps_w)`` (the one
    home of that formula: :func:`combine_rlsd` uses it, the credit dump records it). ``(B, R)`` in and
    out; 1 where the mask is 0 (delta is zeroed there first)."""
    valid = response_mask.bool()
    delta = torch.where(valid, delta.detach(), torch.zeros_like(delta))
    return torch.exp(torch.sign(adv) * delta).clamp(1.0 - eps_w, 1.0 + eps_w)


def additive_term(delta: torch.Tensor, response_mask: torch.Tensor, eta: float, clip_c: float) -> torch.Tensor:
    """The additive mode's per-token term ``eta * clip(delta_t, -c, c)`` (used by
    :func:`combine_additive` and the credit dump). ``(B, R)`` in and out; 0 where the mask is 0."""
    valid = response_mask.bool()
    delta = torch.where(valid, delta.detach(), torch.zeros_like(delta))
    return eta * delta.clamp(-clip_c, clip_c)


def credit_term(mode: str, adv: torch.Tensor, delta: torch.Tensor, response_mask: torch.Tensor, eps_w: float = 0.2,
                eta: float = 0.1, clip_c: float = 1.0) -> torch.Tensor | None:
    """What the teacher contributes per token in ``mode``, for the record: rlsd's weight ``w_t``
    (:func:`rlsd_weight`; ``A_t = A ((1 - lam) + lam w_t)``), additive's term (:func:`additive_term`;
    ``A_t = A + term``), None for ``off``."""
    if mode == MODE_RLSD:
        return rlsd_weight(adv, delta, response_mask, eps_w)
    if mode == MODE_ADDITIVE:
        return additive_term(delta, response_mask, eta, clip_c)
    if mode == MODE_OFF:
        return None
    raise ValueError(f"unknown self-distillation mode {mode!r}; expected one of {MODES}")


def combine_rlsd(
    adv: torch.Tensor,
    delta: torch.Tensor,
    response_mask: torch.Tensor,
    lam: float,
    eps_w: float,
) -> torch.Tensor:
    """RLSD combination: the reward sets the direction, the teacher the per-token magnitude.

    ``w_t = clip(exp(sign(A) * delta_t), 1 - eps_w, 1 + eps_w)`` and
    ``A_t = A * ((1 - lam) + lam * w_t)``, computed as ``A + lam * A * (w_t - 1)`` so that
    ``delta = 0`` (or ``lam = 0``) returns ``A`` exactly. For ``0 <= lam <= 1`` and
    ``0 <= eps_w < 1`` the factor is positive, so ``sign(A_t) == sign(A)``.

    Args:
        adv: ``(B, R)`` float, outcome advantage broadcast over the response (0 where masked).
        delta: ``(B, R)`` float, from :func:`token_delta`.
        response_mask: ``(B, R)`` 0/1.
        lam: mixing weight in ``[0, 1]`` (see :func:`lambda_schedule`).
        eps_w: clip half-width in ``[0, 1)``.

    Returns:
        ``adv_t``: ``(B, R)`` in ``adv.dtype``, 0 where the mask is 0. Which tokens hit the band:
        :func:`clip_hit_mask`.
    """
    _check_same_shape(adv, delta, response_mask)
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    if not 0.0 <= eps_w < 1.0:
        raise ValueError(f"eps_w must be in [0, 1), got {eps_w}")
    valid = response_mask.bool()
    w = rlsd_weight(adv, delta, response_mask, eps_w)
    adv_t = (adv + lam * adv * (w - 1.0)).to(adv.dtype)
    return torch.where(valid, adv_t, torch.zeros_like(adv_t))


def combine_additive(
    adv: torch.Tensor,
    delta: torch.Tensor,
    response_mask: torch.Tensor,
    eta: float,
    clip_c: float,
) -> torch.Tensor:
    """Additive combination: ``A_t = A + eta * clip(delta_t, -c, c)``.

    The sign of ``A_t`` may differ from ``A`` (the teacher can push against the reward).

    Args:
        adv: ``(B, R)`` float, outcome advantage broadcast over the response (0 where masked).
        delta: ``(B, R)`` float, from :func:`token_delta`.
        response_mask: ``(B, R)`` 0/1.
        eta: weight of the teacher term.
        clip_c: clip bound ``c >= 0`` of ``delta``.

    Returns:
        ``adv_t``: ``(B, R)`` in ``adv.dtype``, 0 where the mask is 0. Which tokens hit the clip:
        :func:`clip_hit_mask`.
    """
    _check_same_shape(adv, delta, response_mask)
    if not clip_c >= 0.0:
        raise ValueError(f"clip_c must be >= 0, got {clip_c}")
    valid = response_mask.bool()
    adv_t = (adv + additive_term(delta, response_mask, eta, clip_c)).to(adv.dtype)
    return torch.where(valid, adv_t, torch.zeros_like(adv_t))


def combine(
    mode: str,
    adv: torch.Tensor,
    delta: torch.Tensor,
    response_mask: torch.Tensor,
    lam: float = 0.5,
    eps_w: float = 0.2,
    eta: float = 0.1,
    clip_c: float = 1.0,
) -> torch.Tensor:
    """Dispatch on ``mode``: ``"rlsd"`` (:func:`combine_rlsd`, uses ``lam``, ``eps_w``),
    ``"additive"`` (:func:`combine_additive`, uses ``eta``, ``clip_c``) or ``"off"`` (a copy of
    ``adv``, unchanged: plain per-role GRPO).

    Shapes as in the two combiners: ``(B, R)`` in, ``(B, R)`` in ``adv.dtype`` out.
    """
    if mode == MODE_RLSD:
        return combine_rlsd(adv, delta, response_mask, lam=lam, eps_w=eps_w)
    if mode == MODE_ADDITIVE:
        return combine_additive(adv, delta, response_mask, eta=eta, clip_c=clip_c)
    if mode == MODE_OFF:
        _check_same_shape(adv, delta, response_mask)
        return adv.clone()
    raise ValueError(f"unknown self-distillation mode {mode!r}; expected one of {MODES}")


SKIP_OFF = "mode_off"
SKIP_NO_TEACHER_WEIGHT = "teacher_weight_zero"
SKIP_ZERO_ADVANTAGE = "outcome_advantage_zero"


def teacher_needed(cfg: SelfDistillConfig, outcome_adv: torch.Tensor, response_mask: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, int]]:
    """Which samples' token credit can depend on the teacher, and why the others cannot.

    rlsd: ``A_t = A ((1 - lam) + lam w_t)`` is ``A`` whatever the teacher says when ``lam == 0`` or
    ``eps_w == 0`` (``w_t`` is clipped to 1), and 0 when the sample's outcome advantage is 0 on every
    token (its whole group tied). additive: ``A_t = A + eta clip(delta, -c, c)`` depends on the
    teacher for every sample unless ``eta == 0`` or ``c == 0``. off: never.

    Args:
        outcome_adv: ``(B, R)`` the estimator's advantages without the teacher.
        response_mask: ``(B, R)`` 0/1.
        step: completed updates (the lambda schedule's step).

    Returns:
        ``((B,) bool needed, {reason: number of samples skipped for it})``.
    """
    batch = outcome_adv.shape[0]
    none = torch.zeros(batch, dtype=torch.bool)
    if cfg.mode == MODE_OFF:
        return none, {SKIP_OFF: batch}
    if cfg.mode == MODE_ADDITIVE:
        if cfg.eta == 0.0 or cfg.clip == 0.0:
            return none, {SKIP_NO_TEACHER_WEIGHT: batch}
        return torch.ones(batch, dtype=torch.bool), {}
    if cfg.lam_at(step) == 0.0 or cfg.eps_w == 0.0:
        return none, {SKIP_NO_TEACHER_WEIGHT: batch}
    needed = ((outcome_adv != 0) & response_mask.bool()).any(dim=-1).cpu()
    return needed, {SKIP_ZERO_ADVANTAGE: int((~needed).sum())}


def apply_self_distill(
    cfg: SelfDistillConfig,
    adv: torch.Tensor,
    delta: torch.Tensor,
    response_mask: torch.Tensor,
    step: int,
) -> torch.Tensor:
    """:func:`combine` with the switches of ``cfg`` and lambda at ``step``.

    ``(B, R)`` float ``adv``/``delta`` and 0/1 ``response_mask`` in; ``(B, R)`` in ``adv.dtype`` out.
    """
    return combine(cfg.mode, adv, delta, response_mask, lam=cfg.lam_at(step), eps_w=cfg.eps_w,
                   eta=cfg.eta, clip_c=cfg.clip)


# ---------------------------------------------------------------------------------- metrics
def clip_hit_mask(cfg: SelfDistillConfig, advantages: torch.Tensor, delta: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """``(B, R)`` bool: valid tokens whose teacher term hit its clip (the one home of that rule).

    rlsd: ``exp(sign(A) * delta)`` outside ``[1 - eps_w, 1 + eps_w]`` (``advantages`` may be the
    combined ones: rlsd keeps the sign of A); additive: ``|delta| > clip``; off: none.
    """
    valid = response_mask.bool()
    if cfg.mode == MODE_RLSD:
        weight = torch.exp(torch.sign(advantages) * delta)
        return valid & ((weight < 1 - cfg.eps_w) | (weight > 1 + cfg.eps_w))
    if cfg.mode == MODE_ADDITIVE:
        return valid & (delta.abs() > cfg.clip)
    return torch.zeros_like(valid)


def delta_stats(
    delta: torch.Tensor,
    response_mask: torch.Tensor,
    roles: Sequence[str],
    clip_hit_mask: torch.Tensor | None = None,
    has_context: torch.Tensor | None = None,
    prefix: str = "coars_sd",
) -> dict[str, float]:
    """Per-role metrics of the teacher signal, plus ``"all"`` over every sample.

    Token statistics are over valid tokens (``response_mask``) of samples WITH a teacher context
    (all samples if ``has_context`` is None): ``delta_mean``, ``delta_std`` (population std; 0 for
    fewer than 2 tokens), ``tokens`` (count) and, if ``clip_hit_mask`` is given, ``clip_share``
    (share of those tokens that hit the clip). With ``has_context``, ``context_share`` is the
    share of the role's samples that had a context. A role with no such token reports 0.0.

    Args:
        delta: ``(B, R)`` float. response_mask: ``(B, R)`` 0/1. roles: length ``B``.
        clip_hit_mask: ``(B, R)`` bool or None. has_context: ``(B,)`` bool or None.

    Returns:
        ``{f"{prefix}/{role}/{name}": float}``.
    """
    if delta.shape != response_mask.shape or len(roles) != delta.shape[0]:
        raise ValueError(f"delta {tuple(delta.shape)}, mask {tuple(response_mask.shape)}, {len(roles)} roles")
    out: dict[str, float] = {}
    valid_all = response_mask.bool()
    if has_context is not None:
        valid_all = valid_all & has_context.bool().unsqueeze(-1)
    d = delta.detach().float()
    for role in sorted(set(roles)) + ["all"]:
        rows = torch.tensor([role == "all" or r == role for r in roles], dtype=torch.bool, device=delta.device)
        sel = valid_all & rows.unsqueeze(-1)
        vals = d[sel]
        n = vals.numel()
        key = f"{prefix}/{role}"
        out[f"{key}/tokens"] = float(n)
        out[f"{key}/delta_mean"] = float(vals.mean()) if n else 0.0
        out[f"{key}/delta_std"] = float(vals.std(correction=0)) if n > 1 else 0.0
        if clip_hit_mask is not None:
            out[f"{key}/clip_share"] = float(clip_hit_mask[sel].float().mean()) if n else 0.0
        if has_context is not None:
            ctx = has_context.bool()[rows]
            out[f"{key}/context_share"] = float(ctx.float().mean()) if ctx.numel() else 0.0
    return out
