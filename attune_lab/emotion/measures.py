"""The emotion benchmarks' measures, from class posteriors: per-class and grouped UAR, calibration and reports.

``score(labels, probs)`` gives the issue's figures: 9-class UAR over the classes present, group5 UAR (the
strategy's decision), valence and arousal UAR (binary, only files whose class has a side), class4 UAR (angry,
happy, sad, neutral+calm: the field's usual comparison, argmax over those four groups' summed posteriors) and the
recall of its sad group (``sad_recall``),
per-class recall, the confusion matrix, and the expected calibration error (ECE, 10 equal-width bins) of the
confidence the backends report (the top group's posterior) with its reliability diagram.
"""

from __future__ import annotations

import numpy as np

from attune.backends.emotion.labels import CLASS4, CLASSES, GROUP5, GROUPINGS, group_of, grouping_matrix

N_BINS = 10


def uar(true: np.ndarray, pred: np.ndarray, k: int) -> float:
    """Unweighted average recall over the classes 0..k-1 present in ``true``."""
    recalls = [float(np.mean(pred[true == c] == c)) for c in range(k) if np.any(true == c)]
    return float(np.mean(recalls)) if recalls else float("nan")


def grouped_uar(labels: np.ndarray, probs: np.ndarray, grouping: dict[str, tuple[str, ...]]) -> float:
    """UAR of the group decision (argmax of summed posteriors over the groups) on files that belong to one."""
    true = np.array([group_of(int(y), grouping) for y in labels])
    keep = true >= 0
    if not keep.any():
        return float("nan")
    pred = (probs[keep] @ grouping_matrix(grouping)).argmax(axis=1)
    return uar(true[keep], pred, len(grouping))


def group_recall(labels: np.ndarray, probs: np.ndarray, grouping: dict[str, tuple[str, ...]], group: str) -> float:
    """Recall of one group of ``grouping`` under the group decision (NaN when no file belongs to it)."""
    j = list(grouping).index(group)
    true = np.array([group_of(int(y), grouping) for y in labels])
    if not np.any(true == j):
        return float("nan")
    return float(np.mean((probs[true == j] @ grouping_matrix(grouping)).argmax(axis=1) == j))


def reliability(confidence: np.ndarray, correct: np.ndarray,
                bins: int = N_BINS) -> tuple[float, list[dict[str, float]]]:
    """ECE and the reliability diagram: per equal-width confidence bin, its count, mean confidence, accuracy."""
    conf = np.clip(np.asarray(confidence, np.float64), 0.0, 1.0)
    ok = np.asarray(correct, bool)
    idx = np.minimum((conf * bins).astype(int), bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        sel = idx == b
        if not sel.any():
            continue
        acc, mean_conf = float(ok[sel].mean()), float(conf[sel].mean())
        ece += sel.mean() * abs(acc - mean_conf)
        rows.append({"lo": b / bins, "hi": (b + 1) / bins, "n": int(sel.sum()), "confidence": round(mean_conf, 3),
                     "accuracy": round(acc, 3)})
    return float(ece), rows


def group5_confidence(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(predicted group index, its posterior) per row: the decision the strategy acts on and its confidence."""
    g = probs @ grouping_matrix(GROUP5)
    return g.argmax(axis=1), g.max(axis=1)


def score(labels: np.ndarray, probs: np.ndarray, confidence: np.ndarray | None = None) -> dict[str, object]:
    """All figures for true class indices ``labels`` (n,) and posteriors ``probs`` (n, len(CLASSES)).

    ``confidence`` (default: the top group's posterior) is what the backend would report; calibration is
    judged against whether the group5 decision was right.
    """
    y = np.asarray(labels, int)
    p = np.asarray(probs, np.float64)
    pred = p.argmax(axis=1)
    k = len(CLASSES)
    confusion = np.zeros((k, k), int)
    np.add.at(confusion, (y, pred), 1)
    rows = confusion.sum(axis=1)
    group_pred, group_conf = group5_confidence(p)
    true_group = np.array([group_of(int(c), GROUP5) for c in y])
    conf = group_conf if confidence is None else np.asarray(confidence, np.float64)
    ece, diagram = reliability(conf, group_pred == true_group)
    out: dict[str, object] = {
        "n_files": int(len(y)),
        "uar": uar(y, pred, k),
        **{f"{name}_uar": grouped_uar(y, p, g) for name, g in GROUPINGS.items()},
        "sad_recall": group_recall(y, p, CLASS4, "sad"),
        "accuracy": float(np.mean(pred == y)),
        "ece": ece,
        "mean_confidence": float(np.mean(conf)),
        "reliability": diagram,
        "per_class": {c: (round(float(confusion[i, i] / rows[i]), 4) if rows[i] else None)
                      for i, c in enumerate(CLASSES)},
        "confusion": confusion.tolist(),
        "classes": list(CLASSES),
    }
    return out


FIGURES = ("uar", "group5_uar", "valence_uar", "arousal_uar", "class4_uar", "sad_recall", "ece")


def summary_line(m: dict[str, object]) -> str:
    """One line: the headline figures of a score() dict."""
    def f(key: str) -> str:
        v = m.get(key)
        return "-" if not isinstance(v, float) or np.isnan(v) else f"{v:.3f}"

    return "  ".join(f"{k.replace('_uar', '')} {f(k)}" for k in FIGURES)


def format_report(m: dict[str, object]) -> str:
    """Human-readable figures: the UARs, ECE with its reliability diagram, per-class recall and confusions."""
    lines = [f"files: {m['n_files']}", summary_line(m), f"accuracy {m['accuracy']:.3f}", "per-class recall:"]
    per_class = m["per_class"]
    assert isinstance(per_class, dict)
    lines += ["  " + "  ".join(f"{c} {'-' if r is None else f'{r:.2f}'}" for c, r in per_class.items())]
    lines.append("reliability (group5 decision): bin  n  confidence  accuracy")
    diagram = m["reliability"]
    assert isinstance(diagram, list)
    lines += [f"  {r['lo']:.1f}-{r['hi']:.1f} {r['n']:4d}  {r['confidence']:.2f}  {r['accuracy']:.2f}  "
              + "#" * int(round(20 * r["accuracy"])) for r in diagram]
    confusion = m["confusion"]
    assert isinstance(confusion, list)
    lines.append("confusion (rows true, columns predicted): " + " ".join(f"{c[:4]:>4}" for c in CLASSES))
    lines += [f"  {c[:4]:<5} " + " ".join(f"{v:4d}" for v in row)
              for c, row in zip(CLASSES, confusion, strict=True) if sum(row)]
    return "\n".join(lines)
