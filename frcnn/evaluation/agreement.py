"""How two runs of a model agree on one picture: exact equivalence (a runtime against eager PyTorch) and the share of
shown boxes found again (a lower precision against fp32). The one rule that tests and benchmarks both apply."""

from __future__ import annotations

import numpy as np

from frcnn.core.boxes import greedy_pairs, overlap_matrix

SCORE_FLOOR = 0.05  # torchvision's box_score_thresh: every detection the model returns is compared
BOX_TOLERANCE_PX = 1.0
SCORE_TOLERANCE = 1e-3
DETECTIONS_PER_IMAGE = 100  # torchvision's cap on detections per picture


def equivalent(reference: dict, candidate: dict) -> dict:
    """Every detection scoring >= 0.05 on either side must have a partner on the other: same label, all four
    box corners within 1 px, score within 1e-3 (each partner used once, closest boxes first). Exception: when a
    side holds the cap of 100 detections, those within 1e-3 of its lowest score may lack a partner, since a
    change that small can move them across the cap."""
    def above_floor(d):
        return [(box, score, label) for box, score, label in zip(d["boxes"], d["scores"], d["labels"])
                if score >= SCORE_FLOOR]

    def excusable(detections, index):
        scores = [d[1] for d in detections]
        return len(scores) >= DETECTIONS_PER_IMAGE and detections[index][1] <= min(scores) + SCORE_TOLERANCE

    ref, cand = above_floor(reference), above_floor(candidate)
    free = set(range(len(cand)))
    worst_box = worst_score = 0.0
    unpaired_ref = []
    for r, (box, score, label) in sorted(enumerate(ref), key=lambda item: -item[1][1]):
        best, best_diff = None, None
        for c in free:
            other_box, other_score, other_label = cand[c]
            box_diff = max(abs(p - q) for p, q in zip(box, other_box))
            if other_label == label and box_diff <= BOX_TOLERANCE_PX and abs(score - other_score) <= SCORE_TOLERANCE:
                if best is None or box_diff < best_diff:
                    best, best_diff = c, box_diff
        if best is None:
            unpaired_ref.append(r)
            continue
        free.remove(best)
        worst_box, worst_score = max(worst_box, best_diff), max(worst_score, abs(score - cand[best][1]))
    unexcused = [r for r in unpaired_ref if not excusable(ref, r)] + [c for c in free if not excusable(cand, c)]
    return {"reference_count": len(ref), "count": len(cand), "paired": len(ref) - len(unpaired_ref),
            "max_box_diff_px": round(worst_box, 4), "max_score_diff": round(worst_score, 6),
            "equivalent": not unexcused}



def agreement(reference: dict, candidate: dict, score: float = 0.5, iou: float = 0.5) -> dict:
    """How far a lower-precision path agrees with fp32 on what a user sees (scores >= 0.5): the share of the
    reference's boxes that find a partner of the same label at IoU >= 0.5 (best first, each used once), and
    the mean IoU of the partners."""
    def shown(d):
        keep = [i for i, s in enumerate(d["scores"]) if s >= score]
        return (np.array([d["boxes"][i] for i in keep], np.float64).reshape(-1, 4),
                [d["labels"][i] for i in keep])

    ref_boxes, ref_labels = shown(reference)
    cand_boxes, cand_labels = shown(candidate)
    overlaps = overlap_matrix(ref_boxes, cand_boxes)
    same_label = np.array([[r == c for c in cand_labels] for r in ref_labels], bool).reshape(overlaps.shape)
    matched = [float(overlaps[r, c]) for r, c in greedy_pairs(overlaps, iou, allowed=same_label)]
    return {"reference_shown": len(ref_boxes), "shown": len(cand_boxes), "matched": len(matched),
            "matched_share": round(len(matched) / len(ref_boxes), 3) if len(ref_boxes) else None,
            "mean_iou": round(float(np.mean(matched)), 3) if matched else None}
