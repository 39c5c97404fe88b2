"""The reward objectives, each a small function of tensors with its paper's formula; the trainers compose them.

    from curate.train import objectives as obj
    loss = obj.bradley_terry(r_chosen, r_rejected, margin, smoothing).mean()
    loss = loss + beta * obj.simcse(h_view1, h_view2, temperature=0.05)          # Secrets of RLHF II, eq. 9
    j = obj.difference(rewards_k)                                                # MetaRM's J, eq. 11
    terms = obj.ava_sequence_terms(q_taken, q_logsumexp, mu, log_sigma, mask)    # AVA, eqs. 5, 12, 17

Papers: ../shared/papers/secrets-of-rlhf-part2-reward-modeling.txt (sections 2.4, 3.1, 3.2) and
../shared/papers/ava-variational-bayesian-irl.txt (AVA). Every function returns per-row values (or one scalar where
the formula is over a batch), never calls a model, and imports only torch: the tests check each against a closed
form computed by hand.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# ----------------------------------------------------------------------------------------- ranking loss


def bradley_terry(r_chosen: torch.Tensor, r_rejected: torch.Tensor, margin: torch.Tensor | None = None,
                  smoothing: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Per-row -(1 - a) log sigma(d) - a log sigma(-d), d = r_chosen - r_rejected - margin.

    Secrets of RLHF II, eq. 2 (Bradley-Terry), eq. 5 (label smoothing a) and eq. 6 (adaptive margin)."""
    d = r_chosen - r_rejected
    if margin is not None:
        d = d - margin.to(d.dtype)
    return -(1 - smoothing) * F.logsigmoid(d) - smoothing * F.logsigmoid(-d)


# ----------------------------------------------------------------------------------- contrastive terms
# Section 3.1: L_total = L_rm + beta * L_cl, with L_cl SimCSE (eq. 9) or SwAV (eqs. 7-8), on representations of
# the responses ("preference pairs": f(x, y_c) and f(x, y_r) are samples) or of their differences ("preference
# difference": f(x, y_c) - f(x, y_r) and its negation), section 3.1.1.

CONTRASTIVE_SAMPLES = ("pairs", "difference")


def contrastive_samples(h_chosen: torch.Tensor, h_rejected: torch.Tensor, on: str) -> torch.Tensor:
    """The samples H of section 3.1.1 from one view's representations [n, dim]: [2n, dim]."""
    if on == "pairs":
        return torch.cat([h_chosen, h_rejected])
    if on == "difference":
        return torch.cat([h_chosen - h_rejected, h_rejected - h_chosen])
    raise ValueError(f"contrastive samples must be one of {CONTRASTIVE_SAMPLES}, not {on!r}")


def simcse(h_s: torch.Tensor, h_t: torch.Tensor, temperature: float) -> torch.Tensor:
    """Eq. 9: mean over i of -log( e^{sim(h_s^i, h_t^i)/tau} / sum_j e^{sim(h_s^i, h_t^j)/tau} ), sim = cosine.

    h_s, h_t: [N', dim], the same N' inputs under two dropout masks; the other rows of the batch are the negatives."""
    sim = F.normalize(h_s, dim=-1) @ F.normalize(h_t, dim=-1).T / temperature
    return F.cross_entropy(sim, torch.arange(len(sim), device=sim.device))


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, epsilon: float, iterations: int) -> torch.Tensor:
    """SwAV's codes q (Caron et al. 2020, section 3.1 and Algorithm 1): the equipartitioned soft assignment of N
    samples to K prototypes from scores [N, K], by Sinkhorn-Knopp on exp(scores / epsilon). Rows sum to 1."""
    q = torch.exp((scores - scores.max()) / epsilon).T  # [K, N]; shifting by a constant leaves q unchanged
    q = q / q.sum()
    k, n = q.shape
    for _ in range(iterations):
        q = q / (q.sum(dim=1, keepdim=True) * k)  # each prototype gets 1/K of the mass
        q = q / (q.sum(dim=0, keepdim=True) * n)  # each sample has 1/N
    return (q * n).T


def swav(h_t: torch.Tensor, h_s: torch.Tensor, prototypes: torch.Tensor, temperature: float, epsilon: float,
         iterations: int) -> torch.Tensor:
    """Eqs. 7-8: l(h_t, q_s) + l(h_s, q_t), l(h, q) = -sum_k q^(k) log softmax_k(h^T c_k / tau), mean over samples.

    h_t, h_s: [N, dim], two views; prototypes c: [K, dim] (normalised here, as in SwAV); codes q by sinkhorn()."""
    c = F.normalize(prototypes, dim=-1)
    scores_t, scores_s = F.normalize(h_t, dim=-1) @ c.T, F.normalize(h_s, dim=-1) @ c.T
    q_t, q_s = sinkhorn(scores_t, epsilon, iterations), sinkhorn(scores_s, epsilon, iterations)
    log_p_t, log_p_s = F.log_softmax(scores_t / temperature, -1), F.log_softmax(scores_s / temperature, -1)
    return (-(q_s * log_p_t).sum(-1) - (q_t * log_p_s).sum(-1)).mean()


