"""Independent float64 re-derivations of the distillation losses, written with numpy loops.

Nothing here imports the code under test: softmax, KL, the DKD split and the
energy thresholds are spelled out from the papers' definitions.
"""

from __future__ import annotations

import math

import numpy as np


def np64(x) -> np.ndarray:  # noqa: ANN001 - tensors or arrays
    return np.asarray(x.detach().double().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float64)


def log_softmax_row(z: np.ndarray) -> np.ndarray:
    m = max(z)
    return z - (m + math.log(sum(math.exp(v - m) for v in z)))


def logsumexp_list(values: list[float]) -> float:
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values))


def kl_from_logs(log_p: np.ndarray, log_q: np.ndarray) -> float:
    return float(sum(math.exp(a) * (a - b) for a, b in zip(log_p, log_q, strict=True) if math.exp(a) > 0))


def ce(student, labels) -> float:
    s, y = np64(student), np64(labels).astype(int)
    return float(np.mean([-log_softmax_row(s[i])[y[i]] for i in range(len(y))]))


def kd(student, teacher, temps) -> float:
    """mean_i T_i^2 KL(softmax(z_t/T_i) || softmax(z_s/T_i)), in probability space."""
    s, t = np64(student), np64(teacher)
    temps = np.broadcast_to(np64(temps), (s.shape[0],))
    total = 0.0
    for i in range(s.shape[0]):
        p = np.exp(t[i] / temps[i] - np.max(t[i] / temps[i]))
        p /= p.sum()
        q = np.exp(s[i] / temps[i] - np.max(s[i] / temps[i]))
        q /= q.sum()
        total += temps[i] ** 2 * sum(p[j] * math.log(p[j] / q[j]) for j in range(len(p)) if p[j] > 0)
    return total / s.shape[0]


def dkd(student, teacher, labels, temps) -> tuple[float, float]:
    """(mean T_i^2 TCKD_i, mean T_i^2 NCKD_i) in probability space, as Zhao et al. define them."""
    s, t, y = np64(student), np64(teacher), np64(labels).astype(int)
    temps = np.broadcast_to(np64(temps), (s.shape[0],))
    tckd = nckd = 0.0
    for i in range(s.shape[0]):
        p = np.exp(t[i] / temps[i] - np.max(t[i] / temps[i]))
        p /= p.sum()
        q = np.exp(s[i] / temps[i] - np.max(s[i] / temps[i]))
        q /= q.sum()
        others = [j for j in range(len(p)) if j != y[i]]
        bp = [p[y[i]], sum(p[j] for j in others)]
        bq = [q[y[i]], sum(q[j] for j in others)]
        tckd += temps[i] ** 2 * sum(a * math.log(a / b) for a, b in zip(bp, bq, strict=True) if a > 0)
        pn = [p[j] / bp[1] for j in others]
        qn = [q[j] / bq[1] for j in others]
        nckd += temps[i] ** 2 * sum(a * math.log(a / b) for a, b in zip(pn, qn, strict=True) if a > 0)
    return tckd / s.shape[0], nckd / s.shape[0]


def dkd_logspace(student, teacher, labels, temp: float) -> tuple[float, float]:
    """The same quantities via log-probabilities: finite for logits that underflow softmax."""
    s, t, y = np64(student), np64(teacher), np64(labels).astype(int)
    tckd = nckd = 0.0
    for i in range(s.shape[0]):
        ls, lt = log_softmax_row(s[i] / temp), log_softmax_row(t[i] / temp)
        others = [j for j in range(len(ls)) if j != y[i]]
        bt = np.array([lt[y[i]], logsumexp_list([lt[j] for j in others])])
        bs = np.array([ls[y[i]], logsumexp_list([ls[j] for j in others])])
        tckd += temp**2 * kl_from_logs(bt, bs)
        nt = np.array([lt[j] for j in others]) - bt[1]
        ns = np.array([ls[j] for j in others]) - bs[1]
        nckd += temp**2 * kl_from_logs(nt, ns)
    return tckd / s.shape[0], nckd / s.shape[0]


def standardize(z) -> np.ndarray:
    """Row z-score with the unbiased (n - 1) standard deviation plus 1e-7, as Sun et al."""
    z = np64(z)
    out = np.empty_like(z)
    for i in range(z.shape[0]):
        row = z[i]
        mean = sum(row) / len(row)
        std = math.sqrt(sum((v - mean) ** 2 for v in row) / (len(row) - 1))
        out[i] = (row - mean) / (std + 1e-7)
    return out


def energy(logits, t_e: float = 4.0) -> np.ndarray:
    z = np64(logits)
    return np.array([-t_e * logsumexp_list(list(row / t_e)) for row in z])


def thresholds(energies, low_rate: float, high_rate: float) -> tuple[float, float]:
    """E_low = sorted[floor(N r_low)], E_high = sorted[N - floor(N r_high) - 1] (released indexing)."""
    e = sorted(np64(energies).tolist())
    n = len(e)
    return e[math.floor(n * low_rate)], e[n - math.floor(n * high_rate) - 1]


def partition_temps(
    energies, e_low: float, e_high: float, t_low: float, t_mid: float, t_high: float, paper_rule: bool
) -> np.ndarray:
    """Eq. 9 (paper_rule: E <= E_low) or the released rule (E < E_low); high means E > E_high."""
    out = []
    for e in np64(energies):
        if e > e_high:
            out.append(t_high)
        elif (e <= e_low) if paper_rule else (e < e_low):
            out.append(t_low)
        else:
            out.append(t_mid)
    return np.array(out)