# ------------------------------------------------------------------------------------------- MetaRM
def difference(rewards: torch.Tensor) -> torch.Tensor:
    """MetaRM's difference J (section 3.2, eq. 11): 2/k^2 sum_{i<j} sigma(|r_i - r_j|) per prompt, averaged over
    prompts. rewards: [m, k], the rewards of k responses the shifted policy sampled for each of m prompts."""
    k = rewards.shape[-1]
    gaps = (rewards.unsqueeze(-1) - rewards.unsqueeze(-2)).abs()  # [m, k, k]
    upper = torch.triu(torch.ones(k, k, dtype=torch.bool, device=rewards.device), diagonal=1)
    return (2.0 / k**2 * torch.sigmoid(gaps[:, upper]).sum(-1)).mean()


# ---------------------------------------------------------------------------------------------- AVA
# AVRIL (Chan and van der Schaar 2021) in AVA's language-model form: at response token t, the state is the text
# before it and the action the token. A Gaussian reward q(r_t) = N(mu_t, sigma_t^2) per token (eq. 9), the prior
# p(r) = N(0, 1) (AVRIL's), the Boltzmann policy over Q-values taken from the language model itself,
# Q(s, a) = log softmax(z_s / tau)[a] (eq. 12), and the TD error Q(s_t, a_t) - gamma Q(s_{t+1}, a_{t+1}) (eq. 14),
# which the reward distribution must explain (eq. 4's third term).


def gaussian_kl(mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) = (mu^2 + sigma^2 - 1) / 2 - log sigma, elementwise."""
    return 0.5 * (mu**2 + torch.exp(2 * log_sigma) - 1) - log_sigma


def gaussian_log_prob(x: torch.Tensor, mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """log N(x; mu, sigma^2), elementwise."""
    return -0.5 * ((x - mu) * torch.exp(-log_sigma)) ** 2 - log_sigma - 0.5 * math.log(2 * math.pi)


def ava_sequence_terms(q_taken: torch.Tensor, mu: torch.Tensor, log_sigma: torch.Tensor, mask: torch.Tensor,
                       gamma: float) -> dict[str, torch.Tensor]:
    """AVA-d's three terms (eq. 5) for each sequence, averaged over its response tokens: [batch] each.

    q_taken[b, t] = Q(s_t, a_t) = log pi(a_t | s_t) of response token t (the likelihood of the Boltzmann policy over
    eq. 12's Q-values is that same number); mu, log_sigma: the reward distribution of the state after token t;
    mask: the response tokens. The next action's Q is 0 after the last token (the episode ends there).

        loglik = mean_t log pi(a_t | s_t)
        kl     = mean_t KL(N(mu_t, sigma_t^2) || N(0, 1))
        td     = mean_t log N(Q(s_t, a_t) - gamma Q(s_{t+1}, a_{t+1}); mu_t, sigma_t^2)
    """
    mask = mask.bool()
    q = torch.where(mask, q_taken, 0.0)
    q_next = torch.cat([q[:, 1:], torch.zeros_like(q[:, :1])], dim=1)  # masked (and past-the-end) tokens give 0
    td_error = q - gamma * q_next
    n = mask.sum(1).clamp(min=1)

    def mean(x):  # where, not x * mask: a padded position's value must not leak into the mean or its gradient
        return torch.where(mask, x, 0.0).sum(1) / n

    return {"loglik": mean(q), "kl": mean(gaussian_kl(mu, log_sigma)),
            "td": mean(gaussian_log_prob(td_error, mu, log_sigma)), "td_error": mean(td_error)}


def ava_preference(chosen: dict[str, torch.Tensor], rejected: dict[str, torch.Tensor], final_chosen: torch.Tensor,
                   final_rejected: torch.Tensor, kl_weight: float, td_weight: float, negative_weight: float,
                   cer_weight: float) -> dict[str, torch.Tensor]:
    """AVA-p (eq. 17) as a loss to minimise, per pair, plus the CER auxiliary term (eq. 18), from the terms
    ava_sequence_terms() gave for the chosen and the rejected sequences:

        loss = -loglik(c) + w_neg loglik(r)                  the chosen are demonstrations, the rejected negative ones
               + w_kl (kl(c) + kl(r)) - w_td (td(c) + td(r))  the prior and the TD constraint on both
               - w_cer log sigma(mu_T(c) - mu_T(r))          CER: the final reward ranks the pair

    The prior and TD terms keep the reward consistent with the policy on every demonstration, chosen or rejected
    (eq. 17 keeps both in the objective); mu_T is the reward mean at the last token, the one `final` reward mode
    reads."""
    terms = {
        "likelihood": -chosen["loglik"] + negative_weight * rejected["loglik"],
        "kl": kl_weight * (chosen["kl"] + rejected["kl"]),
        "td": -td_weight * (chosen["td"] + rejected["td"]),
        "cer": -cer_weight * F.logsigmoid(final_chosen - final_rejected),
    }
    terms["loss"] = sum(terms.values())
    return terms
